//! Proxies for the Python faces: the environment's choice, read from `os.environ`, and the
//! core's sans-IO tunnel handshake for the asyncio face, which moves the bytes itself.

use ferrows_core::protocol::proxy::{self, Proxy, ProxyHandshake};
use ferrows_core::protocol::uri::WsUri;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py_err;

/// The proxy URL `environ` (a mapping, `os.environ`) names for `uri`, or None: the same
/// variables, order and `no_proxy` rules as `websockets` (docs/proxies.md).
#[pyfunction]
pub fn proxy_from_environment(uri: &str, environ: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let py = environ.py();
    let uri = WsUri::parse(uri).map_err(|e| to_py_err(py, e, None))?;
    let failure = std::cell::RefCell::new(None);
    let chosen = proxy::proxy_from_env(&uri, |name| {
        match environ
            .call_method1("get", (name,))
            .and_then(|value| value.extract::<Option<String>>())
        {
            Ok(value) => value,
            Err(error) => {
                failure.borrow_mut().get_or_insert(error);
                None
            }
        }
    });
    match failure.into_inner() {
        Some(error) => Err(error),
        None => Ok(chosen),
    }
}

/// A tunnel being opened through a proxy: write `output()`, feed replies to `receive()`.
#[pyclass(module = "ferrows._ferrows", name = "ProxyHandshake")]
pub struct PyProxyHandshake {
    proxy: Proxy,
    inner: Option<ProxyHandshake>,
}

#[pymethods]
impl PyProxyHandshake {
    /// Parses the proxy URL (raises InvalidProxy); `start` begins the handshake.
    #[new]
    fn new(py: Python<'_>, url: &str) -> PyResult<Self> {
        let proxy = Proxy::parse(url).map_err(|e| to_py_err(py, e, None))?;
        Ok(Self { proxy, inner: None })
    }

    /// Where to connect: the proxy's host and port.
    fn address(&self) -> (String, u16) {
        (self.proxy.host.clone(), self.proxy.port)
    }

    /// True for an `https://` proxy: TLS to the proxy first.
    fn is_tls(&self) -> bool {
        self.proxy.is_tls()
    }

    /// True for `socks5://`: the client resolves the server's name and passes its address.
    fn resolves_locally(&self) -> bool {
        self.proxy.resolves_locally()
    }

    /// Starts the handshake for a tunnel to `host:port`.
    #[pyo3(signature = (host, port, user_agent=None))]
    fn start(
        &mut self,
        py: Python<'_>,
        host: &str,
        port: u16,
        user_agent: Option<&str>,
    ) -> PyResult<()> {
        let handshake = ProxyHandshake::new(&self.proxy, host, port, user_agent)
            .map_err(|e| to_py_err(py, e, None))?;
        self.inner = Some(handshake);
        Ok(())
    }

    /// The bytes to write to the proxy now (empty: none).
    fn output<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.handshake()?.output()))
    }

    /// Consumes bytes from the proxy; True once the tunnel is open. Raises ProxyError
    /// subclasses on a refusal or a bad reply.
    fn receive(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<bool> {
        self.handshake()?
            .receive(data)
            .map_err(|e| to_py_err(py, e, None))
    }
}

impl PyProxyHandshake {
    fn handshake(&mut self) -> PyResult<&mut ProxyHandshake> {
        self.inner
            .as_mut()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("call start() first"))
    }
}
