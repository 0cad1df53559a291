//! `ferrows_server`: listens, and hands accepted connections over blocking calls or as
//! ACCEPT events on a queue.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ferrows_core::engine::{self, PendingHandshake, Server};
use ferrows_core::protocol::handshake::Headers;
use ferrows_core::Error;

use crate::boundary::{
    fail, ferrows_result, ferrows_result::*, ffi, non_null, status, timeout_arg, utf8_arg,
};
use crate::config::ferrows_config;
use crate::conn::{ferrows_conn, ConnState};
use crate::event::{ferrows_event, ferrows_event_kind};
use crate::queue::{ferrows_queue, QueueShared, Source};

pub(crate) struct ServerState {
    server: Server,
    queue: Weak<QueueShared>,
    pub(crate) queued: AtomicBool,
    pub(crate) freed: AtomicBool,
}

impl ServerState {
    /// Upgrades a waiting handshake with the configured subprotocol choice; `None` when the
    /// request was no valid upgrade (it got its HTTP error response).
    fn upgrade(pending: PendingHandshake) -> Option<engine::Connection> {
        let subprotocol = pending.default_subprotocol();
        match pending.accept(subprotocol, &Headers::new()) {
            Ok(connection) => Some(connection),
            Err(error) => {
                log_refusal(&error);
                None
            }
        }
    }

    /// The next accepted connection without waiting, as an ACCEPT event.
    /// Whether [`ServerState::poll_event`] may find an event: a handshake waits.
    pub(crate) fn has_events(&self) -> bool {
        self.server.has_pending()
    }

    pub(crate) fn poll_event(&self) -> Option<Box<ferrows_event>> {
        loop {
            let pending = self.server.accept(Some(Duration::ZERO)).ok().flatten()?;
            if let Some(connection) = Self::upgrade(pending) {
                let queue = self.queue.upgrade();
                let mut event = ferrows_event::new(
                    ferrows_event_kind::FERROWS_EVENT_ACCEPT,
                    std::ptr::null_mut(),
                );
                event.conn = Some(ConnState::accepted(connection, queue.as_ref()));
                return Some(event);
            }
        }
    }
}

fn log_refusal(error: &Error) {
    crate::boundary::set_last_error(format!("refused a handshake: {error}"));
}

/// A listening server.
pub struct ferrows_server {
    pub(crate) state: Arc<ServerState>,
}

/// Listens on `host:port` (port 0 picks a free one: `ferrows_server_port`). With a `queue`,
/// accepted connections arrive as `FERROWS_EVENT_ACCEPT` events and report their own events
/// to the same queue; without one, take them with `ferrows_server_accept`.
///
/// # Safety
/// `config` must be valid; `host` NUL-terminated; `queue` NULL or valid; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_server_listen(
    config: *const ferrows_config,
    host: *const c_char,
    port: u16,
    queue: *mut ferrows_queue,
    out: *mut *mut ferrows_server,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(config, host, out);
        // SAFETY: not NULL, and the caller promises a NUL-terminated string.
        let host = match unsafe { utf8_arg(host, "host") } {
            Ok(host) => host,
            Err(code) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live config.
        let server_config = unsafe { &*config }.server.clone();
        let server = match Server::bind(host, port, server_config) {
            Ok(server) => server,
            Err(error) => return fail(&error),
        };
        // SAFETY: the caller promises a NULL or live queue.
        let queue = unsafe { queue.as_ref() }.map(|q| q.shared.clone());
        let state = Arc::new(ServerState {
            server,
            queue: queue.as_ref().map_or_else(Weak::new, Arc::downgrade),
            queued: AtomicBool::new(false),
            freed: AtomicBool::new(false),
        });
        if let Some(queue) = queue {
            let weak_state = Arc::downgrade(&state);
            let weak_queue = Arc::downgrade(&queue);
            state.server.set_notifier(Some(Arc::new(move || {
                if let (Some(state), Some(queue)) = (weak_state.upgrade(), weak_queue.upgrade()) {
                    queue.mark_ready(Source::Server(state));
                }
            })));
        }
        // SAFETY: not NULL, and the caller promises a writable pointer.
        unsafe { *out = Box::into_raw(Box::new(ferrows_server { state })) };
        FERROWS_OK
    })
}

/// The port the server listens on.
///
/// # Safety
/// `server` must be NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_server_port(server: *const ferrows_server) -> u16 {
    ffi!(0, {
        // SAFETY: the caller promises a NULL or live server.
        unsafe { server.as_ref() }.map_or(0, |s| s.state.server.local_addr().port())
    })
}

/// Waits up to `timeout_ms` for a client and accepts it into `out` (the caller frees it).
/// Requests that are not valid upgrades are answered (400, 403, 426...) and skipped.
/// `FERROWS_CLOSED` once the server is shut down.
///
/// # Safety
/// `server` must be valid and `out` a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn ferrows_server_accept(
    server: *mut ferrows_server,
    timeout_ms: i32,
    out: *mut *mut ferrows_conn,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(server, out);
        // SAFETY: both not NULL, and the caller promises a live server and a writable `out`.
        let (server, out) = unsafe { (&*server, &mut *out) };
        *out = std::ptr::null_mut();
        let timeout = match timeout_arg(timeout_ms) {
            Ok(timeout) => timeout,
            Err(code) => return code,
        };
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match server.state.server.accept(left) {
                Ok(Some(pending)) => {
                    if let Some(connection) = ServerState::upgrade(pending) {
                        *out = Box::into_raw(ConnState::accepted(connection, None));
                        return FERROWS_OK;
                    }
                }
                Ok(None) if timeout_ms == 0 => return status(FERROWS_AGAIN, "no client"),
                Ok(None) => return status(FERROWS_TIMEOUT, "no client"),
                Err(error) => return fail(&error),
            }
        }
    })
}

/// Stops accepting, closes every connection with 1001 and waits up to `timeout_ms` for
/// their closing handshakes. Returns `FERROWS_TIMEOUT` if some were still open then.
///
/// # Safety
/// `server` must be valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_server_shutdown(
    server: *mut ferrows_server,
    timeout_ms: i32,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(server);
        let timeout = match timeout_arg(timeout_ms) {
            Ok(timeout) => timeout,
            Err(code) => return code,
        };
        // SAFETY: not NULL, and the caller promises a live server.
        match unsafe { &*server }.state.server.shutdown(timeout) {
            Ok(0) => FERROWS_OK,
            Ok(open) => status(
                FERROWS_TIMEOUT,
                &format!("{open} connections still open after the shutdown"),
            ),
            Err(error) => fail(&error),
        }
    })
}

/// Frees a server: it stops listening, answers handshakes not yet accepted with 503, and
/// reports nothing more to its queue: its ACCEPT events not yet taken are dropped (their
/// connections closed). Accepted connections stay until freed. NULL is a no-op.
///
/// # Safety
/// `server` must be NULL or valid, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ferrows_server_free(server: *mut ferrows_server) {
    ffi!((), {
        if !server.is_null() {
            // SAFETY: a server from `Box::into_raw`, which the caller gives up.
            let server = unsafe { Box::from_raw(server) };
            let state = &server.state;
            state.freed.store(true, Ordering::Release);
            state.server.set_notifier(None);
            state.server.stop_accepting();
            if let Some(queue) = state.queue.upgrade() {
                queue.forget(&Source::Server(state.clone()));
            }
        }
    })
}
