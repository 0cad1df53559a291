//! `ferrows_queue`: where connections and servers report their events. A C program either
//! polls its level-triggered file descriptor and drains it with a zero timeout, blocks in
//! `ferrows_queue_next`, or sets a callback that runs on a runtime thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ferrows_core::engine::{runtime, Connection, Signal};

use crate::boundary::{
    fail, ferrows_result, ferrows_result::*, ffi, non_null, status, timeout_arg,
};
use crate::conn::ConnState;
use crate::event::ferrows_event;
use crate::server::ServerState;

/// The messages a thread sends while it handles a batch of events leave together: while
/// more events wait for it, its sends stay in their connections' buffers
/// ([`Connection::send_deferred`]) and are written when it takes the last waiting event,
/// comes back to a queue with nothing waiting, has taken [`FLUSH_EVERY`] events, or frees
/// the queue. Then one system call carries each connection's replies instead of one per
/// message.
#[derive(Default)]
struct Deferral {
    active: bool,
    /// Events taken since the last flush.
    taken: usize,
    /// Connections with output waiting for the flush.
    connections: Vec<Connection>,
}

/// Events a thread may take while its replies wait: bounds the wait to a few hundred
/// events' handling.
const FLUSH_EVERY: usize = 256;

impl Deferral {
    fn flush(&mut self) {
        for connection in self.connections.drain(..) {
            connection.flush();
        }
    }
}

impl Drop for Deferral {
    /// A thread that ends mid-batch still sends what it deferred.
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static DEFERRAL: RefCell<Deferral> = RefCell::default();
}

/// Whether this thread's sends may wait for the end of the batch of events it handles.
pub(crate) fn deferring() -> bool {
    DEFERRAL.with(|deferral| deferral.borrow().active)
}

/// Remembers a connection whose deferred send left output to flush.
pub(crate) fn defer(connection: Connection) {
    DEFERRAL.with(|deferral| deferral.borrow_mut().connections.push(connection));
}

/// Starts deferring this thread's sends for the event it takes, or stops and writes what
/// they left.
fn set_deferring(active: bool) {
    let waiting = DEFERRAL.with(|deferral| {
        let mut deferral = deferral.borrow_mut();
        deferral.active = active;
        deferral.taken += 1;
        if active && deferral.taken < FLUSH_EVERY {
            return Vec::new();
        }
        deferral.taken = 0;
        std::mem::take(&mut deferral.connections)
    });
    // Flushed outside the borrow: nothing here calls back, but a panic must not poison it.
    for connection in waiting {
        connection.flush();
    }
}

/// Something that may have events: polled without blocking when the queue asks.
#[derive(Clone)]
pub(crate) enum Source {
    Conn(Arc<ConnState>),
    Server(Arc<ServerState>),
}

impl Source {
    fn queued_flag(&self) -> &AtomicBool {
        match self {
            Source::Conn(conn) => &conn.queued,
            Source::Server(server) => &server.queued,
        }
    }

    /// Whether its handle was freed: then nothing of it may reach the application.
    fn freed(&self) -> bool {
        match self {
            Source::Conn(conn) => conn.freed.load(Ordering::Acquire),
            Source::Server(server) => server.freed.load(Ordering::Acquire),
        }
    }

