//! `ferrows_conn`: a client or server connection. Sends copy the data; received messages
//! arrive as events, from `ferrows_conn_recv` or through a queue.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ferrows_core::engine::{self, ConnectAttempt, Ended};
use ferrows_core::protocol::MessageKind;
use ferrows_core::reconnect::{Backoff, BackoffPolicy};
use ferrows_core::Error;
use std::time::{Duration, Instant};

use crate::boundary::{
    bytes_arg, code_of, copy_out, fail, ferrows_result, ferrows_result::*, ffi, invalid,
    message_kind_arg, non_null, status, timeout_arg, utf8_arg,
};
use crate::config::ferrows_config;
use crate::event::{ferrows_event, ferrows_event_kind};
use crate::queue::{ferrows_queue, QueueShared, Source};

/// The type of a message to send (passed as a `uint32_t`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ferrows_message_type {
    /// UTF-8 text (checked).
    FERROWS_MESSAGE_TEXT = 1,
    /// Binary data.
    FERROWS_MESSAGE_BINARY = 2,
}

/// A flag to OR into the type given to `ferrows_conn_send`: send this message uncompressed
/// even when permessage-deflate was negotiated (data already compressed, say).
pub const FERROWS_SEND_UNCOMPRESSED: u32 = 0x100;

/// The state behind a `ferrows_conn`, shared with its queue's notifications.
pub(crate) struct ConnState {
    connection: Mutex<Option<engine::Connection>>,
    attempt: Mutex<Option<ConnectAttempt>>,
    /// Held while a thread receives: one receiver at a time.
    receiving: Mutex<()>,
    closed_reported: AtomicBool,
    /// Set once the handle is freed, with `connection` locked: a connect completing then
    /// either finds it set or stores its connection where the free finds it.
    pub(crate) freed: AtomicBool,
    userdata: AtomicUsize,
    queue: Mutex<Weak<QueueShared>>,
    pub(crate) queued: AtomicBool,
    /// How to open the connection again when it ends (`ferrows_config_set_reconnect`).
    reconnect: Option<Reconnect>,
    /// Set by `ferrows_conn_close`: the end that follows is final.
    closing: AtomicBool,
}

/// What a reconnecting handle needs to open its connection again.
struct Reconnect {
    url: String,
    client: engine::ClientConfig,
    policy: BackoffPolicy,
    /// The current run of failures; a new one starts when the connection opens.
    backoff: Mutex<Backoff>,
}

impl ConnState {
    pub(crate) fn new(connection: Option<engine::Connection>, userdata: *mut c_void) -> Arc<Self> {
        Self::build(connection, userdata, None)
    }

    fn build(
        connection: Option<engine::Connection>,
        userdata: *mut c_void,
        reconnect: Option<Reconnect>,
    ) -> Arc<Self> {
        Arc::new(Self {
            connection: Mutex::new(connection),
            attempt: Mutex::new(None),
            receiving: Mutex::new(()),
            closed_reported: AtomicBool::new(false),
            freed: AtomicBool::new(false),
            userdata: AtomicUsize::new(userdata as usize),
            queue: Mutex::new(Weak::new()),
            queued: AtomicBool::new(false),
            reconnect,
            closing: AtomicBool::new(false),
        })
    }

    /// A server-side connection reporting to `queue`, if any.
    pub(crate) fn accepted(
        connection: engine::Connection,
        queue: Option<&Arc<QueueShared>>,
    ) -> Box<ferrows_conn> {
        let state = Self::new(Some(connection), std::ptr::null_mut());
        if let Some(queue) = queue {
            state.attach(queue);
        }
        Box::new(ferrows_conn { state })
    }

    fn userdata(&self) -> *mut c_void {
        self.userdata.load(Ordering::Relaxed) as *mut c_void
    }

