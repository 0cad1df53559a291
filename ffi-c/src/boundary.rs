//! The FFI boundary: result codes, the thread-local last error, panic catching and
//! pointer checks. Every exported function goes through `ffi!`.

use std::cell::RefCell;
use std::ffi::c_char;

use ferrows_core::Error;

/// The outcome of a call. 0 is success, positive values are statuses that are not errors,
/// negative values are errors. The numbers are stable: a retired one is never reused.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ferrows_result {
    /// Success.
    FERROWS_OK = 0,
    /// Nothing to do without waiting (a zero timeout), or a waiting call was woken up.
    FERROWS_AGAIN = 1,
    /// The timeout passed.
    FERROWS_TIMEOUT = 2,
    /// The connection (or server) is closed.
    FERROWS_CLOSED = 3,
    /// A required pointer argument was NULL.
    FERROWS_ERR_NULL_PARAM = -1,
    /// An argument is out of range (an unknown enum value, invalid UTF-8, a bad option).
    FERROWS_ERR_INVALID_ARG = -2,
    /// ferrows panicked; the call had no effect that can be relied on. Please report it.
    FERROWS_ERR_PANIC = -3,
    /// An operating-system error: connection refused, reset, address in use...
    FERROWS_ERR_IO = -4,
    /// TLS configuration or handshake failure (an untrusted certificate, bad PEM...).
    FERROWS_ERR_TLS = -5,
    /// The opening handshake failed (a refused status, a missing header...).
    FERROWS_ERR_HANDSHAKE = -6,
    /// The peer broke the WebSocket protocol.
    FERROWS_ERR_PROTOCOL = -7,
    /// A message or frame exceeded its size limit.
    FERROWS_ERR_MESSAGE_TOO_BIG = -8,
    /// A blocking call was made from a ferrows runtime thread (a callback), where it
    /// would deadlock.
    FERROWS_ERR_WOULD_DEADLOCK = -9,
    /// Two threads made a call that must not run concurrently (two receivers).
    FERROWS_ERR_CONCURRENCY = -10,
    /// The URL is not a valid ws:// or wss:// URL.
    FERROWS_ERR_INVALID_URI = -11,
    /// The caller's buffer is too small; the needed size was stored in `out_len`.
    FERROWS_ERR_BUFFER_TOO_SMALL = -12,
    /// The object is not in a state that allows the call (a connection still opening).
    FERROWS_ERR_STATE = -13,
    /// The server's certificate was not trusted: unknown issuer, wrong name, expired... (any
    /// other TLS failure is `FERROWS_ERR_TLS`).
    FERROWS_ERR_TLS_UNTRUSTED = -14,
    /// The proxy refused the tunnel (the last error gives its HTTP status or SOCKS reply),
    /// rejected the credentials, or broke its protocol.
    FERROWS_ERR_PROXY = -15,
}

use ferrows_result::*;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as this thread's last error.
pub fn set_last_error(message: impl Into<String>) {
    LAST_ERROR.with(|last| *last.borrow_mut() = message.into());
}

/// Records `error` as this thread's last error and returns its code.
pub fn fail(error: &Error) -> ferrows_result {
    set_last_error(error.to_string());
    code_of(error)
}

/// The result code for a core error.
pub fn code_of(error: &Error) -> ferrows_result {
    match error {
        Error::InvalidUri { .. } => FERROWS_ERR_INVALID_URI,
        Error::InvalidStatus(_)
        | Error::InvalidHeader { .. }
        | Error::InvalidOrigin(_)
        | Error::InvalidMessage(_)
        | Error::Negotiation(_) => FERROWS_ERR_HANDSHAKE,
        Error::Protocol { .. } => FERROWS_ERR_PROTOCOL,
        Error::PayloadTooBig(_) => FERROWS_ERR_MESSAGE_TOO_BIG,
        Error::ConnectionClosed(_) => FERROWS_CLOSED,
        Error::Timeout(_) => FERROWS_TIMEOUT,
        Error::Concurrency(_) => FERROWS_ERR_CONCURRENCY,
        Error::WouldDeadlock => FERROWS_ERR_WOULD_DEADLOCK,
        Error::Tls(_) => FERROWS_ERR_TLS,
        Error::UntrustedCertificate(_) => FERROWS_ERR_TLS_UNTRUSTED,
        Error::Config(_) | Error::InvalidProxy { .. } => FERROWS_ERR_INVALID_ARG,
        Error::Proxy(_) | Error::ProxyStatus(_) => FERROWS_ERR_PROXY,
        Error::Io(_) => FERROWS_ERR_IO,
    }
}

/// Records a status that is no error (`FERROWS_AGAIN`, `FERROWS_TIMEOUT`, `FERROWS_CLOSED`)
/// with what was awaited, so the last error never describes an older call, and returns it.
pub fn status(code: ferrows_result, what: &str) -> ferrows_result {
    let outcome = match code {
        FERROWS_TIMEOUT => "timed out",
        FERROWS_CLOSED => "closed",
        _ => "nothing ready",
    };
    set_last_error(format!("{outcome}: {what}"));
    code
}

/// Records an invalid argument and returns its code.
pub fn invalid(message: impl Into<String>) -> ferrows_result {
    set_last_error(message);
    FERROWS_ERR_INVALID_ARG
}

