//! Engine configuration from the option dictionaries the Python package builds (it owns the
//! public keyword arguments and their defaults; this side converts them).

use std::time::Duration;

use ferrows_core::engine::{
    ClientConfig, ProxySetting, ServerConfig, TlsClientOptions, TlsServerOptions, Watermarks,
};
use ferrows_core::protocol::handshake::Headers;
use ferrows_core::protocol::proxy::Proxy;
use ferrows_core::protocol::{DeflateConfig, ProtocolConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::headers_from;
use crate::errors::to_py_err;

/// Reads `key` from `options`; absent or None both give `None`.
fn get<'py, T: FromPyObjectOwned<'py>>(
    options: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<Option<T>> {
    match options.get_item(key)? {
        Some(value) if !value.is_none() => Ok(Some(value.extract().map_err(Into::into)?)),
        _ => Ok(None),
    }
}

fn seconds(options: &Bound<'_, PyDict>, key: &str) -> PyResult<Option<Duration>> {
    match get::<f64>(options, key)? {
        None => Ok(None),
        // Beyond what a Duration holds (or infinity) never fires.
        Some(s) if s > 0.0 => Ok(Duration::try_from_secs_f64(s).ok()),
        // 0 disables, as websockets' ping_interval=None does.
        Some(0.0) => Ok(None),
        Some(s) => Err(PyValueError::new_err(format!(
            "{key} must be >= 0, not {s}"
        ))),
    }
}

fn watermarks(options: &Bound<'_, PyDict>, key: &str, default: Watermarks) -> PyResult<Watermarks> {
    match get::<(usize, usize)>(options, key)? {
        None => Ok(default),
        Some((high, low)) if low <= high && high > 0 => Ok(Watermarks { high, low }),
        Some((high, low)) => Err(PyValueError::new_err(format!(
            "{key} needs 0 <= low <= high and high > 0, got high={high} low={low}"
        ))),
    }
}

/// The protocol's limits and timers, the same options and rules for both Python faces.
pub fn protocol(options: &Bound<'_, PyDict>) -> PyResult<ProtocolConfig> {
    Ok(ProtocolConfig {
        max_message_size: get(options, "max_size")?,
        max_frame_size: get(options, "max_frame_size")?,
        // Absent: the core's default; None: no limit.
        max_fragments: if options.contains("max_fragments")? {
            get(options, "max_fragments")?
        } else {
            ProtocolConfig::default().max_fragments
        },
        close_timeout: seconds(options, "close_timeout")?,
        ping_interval: seconds(options, "ping_interval")?,
        ping_timeout: seconds(options, "ping_timeout")?,
    })
}

/// The permessage-deflate settings of the `compression` option, the same for both faces:
/// absent or "deflate" is the role's `default`, None turns it off, and a dict (from
/// `ferrows.Deflate`) gives every setting.
pub fn deflate(
    options: &Bound<'_, PyDict>,
    default: DeflateConfig,
) -> PyResult<Option<DeflateConfig>> {
    let Some(value) = options.get_item("compression")? else {
        return Ok(Some(default));
    };
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(name) = value.extract::<String>() {
        return match name.as_str() {
            "deflate" => Ok(Some(default)),
            _ => Err(PyValueError::new_err(format!(
                "unsupported compression {name:?}: use \"deflate\", a ferrows.Deflate or None"
            ))),
        };
    }
    let settings = value.cast::<PyDict>()?;
    let config = DeflateConfig {
        level: get(settings, "level")?.unwrap_or(default.level),
        mem_level: get(settings, "mem_level")?.unwrap_or(default.mem_level),
        min_size: get(settings, "min_size")?.unwrap_or(default.min_size),
        server_max_window_bits: get(settings, "server_max_window_bits")?,
        client_max_window_bits: get(settings, "client_max_window_bits")?,
        server_no_context_takeover: get(settings, "server_no_context_takeover")?.unwrap_or(false),
        client_no_context_takeover: get(settings, "client_no_context_takeover")?.unwrap_or(false),
    };
    config
        .validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(Some(config))
}

fn headers(options: &Bound<'_, PyDict>, key: &str) -> PyResult<Headers> {
    Ok(headers_from(get(options, key)?))
}

/// The client configuration for `ferrows.sync.client.connect`'s options.
pub fn client_config(options: &Bound<'_, PyDict>) -> PyResult<ClientConfig> {
    let defaults = ClientConfig::default();
    let mut config = ClientConfig {
        protocol: protocol(options)?,
        open_timeout: seconds(options, "open_timeout")?,
        inbox: watermarks(options, "read_limit", defaults.inbox)?,
        outbox: watermarks(options, "write_limit", defaults.outbox)?,
        tls: TlsClientOptions {
            ca_pem: get(options, "ca_data")?,
            no_system_roots: get(options, "no_system_roots")?.unwrap_or(false),
            client_cert_pem: get(options, "cert_data")?,
            client_key_pem: get(options, "key_data")?,
            server_name: get(options, "server_hostname")?,
            insecure_skip_verify: get(options, "insecure_skip_verify")?.unwrap_or(false),
            no_session_resumption: !get(options, "tls_session_resumption")?.unwrap_or(true),
        },
        ..defaults
    };
    config.handshake.origin = get(options, "origin")?;
    config.handshake.subprotocols = get(options, "subprotocols")?.unwrap_or_default();
    config.handshake.additional_headers = headers(options, "additional_headers")?;
    config.handshake.user_agent = get(options, "user_agent")?;
    config.handshake.deflate = deflate(options, DeflateConfig::client())?;
    // The Python package resolves `proxy=True` from `os.environ` itself (crate::proxy).
    if let Some(url) = get::<String>(options, "proxy")? {
        let py = options.py();
        let proxy = Proxy::parse(&url).map_err(|e| to_py_err(py, e, None))?;
        config.proxy = ProxySetting::Url(proxy);
    }
    Ok(config)
}

/// The server configuration for `ferrows.sync.server.serve`'s options.
pub fn server_config(options: &Bound<'_, PyDict>) -> PyResult<ServerConfig> {
    let defaults = ServerConfig::default();
    let tls = match (get(options, "cert_data")?, get(options, "key_data")?) {
        (Some(cert_chain_pem), Some(key_pem)) => Some(TlsServerOptions {
            cert_chain_pem,
            key_pem,
        }),
        (None, None) => None,
        _ => {
            return Err(PyValueError::new_err(
                "a TLS server needs both a certificate and a key",
            ))
        }
    };
    let mut config = ServerConfig {
        protocol: protocol(options)?,
        tls,
        handshake_timeout: seconds(options, "open_timeout")?,
        max_connections: get(options, "max_connections")?.unwrap_or(defaults.max_connections),
        backlog: get(options, "backlog")?,
        inbox: watermarks(options, "read_limit", defaults.inbox)?,
        outbox: watermarks(options, "write_limit", defaults.outbox)?,
        response_headers: headers(options, "response_headers")?,
        ..defaults
    };
    config.handshake.subprotocols = get(options, "subprotocols")?.unwrap_or_default();
    config.handshake.origins = get(options, "origins")?;
    config.handshake.deflate = deflate(options, DeflateConfig::server())?;
    Ok(config)
}