    fn connection(&self) -> Result<engine::Connection, ferrows_result> {
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                crate::boundary::set_last_error("the connection is still opening");
                FERROWS_ERR_STATE
            })
    }

    /// Reports this connection's events to `queue` from now on.
    fn attach(self: &Arc<Self>, queue: &Arc<QueueShared>) {
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(queue);
        let Ok(connection) = self.connection() else {
            return; // attached again once open
        };
        let weak_state = Arc::downgrade(self);
        let weak_queue = Arc::downgrade(queue);
        connection.set_notifier(Some(Arc::new(move || {
            if let (Some(state), Some(queue)) = (weak_state.upgrade(), weak_queue.upgrade()) {
                queue.mark_ready(Source::Conn(state));
            }
        })));
    }

    /// Stores the connection an attempt opened; false, with the connection closed, when the
    /// handle was freed first.
    fn adopt(&self, connection: engine::Connection) -> bool {
        let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        if self.freed.load(Ordering::Acquire) {
            drop(slot);
            abandon(&connection);
            return false;
        }
        *slot = Some(connection);
        true
    }

    /// The next event without waiting, for a queue; None when there is nothing.
    pub(crate) fn poll_event(self: &Arc<Self>) -> Option<Box<ferrows_event>> {
        self.next_event(Some(std::time::Duration::ZERO))
            .ok()
            .flatten()
    }

    /// Whether [`ConnState::poll_event`] would find an event: a whole message, or the end
    /// not yet reported.
    pub(crate) fn has_events(&self) -> bool {
        self.connection().is_ok_and(|connection| {
            connection.has_message()
                || (connection.ended().is_some() && !self.closed_reported.load(Ordering::Acquire))
        })
    }

    /// Waits up to `timeout` for the next message or the end of the connection.
    fn next_event(
        self: &Arc<Self>,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<Box<ferrows_event>>, ferrows_result> {
        let connection = self.connection()?;
        let Ok(_receiving) = self.receiving.try_lock() else {
            crate::boundary::set_last_error("another thread is receiving on this connection");
            return Err(FERROWS_ERR_CONCURRENCY);
        };
        match connection.recv_message(timeout) {
            Ok((kind, data)) => {
                let event_type = match kind {
                    MessageKind::Text => ferrows_event_kind::FERROWS_EVENT_TEXT,
                    MessageKind::Binary => ferrows_event_kind::FERROWS_EVENT_BINARY,
                };
                let mut event = ferrows_event::new(event_type, self.userdata());
                event.data = data;
                Ok(Some(event))
            }
            Err(Error::Timeout(_)) => Ok(None),
            Err(Error::ConnectionClosed(_)) => {
                if self.closed_reported.swap(true, Ordering::AcqRel) {
                    return Err(FERROWS_CLOSED);
                }
                let ended = connection.ended().expect("a closed connection has ended");
                if let Some(event) = self.reconnect_after_end(&connection, &ended) {
                    return Ok(Some(event));
                }
                Ok(Some(self.closed_event(&ended)))
            }
            Err(error) => Err(fail(&error)),
        }
    }

    /// Starts opening the connection again after `delay`, reporting to the handle's queue.
    /// Nothing starts once the handle is freed.
    fn start_attempt(self: &Arc<Self>, delay: Duration) -> Result<(), Error> {
        let Some(reconnect) = &self.reconnect else {
            return Ok(());
        };
        let state = self.clone();
        let attempt = engine::connect_after(
            delay,
            &reconnect.url,
            reconnect.client.clone(),
            move |result| state.report_attempt(result),
        )?;
        let mut slot = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock the free takes the attempt with: a freed handle drops it.
        if !self.freed.load(Ordering::Acquire) {
            *slot = Some(attempt);
        }
        Ok(())
    }

    /// Reports how an attempt ended to the queue: OPEN, or RECONNECTING and another attempt
    /// after the backoff, or ERROR when there is no retrying.
    fn report_attempt(self: &Arc<Self>, result: Result<engine::Connection, Error>) {
        let Some(queue) = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
        else {
            return;
        };
        let event = match result {
            Ok(connection) => {
                if self.closing.load(Ordering::Acquire) {
                    abandon(&connection);
                    return;
                }
                if !self.adopt(connection) {
                    return;
                }
                self.closed_reported.store(false, Ordering::Release);
                if let Some(reconnect) = &self.reconnect {
                    *reconnect.backoff.lock().unwrap_or_else(|e| e.into_inner()) =
                        Backoff::new(reconnect.policy.clone());
                }
                self.attach(&queue);
                ferrows_event::new(ferrows_event_kind::FERROWS_EVENT_OPEN, self.userdata())
            }
            Err(error) => match self.retry_delay(&error) {
                Some(delay) => {
                    let mut event = self.reconnecting_event(&error, delay);
                    if let Err(failure) = self.start_attempt(delay) {
                        event = self.error_event(&failure);
                    }
                    event
                }
                None => self.error_event(&error),
            },
        };
        queue.push_event(Source::Conn(self.clone()), event);
    }

    /// The wait before trying again after `error`, if this handle reconnects, was not
    /// closed or freed, the error is transient and the policy allows another attempt.
    fn retry_delay(&self, error: &Error) -> Option<Duration> {
        if !error.is_transient() {
            return None;
        }
        self.next_delay()
    }

    /// The next delay of the backoff, unless this handle does not reconnect, was closed or
    /// freed, or the policy gives up.
    fn next_delay(&self) -> Option<Duration> {
        let reconnect = self.reconnect.as_ref()?;
        if self.closing.load(Ordering::Acquire) || self.freed.load(Ordering::Acquire) {
            return None;
        }
        reconnect
            .backoff
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_delay()
    }

    /// After the connection ended without `ferrows_conn_close`: the RECONNECTING event, with
    /// the next attempt started, or None when the end is final.
    fn reconnect_after_end(
        self: &Arc<Self>,
        connection: &engine::Connection,
        ended: &Ended,
    ) -> Option<Box<ferrows_event>> {
        let cause = Error::ConnectionClosed(ended.info.clone());
        // A dropped connection is transient: it counts as the first failure of a new run.
        let reconnect = self.reconnect.as_ref()?;
        *reconnect.backoff.lock().unwrap_or_else(|e| e.into_inner()) =
            Backoff::new(reconnect.policy.clone());
        let delay = self.next_delay()?;
        connection.set_notifier(None);
        self.connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut event = self.reconnecting_event(&cause, delay);
        event.close_code = ended.info.code();
        event.result = self.closed_event(ended).result;
        if let Err(failure) = self.start_attempt(delay) {
            return Some(self.error_event(&failure));
        }
        Some(event)
    }

    fn reconnecting_event(&self, cause: &Error, delay: Duration) -> Box<ferrows_event> {
        let mut event = ferrows_event::new(
            ferrows_event_kind::FERROWS_EVENT_RECONNECTING,
            self.userdata(),
        );
        event.result = code_of(cause);
        event.data = format!("{cause}; reconnecting in {} ms", delay.as_millis()).into_bytes();
        event
    }

    fn error_event(&self, error: &Error) -> Box<ferrows_event> {
        let mut event =
            ferrows_event::new(ferrows_event_kind::FERROWS_EVENT_ERROR, self.userdata());
        event.result = code_of(error);
        event.data = error.to_string().into_bytes();
        event
    }

    fn closed_event(&self, ended: &Ended) -> Box<ferrows_event> {
        let mut event =
            ferrows_event::new(ferrows_event_kind::FERROWS_EVENT_CLOSED, self.userdata());
        event.close_code = ended.info.code();
        event.data = ended.info.reason().as_bytes().to_vec();
        event.result = match &ended.cause {
            Some(cause) => code_of(cause),
            None if ended.info.rcvd.is_none() => FERROWS_ERR_IO,
            None => FERROWS_OK,
        };
        if let (Some(cause), true) = (&ended.cause, event.data.is_empty()) {
            event.data = cause.to_string().into_bytes();
        }
        event
    }
}

