//! The native side of a sync connection: blocking calls with the GIL released, in
//! interruptible slices. `ferrows.sync.connection.Connection` wraps it.

use std::time::Duration;

use ferrows_core::engine::{self, Chunk, PendingConnect};
use ferrows_core::protocol::{recycle_shared_message_buffer, MessageKind};
use ferrows_core::Error;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use crate::convert::{address_tuple, request_tuple, response_tuple, RequestTuple};
use crate::errors::{shared_to_py_err, to_py_err};
use crate::options::client_config;
use crate::wait::{slice_timeout, timeout_from, wait_interruptibly};

/// Turns received data into `str` (text, valid UTF-8 by construction) or `bytes`.
pub fn data_to_py<'py>(py: Python<'py>, kind: MessageKind, data: &[u8]) -> Bound<'py, PyAny> {
    match kind {
        MessageKind::Text => {
            // SAFETY: the protocol core validated this text message as UTF-8.
            PyString::new(py, unsafe { std::str::from_utf8_unchecked(data) }).into_any()
        }
        MessageKind::Binary => PyBytes::new(py, data).into_any(),
    }
}

/// [`data_to_py`] for data the caller owns: its buffer goes back to the core for the next
/// large message (assembled by this thread reading inline, or by the reader task). A fresh
/// megabyte per message, freed once copied, goes back to the kernel and is faulted in again
/// by the next one.
fn owned_data_to_py(py: Python<'_>, kind: MessageKind, data: Vec<u8>) -> Bound<'_, PyAny> {
    let object = data_to_py(py, kind, &data);
    recycle_shared_message_buffer(data);
    object
}

/// Data to send: text or binary.
pub enum Outgoing {
    Text(PyBackedStr),
    Binary(PyBackedBytes),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Outgoing {
    type Error = PyErr;

    /// Tries each type with a plain check: a derived extraction builds (and formats) a
    /// Python exception for every variant that does not match, on every binary message.
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Outgoing::Binary(PyBackedBytes::from(bytes.to_owned())));
        }
        if let Ok(text) = obj.cast::<PyString>() {
            return Ok(Outgoing::Text(PyBackedStr::try_from(text.to_owned())?));
        }
        if let Ok(bytearray) = obj.cast::<PyByteArray>() {
            return Ok(Outgoing::Binary(PyBackedBytes::from(bytearray.to_owned())));
        }
        Err(PyTypeError::new_err(format!(
            "a message is str or bytes, not {}",
            obj.get_type().name()?
        )))
    }
}

impl Outgoing {
    /// The message's type and bytes.
    pub fn parts(&self) -> (MessageKind, &[u8]) {
        match self {
            Outgoing::Text(text) => (MessageKind::Text, text.as_bytes()),
            Outgoing::Binary(bytes) => (MessageKind::Binary, bytes),
        }
    }
}

/// An open WebSocket connection driven by the engine.
#[pyclass(module = "ferrows._ferrows", name = "Connection", frozen)]
pub struct PyConnection {
    inner: engine::Connection,
}

impl PyConnection {
    pub fn new(inner: engine::Connection) -> Self {
        Self { inner }
    }

    /// The engine's connection, for functions that act on many at once.
    pub fn engine(&self) -> &engine::Connection {
        &self.inner
    }

    fn closed_error(&self, py: Python<'_>, error: Error) -> PyErr {
        to_py_err(py, error, self.inner.ended().as_ref())
    }

    /// Waits up to `timeout` for the next chunk, interruptibly; `None` when it passes.
    fn next_chunk(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<Option<Chunk>> {
        wait_interruptibly(
            py,
            timeout,
            |slice| slice_timeout(self.inner.recv_chunk(slice)),
            |e| self.closed_error(py, e),
        )
    }
}

#[pymethods]
impl PyConnection {
    /// Receives the next whole message as str or bytes; None when `timeout` passes.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let _receiving = self
            .inner
            .begin_receive()
            .map_err(|e| to_py_err(py, e, None))?;
        // What has arrived of a message when the time is up (or Ctrl-C) stays in the core's
        // inbox for the next call.
        let message = wait_interruptibly(
            py,
            timeout_from(timeout)?,
            |slice| slice_timeout(self.inner.recv_message(slice)),
            |e| self.closed_error(py, e),
        )?;
        Ok(message.map(|(kind, data)| owned_data_to_py(py, kind, data)))
    }

