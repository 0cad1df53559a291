//! `ferrows._ferrows`: the native module behind the `ferrows` Python package. It is a thin
//! binding of ferrows-core's engine; the public API lives in the Python package.

mod aio;
mod broadcast;
mod connection;
mod convert;
mod errors;
mod metrics;
mod options;
mod proxy;
mod reconnect;
mod server;
mod wait;

use pyo3::prelude::*;

/// Sets how many threads the engine's runtime uses (0: `FERROWS_RUNTIME_THREADS` if set,
/// else one per core the process may run on, at most 4). Call it before the first connection
/// or server; raises ValueError once the runtime runs.
#[pyfunction]
fn set_runtime_threads(py: Python<'_>, count: usize) -> PyResult<()> {
    ferrows_core::engine::runtime::set_worker_threads(count)
        .map_err(|e| errors::to_py_err(py, e, None))
}

#[pymodule]
fn _ferrows(module: &Bound<'_, PyModule>) -> PyResult<()> {
    wait::remember_main_thread();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<connection::PyConnection>()?;
    module.add_class::<connection::PyPongWaiter>()?;
    module.add_class::<connection::PyPendingConnect>()?;
    module.add_class::<server::PyServer>()?;
    module.add_class::<server::PyPendingHandshake>()?;
    module.add_class::<metrics::PyServerMetrics>()?;
    module.add_function(wrap_pyfunction!(connection::connect, module)?)?;
    module.add_function(wrap_pyfunction!(set_runtime_threads, module)?)?;
    module.add_class::<proxy::PyProxyHandshake>()?;
    module.add_class::<reconnect::PyBackoff>()?;
    module.add_function(wrap_pyfunction!(proxy::proxy_from_environment, module)?)?;
    module.add_class::<aio::PyProtocolCore>()?;
    module.add_class::<aio::PyClientHandshake>()?;
    module.add_class::<aio::PyAgreement>()?;
    module.add_class::<aio::PySendBuffer>()?;
    module.add_function(wrap_pyfunction!(aio::client_handshake, module)?)?;
    module.add_function(wrap_pyfunction!(aio::server_parse_request, module)?)?;
    module.add_function(wrap_pyfunction!(aio::server_validate_request, module)?)?;
    module.add_function(wrap_pyfunction!(aio::server_accept_response, module)?)?;
    module.add_function(wrap_pyfunction!(aio::response_bytes, module)?)?;
    module.add_function(wrap_pyfunction!(broadcast::broadcast_engine, module)?)?;
    module.add_function(wrap_pyfunction!(broadcast::broadcast_frames, module)?)?;
    Ok(())
}