/// A WebSocket connection. Sends, pings, closes and queries may come from any thread; one
/// thread at a time receives (through `ferrows_conn_recv` or its queue, not both).
pub struct ferrows_conn {
    pub(crate) state: Arc<ConnState>,
}

impl Drop for ferrows_conn {
    fn drop(&mut self) {
        let state = &self.state;
        let connection = {
            let slot = state.connection.lock().unwrap_or_else(|e| e.into_inner());
            state.freed.store(true, Ordering::Release);
            slot.clone()
        };
        state
            .attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let queue = state
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade();
        if let Some(queue) = queue {
            queue.forget(&Source::Conn(state.clone()));
        }
        if let Some(connection) = connection {
            connection.set_notifier(None);
            abandon(&connection);
        }
    }
}

/// Closes a connection its handle no longer holds with 1001 (going away); the runtime
/// finishes the closing handshake.
fn abandon(connection: &engine::Connection) {
    let _ = connection.start_close(1001, "");
}

/// The state behind a connection handle.
///
/// # Safety
/// `conn` must be a valid, non-NULL `ferrows_conn` that outlives `'a`.
unsafe fn conn_ref<'a>(conn: *const ferrows_conn) -> &'a Arc<ConnState> {
    // SAFETY: the caller promises a live handle.
    unsafe { &(*conn).state }
}

