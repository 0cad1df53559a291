//! `ferrows_config`: the builder every client and server is configured with. One config may
//! serve many connections; it is copied when a connection or server starts.

use std::ffi::c_char;
use std::time::Duration;

use ferrows_core::engine::{
    ClientConfig, ProxySetting, ServerConfig, TlsServerOptions, Watermarks,
};
use ferrows_core::protocol::handshake::{validate_header, Headers};
use ferrows_core::protocol::proxy::Proxy;
use ferrows_core::protocol::{DeflateConfig, ProtocolConfig};
use ferrows_core::reconnect::BackoffPolicy;

use crate::boundary::{
    bytes_arg, fail, ferrows_result, ferrows_result::*, ffi, invalid, non_null, utf8_arg,
};

/// Settings for clients and servers. Create with `ferrows_config_new`, free with
/// `ferrows_config_free`. Not thread-safe: configure it from one thread, then share it
/// read-only.
pub struct ferrows_config {
    pub(crate) client: ClientConfig,
    pub(crate) server: ServerConfig,
    /// How clients reconnect (None: they do not).
    pub(crate) reconnect: Option<BackoffPolicy>,
}

/// Applies `change` to the config behind `config`.
///
/// # Safety
/// `config` must be NULL or a live config that no other thread uses meanwhile.
unsafe fn with_config(
    config: *mut ferrows_config,
    change: impl FnOnce(&mut ferrows_config) -> ferrows_result,
) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(config);
        // SAFETY: not NULL, and the caller promises a live config used by this thread alone.
        change(unsafe { &mut *config })
    })
}

/// Applies `apply` with the UTF-8 string argument `text` (named `name` in errors).
///
/// # Safety
/// As `with_config`; `text` must be NULL or NUL-terminated.
unsafe fn with_text(
    config: *mut ferrows_config,
    text: *const c_char,
    name: &str,
    apply: impl FnOnce(&mut ferrows_config, &str),
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on (`text` is read only when not NULL).
    unsafe {
        with_config(config, |c| {
            if text.is_null() {
                crate::boundary::set_last_error(format!("argument `{name}` is NULL"));
                return FERROWS_ERR_NULL_PARAM;
            }
            match utf8_arg(text, name) {
                Ok(text) => {
                    apply(c, text);
                    FERROWS_OK
                }
                Err(code) => code,
            }
        })
    }
}

/// Applies `change` to the protocol settings of both clients and servers.
///
/// # Safety
/// As `with_config`.
unsafe fn with_protocols(
    config: *mut ferrows_config,
    change: impl Fn(&mut ProtocolConfig),
) -> ferrows_result {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_config(config, |c| {
            change(&mut c.client.protocol);
            change(&mut c.server.protocol);
            FERROWS_OK
        })
    }
}

fn millis(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms.into()))
}

fn limit(bytes: usize) -> Option<usize> {
    (bytes > 0).then_some(bytes)
}

/// Creates a config with safe defaults: 1 MiB messages, 10 s timeouts, keepalive pings every
/// 20 s (closing with 1011 after 20 s without a pong), system TLS roots.
///
/// # Safety
/// `out` must be a valid pointer; it receives a config to free with `ferrows_config_free`.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_new(out: *mut *mut ferrows_config) -> ferrows_result {
    ffi!(FERROWS_ERR_PANIC, {
        non_null!(out);
        let config = ferrows_config {
            client: ClientConfig::default(),
            server: ServerConfig::default(),
            reconnect: None,
        };
        // SAFETY: not NULL, and the caller promises a writable pointer.
        unsafe { *out = Box::into_raw(Box::new(config)) };
        FERROWS_OK
    })
}