    /// Receives the next chunk of a message: `(is_text, data, fin)`; None when `timeout` passes.
    #[pyo3(signature = (timeout=None))]
    fn recv_chunk<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<(bool, Bound<'py, PyAny>, bool)>> {
        let chunk = self.next_chunk(py, timeout_from(timeout)?)?;
        Ok(chunk.map(|c| {
            (
                c.kind == MessageKind::Text,
                owned_data_to_py(py, c.kind, c.data),
                c.fin,
            )
        }))
    }

    /// Sends a whole message, waiting while the outgoing buffer is full; False on timeout.
    /// `compress` False sends it uncompressed when permessage-deflate was negotiated.
    #[pyo3(signature = (message, timeout=None, compress=true))]
    fn send(
        &self,
        py: Python<'_>,
        message: Outgoing,
        timeout: Option<f64>,
        compress: bool,
    ) -> PyResult<bool> {
        let (kind, data) = message.parts();
        let sent = wait_interruptibly(
            py,
            timeout_from(timeout)?,
            |slice| slice_timeout(self.inner.send(kind, data, compress, slice)),
            |e| self.closed_error(py, e),
        )?;
        Ok(sent.is_some())
    }

    /// Sends one fragment; the first one's type and `compress` count, `fin` ends the message.
    #[pyo3(signature = (message, fin, timeout=None, compress=true))]
    fn send_fragment(
        &self,
        py: Python<'_>,
        message: Outgoing,
        fin: bool,
        timeout: Option<f64>,
        compress: bool,
    ) -> PyResult<bool> {
        let (kind, data) = message.parts();
        let sent = wait_interruptibly(
            py,
            timeout_from(timeout)?,
            |slice| slice_timeout(self.inner.send_fragment(kind, data, fin, compress, slice)),
            |e| self.closed_error(py, e),
        )?;
        Ok(sent.is_some())
    }

    /// Sends a ping and returns the waiter of its pong.
    fn ping(&self, py: Python<'_>, payload: PyBackedBytes) -> PyResult<PyPongWaiter> {
        let waiter = self
            .inner
            .ping(&payload)
            .map_err(|e| self.closed_error(py, e))?;
        Ok(PyPongWaiter { inner: waiter })
    }

    /// Sends an unsolicited pong.
    fn pong(&self, py: Python<'_>, payload: PyBackedBytes) -> PyResult<()> {
        self.inner
            .pong(&payload)
            .map_err(|e| self.closed_error(py, e))
    }