/// The engine connection of an open handle; `FERROWS_ERR_STATE` while it is still opening.
///
/// # Safety
/// As `conn_ref`.
pub(crate) unsafe fn connection_of(
    conn: *const ferrows_conn,
) -> Result<engine::Connection, ferrows_result> {
    // SAFETY: the caller's promise, passed on.
    unsafe { conn_ref(conn) }.connection()
}

/// Opens a client connection to `url` (ws:// or wss://) without waiting: `out` receives the
/// connection at once, and `queue` gets a `FERROWS_EVENT_OPEN` or `FERROWS_EVENT_ERROR`
/// event, then its messages and its `FERROWS_EVENT_CLOSED`. Events carry `userdata`.
/// URL and TLS configuration errors are returned at once.
///
/// # Safety
/// `config`, `queue` must be valid; `url` NUL-terminated; `out` valid. The connection must be
/// freed with `ferrows_conn_free` before the queue is.
#[no_mangle]
pub unsafe extern "C" fn ferrows_connect(
    config: *const ferrows_config,
    url: *const c_char,
    queue: *mut ferrows_queue,
    userdata: *mut c_void,
    out: *mut *mut ferrows_conn,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(config, url, queue, out);
        // SAFETY: not NULL, and the caller promises a NUL-terminated string.
        let url = match unsafe { utf8_arg(url, "url") } {
            Ok(url) => url,
            Err(code) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live config.
        let config = unsafe { &*config };
        let reconnect = config.reconnect.clone().map(|policy| Reconnect {
            url: url.to_owned(),
            client: config.client.clone(),
            backoff: Mutex::new(Backoff::new(policy.clone())),
            policy,
        });
        let state = ConnState::build(None, userdata, reconnect);
        // SAFETY: not NULL, and the caller promises a live queue.
        let queue = unsafe { &*queue }.shared.clone();
        *state.queue.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&queue);
        // The outcome holds the state until it is reported, so a connection that opens after
        // the handle was freed is still found, and closed.
        let outcome_state = state.clone();
        let done = move |result| outcome_state.report_attempt(result);
        match engine::connect_then(url, config.client.clone(), done) {
            Ok(attempt) => {
                *state.attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(attempt);
                // SAFETY: not NULL, and the caller promises a writable pointer.
                unsafe { *out = Box::into_raw(Box::new(ferrows_conn { state })) };
                FERROWS_OK
            }
            Err(error) => fail(&error),
        }
    })
}

/// The arguments of a blocking connect, checked: the URL, the timeout (0 is refused with
/// `zero`, the call's own advice), and that this thread may block.
///
/// # Safety
/// `url` must be non-NULL and NUL-terminated.
unsafe fn blocking_connect_args<'a>(
    url: *const c_char,
    timeout_ms: i32,
    zero: &str,
) -> Result<(&'a str, Option<Duration>), ferrows_result> {
    // SAFETY: the caller's promise.
    let url = unsafe { utf8_arg(url, "url") }?;
    let timeout = timeout_arg(timeout_ms)?;
    if timeout_ms == 0 {
        return Err(invalid(zero));
    }
    engine::runtime::check_may_block().map_err(|error| fail(&error))?;
    Ok((url, timeout))
}