/// Frees a config. NULL is a no-op. Connections and servers made with it are unaffected.
///
/// # Safety
/// `config` must be NULL or a config from `ferrows_config_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_free(config: *mut ferrows_config) {
    ffi!((), {
        if !config.is_null() {
            // SAFETY: a config from `Box::into_raw`, which the caller gives up.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Sets the largest message accepted, in bytes (0: unlimited). Larger ones close with 1009.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_max_message_size(
    config: *mut ferrows_config,
    bytes: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { with_protocols(config, |p| p.max_message_size = limit(bytes)) }
}

/// Sets the largest frame accepted, in bytes (0: only the message limit applies).
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_max_frame_size(
    config: *mut ferrows_config,
    bytes: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { with_protocols(config, |p| p.max_frame_size = limit(bytes)) }
}

/// Sets the most frames one message may span (0: no limit; default 100,000). A message of
/// more frames fails the connection with 1009: each frame costs work its size does not show.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_max_fragments(
    config: *mut ferrows_config,
    frames: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { with_protocols(config, |p| p.max_fragments = limit(frames)) }
}

/// Sets the timeouts in milliseconds (0 disables one): `open_ms` bounds a client's DNS,
/// TCP, TLS and handshake together and a server's handshake; `close_ms` bounds the closing
/// handshake.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_timeouts_ms(
    config: *mut ferrows_config,
    open_ms: u32,
    close_ms: u32,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            c.client.open_timeout = millis(open_ms);
            c.server.handshake_timeout = millis(open_ms);
            c.client.protocol.close_timeout = millis(close_ms);
            c.server.protocol.close_timeout = millis(close_ms);
            FERROWS_OK
        })
    }
}

/// Sets keepalive: a ping every `interval_ms`, and a close with 1011 when no pong arrives
/// within `timeout_ms`. 0 disables either.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_keepalive_ms(
    config: *mut ferrows_config,
    interval_ms: u32,
    timeout_ms: u32,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_protocols(config, |p| {
            p.ping_interval = millis(interval_ms);
            p.ping_timeout = millis(timeout_ms);
        })
    }
}

fn watermarks(low: usize, high: usize) -> Result<Watermarks, ferrows_result> {
    if high == 0 || low > high {
        return Err(invalid("watermarks need 0 <= low <= high and high > 0"));
    }
    Ok(Watermarks { high, low })
}

/// Which byte budget a watermark call sets.
enum Budget {
    Send,
    Receive,
}

/// Sets the watermarks of `budget` for clients and servers.
///
/// # Safety
/// As `with_config`.
unsafe fn set_budget(
    config: *mut ferrows_config,
    budget: Budget,
    low: usize,
    high: usize,
) -> ferrows_result {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_config(config, |c| match watermarks(low, high) {
            Ok(marks) => {
                let (client, server) = match budget {
                    Budget::Send => (&mut c.client.outbox, &mut c.server.outbox),
                    Budget::Receive => (&mut c.client.inbox, &mut c.server.inbox),
                };
                *client = marks;
                *server = marks;
                FERROWS_OK
            }
            Err(code) => code,
        })
    }
}

/// Sets the send budget: above `high` unwritten bytes, sends wait (or return
/// `FERROWS_AGAIN` with a zero timeout) until fewer than `low` remain.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_send_watermarks(
    config: *mut ferrows_config,
    low: usize,
    high: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { set_budget(config, Budget::Send, low, high) }
}

/// Sets the receive budget: above `high` unread bytes, ferrows stops reading the socket
/// until fewer than `low` remain.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_recv_watermarks(
    config: *mut ferrows_config,
    low: usize,
    high: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { set_budget(config, Budget::Receive, low, high) }
}

/// Adds a subprotocol: clients offer them in order, servers pick the first one a client
/// offers.
///
/// # Safety
/// `config` must be a valid config and `name` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_add_subprotocol(
    config: *mut ferrows_config,
    name: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_text(config, name, "name", |c, name| {
            c.client.handshake.subprotocols.push(name.to_owned());
            c.server.handshake.subprotocols.push(name.to_owned());
        })
    }
}

