//! `ferrows_event`: what a connection, a server or a connection attempt reports. Events are
//! owned by the caller, who frees each with `ferrows_event_free`.

use std::ffi::{c_char, c_void};

use crate::boundary::{copy_out, ferrows_result, ferrows_result::*, ffi, non_null};
use crate::conn::ferrows_conn;

/// The kind of an event (`ferrows_event_type` returns it as a `uint32_t`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ferrows_event_kind {
    /// A connection attempt started with `ferrows_connect` succeeded.
    FERROWS_EVENT_OPEN = 1,
    /// A whole text message (UTF-8, not NUL-terminated): `ferrows_event_data`.
    FERROWS_EVENT_TEXT = 2,
    /// A whole binary message: `ferrows_event_data`.
    FERROWS_EVENT_BINARY = 3,
    /// The connection ended: `ferrows_event_close_code`, the reason in
    /// `ferrows_event_message`, and `ferrows_event_result` for why it failed (or `FERROWS_OK`).
    FERROWS_EVENT_CLOSED = 4,
    /// A connection attempt failed: `ferrows_event_result` and `ferrows_event_message`.
    FERROWS_EVENT_ERROR = 5,
    /// A server accepted a connection: take it with `ferrows_event_take_conn`.
    FERROWS_EVENT_ACCEPT = 6,
    /// A connection with a reconnection policy (`ferrows_config_set_reconnect`) ended, or
    /// an attempt to open it failed, and it will try again after the backoff; an OPEN event
    /// follows when it is connected again, on the same handle. `ferrows_event_result` and
    /// `ferrows_event_message` say why; `ferrows_event_close_code` is the code the
    /// connection ended with (0 after a failed attempt).
    FERROWS_EVENT_RECONNECTING = 7,
}

/// An event. Owned by whoever received it; free it with `ferrows_event_free`. The data it
/// points to stays valid until then. An event may be read from any thread, by one at a time.
pub struct ferrows_event {
    pub(crate) kind: ferrows_event_kind,
    pub(crate) userdata: *mut c_void,
    /// A message's data, or the close reason or error text.
    pub(crate) data: Vec<u8>,
    pub(crate) close_code: u16,
    pub(crate) result: ferrows_result,
    pub(crate) conn: Option<Box<ferrows_conn>>,
}

// SAFETY: `userdata` is the application's opaque pointer, only handed back to it; the
// application decides which threads use what it points to.
unsafe impl Send for ferrows_event {}

impl ferrows_event {
    pub(crate) fn new(kind: ferrows_event_kind, userdata: *mut c_void) -> Box<Self> {
        Box::new(Self {
            kind,
            userdata,
            data: Vec::new(),
            close_code: 0,
            result: FERROWS_OK,
            conn: None,
        })
    }
}

/// The event's type, a `ferrows_event_kind`; 0 for NULL.
///
/// # Safety
/// `event` must be NULL or a valid event.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_type(event: *const ferrows_event) -> u32 {
    ffi!(0, {
        // SAFETY: the caller promises a NULL or live event.
        unsafe { event.as_ref() }.map_or(0, |e| e.kind as u32)
    })
}

/// The userdata of the connection the event is about; NULL for NULL.
///
/// # Safety
/// `event` must be NULL or a valid event.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_userdata(event: *const ferrows_event) -> *mut c_void {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: the caller promises a NULL or live event.
        unsafe { event.as_ref() }.map_or(std::ptr::null_mut(), |e| e.userdata)
    })
}

/// A message event's data (borrowed until the event is freed) and its length in `len`.
/// Text is UTF-8 and not NUL-terminated. Other events have no data (length 0).
///
/// # Safety
/// `event` must be NULL or a valid event; `len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_data(
    event: *const ferrows_event,
    len: *mut usize,
) -> *const u8 {
    ffi!(std::ptr::null(), {
        // SAFETY: the caller promises a NULL or live event.
        let data: &[u8] = match unsafe { event.as_ref() } {
            Some(event)
                if matches!(
                    event.kind,
                    ferrows_event_kind::FERROWS_EVENT_TEXT
                        | ferrows_event_kind::FERROWS_EVENT_BINARY
                ) =>
            {
                &event.data
            }
            _ => &[],
        };
        if !len.is_null() {
            // SAFETY: not NULL, and the caller promises a NULL or writable pointer.
            unsafe { *len = data.len() };
        }
        data.as_ptr()
    })
}

/// A CLOSED (or RECONNECTING) event's close code: the peer's, else ours, else 1006 (no
/// close frame). 0 for other events.
///
/// # Safety
/// `event` must be NULL or a valid event.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_close_code(event: *const ferrows_event) -> u16 {
    ffi!(0, {
        // SAFETY: the caller promises a NULL or live event.
        unsafe { event.as_ref() }.map_or(0, |e| e.close_code)
    })
}

/// Why a CLOSED, ERROR or RECONNECTING event happened: `FERROWS_OK` for a clean close, else the error.
/// `FERROWS_ERR_NULL_PARAM` (with a last error) for NULL.
///
/// # Safety
/// `event` must be NULL or a valid event.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_result(event: *const ferrows_event) -> i32 {
    let result = ffi!(FERROWS_ERR_PANIC, {
        non_null!(event);
        // SAFETY: not NULL, and the caller promises a live event.
        unsafe { &*event }.result
    });
    result as i32
}

/// Copies a CLOSED event's close reason, or an ERROR or RECONNECTING event's description,
/// into `(buf, len)`
/// (NUL-terminated), its length in `out_len`.
///
/// # Safety
/// `event` must be a valid event; `buf` NULL or valid for `len` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_message(
    event: *const ferrows_event,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(event);
        // SAFETY: not NULL, and the caller promises a live event.
        let event = unsafe { &*event };
        let text: &[u8] = match event.kind {
            ferrows_event_kind::FERROWS_EVENT_CLOSED
            | ferrows_event_kind::FERROWS_EVENT_ERROR
            | ferrows_event_kind::FERROWS_EVENT_RECONNECTING => &event.data,
            _ => &[],
        };
        // SAFETY: the caller's promise about `buf` and `out_len`, passed on.
        unsafe { copy_out(text, buf, len, out_len) }
    })
}

/// Takes the connection an ACCEPT event carries; the caller owns it (free it with
/// `ferrows_conn_free`). NULL for other events or once taken.
///
/// # Safety
/// `event` must be NULL or a valid event.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_take_conn(event: *mut ferrows_event) -> *mut ferrows_conn {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: the caller promises a NULL or live event, used by this thread alone.
        unsafe { event.as_mut() }
            .and_then(|e| e.conn.take())
            .map_or(std::ptr::null_mut(), Box::into_raw)
    })
}

/// Frees an event. NULL is a no-op. An ACCEPT event's untaken connection is closed and freed.
///
/// # Safety
/// `event` must be NULL or a valid event, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ferrows_event_free(event: *mut ferrows_event) {
    ffi!((), {
        if !event.is_null() {
            // SAFETY: an event from `Box::into_raw`, which the caller gives up.
            drop(unsafe { Box::from_raw(event) });
        }
    })
}