/// Hands an open connection to the caller as a new handle.
///
/// # Safety
/// `out` must be non-NULL and writable.
unsafe fn hand_out(
    connection: engine::Connection,
    userdata: *mut c_void,
    out: *mut *mut ferrows_conn,
) -> ferrows_result {
    let state = ConnState::new(Some(connection), userdata);
    // SAFETY: the caller's promise.
    unsafe { *out = Box::into_raw(Box::new(ferrows_conn { state })) };
    FERROWS_OK
}

/// Opens a client connection to `url` and waits up to `timeout_ms` (-1: until the open
/// timeout; 0 is invalid, use `ferrows_connect`) for the handshake. Receive with `ferrows_conn_recv`, or attach a queue.
///
/// # Safety
/// `config` must be valid; `url` NUL-terminated; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_connect_blocking(
    config: *const ferrows_config,
    url: *const c_char,
    timeout_ms: i32,
    userdata: *mut c_void,
    out: *mut *mut ferrows_conn,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(config, url, out);
        let zero = "a blocking connect needs timeout_ms -1 or > 0; use ferrows_connect";
        // SAFETY: not NULL, and the caller promises a NUL-terminated string.
        let (url, timeout) = match unsafe { blocking_connect_args(url, timeout_ms, zero) } {
            Ok(args) => args,
            Err(code) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live config.
        let client = unsafe { &*config }.client.clone();
        let pending = match engine::connect(url, client) {
            Ok(pending) => pending,
            Err(error) => return fail(&error),
        };
        match pending.wait(timeout) {
            // SAFETY: not NULL, and the caller promises a writable pointer.
            Ok(Some(connection)) => unsafe { hand_out(connection, userdata, out) },
            Ok(None) => status(FERROWS_TIMEOUT, "opening the connection"),
            Err(error) => fail(&error),
        }
    })
}

/// Like `ferrows_connect_blocking`, but retries after transient failures (refused, reset,
/// timeouts, TLS, 5xx answers) with the config's reconnection policy
/// (`ferrows_config_set_reconnect`; without one, websockets' values), waiting between
/// attempts on this thread; returns the first connection that opens. It gives up on a 4xx
/// or another handshake error (that error), once the policy's `max_attempts` attempts failed
/// (the last error), or when `timeout_ms` (-1: none) has passed over all attempts
/// (`FERROWS_TIMEOUT`). Blocking programs call it again when their connection ends.
///
/// # Safety
/// `config` must be valid; `url` NUL-terminated; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_connect_retrying(
    config: *const ferrows_config,
    url: *const c_char,
    timeout_ms: i32,
    userdata: *mut c_void,
    out: *mut *mut ferrows_conn,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(config, url, out);
        let zero = "a retrying connect needs timeout_ms -1 or > 0";
        // SAFETY: not NULL, and the caller promises a NUL-terminated string.
        let (url, timeout) = match unsafe { blocking_connect_args(url, timeout_ms, zero) } {
            Ok(args) => args,
            Err(code) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live config.
        let config = unsafe { &*config };
        let mut backoff = Backoff::new(config.reconnect.clone().unwrap_or_default());
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let remaining = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        loop {
            if remaining() == Some(Duration::ZERO) {
                return status(FERROWS_TIMEOUT, "opening the connection, retrying");
            }
            let pending = match engine::connect(url, config.client.clone()) {
                Ok(pending) => pending,
                Err(error) => return fail(&error),
            };
            let error = match pending.wait(remaining()) {
                // SAFETY: not NULL, and the caller promises a writable pointer.
                Ok(Some(connection)) => return unsafe { hand_out(connection, userdata, out) },
                Ok(None) => return status(FERROWS_TIMEOUT, "opening the connection, retrying"),
                Err(error) => error,
            };
            let delay = match backoff.next_delay() {
                Some(delay) if error.is_transient() => delay,
                _ => return fail(&error),
            };
            std::thread::sleep(remaining().map_or(delay, |left| delay.min(left)));
        }
    })
}