/// Adds header `name: value` to the headers `headers` picks, after checking it by the
/// handshake's own rule (`validate_header`).
///
/// # Safety
/// As `with_config`; `name` and `value` must be NULL or NUL-terminated.
unsafe fn add_header(
    config: *mut ferrows_config,
    name: *const c_char,
    value: *const c_char,
    headers: fn(&mut ferrows_config) -> &mut Headers,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on (`name` and `value` are read only when not
    // NULL).
    unsafe {
        with_config(config, |c| {
            non_null!(name, value);
            let (name, value) = match (utf8_arg(name, "name"), utf8_arg(value, "value")) {
                (Ok(name), Ok(value)) => (name, value),
                (Err(code), _) | (_, Err(code)) => return code,
            };
            if let Err(error) = validate_header(name, value) {
                return fail(&error);
            }
            headers(c).insert(name, value);
            FERROWS_OK
        })
    }
}

/// Adds a header to the opening handshake request of clients made with this config
/// (`Authorization`, `Cookie`...); servers do not send it. The name must be an HTTP token,
/// the value free of control characters other than tab: `FERROWS_ERR_INVALID_ARG`
/// otherwise. The headers the handshake sets itself (`Upgrade`, `Connection`,
/// `Sec-WebSocket-*`) make `ferrows_connect*` fail with `FERROWS_ERR_INVALID_ARG`.
///
/// # Safety
/// `config` must be a valid config; `name` and `value` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_add_request_header(
    config: *mut ferrows_config,
    name: *const c_char,
    value: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        add_header(config, name, value, |c| {
            &mut c.client.handshake.additional_headers
        })
    }
}

/// Adds a header to the responses that servers made with this config send to opening
/// handshakes; clients do not send it. The same rules as
/// `ferrows_config_add_request_header`.
///
/// # Safety
/// `config` must be a valid config; `name` and `value` NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_add_response_header(
    config: *mut ferrows_config,
    name: *const c_char,
    value: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe { add_header(config, name, value, |c| &mut c.server.response_headers) }
}

/// Sets the Origin header a client sends.
///
/// # Safety
/// `config` must be a valid config and `origin` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_origin(
    config: *mut ferrows_config,
    origin: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_text(config, origin, "origin", |c, origin| {
            c.client.handshake.origin = Some(origin.to_owned());
        })
    }
}

/// Adds an Origin a server accepts; once any is added, others get 403. NULL allows
/// requests without an Origin header.
///
/// # Safety
/// `config` must be a valid config; `origin` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_add_allowed_origin(
    config: *mut ferrows_config,
    origin: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            let origin = if origin.is_null() {
                None
            } else {
                match utf8_arg(origin, "origin") {
                    Ok(origin) => Some(origin.to_owned()),
                    Err(code) => return code,
                }
            };
            c.server
                .handshake
                .origins
                .get_or_insert_with(Vec::new)
                .push(origin);
            FERROWS_OK
        })
    }
}

/// Turns permessage-deflate on or off (`enabled` 0 or 1) for clients and servers alike. On by
/// default: clients offer it (`permessage-deflate; client_max_window_bits`), servers accept
/// it with 12-bit windows both ways; compression level 2, memLevel 5, messages under 32
/// bytes sent uncompressed. Turning it on again restores those defaults.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_compression(
    config: *mut ferrows_config,
    enabled: u32,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            let (client, server) = match enabled {
                0 => (None, None),
                1 => (Some(DeflateConfig::client()), Some(DeflateConfig::server())),
                other => return invalid(format!("enabled must be 0 or 1, not {other}")),
            };
            c.client.handshake.deflate = client;
            c.server.handshake.deflate = server;
            FERROWS_OK
        })
    }
}

/// Applies `change` to the deflate settings of clients and servers, checked as a whole:
/// `FERROWS_ERR_INVALID_ARG` (nothing changed) when a value is out of range or compression is off.
///
/// # Safety
/// As `with_config`.
unsafe fn with_deflate(
    config: *mut ferrows_config,
    change: impl Fn(&mut DeflateConfig),
) -> ferrows_result {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        with_config(config, |c| {
            let (Some(client), Some(server)) = (
                c.client.handshake.deflate.as_mut(),
                c.server.handshake.deflate.as_mut(),
            ) else {
                return invalid("compression is off: turn it on first");
            };
            let (mut new_client, mut new_server) = (client.clone(), server.clone());
            change(&mut new_client);
            change(&mut new_server);
            if let Err(error) = new_client.validate() {
                return fail(&error);
            }
            *client = new_client;
            *server = new_server;
            FERROWS_OK
        })
    }
}

