//! `ferrows_server`: listens, and hands accepted connections over blocking calls or as
//! ACCEPT events on a queue.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ferrows_core::engine::{self, PendingHandshake, Server};
use ferrows_core::metrics::MetricsSnapshot;
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

/// Close codes counted one by one in [`ferrows_metrics`]`.close_codes`: 1000 to 1015;
/// the last entry counts every other code.
pub const FERROWS_METRICS_CLOSE_CODES: usize = 17;

/// Buckets of [`ferrows_metrics`]`.ping_latency_buckets`: pings answered within 0.5,
/// 1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1 s and 2.5 s (each bucket counts only its own
/// range, not the ones below), then slower. (Both lengths are the core's: the struct's
/// arrays are filled from its, which would not compile if they differed.)
pub const FERROWS_METRICS_PING_BUCKETS: usize = 13;

/// A server's counters at one moment (each read on its own). The struct may grow at its end:
/// set `struct_size` to `sizeof(ferrows_metrics)` before the call; the library fills
/// as many fields as both it and the caller know, and stores the bytes it filled there.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ferrows_metrics {
    /// In: the size of the caller's struct. Out: the bytes filled.
    pub struct_size: usize,
    /// Connections accepted and not ended.
    pub connections_open: u64,
    /// Opening handshakes accepted.
    pub handshakes_accepted: u64,
    /// Refused: not a valid upgrade request.
    pub refused_bad_request: u64,
    /// Refused: Origin not allowed.
    pub refused_origin: u64,
    /// Refused: a subprotocol the client did not offer was chosen.
    pub refused_subprotocol: u64,
    /// Refused: max_connections reached, or too many handshakes waiting.
    pub refused_limit: u64,
    /// Refused: the TLS handshake failed.
    pub refused_tls: u64,
    /// Whole messages received.
    pub messages_in: u64,
    /// Whole messages sent.
    pub messages_out: u64,
    /// Message payload bytes received (after decompression).
    pub bytes_in: u64,
    /// Message payload bytes sent (before compression).
    pub bytes_out: u64,
    /// Ended connections by close code (the peer's, else ours, else 1006): index `code -
    /// 1000` for 1000 to 1015, the last for every other code.
    pub close_codes: [u64; FERROWS_METRICS_CLOSE_CODES],
    /// Answered pings by latency (see `FERROWS_METRICS_PING_BUCKETS`).
    pub ping_latency_buckets: [u64; FERROWS_METRICS_PING_BUCKETS],
    /// The sum of those latencies, in microseconds.
    pub ping_latency_sum_us: u64,
    /// Connections a broadcast skipped (send buffer full).
    pub broadcast_skips: u64,
    /// Times a connection stopped reading for lack of room.
    pub read_pauses: u64,
    /// Times a send waited for room.
    pub write_pauses: u64,
}

impl ferrows_metrics {
    fn of(snapshot: &MetricsSnapshot) -> Self {
        let [bad_request, origin, subprotocol, limit, tls] = snapshot.refused;
        Self {
            struct_size: std::mem::size_of::<Self>(),
            connections_open: snapshot.open(),
            handshakes_accepted: snapshot.accepted,
            refused_bad_request: bad_request,
            refused_origin: origin,
            refused_subprotocol: subprotocol,
            refused_limit: limit,
            refused_tls: tls,
            messages_in: snapshot.messages_in,
            messages_out: snapshot.messages_out,
            bytes_in: snapshot.bytes_in,
            bytes_out: snapshot.bytes_out,
            close_codes: snapshot.close_codes,
            ping_latency_buckets: snapshot.ping_buckets,
            ping_latency_sum_us: (snapshot.ping_seconds * 1e6) as u64,
            broadcast_skips: snapshot.broadcast_skips,
            read_pauses: snapshot.read_pauses,
            write_pauses: snapshot.write_pauses,
        }
    }
}

/// Fills `out` with the server's counters. `out->struct_size` must be set (at least
/// `sizeof(size_t)`); see [`ferrows_metrics`].
///
/// # Safety
/// `server` must be valid; `out` valid for `out->struct_size` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrows_server_metrics(
    server: *const ferrows_server,
    out: *mut ferrows_metrics,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(server, out);
        // SAFETY: not NULL; the caller promises at least the size field is writable.
        let given = unsafe { std::ptr::addr_of!((*out).struct_size).read_unaligned() };
        if given < std::mem::size_of::<usize>() {
            return crate::boundary::invalid(format!(
                "struct_size is {given}: set it to sizeof(ferrows_metrics)"
            ));
        }
        // SAFETY: not NULL, and the caller promises a live server.
        let snapshot = unsafe { &*server }.state.server.metrics().snapshot();
        let mut filled = ferrows_metrics::of(&snapshot);
        let size = given.min(std::mem::size_of::<ferrows_metrics>());
        filled.struct_size = size;
        // SAFETY: `size` bytes fit in both the local struct and, as the caller promises by
        // `struct_size`, in `out`; they do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::addr_of!(filled).cast::<u8>(),
                out.cast::<u8>(),
                size,
            )
        };
        FERROWS_OK
    })
}
