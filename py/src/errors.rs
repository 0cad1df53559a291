//! Maps the core's errors to the exception hierarchy of `ferrows.exceptions`. The Python
//! module builds the exception objects; this side only says which one, with what.

use std::sync::Arc;

use ferrows_core::engine::Ended;
use ferrows_core::{CloseFrame, Error};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use crate::convert::response_tuple;

static FROM_CORE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn close_tuple(frame: &Option<CloseFrame>) -> Option<(u16, String)> {
    frame.as_ref().map(|f| (f.code, f.reason.clone()))
}

/// Builds the Python exception for `error`; `ended` supplies the cause of a closed connection.
pub fn to_py_err(py: Python<'_>, error: Error, ended: Option<&Ended>) -> PyErr {
    match build(py, &error, ended) {
        Ok(err) => err,
        Err(failure) => failure,
    }
}

/// Builds the exception for an error shared by reference (a connection's recorded cause).
pub fn shared_to_py_err(py: Python<'_>, error: &Arc<Error>) -> PyErr {
    match build(py, error, None) {
        Ok(err) => err,
        Err(failure) => failure,
    }
}

fn build(py: Python<'_>, error: &Error, ended: Option<&Ended>) -> PyResult<PyErr> {
    let message = error.to_string();
    let (kind, args): (&str, Bound<'_, PyTuple>) = match error {
        Error::InvalidUri { uri, reason } => ("invalid_uri", (uri, reason).into_pyobject(py)?),
        Error::InvalidStatus(response) => (
            "invalid_status",
            (response_tuple(py, response)?,).into_pyobject(py)?,
        ),
        Error::InvalidHeader { name, reason } => {
            ("invalid_header", (name, reason).into_pyobject(py)?)
        }
        Error::InvalidProxy { proxy, reason } => {
            ("invalid_proxy", (proxy, reason).into_pyobject(py)?)
        }
        Error::ProxyStatus(response) => (
            "proxy_status",
            (response_tuple(py, response)?,).into_pyobject(py)?,
        ),
        Error::Proxy(_) => ("proxy", (message,).into_pyobject(py)?),
        Error::InvalidOrigin(origin) => ("invalid_origin", (origin,).into_pyobject(py)?),
        Error::InvalidMessage(_) => ("invalid_message", (message,).into_pyobject(py)?),
        Error::Negotiation(_) => ("negotiation", (message,).into_pyobject(py)?),
        Error::Protocol { .. } => ("protocol", (message,).into_pyobject(py)?),
        Error::PayloadTooBig(_) => ("payload_too_big", (message,).into_pyobject(py)?),
        Error::ConnectionClosed(info) => {
            let args = (
                close_tuple(&info.rcvd),
                close_tuple(&info.sent),
                info.rcvd_then_sent,
            );
            let err = from_core(py, "closed", args.into_pyobject(py)?)?;
            if let Some(cause) = ended.and_then(|e| e.cause.as_ref()) {
                err.set_cause(py, Some(shared_to_py_err(py, cause)));
            }
            return Ok(err);
        }
        Error::Timeout(what) => (
            "timeout",
            (format!("timed out: {what}"),).into_pyobject(py)?,
        ),
        Error::Concurrency(_) => ("concurrency", (message,).into_pyobject(py)?),
        Error::WouldDeadlock => return Ok(PyRuntimeError::new_err(message)),
        Error::Tls(_) | Error::UntrustedCertificate(_) => ("tls", (message,).into_pyobject(py)?),
        Error::Config(_) => return Ok(PyValueError::new_err(message)),
        Error::Io(io) => {
            // OSError(errno, text) becomes the matching subclass (ConnectionRefusedError...).
            return Ok(match io.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, io.to_string())),
                None => match io.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        pyo3::exceptions::PyConnectionResetError::new_err(message)
                    }
                    _ => PyOSError::new_err(message),
                },
            });
        }
    };
    from_core(py, kind, args)
}

/// Calls `ferrows.exceptions._from_core(kind, args)`, which builds the exception object.
fn from_core(py: Python<'_>, kind: &str, args: Bound<'_, PyTuple>) -> PyResult<PyErr> {
    let factory = FROM_CORE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py
            .import("ferrows.exceptions")?
            .getattr("_from_core")?
            .unbind())
    })?;
    Ok(PyErr::from_value(factory.bind(py).call1((kind, args))?))
}