/// Reports the connection's events to `queue` from now on (with its userdata).
///
/// # Safety
/// `conn` and `queue` must be valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_attach(
    conn: *mut ferrows_conn,
    queue: *mut ferrows_queue,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn, queue);
        // SAFETY: both not NULL, and the caller promises a live handle and queue.
        let (state, queue) = unsafe { (conn_ref(conn), &*queue) };
        state.attach(&queue.shared);
        FERROWS_OK
    })
}

/// Sets the pointer that this connection's events carry.
///
/// # Safety
/// `conn` must be valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_set_userdata(
    conn: *mut ferrows_conn,
    userdata: *mut c_void,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn);
        // SAFETY: not NULL, and the caller promises a live handle.
        let state = unsafe { conn_ref(conn) };
        state.userdata.store(userdata as usize, Ordering::Relaxed);
        FERROWS_OK
    })
}

/// Sends a message (`type` is a `ferrows_message_type`, possibly with
/// `FERROWS_SEND_UNCOMPRESSED`); the data is copied, and compressed when permessage-deflate
/// was negotiated and the message is not under the configured size. While more
/// than the send watermark is unwritten, waits up to `timeout_ms`: 0 returns
/// `FERROWS_AGAIN` at once, > 0 returns `FERROWS_TIMEOUT` when the time runs out, -1 waits.
/// `FERROWS_CLOSED` once the connection is closing.
///
/// # Safety
/// `conn` must be valid and `data` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_send(
    conn: *mut ferrows_conn,
    r#type: u32,
    data: *const u8,
    len: usize,
    timeout_ms: i32,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn);
        let compress = r#type & FERROWS_SEND_UNCOMPRESSED == 0;
        let kind = match message_kind_arg(r#type & !FERROWS_SEND_UNCOMPRESSED) {
            Ok(kind) => kind,
            Err(code) => return code,
        };
        // SAFETY: the caller promises `len` readable bytes at `data` (checked if NULL).
        let (data, timeout) = match (unsafe { bytes_arg(data, len) }, timeout_arg(timeout_ms)) {
            (Ok(data), Ok(timeout)) => (data, timeout),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        if kind == MessageKind::Text && std::str::from_utf8(data).is_err() {
            return invalid("text message is not UTF-8");
        }
        // SAFETY: not NULL, and the caller promises a live handle.
        let connection = match unsafe { connection_of(conn) } {
            Ok(connection) => connection,
            Err(code) => return code,
        };
        let sent = if crate::queue::deferring() {
            connection
                .send_deferred(kind, data, compress, timeout)
                .map(|began| {
                    if began {
                        crate::queue::defer(connection);
                    }
                })
        } else {
            connection.send(kind, data, compress, timeout)
        };
        match sent {
            Ok(()) => FERROWS_OK,
            Err(Error::Timeout(_)) if timeout_ms == 0 => {
                status(FERROWS_AGAIN, "the send buffer is above its high watermark")
            }
            Err(error) => fail(&error),
        }
    })
}

/// Receives the next event of a connection that reports to no queue: a TEXT or BINARY
/// message, or CLOSED once (then `FERROWS_CLOSED`). Waits up to `timeout_ms` (-1 forever,
/// 0 `FERROWS_AGAIN` at once, > 0 `FERROWS_TIMEOUT`).
///
/// # Safety
/// `conn` must be valid and `out` a valid pointer; the caller frees the event.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_recv(
    conn: *mut ferrows_conn,
    timeout_ms: i32,
    out: *mut *mut ferrows_event,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn, out);
        // SAFETY: not NULL, and the caller promises a writable pointer.
        unsafe { *out = std::ptr::null_mut() };
        let timeout = match timeout_arg(timeout_ms) {
            Ok(timeout) => timeout,
            Err(code) => return code,
        };
        if timeout_ms != 0 {
            if let Err(error) = engine::runtime::check_may_block() {
                return fail(&error);
            }
        }
        // SAFETY: not NULL, and the caller promises a live handle.
        match unsafe { conn_ref(conn) }.next_event(timeout) {
            Ok(Some(event)) => {
                // SAFETY: not NULL, and the caller promises a writable pointer.
                unsafe { *out = Box::into_raw(event) };
                FERROWS_OK
            }
            Ok(None) if timeout_ms == 0 => status(FERROWS_AGAIN, "no message received"),
            Ok(None) => status(FERROWS_TIMEOUT, "no message received"),
            Err(FERROWS_CLOSED) => status(
                FERROWS_CLOSED,
                "the connection ended and its CLOSED event was delivered",
            ),
            Err(code) => code,
        }
    })
}