    fn is(&self, other: &Source) -> bool {
        match (self, other) {
            (Source::Conn(a), Source::Conn(b)) => Arc::ptr_eq(a, b),
            (Source::Server(a), Source::Server(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether another poll would find an event (a new one marks it ready again anyway).
    fn has_events(&self) -> bool {
        match self {
            Source::Conn(conn) => conn.has_events(),
            Source::Server(server) => server.has_events(),
        }
    }

    fn poll(&self) -> Option<Box<ferrows_event>> {
        if self.freed() {
            return None;
        }
        match self {
            Source::Conn(conn) => conn.poll_event(),
            Source::Server(server) => server.poll_event(),
        }
    }
}

/// A closure called with each event on a runtime thread: `call(context, event)` owns the
/// event (free it with `ferrows_event_free`); `drop(context)`, if set, runs exactly once
/// when the callback is replaced or the queue is freed (after a call under way returns).
/// `call` must not block: blocking ferrows calls made from it fail with
/// `FERROWS_ERR_WOULD_DEADLOCK`. It may send, and may replace or remove the callback.
#[repr(C)]
pub struct ferrows_event_callback {
    /// Passed to `call` and `drop`.
    pub context: *mut c_void,
    /// Called with each event; NULL removes the callback.
    pub call: Option<unsafe extern "C" fn(context: *mut c_void, event: *mut ferrows_event)>,
    /// Called once when the callback is no longer used; may be NULL.
    pub drop: Option<unsafe extern "C" fn(context: *mut c_void)>,
}

struct Callback(ferrows_event_callback);

// SAFETY: the application promises its callback may run on any runtime thread, and calls
// are serialized by the queue's `draining` flag (documented on ferrows_event_callback).
unsafe impl Send for Callback {}
// SAFETY: as for Send: shared, it is only called, one call at a time.
unsafe impl Sync for Callback {}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(drop_context) = self.0.drop {
            // SAFETY: the contract of `ferrows_event_callback`, which its setter promised:
            // `drop` runs once, here, when the last holder (the queue or a call under way)
            // lets go.
            unsafe { drop_context(self.0.context) };
        }
    }
}

struct QueueState {
    ready: VecDeque<Source>,
    /// Ready-made events (a connection attempt's outcome, or one a removed callback left),
    /// each with its source: checked under this lock, a freed source's events never leave.
    events: VecDeque<(Source, Box<ferrows_event>)>,
    woken: bool,
    signaled: bool,
}

impl QueueState {
    fn has_waiting(&self) -> bool {
        !self.ready.is_empty() || !self.events.is_empty()
    }
}

pub(crate) struct QueueShared {
    state: Mutex<QueueState>,
    changed: Signal,
    /// Readable while events may be pending (an eventfd, level-triggered).
    eventfd: OwnedFd,
    /// Held only to read or replace it: calls run on a clone, so a callback may send,
    /// replace itself or free the queue without deadlocking.
    callback: Mutex<Option<Arc<Callback>>>,
    has_callback: AtomicBool,
    draining: AtomicBool,
}

impl QueueShared {
    /// An empty queue with its own eventfd.
    fn new() -> std::io::Result<Arc<Self>> {
        // SAFETY: a plain system call with constant flags.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(QueueShared {
            state: Mutex::new(QueueState {
                ready: VecDeque::new(),
                events: VecDeque::new(),
                woken: false,
                signaled: false,
            }),
            changed: Signal::default(),
            // SAFETY: a new descriptor that nothing else owns.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            callback: Mutex::new(None),
            has_callback: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the eventfd readable, then releases the lock and wakes a waiting taker: woken
    /// after the release, it does not find the lock still held.
    fn signal(&self, mut state: MutexGuard<'_, QueueState>) {
        if !state.signaled {
            state.signaled = true;
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
        drop(state);
        self.changed.notify_all();
    }

    fn unsignal(&self, state: &mut QueueState) {
        if state.signaled {
            state.signaled = false;
            let mut count: u64 = 0;
            // SAFETY: reading 8 bytes into a live u64 from our own non-blocking eventfd.
            unsafe { libc::read(self.eventfd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        }
    }

    /// Tells the queue `source` may have events (any thread; never blocks on the source).
    pub(crate) fn mark_ready(self: &Arc<Self>, source: Source) {
        if source.queued_flag().swap(true, Ordering::AcqRel) {
            return;
        }
        let mut state = self.lock();
        state.ready.push_back(source);
        self.signal(state);
        self.schedule_callback();
    }

    /// Adds a ready-made event of `source` (a connection attempt's outcome).
    pub(crate) fn push_event(self: &Arc<Self>, source: Source, event: Box<ferrows_event>) {
        if self.store(source, event, false) {
            self.schedule_callback();
        }
    }

    /// Keeps `event` of `source` for the next taker, first in line or last; false when the
    /// source was freed. A refused event is dropped once the lock is released: an ACCEPT
    /// event's connection takes that lock when it is freed.
    fn store(&self, source: Source, event: Box<ferrows_event>, first: bool) -> bool {
        let mut state = self.lock();
        if source.freed() {
            drop(state);
            return false;
        }
        if first {
            state.events.push_front((source, event));
        } else {
            state.events.push_back((source, event));
        }
        self.signal(state);
        true
    }

    /// Drops every event `source` left in the queue (its handle is being freed, with its
    /// `freed` flag set): none may carry its userdata, or its accepted connections, later.
    pub(crate) fn forget(&self, source: &Source) {
        let mut state = self.lock();
        let (gone, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut state.events)
            .into_iter()
            .partition(|(owner, _)| owner.is(source));
        state.events = kept;
        state.ready.retain(|ready| !ready.is(source));
        drop(state);
        drop(gone);
    }

    /// The next event without waiting, with its source: queued events first, then polling
    /// ready sources. Events of a source freed meanwhile are dropped.
    fn try_next(&self) -> Option<(Source, Box<ferrows_event>)> {
        loop {
            let mut state = self.lock();
            if let Some((source, event)) = state.events.pop_front() {
                let freed = source.freed();
                drop(state);
                if freed {
                    continue;
                }
                return Some((source, event));
            }
            let source = state.ready.pop_front()?;
            drop(state);
            // Cleared before polling: a notification during the poll queues it again.
            source.queued_flag().store(false, Ordering::Release);
            let Some(event) = source.poll() else {
                continue; // a poll that finds nothing drops it from the list
            };
            // Listed again while it has more, so that the list says whether events wait.
            // Asked before the queue's lock is taken: a connection holds its own lock when it
            // marks itself ready.
            let more = source.has_events();
            let mut state = self.lock();
            let freed = source.freed();
            if !freed && more && !source.queued_flag().swap(true, Ordering::AcqRel) {
                state.ready.push_back(source.clone());
            }
            drop(state);
            if freed {
                continue;
            }
            return Some((source, event));
        }
    }

    fn next(&self, timeout_ms: i32) -> Result<Box<ferrows_event>, ferrows_result> {
        let timeout = timeout_arg(timeout_ms)?;
        if timeout_ms != 0 {
            runtime::check_may_block().map_err(|e| fail(&e))?;
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some((_, event)) = self.try_next() {
                set_deferring(self.has_waiting());
                return Ok(event);
            }
            set_deferring(false);
            let mut state = self.lock();
            if state.woken {
                state.woken = false;
                if !state.has_waiting() {
                    self.unsignal(&mut state);
                }
                return Err(status(FERROWS_AGAIN, "woken by ferrows_queue_wakeup"));
            }
            if state.has_waiting() {
                continue;
            }
            self.unsignal(&mut state);
            if timeout_ms == 0 {
                return Err(status(FERROWS_AGAIN, "no event"));
            }
            if self.changed.wait_until(state, deadline).is_none() {
                return Err(status(FERROWS_TIMEOUT, "no event"));
            }
        }
    }

    /// Whether events wait: the one being taken is not the last.
    fn has_waiting(&self) -> bool {
        self.lock().has_waiting()
    }

    /// With a callback set, drains the queue into it on a runtime thread; one drain at a
    /// time. Takes no lock: it runs inside connection notifications. Notified by a reader
    /// task, the drain runs on its thread once the reader has unlocked its connection;
    /// otherwise on a task of its own.
    fn schedule_callback(self: &Arc<Self>) {
        if !self.has_callback.load(Ordering::Acquire) || self.draining.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let queue = self.clone();
        let Some(drain) = runtime::after_read(Box::new(move || queue.drain_into_callback())) else {
            return;
        };
        let Ok(handle) = runtime::handle() else {
            self.draining.store(false, Ordering::Release);
            return;
        };
        handle.spawn(async move { drain() });
    }

    fn current_callback(&self) -> Option<Arc<Callback>> {
        self.callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn drain_into_callback(self: &Arc<Self>) {
        loop {
            while let Some((source, event)) = self.try_next() {
                let Some(callback) = self.current_callback() else {
                    // The callback was removed: keep the event for ferrows_queue_next.
                    self.store(source, event, true);
                    set_deferring(false);
                    self.draining.store(false, Ordering::Release);
                    return;
                };
                set_deferring(self.has_waiting());
                if let Some(call) = callback.0.call {
                    // SAFETY: `ferrows_queue_set_callback`'s caller promised a callback that
                    // may run on a runtime thread; it gets an event it owns from now on.
                    unsafe { call(callback.0.context, Box::into_raw(event)) };
                }
            }
            set_deferring(false);
            self.draining.store(false, Ordering::Release);
            // Events that arrived after the last try_next and before the flag fell.
            let pending = self.has_waiting();
            if !pending || self.draining.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    fn replace_callback(&self, new: Option<Callback>) {
        self.has_callback.store(new.is_some(), Ordering::Release);
        let previous = std::mem::replace(
            &mut *self.callback.lock().unwrap_or_else(|e| e.into_inner()),
            new.map(Arc::new),
        );
        // Its `drop` runs here, or when a call still under way returns.
        drop(previous);
    }
}

/// An event queue shared by any number of connections and servers.
pub struct ferrows_queue {
    pub(crate) shared: Arc<QueueShared>,
}

/// Creates a queue.
///
/// # Safety
/// `out` must be valid; it receives a queue to free with `ferrows_queue_free`.
#[no_mangle]
pub unsafe extern "C" fn ferrows_queue_new(out: *mut *mut ferrows_queue) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(out);
        let shared = match QueueShared::new() {
            Ok(shared) => shared,
            Err(error) => return fail(&ferrows_core::Error::Io(error)),
        };
        // SAFETY: not NULL, and the caller promises a writable pointer.
        unsafe { *out = Box::into_raw(Box::new(ferrows_queue { shared })) };
        FERROWS_OK
    })
}

/// Stores in `fd` a file descriptor that is readable while the queue may have events: add it
/// to poll/epoll/libuv for POLLIN, then call `ferrows_queue_next` with a zero timeout until it
/// returns `FERROWS_AGAIN`. Never read, write or close it; it lives as long as the queue.
///
/// # Safety
/// `queue` must be a valid queue and `fd` a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ferrows_queue_fd(
    queue: *const ferrows_queue,
    fd: *mut std::ffi::c_int,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(queue, fd);
        // SAFETY: both not NULL, and the caller promises a live queue and a writable `fd`.
        let (queue, fd) = unsafe { (&*queue, &mut *fd) };
        *fd = queue.shared.eventfd.as_raw_fd();
        FERROWS_OK
    })
}

/// Takes the next event, waiting up to `timeout_ms` (-1 forever, 0 not at all). Returns
/// `FERROWS_OK` with the event in `out` (the caller frees it), `FERROWS_AGAIN` when nothing
/// is ready with a zero timeout or when `ferrows_queue_wakeup` interrupted the wait, and
/// `FERROWS_TIMEOUT` when the time ran out. One thread at a time may call it.
///
/// While more events wait, the messages this thread sends (`ferrows_conn_send`) wait in
/// their connections' buffers and leave together, in one system call per connection, when
/// it takes the last waiting event, calls `ferrows_queue_next` with nothing waiting, has
/// taken 256 events, or frees the queue; a buffer holding 64 KiB or more is written at
/// once. Pings, pongs, closes and fragments are written at once, with what waits before
/// them.
///
/// # Safety
/// `queue` must be a valid queue and `out` a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ferrows_queue_next(
    queue: *mut ferrows_queue,
    timeout_ms: i32,
    out: *mut *mut ferrows_event,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(queue, out);
        // SAFETY: both not NULL, and the caller promises a live queue and a writable `out`.
        let (queue, out) = unsafe { (&*queue, &mut *out) };
        *out = std::ptr::null_mut();
        match queue.shared.next(timeout_ms) {
            Ok(event) => {
                *out = Box::into_raw(event);
                FERROWS_OK
            }
            Err(code) => code,
        }
    })
}