    /// Closes and waits for the closing handshake to end (bounded by the close timeout).
    #[pyo3(signature = (code=1000, reason=""))]
    fn close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        self.inner
            .start_close(code, reason)
            .map_err(|e| to_py_err(py, e, None))?;
        wait_interruptibly(
            py,
            None,
            |slice| slice_timeout(self.inner.wait_ended(slice)),
            |e| to_py_err(py, e, None),
        )?;
        Ok(())
    }

    /// Starts the closing handshake without waiting.
    #[pyo3(signature = (code=1000, reason=""))]
    fn start_close(&self, py: Python<'_>, code: u16, reason: &str) -> PyResult<()> {
        self.inner
            .start_close(code, reason)
            .map_err(|e| to_py_err(py, e, None))
    }

    /// Waits up to `timeout` for the connection to end; True if it has.
    #[pyo3(signature = (timeout=None))]
    fn wait_closed(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let ended = wait_interruptibly(
            py,
            timeout_from(timeout)?,
            |slice| slice_timeout(self.inner.wait_ended(slice)),
            |e| to_py_err(py, e, None),
        )?;
        Ok(ended.is_some())
    }

    /// `(rcvd, sent, rcvd_then_sent)` close frames as `(code, reason)` pairs, once ended.
    #[allow(clippy::type_complexity)]
    fn close_frames(&self) -> Option<(Option<(u16, String)>, Option<(u16, String)>, Option<bool>)> {
        self.inner.ended().map(|ended| {
            let pair = |f: &Option<ferrows_core::CloseFrame>| {
                f.as_ref().map(|f| (f.code, f.reason.clone()))
            };
            (
                pair(&ended.info.rcvd),
                pair(&ended.info.sent),
                ended.info.rcvd_then_sent,
            )
        })
    }

    /// The exception that made the connection fail, if it failed.
    fn failure(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let ended = self.inner.ended()?;
        let cause = ended.cause.as_ref()?;
        Some(shared_to_py_err(py, cause).into_value(py).into_any())
    }

    /// A unique id (UUID 4 string), for logs.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// The negotiated subprotocol.
    /// The permessage-deflate parameters agreed, as the server answered them; None without.
    #[getter]
    fn compression(&self) -> Option<String> {
        self.inner.deflate().map(|agreement| agreement.to_header())
    }

    #[getter]
    fn subprotocol(&self) -> Option<String> {
        self.inner.info().subprotocol.clone()
    }

    /// `(host, port)` of this end.
    #[getter]
    fn local_address(&self) -> Option<(String, u16)> {
        address_tuple(self.inner.info().local_addr)
    }

    /// `(host, port)` of the peer.
    #[getter]
    fn remote_address(&self) -> Option<(String, u16)> {
        address_tuple(self.inner.info().remote_addr)
    }

    /// The latency of the last answered ping, in seconds (0.0 before any).
    #[getter]
    fn latency(&self) -> f64 {
        self.inner.latency().map_or(0.0, |l| l.as_secs_f64())
    }

    /// The opening request as `(method, path, headers)`.
    fn request(&self) -> RequestTuple {
        request_tuple(&self.inner.info().request)
    }

    /// The opening response as `(status, reason, headers, body)`.
    fn response<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        response_tuple(py, &self.inner.info().response)
    }

    /// Received, unconsumed data as charged against the read limit: bytes plus a fixed
    /// overhead per queued chunk.
    #[getter]
    fn inbox_bytes(&self) -> usize {
        self.inner.inbox_bytes()
    }

    /// Bytes sent and not yet written to the socket.
    #[getter]
    fn unsent_bytes(&self) -> usize {
        self.inner.unsent_bytes()
    }

    /// Broadcasts this connection missed for being slow (skipped, or closed by the policy).
    #[getter]
    fn broadcast_skips(&self) -> u64 {
        self.inner.broadcast_skips()
    }
}

/// Waits for the pong answering a ping.
#[pyclass(module = "ferrows._ferrows", name = "PongWaiter", frozen)]
pub struct PyPongWaiter {
    inner: engine::PongWaiter,
}

#[pymethods]
impl PyPongWaiter {
    /// Waits up to `timeout` for the pong; returns the latency in seconds, raises
    /// TimeoutError when `timeout` passes, ConnectionClosed if the connection ends first.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<f64> {
        let latency = wait_interruptibly(
            py,
            timeout_from(timeout)?,
            |slice| slice_timeout(self.inner.wait(slice)),
            |e| to_py_err(py, e, None),
        )?;
        match latency {
            Some(latency) => Ok(latency.as_secs_f64()),
            None => Err(to_py_err(py, Error::Timeout("pong"), None)),
        }
    }

    /// True once the pong arrived or the connection ended.
    fn done(&self) -> bool {
        self.inner.try_result().is_some()
    }
}

/// A connection being opened.
#[pyclass(module = "ferrows._ferrows", name = "PendingConnect", frozen)]
pub struct PyPendingConnect {
    inner: PendingConnect,
}

/// Starts opening a client connection with the options the Python package built. The GIL
/// is released while the engine checks the URI and finds (or first builds) the TLS setup.
#[pyfunction]
pub fn connect(uri: &str, options: &Bound<'_, PyDict>) -> PyResult<PyPendingConnect> {
    let py = options.py();
    let config = client_config(options)?;
    let inner = py
        .detach(|| engine::connect(uri, config))
        .map_err(|e| to_py_err(py, e, None))?;
    Ok(PyPendingConnect { inner })
}

#[pymethods]
impl PyPendingConnect {
    /// Waits for the connection (the open timeout bounds the wait).
    fn wait(&self, py: Python<'_>) -> PyResult<PyConnection> {
        let connection = wait_interruptibly(
            py,
            None,
            |slice| self.inner.wait(slice),
            |e| to_py_err(py, e, None),
        )?
        .expect("waits without a timeout end with a value");
        Ok(PyConnection::new(connection))
    }
}
