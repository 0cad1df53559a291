//! Plain-tuple views of core values for the Python package, which wraps them in its own
//! classes (`ferrows.http11.Request`, `Response`, `Headers`).

use std::net::SocketAddr;

use ferrows_core::protocol::handshake::{Headers, Request, Response};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Headers as a list of (name, value) pairs, in order.
pub fn headers_list(headers: &Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Builds core headers from (name, value) pairs.
pub fn headers_from(pairs: Option<Vec<(String, String)>>) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in pairs.unwrap_or_default() {
        headers.insert(&name, &value);
    }
    headers
}

/// A request as Python sees it: `(method, path, headers)`.
pub type RequestTuple = (String, String, Vec<(String, String)>);

/// A request as `(method, path, headers)`.
pub fn request_tuple(request: &Request) -> RequestTuple {
    (
        request.method.clone(),
        request.path.clone(),
        headers_list(&request.headers),
    )
}

/// A response as `(status, reason, headers, body)`.
pub fn response_tuple<'py>(
    py: Python<'py>,
    response: &Response,
) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
    (
        response.status,
        response.reason.clone(),
        headers_list(&response.headers),
        PyBytes::new(py, &response.body),
    )
        .into_pyobject(py)
}

/// A socket address as Python's `(host, port)`.
pub fn address_tuple(address: Option<SocketAddr>) -> Option<(String, u16)> {
    address.map(|a| (a.ip().to_string(), a.port()))
}