/// Wakes a thread waiting in `ferrows_queue_next` (which returns `FERROWS_AGAIN`) and makes
/// the fd readable. Callable from any thread, signal handlers excepted.
///
/// # Safety
/// `queue` must be a valid queue.
#[no_mangle]
pub unsafe extern "C" fn ferrows_queue_wakeup(queue: *const ferrows_queue) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(queue);
        // SAFETY: not NULL, and the caller promises a live queue.
        let shared = unsafe { &(*queue).shared };
        let mut state = shared.lock();
        state.woken = true;
        shared.signal(state);
        FERROWS_OK
    })
}

/// Delivers every event to `callback` on a runtime thread instead of `ferrows_queue_next`.
/// A NULL `call` removes the callback. The previous callback's `drop` runs. Messages the
/// callback sends leave together once the events waiting have been delivered, as with
/// `ferrows_queue_next`.
///
/// # Safety
/// `queue` must be a valid queue; the callback must follow `ferrows_event_callback`'s rules.
#[no_mangle]
pub unsafe extern "C" fn ferrows_queue_set_callback(
    queue: *mut ferrows_queue,
    callback: ferrows_event_callback,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(queue);
        // SAFETY: not NULL, and the caller promises a live queue.
        let shared = unsafe { &(*queue).shared };
        shared.replace_callback(callback.call.is_some().then_some(Callback(callback)));
        shared.schedule_callback();
        FERROWS_OK
    })
}