/// Sends a ping with `data` (at most 125 bytes) and, unless `timeout_ms` is 0, waits for its
/// pong; stores the round trip in microseconds in `latency_us` (if not NULL).
///
/// # Safety
/// `conn` must be valid; `data` valid for `len` bytes; `latency_us` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_ping(
    conn: *mut ferrows_conn,
    data: *const u8,
    len: usize,
    timeout_ms: i32,
    latency_us: *mut u64,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn);
        // SAFETY: the caller promises `len` readable bytes at `data` (checked if NULL).
        let (data, timeout) = match (unsafe { bytes_arg(data, len) }, timeout_arg(timeout_ms)) {
            (Ok(data), Ok(timeout)) => (data, timeout),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live handle.
        let connection = match unsafe { connection_of(conn) } {
            Ok(connection) => connection,
            Err(code) => return code,
        };
        let waiter = match connection.ping(data) {
            Ok(waiter) => waiter,
            Err(error) => return fail(&error),
        };
        if timeout_ms == 0 {
            return FERROWS_OK;
        }
        match waiter.wait(timeout) {
            Ok(latency) => {
                if !latency_us.is_null() {
                    // SAFETY: not NULL, and the caller promises a NULL or writable pointer.
                    unsafe { *latency_us = latency.as_micros() as u64 };
                }
                FERROWS_OK
            }
            Err(error) => fail(&error),
        }
    })
}

/// Starts the closing handshake with `code` and `reason` (NULL: none). What was sent before
/// is delivered first. Codes: 1000-1003, 1007-1014, 3000-4999; 1005 sends a close frame
/// without a status (then `reason` must be empty); others are `FERROWS_ERR_INVALID_ARG`. The CLOSED event (or `ferrows_conn_wait_closed`) tells when it is done.
/// A reconnecting handle then does not reconnect; between connections, the call stops the
/// attempts, and no event follows.
///
/// # Safety
/// `conn` must be valid; `reason` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_close(
    conn: *mut ferrows_conn,
    code: u16,
    reason: *const c_char,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn);
        let reason = if reason.is_null() {
            ""
        } else {
            // SAFETY: not NULL, and the caller promises a NUL-terminated string.
            match unsafe { utf8_arg(reason, "reason") } {
                Ok(reason) => reason,
                Err(code) => return code,
            }
        };
        // SAFETY: not NULL, and the caller promises a live handle.
        let state = unsafe { conn_ref(conn) };
        state.closing.store(true, Ordering::Release);
        let connection = match state.connection() {
            Ok(connection) => connection,
            Err(_) if state.reconnect.is_some() => {
                // Between connections: no more attempts, and no more events.
                state
                    .attempt
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                return FERROWS_OK;
            }
            Err(code) => return code,
        };
        match connection.start_close(code, reason) {
            Ok(()) => FERROWS_OK,
            Err(error) => fail(&error),
        }
    })
}

/// Waits up to `timeout_ms` for the connection to end: `FERROWS_OK` once it has.
///
/// # Safety
/// `conn` must be valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_wait_closed(
    conn: *mut ferrows_conn,
    timeout_ms: i32,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn);
        let timeout = match timeout_arg(timeout_ms) {
            Ok(timeout) => timeout,
            Err(code) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live handle.
        let connection = match unsafe { connection_of(conn) } {
            Ok(connection) => connection,
            Err(code) => return code,
        };
        if timeout_ms == 0 {
            return match connection.ended() {
                Some(_) => FERROWS_OK,
                None => status(FERROWS_AGAIN, "the connection has not ended"),
            };
        }
        match connection.wait_ended(timeout) {
            Ok(_) => FERROWS_OK,
            Err(error) => fail(&error),
        }
    })
}