/// Copies `text` into the caller's buffer `(buf, len)` with a terminating NUL, storing the
/// length without the NUL in `out_len` (if not NULL). A NULL or short buffer gets
/// `FERROWS_ERR_BUFFER_TOO_SMALL` (with a last error) and the needed length in `out_len`.
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes; `out_len` NULL or valid.
pub unsafe fn copy_out(
    text: &[u8],
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    // SAFETY: the caller's promise, passed on.
    let result = unsafe { copy_quietly(text, buf, len, out_len) };
    if result == FERROWS_ERR_BUFFER_TOO_SMALL {
        set_last_error(format!(
            "buffer too small: {len} bytes given, {} needed (the text and its NUL)",
            text.len() + 1
        ));
    }
    result
}

/// `copy_out` without touching the last error, for the call that reads the last error.
///
/// # Safety
/// As `copy_out`.
unsafe fn copy_quietly(
    text: &[u8],
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    if !out_len.is_null() {
        // SAFETY: not NULL, and the caller promises a NULL or valid pointer.
        unsafe { *out_len = text.len() };
    }
    if buf.is_null() || len < text.len() + 1 {
        return FERROWS_ERR_BUFFER_TOO_SMALL;
    }
    // SAFETY: `buf` is valid for `len` bytes (the caller's promise) and `len` holds the text
    // and its NUL; `text` is a live slice that cannot overlap a buffer the caller owns.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    FERROWS_OK
}

/// Runs an export's body, turning a panic into `$on_panic` (with a last-error message).
macro_rules! ffi {
    ($on_panic:expr, $body:block) => {{
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(_) => {
                $crate::boundary::set_last_error("ferrows panicked; please report this bug");
                $on_panic
            }
        }
    }};
}

/// Returns `FERROWS_ERR_NULL_PARAM` (with a last-error message naming it) when a pointer is
/// NULL.
macro_rules! non_null {
    ($($pointer:ident),+) => {
        $(
            if $pointer.is_null() {
                $crate::boundary::set_last_error(concat!("argument `", stringify!($pointer), "` is NULL"));
                return $crate::boundary::ferrows_result::FERROWS_ERR_NULL_PARAM;
            }
        )+
    };
}

pub(crate) use {ffi, non_null};

/// A C string argument as UTF-8.
///
/// # Safety
/// `text` must be a valid NUL-terminated string.
pub unsafe fn utf8_arg<'a>(text: *const c_char, name: &str) -> Result<&'a str, ferrows_result> {
    // SAFETY: the caller promises a valid NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(text) }
        .to_str()
        .map_err(|_| invalid(format!("argument `{name}` is not UTF-8")))
}

/// A byte-buffer argument; NULL is allowed when `len` is 0.
///
/// # Safety
/// `data` must be valid for `len` bytes unless `len` is 0.
pub unsafe fn bytes_arg<'a>(data: *const u8, len: usize) -> Result<&'a [u8], ferrows_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        set_last_error("data is NULL with a non-zero length");
        return Err(FERROWS_ERR_NULL_PARAM);
    }
    // SAFETY: not NULL, and the caller promises `len` readable bytes that outlive 'a.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// The message kind of a `FERROWS_MESSAGE_*` value (1 text, 2 binary).
pub fn message_kind_arg(value: u32) -> Result<ferrows_core::protocol::MessageKind, ferrows_result> {
    match value {
        1 => Ok(ferrows_core::protocol::MessageKind::Text),
        2 => Ok(ferrows_core::protocol::MessageKind::Binary),
        other => Err(invalid(format!("unknown message type {other}"))),
    }
}

/// A timeout in milliseconds: -1 waits forever, 0 does not wait, more bounds the wait.
pub fn timeout_arg(timeout_ms: i32) -> Result<Option<std::time::Duration>, ferrows_result> {
    match timeout_ms {
        -1 => Ok(None),
        ms if ms >= 0 => Ok(Some(std::time::Duration::from_millis(ms as u64))),
        ms => Err(invalid(format!("timeout_ms must be -1 or >= 0, not {ms}"))),
    }
}

/// Copies this thread's last error message into `(buf, len)` (NUL-terminated), with its
/// length in `out_len`. The message describes the last call on this thread that did not
/// return `FERROWS_OK`, statuses included. This call never changes it, even when the buffer
/// is too small.
///
/// # Safety
/// `buf` must be NULL or valid for `len` bytes; `out_len` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn ferrows_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        LAST_ERROR.with(|last| {
            // SAFETY: the caller's promise about `buf` and `out_len`, passed on.
            unsafe { copy_quietly(last.borrow().as_bytes(), buf, len, out_len) }
        })
    })
}

/// A static, NUL-terminated description of a result code; unknown codes get
/// "unknown result". Never NULL.
#[no_mangle]
pub extern "C" fn ferrows_result_str(result: i32) -> *const c_char {
    let text: &'static [u8] = match result {
        0 => b"ok\0",
        1 => b"again: nothing ready without waiting\0",
        2 => b"timed out\0",
        3 => b"closed\0",
        -1 => b"NULL argument\0",
        -2 => b"invalid argument\0",
        -3 => b"panic inside ferrows\0",
        -4 => b"I/O error\0",
        -5 => b"TLS error\0",
        -6 => b"opening handshake failed\0",
        -7 => b"protocol error\0",
        -8 => b"message too big\0",
        -9 => b"would deadlock: blocking call on a ferrows runtime thread\0",
        -10 => b"concurrent call not allowed\0",
        -11 => b"invalid URI\0",
        -12 => b"buffer too small\0",
        -13 => b"invalid state\0",
        -14 => b"untrusted TLS certificate\0",
        -15 => b"proxy refused or failed\0",
        _ => b"unknown result\0",
    };
    text.as_ptr().cast()
}