/// Frees a queue: its callback's `drop` runs, pending events are freed. Connections and
/// servers reporting to it stop reporting. NULL is a no-op.
///
/// # Safety
/// `queue` must be NULL or a valid queue, not used afterwards (nor its fd).
#[no_mangle]
pub unsafe extern "C" fn ferrows_queue_free(queue: *mut ferrows_queue) {
    ffi!((), {
        set_deferring(false);
        if !queue.is_null() {
            // SAFETY: a queue from `Box::into_raw`, which the caller gives up.
            let queue = unsafe { Box::from_raw(queue) };
            queue.shared.replace_callback(None);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ferrows_config_free, ferrows_config_new};
    use crate::event::ferrows_event_kind::FERROWS_EVENT_OPEN;
    use crate::server::{ferrows_server_free, ferrows_server_listen};

    /// An unopened connection's state, as `ferrows_connect` makes it, and its source.
    fn conn_source() -> (Arc<ConnState>, Source) {
        let state = ConnState::new(None, std::ptr::null_mut());
        (state.clone(), Source::Conn(state))
    }

    fn open_event() -> Box<ferrows_event> {
        ferrows_event::new(FERROWS_EVENT_OPEN, std::ptr::null_mut())
    }

    fn stored(queue: &QueueShared) -> usize {
        queue.lock().events.len()
    }

    /// A freed source's events never leave: none is stored once it is freed, and one stored
    /// before is dropped when its turn comes (in a queue `forget` never saw: the connection
    /// moved to another queue).
    #[test]
    fn a_freed_sources_events_never_leave() {
        let queue = QueueShared::new().unwrap();
        let (state, source) = conn_source();
        queue.push_event(source.clone(), open_event());
        state.freed.store(true, Ordering::Release);
        queue.push_event(source, open_event());
        assert_eq!(stored(&queue), 1);
        assert!(queue.try_next().is_none());
        assert_eq!(stored(&queue), 0);
    }

    #[test]
    fn forget_drops_only_what_its_source_left() {
        let queue = QueueShared::new().unwrap();
        let (freed, freed_source) = conn_source();
        let (kept, kept_source) = conn_source();
        queue.push_event(freed_source.clone(), open_event());
        queue.push_event(kept_source, open_event());
        queue.push_event(freed_source.clone(), open_event());
        freed.freed.store(true, Ordering::Release);
        queue.forget(&freed_source);
        assert_eq!(stored(&queue), 1);
        let (source, _) = queue.try_next().expect("the other source's event");
        assert!(matches!(source, Source::Conn(state) if Arc::ptr_eq(&state, &kept)));
        assert!(queue.try_next().is_none());
    }

    /// `ferrows_server_free`: an ACCEPT event the server left (one a removed callback put
    /// back) goes with it, and its connection is closed rather than handed out.
    #[test]
    fn freeing_a_server_drops_its_stored_events() {
        let queue = QueueShared::new().unwrap();
        let mut handle = ferrows_queue {
            shared: queue.clone(),
        };
        let (mut config, mut server) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid out-pointers, a NUL-terminated host and a live config and queue;
        // the server is freed once, below, and the config after it.
        unsafe {
            assert_eq!(ferrows_config_new(&mut config), FERROWS_OK);
            let host = c"127.0.0.1".as_ptr();
            let listened = ferrows_server_listen(config, host, 0, &mut handle, &mut server);
            assert_eq!(listened, FERROWS_OK);
            let source = Source::Server((*server).state.clone());
            let accept = crate::event::ferrows_event_kind::FERROWS_EVENT_ACCEPT;
            queue.push_event(source, ferrows_event::new(accept, std::ptr::null_mut()));
            assert_eq!(stored(&queue), 1);
            ferrows_server_free(server);
            ferrows_config_free(config);
        }
        assert_eq!(stored(&queue), 0);
        assert!(queue.try_next().is_none());
    }
}