/// Sets how messages are compressed: `level` 0 (stored) to 9 (smallest, slowest; default 2),
/// zlib's `mem_level` 1 to 9 (default 5: less memory per connection, a little less
/// compression), and `min_size`: messages shorter than this go uncompressed (default 32).
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_deflate(
    config: *mut ferrows_config,
    level: u32,
    mem_level: u32,
    min_size: usize,
) -> ferrows_result {
    let (level, mem_level) = (
        u8::try_from(level).unwrap_or(u8::MAX),
        u8::try_from(mem_level).unwrap_or(u8::MAX),
    );
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_deflate(config, |d| {
            d.level = level;
            d.mem_level = mem_level;
            d.min_size = min_size;
        })
    }
}

/// Sets the deflate windows (RFC 7692 `*_max_window_bits`), 9 to 15, or 0 for none. A
/// client offers `server_max_window_bits=server_bits` when set, and
/// `client_max_window_bits=client_bits` (the bare parameter when 0). A server compresses with
/// at most `server_bits` (0: 15) and asks a client that offered the parameter for at most
/// `client_bits` (0: the client's choice). Smaller windows cost less memory per connection
/// and compress less.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_deflate_window_bits(
    config: *mut ferrows_config,
    server_bits: u32,
    client_bits: u32,
) -> ferrows_result {
    let bits = |b: u32| (b != 0).then(|| u8::try_from(b).unwrap_or(u8::MAX));
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_deflate(config, |d| {
            d.server_max_window_bits = bits(server_bits);
            d.client_max_window_bits = bits(client_bits);
        })
    }
}

/// Sets RFC 7692's `server_no_context_takeover` and `client_no_context_takeover` (0 or 1):
/// a client asks for them, a server requires them. Without context takeover a side's
/// compressor starts afresh with each message: less compression, and no compressor kept
/// per idle connection.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_deflate_no_context_takeover(
    config: *mut ferrows_config,
    server: u32,
    client: u32,
) -> ferrows_result {
    if server > 1 || client > 1 {
        return invalid("server and client must be 0 or 1");
    }
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_deflate(config, |d| {
            d.server_no_context_takeover = server == 1;
            d.client_no_context_takeover = client == 1;
        })
    }
}

/// Caps a server's open connections; clients beyond the cap get HTTP 503.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_max_connections(
    config: *mut ferrows_config,
    count: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            if count == 0 {
                return invalid("max_connections must be at least 1");
            }
            c.server.max_connections = count;
            FERROWS_OK
        })
    }
}

/// Whether a client trusts the operating system's root certificates (the default: yes).
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_tls_use_system_roots(
    config: *mut ferrows_config,
    enabled: bool,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            c.client.tls.no_system_roots = !enabled;
            FERROWS_OK
        })
    }
}

/// Adds trusted CA certificates (PEM) for a client.
///
/// # Safety
/// `config` must be a valid config and `pem` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_tls_add_ca_pem(
    config: *mut ferrows_config,
    pem: *const u8,
    len: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| match bytes_arg(pem, len) {
            Ok(pem) => {
                c.client
                    .tls
                    .ca_pem
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(pem);
                FERROWS_OK
            }
            Err(code) => code,
        })
    }
}

/// Sets the certificate chain and private key (PEM) a client presents when asked.
///
/// # Safety
/// `config` must be a valid config; `cert` and `key` valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_tls_set_client_cert_pem(
    config: *mut ferrows_config,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            match (bytes_arg(cert, cert_len), bytes_arg(key, key_len)) {
                (Ok(cert), Ok(key)) => {
                    c.client.tls.client_cert_pem = Some(cert.to_vec());
                    c.client.tls.client_key_pem = Some(key.to_vec());
                    FERROWS_OK
                }
                (Err(code), _) | (_, Err(code)) => code,
            }
        })
    }
}

/// Sets a server's certificate chain and private key (PEM): the server then speaks TLS.
///
/// # Safety
/// `config` must be a valid config; `cert` and `key` valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_tls_set_server_cert_pem(
    config: *mut ferrows_config,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            match (bytes_arg(cert, cert_len), bytes_arg(key, key_len)) {
                (Ok(cert), Ok(key)) => {
                    c.server.tls = Some(TlsServerOptions {
                        cert_chain_pem: cert.to_vec(),
                        key_pem: key.to_vec(),
                    });
                    FERROWS_OK
                }
                (Err(code), _) | (_, Err(code)) => code,
            }
        })
    }
}