/// The close code once the connection has ended (1006 without a close frame); 0 while open.
///
/// # Safety
/// `conn` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_close_code(conn: *const ferrows_conn) -> u16 {
    ffi!(0, {
        if conn.is_null() {
            return 0;
        }
        // SAFETY: not NULL, and the caller promises a live handle.
        unsafe { connection_of(conn) }
            .ok()
            .and_then(|c| c.ended())
            .map_or(0, |ended| ended.info.code())
    })
}

/// Copies a text query of an open connection into the caller's buffer.
///
/// # Safety
/// `conn` must be NULL or valid; `buf` NULL or valid for `len` bytes; `out_len` NULL or
/// valid.
unsafe fn copy_conn_text(
    conn: *const ferrows_conn,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
    text: impl FnOnce(&engine::Connection) -> String,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(conn);
        // SAFETY: not NULL, and the caller promises a live handle.
        match unsafe { connection_of(conn) } {
            // SAFETY: the caller's promise about `buf` and `out_len`, passed on.
            Ok(connection) => unsafe { copy_out(text(&connection).as_bytes(), buf, len, out_len) },
            Err(code) => code,
        }
    })
}

/// Copies the close reason into `(buf, len)`, NUL-terminated (empty while open or without a
/// reason; `FERROWS_ERR_STATE` while still opening).
///
/// # Safety
/// `conn` must be valid; `buf` NULL or valid for `len` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_close_reason(
    conn: *const ferrows_conn,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        copy_conn_text(conn, buf, len, out_len, |c| {
            c.ended()
                .map(|ended| ended.info.reason().to_owned())
                .unwrap_or_default()
        })
    }
}

/// Copies the negotiated subprotocol (empty if none) into `(buf, len)`, NUL-terminated.
///
/// # Safety
/// `conn` must be valid; `buf` NULL or valid for `len` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_subprotocol(
    conn: *const ferrows_conn,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        copy_conn_text(conn, buf, len, out_len, |c| {
            c.info().subprotocol.clone().unwrap_or_default()
        })
    }
}

/// Copies the permessage-deflate parameters agreed, as the server's
/// `Sec-WebSocket-Extensions` element (such as `permessage-deflate;
/// server_max_window_bits=12`), into `(buf, len)`, NUL-terminated; empty without compression.
///
/// # Safety
/// `conn` must be valid; `buf` NULL or valid for `len` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_compression(
    conn: *const ferrows_conn,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        copy_conn_text(conn, buf, len, out_len, |c| {
            c.deflate().map(|d| d.to_header()).unwrap_or_default()
        })
    }
}

/// Copies the peer's address ("ip:port", IPv6 in brackets) into `(buf, len)`.
///
/// # Safety
/// `conn` must be valid; `buf` NULL or valid for `len` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_peer_address(
    conn: *const ferrows_conn,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        copy_conn_text(conn, buf, len, out_len, |c| {
            c.info()
                .remote_addr
                .map(|a| a.to_string())
                .unwrap_or_default()
        })
    }
}

/// Bytes sent and not yet written to the socket (0 while opening or for NULL).
///
/// # Safety
/// `conn` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_buffered_amount(conn: *const ferrows_conn) -> usize {
    ffi!(0, {
        if conn.is_null() {
            return 0;
        }
        // SAFETY: not NULL, and the caller promises a live handle.
        unsafe { connection_of(conn) }.map_or(0, |c| c.unsent_bytes())
    })
}

/// Frees a connection; an open one is closed with 1001 (going away) in the background, and
/// an attempt under way is abandoned (a connection it opens meanwhile is closed). Its events
/// not yet taken from its queue are dropped, and no more follow, so its userdata may be
/// freed right after. NULL is a no-op.
///
/// # Safety
/// `conn` must be NULL or valid, not used afterwards, and not in use by another thread.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_free(conn: *mut ferrows_conn) {
    ffi!((), {
        if !conn.is_null() {
            // SAFETY: a handle from `Box::into_raw`, which the caller gives up.
            drop(unsafe { Box::from_raw(conn) });
        }
    })
}
