//! `ferrows_queue`: where connections and servers report their events. A C program either
//! polls its level-triggered file descriptor and drains it with a zero timeout, blocks in
//! `ferrows_queue_next`, or sets a callback that runs on a runtime thread.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use ferrows_core::engine::runtime;

use crate::boundary::{
    fail, ferrows_result, ferrows_result::*, ffi, non_null, status, timeout_arg,
};
use crate::conn::ConnState;
use crate::event::ferrows_event;
use crate::server::ServerState;

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

    fn poll(&self) -> Option<Box<ferrows_event>> {
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
unsafe impl Sync for Callback {}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(drop_context) = self.0.drop {
            // SAFETY: called once, as the contract says.
            unsafe { drop_context(self.0.context) };
        }
    }
}

struct QueueState {
    ready: VecDeque<Source>,
    events: VecDeque<Box<ferrows_event>>,
    woken: bool,
    signaled: bool,
}

pub(crate) struct QueueShared {
    state: Mutex<QueueState>,
    changed: Condvar,
    /// Readable while events may be pending (an eventfd, level-triggered).
    eventfd: OwnedFd,
    /// Held only to read or replace it: calls run on a clone, so a callback may send,
    /// replace itself or free the queue without deadlocking.
    callback: Mutex<Option<Arc<Callback>>>,
    has_callback: AtomicBool,
    draining: AtomicBool,
}

impl QueueShared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal(&self, state: &mut QueueState) {
        if !state.signaled {
            state.signaled = true;
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our own eventfd.
            unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
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
        self.signal(&mut state);
        drop(state);
        self.schedule_callback();
    }

    /// Adds a ready-made event (a connection attempt's outcome).
    pub(crate) fn push_event(self: &Arc<Self>, event: Box<ferrows_event>) {
        let mut state = self.lock();
        state.events.push_back(event);
        self.signal(&mut state);
        drop(state);
        self.schedule_callback();
    }

    /// The next event without waiting: queued events first, then polling ready sources.
    fn try_next(&self) -> Option<Box<ferrows_event>> {
        loop {
            let source = {
                let mut state = self.lock();
                if let Some(event) = state.events.pop_front() {
                    return Some(event);
                }
                state.ready.pop_front()?
            };
            // Cleared before polling: a notification during the poll queues it again.
            source.queued_flag().store(false, Ordering::Release);
            if let Some(event) = source.poll() {
                // It may have more; a poll that finds nothing drops it from the list.
                if !source.queued_flag().swap(true, Ordering::AcqRel) {
                    self.lock().ready.push_back(source);
                }
                return Some(event);
            }
        }
    }

    fn next(&self, timeout_ms: i32) -> Result<Box<ferrows_event>, ferrows_result> {
        let timeout = timeout_arg(timeout_ms)?;
        if timeout_ms != 0 {
            runtime::check_may_block().map_err(|e| fail(&e))?;
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(event) = self.try_next() {
                return Ok(event);
            }
            let mut state = self.lock();
            if state.woken {
                state.woken = false;
                if state.ready.is_empty() && state.events.is_empty() {
                    self.unsignal(&mut state);
                }
                return Err(status(FERROWS_AGAIN, "woken by ferrows_queue_wakeup"));
            }
            if !state.ready.is_empty() || !state.events.is_empty() {
                continue;
            }
            self.unsignal(&mut state);
            let now = Instant::now();
            let wait = match deadline {
                _ if timeout_ms == 0 => return Err(status(FERROWS_AGAIN, "no event")),
                Some(deadline) if now >= deadline => {
                    return Err(status(FERROWS_TIMEOUT, "no event"))
                }
                Some(deadline) => deadline - now,
                None => std::time::Duration::from_secs(3600),
            };
            drop(
                self.changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }

    /// With a callback set, drains the queue into it on a runtime task; one drain at a time.
    /// Takes no lock: it runs inside connection notifications.
    fn schedule_callback(self: &Arc<Self>) {
        if !self.has_callback.load(Ordering::Acquire) || self.draining.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(handle) = runtime::handle() else {
            self.draining.store(false, Ordering::Release);
            return;
        };
        let queue = self.clone();
        handle.spawn(async move { queue.drain_into_callback() });
    }

    fn current_callback(&self) -> Option<Arc<Callback>> {
        self.callback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn drain_into_callback(self: &Arc<Self>) {
        loop {
            while let Some(event) = self.try_next() {
                let Some(callback) = self.current_callback() else {
                    // The callback was removed: keep the event for ferrows_queue_next.
                    self.lock().events.push_front(event);
                    self.draining.store(false, Ordering::Release);
                    return;
                };
                if let Some(call) = callback.0.call {
                    // SAFETY: the application's callback, given ownership of the event.
                    unsafe { call(callback.0.context, Box::into_raw(event)) };
                }
            }
            self.draining.store(false, Ordering::Release);
            // Events that arrived after the last try_next and before the flag fell.
            let pending = {
                let state = self.lock();
                !state.ready.is_empty() || !state.events.is_empty()
            };
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
        let fd = libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC);
        if fd < 0 {
            return fail(&ferrows_core::Error::Io(std::io::Error::last_os_error()));
        }
        let shared = Arc::new(QueueShared {
            state: Mutex::new(QueueState {
                ready: VecDeque::new(),
                events: VecDeque::new(),
                woken: false,
                signaled: false,
            }),
            changed: Condvar::new(),
            eventfd: OwnedFd::from_raw_fd(fd),
            callback: Mutex::new(None),
            has_callback: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        });
        *out = Box::into_raw(Box::new(ferrows_queue { shared }));
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
        let queue = &*queue;
        *fd = queue.shared.eventfd.as_raw_fd();
        FERROWS_OK
    })
}

/// Takes the next event, waiting up to `timeout_ms` (-1 forever, 0 not at all). Returns
/// `FERROWS_OK` with the event in `out` (the caller frees it), `FERROWS_AGAIN` when nothing
/// is ready with a zero timeout or when `ferrows_queue_wakeup` interrupted the wait, and
/// `FERROWS_TIMEOUT` when the time ran out. One thread at a time may call it.
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
        *out = std::ptr::null_mut();
        match (*queue).shared.next(timeout_ms) {
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
        let shared = &(*queue).shared;
        let mut state = shared.lock();
        state.woken = true;
        shared.signal(&mut state);
        FERROWS_OK
    })
}

/// Delivers every event to `callback` on a runtime thread instead of `ferrows_queue_next`.
/// A NULL `call` removes the callback. The previous callback's `drop` runs.
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
        let shared = &(*queue).shared;
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
        if !queue.is_null() {
            let queue = Box::from_raw(queue);
            queue.shared.replace_callback(None);
        }
    })
}
