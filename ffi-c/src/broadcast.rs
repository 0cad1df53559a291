//! `ferrows_broadcast`: one message to many connections, encoded once.

use std::ffi::c_char;

use ferrows_core::engine::{self, Outcome, SlowPolicy};

use crate::boundary::ferrows_result::*;
use crate::boundary::*;
use crate::conn::{connection_of, ferrows_conn};

/// What `ferrows_broadcast` did with each connection (its `outcomes` array, as `uint8_t`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ferrows_broadcast_outcome {
    /// The message was queued (and written, if the socket took it at once).
    FERROWS_BROADCAST_SENT = 0,
    /// Left out: its unsent bytes were at its high watermark (slow), or it was in the
    /// middle of sending a fragmented message.
    FERROWS_BROADCAST_SKIPPED = 1,
    /// Slow, and its closing handshake was started with the close code given.
    FERROWS_BROADCAST_CLOSED = 2,
    /// Left out: still opening, closing or closed.
    FERROWS_BROADCAST_NOT_OPEN = 3,
}

/// How many connections a `ferrows_broadcast` call left in each outcome.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ferrows_broadcast_result {
    /// The message was queued on this many.
    pub sent: usize,
    /// Slow (or mid-fragment) connections left out.
    pub skipped: usize,
    /// Slow connections whose closing handshake was started.
    pub closed: usize,
    /// Connections still opening, closing or closed.
    pub not_open: usize,
}

/// Sends one message (`type` `FERROWS_MESSAGE_TEXT` or `FERROWS_MESSAGE_BINARY`, `len` bytes
/// at `data`) to the `count` connections at `conns`, without waiting: the frame is encoded
/// once for every server-side connection (compressed once per set of connections whose
/// permessage-deflate settings allow it; client connections mask, so each encodes its own).
/// A connection whose unsent bytes are at its high watermark is slow: with
/// `slow_close_code` 0 it is skipped, with 1008 or 1013 its closing handshake starts with
/// that code and `slow_close_reason` (NULL: empty; at most 123 bytes). Either way its
/// broadcast skip count grows. `outcomes` (NULL, or `count` bytes) receives each
/// connection's `ferrows_broadcast_outcome`; `result` (NULL allowed) the counts.
///
/// # Safety
/// `conns` must hold `count` valid connection handles (NULL only when `count` is 0); `data`
/// `len` readable bytes; `slow_close_reason` NULL or NUL-terminated; `outcomes` NULL or
/// `count` writable bytes; `result` NULL or valid.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ferrows_broadcast(
    conns: *const *mut ferrows_conn,
    count: usize,
    r#type: u32,
    data: *const u8,
    len: usize,
    slow_close_code: u16,
    slow_close_reason: *const c_char,
    outcomes: *mut u8,
    result: *mut ferrows_broadcast_result,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        let kind = match message_kind_arg(r#type) {
            Ok(kind) => kind,
            Err(code) => return code,
        };
        // SAFETY: the caller promises `len` readable bytes at `data` (checked if NULL).
        let data = match unsafe { bytes_arg(data, len) } {
            Ok(data) => data,
            Err(code) => return code,
        };
        let policy = match slow_close_code {
            0 => SlowPolicy::Skip,
            code => {
                let reason = if slow_close_reason.is_null() {
                    ""
                } else {
                    // SAFETY: not NULL, and the caller promises a NUL-terminated string.
                    match unsafe { utf8_arg(slow_close_reason, "slow_close_reason") } {
                        Ok(reason) => reason,
                        Err(code) => return code,
                    }
                };
                SlowPolicy::Close {
                    code,
                    reason: reason.to_owned(),
                }
            }
        };
        if count > 0 && conns.is_null() {
            set_last_error("argument `conns` is NULL with a non-zero count");
            return FERROWS_ERR_NULL_PARAM;
        }
        let handles = if count == 0 {
            &[][..]
        } else {
            // SAFETY: not NULL, and the caller promises `count` handles at `conns`.
            unsafe { std::slice::from_raw_parts(conns, count) }
        };
        if handles.iter().any(|handle| handle.is_null()) {
            set_last_error("a connection in `conns` is NULL");
            return FERROWS_ERR_NULL_PARAM;
        }
        // A handle still opening has no engine connection: reported as not open.
        let connections: Vec<Option<engine::Connection>> = handles
            .iter()
            // SAFETY: not NULL, and the caller promises live handles.
            .map(|&handle| unsafe { connection_of(handle) }.ok())
            .collect();
        let open: Vec<&engine::Connection> = connections.iter().flatten().collect();
        let mut sent = match engine::broadcast(open, kind, data, &policy) {
            Ok(outcomes) => outcomes.into_iter(),
            Err(error) => return invalid(error.to_string()),
        };
        let mut counts = ferrows_broadcast_result::default();
        for (index, connection) in connections.iter().enumerate() {
            let outcome = match connection {
                Some(_) => sent.next().expect("one outcome per open connection"),
                None => Outcome::NotOpen,
            };
            match outcome {
                Outcome::Sent => counts.sent += 1,
                Outcome::Skipped => counts.skipped += 1,
                Outcome::Closed => counts.closed += 1,
                Outcome::NotOpen => counts.not_open += 1,
            }
            if !outcomes.is_null() {
                // SAFETY: the caller promises `count` writable bytes at `outcomes`.
                unsafe { outcomes.add(index).write(outcome as u8) };
            }
        }
        if !result.is_null() {
            // SAFETY: not NULL, and the caller promises a valid pointer.
            unsafe { result.write(counts) };
        }
        FERROWS_OK
    })
}

/// How many broadcasts left `conn` out for being slow (skipped, or closed for it); 0 while
/// it is still opening or when `conn` is NULL.
///
/// # Safety
/// `conn` must be NULL or a valid connection.
#[no_mangle]
pub unsafe extern "C" fn ferrows_conn_broadcast_skips(conn: *const ferrows_conn) -> u64 {
    ffi!(0, {
        if conn.is_null() {
            return 0;
        }
        // SAFETY: not NULL, and the caller promises a live handle.
        unsafe { connection_of(conn) }.map_or(0, |connection| connection.broadcast_skips())
    })
}
