//! The native side of a sync server: accepting handshakes on the caller's thread, so that
//! `process_request` and the handlers run in Python threads, never on the runtime.

use std::sync::Mutex;

use ferrows_core::engine::{PendingHandshake, Server};
use ferrows_core::protocol::handshake::Response;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::connection::PyConnection;
use crate::convert::{address_tuple, headers_from, request_tuple, RequestTuple};
use crate::errors::to_py_err;
use crate::metrics::PyServerMetrics;
use crate::options::server_config;
use crate::wait::{timeout_from, wait_interruptibly};

/// A listening server.
#[pyclass(module = "ferrows._ferrows", name = "Server", frozen)]
pub struct PyServer {
    inner: Server,
}

#[pymethods]
impl PyServer {
    /// Binds `host:port` with the options the Python package built.
    #[new]
    fn new(host: &str, port: u16, options: &Bound<'_, PyDict>) -> PyResult<Self> {
        let py = options.py();
        let config = server_config(options)?;
        let inner = Server::bind(host, port, config).map_err(|e| to_py_err(py, e, None))?;
        Ok(Self { inner })
    }

    /// `(host, port)` the server listens on.
    #[getter]
    fn local_address(&self) -> (String, u16) {
        address_tuple(Some(self.inner.local_addr())).expect("an address is given")
    }

    /// Waits up to `timeout` for a handshake; None when it passes. Raises ConnectionClosed
    /// once the server is shut down.
    #[pyo3(signature = (timeout=None))]
    fn accept(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<PyPendingHandshake>> {
        let pending = wait_interruptibly(
            py,
            timeout_from(timeout)?,
            |slice| self.inner.accept(slice),
            |e| to_py_err(py, e, None),
        )?;
        Ok(pending.map(|p| PyPendingHandshake {
            inner: Mutex::new(Some(p)),
        }))
    }

    /// Stops accepting, closes connections with 1001, waits up to `timeout` for them.
    /// Returns how many were still open at the end.
    #[pyo3(signature = (timeout=None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<usize> {
        let timeout = timeout_from(timeout)?;
        py.detach(|| self.inner.shutdown(timeout))
            .map_err(|e| to_py_err(py, e, None))
    }

    /// The server's counters.
    #[getter]
    fn metrics(&self) -> PyServerMetrics {
        PyServerMetrics(self.inner.metrics().clone())
    }

    /// Open connections.
    #[getter]
    fn connection_count(&self) -> usize {
        self.inner.connection_count()
    }
}

/// A validated opening handshake waiting for a decision: accept or respond, once.
#[pyclass(module = "ferrows._ferrows", name = "PendingHandshake", frozen)]
pub struct PyPendingHandshake {
    inner: Mutex<Option<PendingHandshake>>,
}

impl PyPendingHandshake {
    fn take(&self) -> PyResult<PendingHandshake> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this handshake was already answered"))
    }

    fn with<T>(&self, read: impl FnOnce(&PendingHandshake) -> T) -> PyResult<T> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .map(read)
            .ok_or_else(|| PyRuntimeError::new_err("this handshake was already answered"))
    }
}

#[pymethods]
impl PyPendingHandshake {
    /// The request as `(method, path, headers)`.
    fn request(&self) -> PyResult<RequestTuple> {
        self.with(|p| request_tuple(p.request()))
    }

    /// The subprotocols the client offered.
    fn offered_subprotocols(&self) -> PyResult<Vec<String>> {
        self.with(|p| p.offered_subprotocols().to_vec())
    }

    /// The server's default choice among the offered subprotocols.
    fn default_subprotocol(&self) -> PyResult<Option<String>> {
        self.with(|p| p.default_subprotocol())
    }

    /// `(host, port)` of the client.
    fn remote_address(&self) -> PyResult<Option<(String, u16)>> {
        self.with(|p| address_tuple(p.remote_addr()))
    }

    /// Upgrades the connection.
    #[pyo3(signature = (subprotocol=None, headers=None))]
    fn accept(
        &self,
        py: Python<'_>,
        subprotocol: Option<String>,
        headers: Option<Vec<(String, String)>>,
    ) -> PyResult<PyConnection> {
        let pending = self.take()?;
        let connection = pending
            .accept(subprotocol, &headers_from(headers))
            .map_err(|e| to_py_err(py, e, None))?;
        Ok(PyConnection::new(connection))
    }

    /// Answers with an HTTP response instead of upgrading.
    #[pyo3(signature = (status, reason, headers, body))]
    fn respond(
        &self,
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> PyResult<()> {
        let pending = self.take()?;
        pending.respond(Response {
            status,
            reason,
            headers: headers_from(Some(headers)),
            body,
        });
        Ok(())
    }
}