/// Makes a client verify the server's certificate against `name` instead of the URL's host.
///
/// # Safety
/// `config` must be a valid config and `name` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_tls_set_server_name(
    config: *mut ferrows_config,
    name: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_text(config, name, "name", |c, name| {
            c.client.tls.server_name = Some(name.to_owned());
        })
    }
}

/// Turns off a client's certificate verification. Never the default; for tests and trusted
/// networks only: anyone on the path can then read and change the traffic.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_tls_skip_verification(
    config: *mut ferrows_config,
    skip: bool,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            c.client.tls.insecure_skip_verify = skip;
            FERROWS_OK
        })
    }
}

/// Makes clients connect through the proxy at `url`: `http://`, `https://` (TLS to the
/// proxy, verified like servers), `socks5://` (the client resolves the server's name) or
/// `socks5h://` (the proxy does), with optional `user:password@`. NULL connects directly.
/// Replaces `ferrows_config_set_proxy_from_environment`.
///
/// # Safety
/// `config` must be a valid config and `url` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_proxy(
    config: *mut ferrows_config,
    url: *const c_char,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on (`url` is read only when not NULL).
    unsafe {
        with_config(config, |c| {
            if url.is_null() {
                c.client.proxy = ProxySetting::Off;
                return FERROWS_OK;
            }
            let url = match utf8_arg(url, "url") {
                Ok(url) => url,
                Err(code) => return code,
            };
            match Proxy::parse(url) {
                Ok(proxy) => {
                    c.client.proxy = ProxySetting::Url(proxy);
                    FERROWS_OK
                }
                Err(error) => fail(&error),
            }
        })
    }
}

/// With `enabled`, clients choose their proxy from the environment at each connect, as
/// Python's `websockets` does (`wss_proxy`/`ws_proxy`, `socks_proxy`, `https_proxy`,
/// `http_proxy`, `no_proxy`; docs/proxies.md); without, they connect directly. Off unless
/// set: a C program reads no environment it did not ask for. Replaces
/// `ferrows_config_set_proxy`.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_proxy_from_environment(
    config: *mut ferrows_config,
    enabled: bool,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            c.client.proxy = if enabled {
                ProxySetting::FromEnvironment
            } else {
                ProxySetting::Off
            };
            FERROWS_OK
        })
    }
}

/// Makes clients reconnect: a connection opened with `ferrows_connect` then survives server
/// restarts on one handle (a RECONNECTING event, then OPEN again), and
/// `ferrows_connect_retrying` retries until connected. After a transient failure (refused,
/// reset, timeouts, TLS, 5xx answers), the next attempt waits: at first a random delay up to
/// `initial_delay_ms`, then each delay `factor` (>= 1) times the previous one, up to
/// `max_delay_ms`, of which the fraction `jitter` (0 to 1) is random. After a 4xx or
/// another handshake error, or once `max_attempts` failures in a row (a dropped connection
/// counts as one; 0: no limit), it gives up. `enabled` false turns reconnection off (the
/// default); the other values are then ignored. websockets' values: 5000, 1.618, 90000, 0.5.
///
/// # Safety
/// `config` must be a valid config.
#[no_mangle]
pub unsafe extern "C" fn ferrows_config_set_reconnect(
    config: *mut ferrows_config,
    enabled: bool,
    initial_delay_ms: u32,
    factor: f64,
    max_delay_ms: u32,
    jitter: f64,
    max_attempts: u32,
) -> ferrows_result {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        with_config(config, |c| {
            if !enabled {
                c.reconnect = None;
                return FERROWS_OK;
            }
            let policy = BackoffPolicy {
                initial_delay: Duration::from_millis(initial_delay_ms.into()),
                factor,
                max_delay: Duration::from_millis(max_delay_ms.into()),
                jitter,
                max_attempts: (max_attempts > 0).then_some(max_attempts),
            };
            match policy.validate() {
                Ok(()) => {
                    c.reconnect = Some(policy);
                    FERROWS_OK
                }
                Err(error) => fail(&error),
            }
        })
    }
}
