//! The HTTP/1.1 opening handshake (RFC 6455 §4): building, parsing and checking the client's
//! request and the server's response. Bytes in, values out; the engine does the I/O.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

use crate::error::{Error, Result};
use crate::protocol::deflate::{self, Agreement, DeflateConfig};
use crate::protocol::uri::WsUri;

/// The `User-Agent` a client sends unless its options name another.
pub const DEFAULT_USER_AGENT: &str = concat!("ferrows/", env!("CARGO_PKG_VERSION"));

/// Handshake headers the client sets itself; `additional_headers` may not carry them.
const CLIENT_MANAGED: [&str; 6] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
];

/// The headers of a 426 response, telling the client which protocol to upgrade to.
const UPGRADE_REQUIRED: [(&str, &str); 2] = [("Upgrade", "websocket"), ("Connection", "Upgrade")];

/// Optional whitespace around list elements (RFC 9110 §5.6.3).
const OWS: [char; 2] = [' ', '\t'];

/// HTTP header fields: ordered, looked up case-insensitively, names kept as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of header `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of header `name` (case-insensitive), in order: a header may repeat.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends a header, keeping any earlier ones of the same name.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// All headers as `(name, value)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether header `name` (case-insensitive) is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Checks that every name is an HTTP token and no value holds CR, LF or another control
    /// character, so user-supplied headers cannot split a message; [`Error::Config`] if not.
    pub fn validate(&self) -> Result<()> {
        self.iter()
            .try_for_each(|(name, value)| validate_header(name, value))
    }
}

/// Checks one header: the name an HTTP token, the value free of CR, LF and other control
/// characters (tab aside), so it cannot split a message; [`Error::Config`] if not. The rule
/// of [`Headers::validate`], for callers that take headers one at a time.
pub fn validate_header(name: &str, value: &str) -> Result<()> {
    if !is_token(name) {
        return Err(Error::Config(format!("invalid header name {name:?}")));
    }
    if !is_field_value(value) {
        return Err(Error::Config(format!(
            "invalid value for header {name}: {value:?}"
        )));
    }
    Ok(())
}

/// Takes `(name, value)` pairs as they are, in order.
impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }
}

/// An HTTP request head: the client's opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method; `GET` for a WebSocket handshake.
    pub method: String,
    /// The request target: the resource name, with its query.
    pub path: String,
    /// The header fields, in order.
    pub headers: Headers,
}

/// An HTTP response: the server's answer to the opening handshake (101, or a refusal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The header fields, in order.
    pub headers: Headers,
    /// The body; empty for a 101 and for a parsed head until the engine reads the body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the standard reason phrase for `status`, and a plain-text
    /// `Content-Type` when `body` is not empty: what a server answers instead of upgrading.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        let body = body.into();
        let mut headers = Headers::new();
        if !body.is_empty() {
            headers.insert("Content-Type", "text/plain; charset=utf-8");
        }
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers,
            body,
        }
    }

    /// The HTTP/1.1 serialization, adding `Content-Length` when the body is not empty and
    /// the header is absent. Control characters in the reason become spaces and headers
    /// that fail [`Headers::validate`] are left out, so the message can never be split.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason: String = self
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status).into_bytes();
        write_headers(&mut out, &self.headers);
        if !self.body.is_empty() && !self.headers.contains("Content-Length") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Bounds on a handshake head, so a peer cannot make us buffer without end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// The largest head (request or status line plus headers) accepted, in bytes.
    pub max_head_bytes: usize,
    /// The most header lines accepted.
    pub max_headers: usize,
    /// The longest single line accepted, in bytes (without its CRLF).
    pub max_line_bytes: usize,
}

/// 16 KiB heads, 128 headers, 8 KiB lines.
impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 << 10,
            max_headers: 128,
            max_line_bytes: 8 << 10,
        }
    }
}

/// What a client asks for in its opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// Subprotocols offered, in preference order (`Sec-WebSocket-Protocol`).
    pub subprotocols: Vec<String>,
    /// Extension offers (`Sec-WebSocket-Extensions` elements) besides permessage-deflate,
    /// which is the `deflate` option's.
    pub extensions: Vec<String>,
    /// The permessage-deflate offer; `None` offers no compression.
    pub deflate: Option<DeflateConfig>,
    /// Extra headers, sent after the handshake's own. A `Host`, `Origin`, `Authorization` or
    /// `User-Agent` here replaces the one the handshake would send.
    pub additional_headers: Headers,
    /// The `User-Agent`; `None` sends [`DEFAULT_USER_AGENT`].
    pub user_agent: Option<String>,
}

/// Clients offer permessage-deflate by default ([`DeflateConfig::client`]).
impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            origin: None,
            subprotocols: Vec::new(),
            extensions: Vec::new(),
            deflate: Some(DeflateConfig::client()),
            additional_headers: Headers::new(),
            user_agent: None,
        }
    }
}

/// A client's opening handshake: the request to send, and the key to check the answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHandshake {
    key: String,
    request: Request,
    offered_subprotocols: Vec<String>,
    offered_extensions: Vec<String>,
    offered_deflate: Option<DeflateConfig>,
}

/// What the server agreed to in its 101 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol the server selected, one we offered.
    pub subprotocol: Option<String>,
    /// The accepted extensions as sent (name plus parameters), each one we offered.
    pub extensions: Vec<String>,
    /// The permessage-deflate parameters, when the server accepted our offer.
    pub deflate: Option<Agreement>,
}

impl ClientHandshake {
    /// Builds the request for `uri` (RFC 6455 §4.1) with a fresh random key. Subprotocols
    /// must be tokens; headers must be valid and may not override the handshake's own
    /// (`Upgrade`, `Connection`, `Sec-WebSocket-*`); [`Error::Config`] otherwise.
    pub fn new(uri: &WsUri, options: &ClientOptions) -> Result<ClientHandshake> {
        if uri.resource.is_empty() || !uri.resource.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(format!(
                "invalid resource name {:?}",
                uri.resource
            )));
        }
        if let Some(bad) = options.subprotocols.iter().find(|p| !is_token(p)) {
            return Err(Error::Config(format!(
                "invalid subprotocol {bad:?}: subprotocols must be HTTP tokens"
            )));
        }
        if let Some(bad) = options
            .extensions
            .iter()
            .find(|offer| !is_token(extension_name(offer)))
        {
            return Err(Error::Config(format!("invalid extension offer {bad:?}")));
        }
        if let Some(deflate) = &options.deflate {
            deflate.validate()?;
        }
        let mut offers = options.extensions.clone();
        if offers
            .iter()
            .any(|offer| extension_name(offer).eq_ignore_ascii_case(deflate::EXTENSION_NAME))
        {
            return Err(Error::Config(
                "permessage-deflate is offered by the deflate option, not as an extension".into(),
            ));
        }
        offers.extend(options.deflate.as_ref().map(DeflateConfig::offer));
        let extra = &options.additional_headers;
        if let Some(name) = CLIENT_MANAGED.iter().find(|name| extra.contains(name)) {
            return Err(Error::Config(format!(
                "the {name} header is set by the handshake; use the options instead"
            )));
        }
        let key = generate_key();
        let mut headers = Headers::new();
        if !extra.contains("Host") {
            headers.insert("Host", &uri.host_header());
        }
        headers.insert("Upgrade", "websocket");
        headers.insert("Connection", "Upgrade");
        headers.insert("Sec-WebSocket-Key", &key);
        headers.insert("Sec-WebSocket-Version", "13");
        if let (Some(origin), false) = (&options.origin, extra.contains("Origin")) {
            headers.insert("Origin", origin);
        }
        if !options.subprotocols.is_empty() {
            headers.insert("Sec-WebSocket-Protocol", &options.subprotocols.join(", "));
        }
        if !offers.is_empty() {
            headers.insert("Sec-WebSocket-Extensions", &offers.join(", "));
        }
        if let (Some((user, password)), false) = (&uri.user_info, extra.contains("Authorization")) {
            let credentials = BASE64.encode(format!("{user}:{password}"));
            headers.insert("Authorization", &format!("Basic {credentials}"));
        }
        if !extra.contains("User-Agent") {
            let agent = options.user_agent.as_deref().unwrap_or(DEFAULT_USER_AGENT);
            headers.insert("User-Agent", agent);
        }
        for (name, value) in extra.iter() {
            headers.insert(name, value);
        }
        headers.validate()?;
        Ok(ClientHandshake {
            key,
            request: Request {
                method: "GET".into(),
                path: uri.resource.clone(),
                headers,
            },
            offered_subprotocols: options.subprotocols.clone(),
            offered_extensions: offers,
            offered_deflate: options.deflate.clone(),
        })
    }

    /// The request to send, as a value (for logs and for the connection's handshake info).
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request serialized for the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let request = &self.request;
        let mut out = format!("{} {} HTTP/1.1\r\n", request.method, request.path).into_bytes();
        write_headers(&mut out, &request.headers);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The `Sec-WebSocket-Key` sent, which the server's accept key must derive from.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Parses the response head at the start of `buf`. `Ok(None)` means more bytes are
    /// needed; `usize` is the length of the head (bytes after it are the body or frames).
    /// The body is left empty. A head over the limits is [`Error::InvalidMessage`].
    pub fn parse_response(
        buf: &[u8],
        limits: &HandshakeLimits,
    ) -> Result<Option<(Response, usize)>> {
        let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut parsed = httparse::Response::new(&mut slots);
        let status = parsed
            .parse(buf)
            .map_err(|e| malformed("response", e, limits))?;
        let httparse::Status::Complete(used) = status else {
            check_head(buf, limits)?;
            return Ok(None);
        };
        check_head(&buf[..used], limits)?;
        let response = Response {
            status: parsed.code.unwrap_or_default(),
            reason: parsed.reason.unwrap_or_default().to_owned(),
            headers: collect_headers(parsed.headers)?,
            body: Vec::new(),
        };
        Ok(Some((response, used)))
    }

    /// The body length a response announces with a valid `Content-Length`, so the engine
    /// can read (a bounded part of) a refusal's body; `None` when absent, invalid or chunked.
    pub fn body_length(response: &Response) -> Option<usize> {
        if response.headers.contains("Transfer-Encoding") {
            return None;
        }
        let value = response.headers.get("Content-Length")?;
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        value.parse().ok()
    }

    /// Checks the server's response against this request (RFC 6455 §4.1, steps 1 to 6 of
    /// the client's validation): status 101, `Upgrade` and `Connection` tokens, the accept
    /// key, and a subprotocol and extensions among those offered.
    pub fn validate(&self, response: &Response) -> Result<Accepted> {
        if response.status != 101 {
            return Err(Error::InvalidStatus(Box::new(response.clone())));
        }
        let headers = &response.headers;
        require_token(headers, "Upgrade", "websocket")?;
        require_token(headers, "Connection", "upgrade")?;
        let accept = single(headers, "Sec-WebSocket-Accept")?;
        if accept != derive_accept_key(self.key.as_bytes()) {
            return Err(invalid_header(
                "Sec-WebSocket-Accept",
                format!("{accept:?} does not match the key sent"),
            ));
        }
        let protocols: Vec<&str> = list_items(headers, "Sec-WebSocket-Protocol").collect();
        let subprotocol = match protocols.as_slice() {
            [] => None,
            [protocol] if self.offered_subprotocols.iter().any(|p| p == protocol) => {
                Some((*protocol).to_owned())
            }
            [protocol] => {
                return Err(Error::Negotiation(format!(
                    "server selected subprotocol {protocol:?}, which was not offered"
                )))
            }
            _ => {
                return Err(Error::Negotiation(format!(
                    "server selected several subprotocols: {}",
                    protocols.join(", ")
                )))
            }
        };
        let offered: Vec<&str> = self
            .offered_extensions
            .iter()
            .flat_map(|offer| split_list(offer))
            .map(extension_name)
            .collect();
        let mut extensions = Vec::new();
        for extension in list_items(headers, "Sec-WebSocket-Extensions") {
            let name = extension_name(extension);
            if !offered.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                return Err(Error::Negotiation(format!(
                    "server accepted extension {name:?}, which was not offered"
                )));
            }
            extensions.push(extension.to_owned());
        }
        let deflate = match &self.offered_deflate {
            Some(offered) => deflate::check_answer(&extensions, offered)?,
            None => None,
        };
        Ok(Accepted {
            subprotocol,
            extensions,
            deflate,
        })
    }
}

/// How a server checks and answers opening handshakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// Our subprotocols, in preference order.
    pub subprotocols: Vec<String>,
    /// The allowed `Origin` values; `None` allows any. An entry `None` allows requests
    /// without an `Origin` header (non-browser clients).
    pub origins: Option<Vec<Option<String>>>,
    /// How permessage-deflate offers are answered; `None` declines them.
    pub deflate: Option<DeflateConfig>,
}

/// Servers accept permessage-deflate by default ([`DeflateConfig::server`]).
impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            subprotocols: Vec::new(),
            origins: None,
            deflate: Some(DeflateConfig::server()),
        }
    }
}

/// What a valid client request asks for, extracted by [`validate_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRequest {
    /// The `Sec-WebSocket-Key`, for the accept key.
    pub key: String,
    /// The subprotocols offered, in the client's order.
    pub subprotocols: Vec<String>,
    /// The extension offers as sent (name plus parameters), in order.
    pub extensions: Vec<String>,
    /// The permessage-deflate offer accepted, when the options accept one: answer it with
    /// [`Agreement::to_header`] in the response's `Sec-WebSocket-Extensions`.
    pub deflate: Option<Agreement>,
    /// The `Origin` header, if present.
    pub origin: Option<String>,
}

/// Parses the request head at the start of `buf`, like
/// [`ClientHandshake::parse_response`]. Only HTTP/1.1 is accepted, and a request with a
/// body (`Content-Length` over 0, or `Transfer-Encoding`) is [`Error::InvalidMessage`].
pub fn parse_request(buf: &[u8], limits: &HandshakeLimits) -> Result<Option<(Request, usize)>> {
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut slots);
    let status = parsed
        .parse(buf)
        .map_err(|e| malformed("request", e, limits))?;
    let httparse::Status::Complete(used) = status else {
        check_head(buf, limits)?;
        return Ok(None);
    };
    check_head(&buf[..used], limits)?;
    if parsed.version != Some(1) {
        return Err(Error::InvalidMessage(
            "the WebSocket handshake needs HTTP/1.1".into(),
        ));
    }
    let headers = collect_headers(parsed.headers)?;
    let has_body = headers.contains("Transfer-Encoding")
        || headers
            .get_all("Content-Length")
            .any(|length| length.is_empty() || length.bytes().any(|b| b != b'0'));
    if has_body {
        return Err(Error::InvalidMessage(
            "a handshake request must not have a body".into(),
        ));
    }
    let request = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        path: parsed.path.unwrap_or_default().to_owned(),
        headers,
    };
    Ok(Some((request, used)))
}

/// Checks a client's request (RFC 6455 §4.2.1) and the origin allow-list. On failure,
/// returns the error with the response to send: 405, 400, 426 (with the `Upgrade` or
/// `Sec-WebSocket-Version` header the client needs) or 403, with a plain-text explanation.
// The large `Err` is deliberate: a refusal happens at most once per connection.
#[allow(clippy::result_large_err)]
pub fn validate_request(
    request: &Request,
    options: &ServerOptions,
) -> Result<ValidRequest, (Error, Response)> {
    let headers = &request.headers;
    if request.method != "GET" {
        let error = Error::InvalidMessage(format!(
            "unsupported HTTP method {}; expected GET",
            request.method
        ));
        return Err(refuse(405, error, &[("Allow", "GET")]));
    }
    single(headers, "Host").map_err(|e| refuse(400, e, &[]))?;
    if let Err(error) = require_token(headers, "Upgrade", "websocket") {
        let mut refusal = refuse(426, error, &UPGRADE_REQUIRED);
        refusal.1.body.extend_from_slice(
            b"\nYou cannot access a WebSocket server directly with a browser. \
              You need a WebSocket client.\n",
        );
        return Err(refusal);
    }
    require_token(headers, "Connection", "upgrade").map_err(|e| refuse(400, e, &[]))?;
    let key = single(headers, "Sec-WebSocket-Key").map_err(|e| refuse(400, e, &[]))?;
    if !BASE64.decode(key).is_ok_and(|raw| raw.len() == 16) {
        let error = invalid_header(
            "Sec-WebSocket-Key",
            format!("{key:?} is not the base64 encoding of 16 bytes"),
        );
        return Err(refuse(400, error, &[]));
    }
    let version = single(headers, "Sec-WebSocket-Version").and_then(|version| match version {
        "13" => Ok(version),
        _ => Err(invalid_header(
            "Sec-WebSocket-Version",
            format!("unsupported version {version:?}; expected 13"),
        )),
    });
    if let Err(error) = version {
        let mut needed = UPGRADE_REQUIRED.to_vec();
        needed.push(("Sec-WebSocket-Version", "13"));
        return Err(refuse(426, error, &needed));
    }
    let origin = if headers.contains("Origin") {
        Some(single(headers, "Origin").map_err(|e| refuse(400, e, &[]))?)
    } else {
        None
    };
    if let Some(allowed) = &options.origins {
        if !allowed.iter().any(|o| o.as_deref() == origin) {
            let error = Error::InvalidOrigin(origin.map(str::to_owned));
            return Err(refuse(403, error, &[]));
        }
    }
    let subprotocols: Vec<String> = list_items(headers, "Sec-WebSocket-Protocol")
        .map(str::to_owned)
        .collect();
    if let Some(bad) = subprotocols.iter().find(|p| !is_token(p)) {
        let error = invalid_header(
            "Sec-WebSocket-Protocol",
            format!("{bad:?} is not a valid subprotocol"),
        );
        return Err(refuse(400, error, &[]));
    }
    let extensions: Vec<String> = list_items(headers, "Sec-WebSocket-Extensions")
        .map(str::to_owned)
        .collect();
    let deflate = options
        .deflate
        .as_ref()
        .and_then(|config| deflate::negotiate(&extensions, config));
    Ok(ValidRequest {
        key: key.to_owned(),
        subprotocols,
        extensions,
        deflate,
        origin: origin.map(str::to_owned),
    })
}

/// The subprotocol to accept: the first of ours (server preference) the client offered.
pub fn select_subprotocol(offered: &[String], ours: &[String]) -> Option<String> {
    ours.iter().find(|p| offered.contains(p)).cloned()
}

/// The 101 response accepting a handshake (RFC 6455 §4.2.2), with the accept key derived
/// from the client's `key`, the chosen subprotocol and extensions, then `extra_headers`
/// (such as `Server`) unless they would repeat one of the handshake's own headers. An extra
/// header may repeat (an ASGI application's `Server` after the server's own).
pub fn accept_response(
    key: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &Headers,
) -> Response {
    let mut headers = Headers::new();
    headers.insert("Upgrade", "websocket");
    headers.insert("Connection", "Upgrade");
    headers.insert("Sec-WebSocket-Accept", &derive_accept_key(key.as_bytes()));
    if let Some(protocol) = subprotocol {
        headers.insert("Sec-WebSocket-Protocol", protocol);
    }
    if let Some(extensions) = extensions {
        headers.insert("Sec-WebSocket-Extensions", extensions);
    }
    let own = headers.clone();
    for (name, value) in extra_headers.iter() {
        if !own.contains(name) {
            headers.insert(name, value);
        }
    }
    Response {
        status: 101,
        reason: "Switching Protocols".into(),
        headers,
        body: Vec::new(),
    }
}

/// The refusal for a failed request check: `error` plus a response explaining it.
fn refuse(status: u16, error: Error, headers: &[(&str, &str)]) -> (Error, Response) {
    let mut response = Response::new(
        status,
        format!("Failed to open a WebSocket connection: {error}.\n"),
    );
    for (name, value) in headers {
        response.headers.insert(name, value);
    }
    if !response.headers.contains("Connection") {
        response.headers.insert("Connection", "close");
    }
    (error, response)
}

fn reason_phrase(status: u16) -> &'static str {
    tungstenite::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("")
}

/// Writes `name: value` lines for the headers that are safe to put on the wire.
fn write_headers(out: &mut Vec<u8>, headers: &Headers) {
    for (name, value) in headers.iter() {
        if is_token(name) && is_field_value(value) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// An HTTP token (RFC 9110 §5.6.2): what header names, subprotocols and extension names are.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value without control characters other than tab (RFC 9110 §5.5).
fn is_field_value(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80)
}

/// Splits a comma-separated header list (RFC 9110 §5.6.1), keeping quoted strings whole,
/// trimming whitespace and dropping empty elements.
fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            items.push(&value[start..i]);
            start = i + 1;
        }
    }
    items.push(&value[start..]);
    items
        .into_iter()
        .map(|item| item.trim_matches(OWS))
        .filter(|item| !item.is_empty())
        .collect()
}

/// The list elements of every `name` header, in order.
fn list_items<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).flat_map(split_list)
}

/// The name of an extension offer or acceptance: what precedes its `;` parameters.
fn extension_name(extension: &str) -> &str {
    extension
        .split_once(';')
        .map_or(extension, |(name, _)| name)
        .trim_matches(OWS)
}

fn invalid_header(name: &str, reason: impl Into<String>) -> Error {
    Error::InvalidHeader {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Requires that list header `name` contain `token` (case-insensitive).
fn require_token(headers: &Headers, name: &str, token: &str) -> Result<()> {
    if list_items(headers, name).any(|item| item.eq_ignore_ascii_case(token)) {
        return Ok(());
    }
    let values: Vec<&str> = headers.get_all(name).collect();
    Err(invalid_header(
        name,
        if values.is_empty() {
            "missing".to_owned()
        } else {
            format!("expected {token:?}, got {:?}", values.join(", "))
        },
    ))
}

/// The value of a header that must appear exactly once.
fn single<'a>(headers: &'a Headers, name: &str) -> Result<&'a str> {
    let mut values = headers.get_all(name);
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(invalid_header(name, "missing")),
        (Some(_), Some(_)) => Err(invalid_header(name, "more than one")),
    }
}

/// Checks a head (complete, or what has arrived of it) against the line and size limits.
fn check_head(head: &[u8], limits: &HandshakeLimits) -> Result<()> {
    let too_long = head.split(|&b| b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        line.len() > limits.max_line_bytes
    });
    if too_long {
        return Err(Error::InvalidMessage(format!(
            "line longer than {} bytes",
            limits.max_line_bytes
        )));
    }
    if head.len() > limits.max_head_bytes {
        return Err(Error::InvalidMessage(format!(
            "head larger than {} bytes",
            limits.max_head_bytes
        )));
    }
    Ok(())
}

fn malformed(what: &str, error: httparse::Error, limits: &HandshakeLimits) -> Error {
    Error::InvalidMessage(match error {
        httparse::Error::TooManyHeaders => {
            format!("too many headers (limit: {})", limits.max_headers)
        }
        other => format!("malformed HTTP {what}: {other}"),
    })
}

/// Copies parsed headers, requiring UTF-8 values.
fn collect_headers(parsed: &[httparse::Header<'_>]) -> Result<Headers> {
    let mut headers = Headers::new();
    for header in parsed {
        let value = std::str::from_utf8(header.value).map_err(|_| {
            Error::InvalidMessage(format!("{} header value is not valid UTF-8", header.name))
        })?;
        headers.insert(header.name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nonce of the RFC 6455 §1.3 example, and its accept key.
    const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn limits() -> HandshakeLimits {
        HandshakeLimits::default()
    }

    fn uri(text: &str) -> WsUri {
        WsUri::parse(text).unwrap()
    }

    fn client(options: &ClientOptions) -> ClientHandshake {
        ClientHandshake::new(&uri("ws://example.com/chat"), options).unwrap()
    }

    /// The sample client handshake, its key replaced by the RFC's.
    fn sample_client(subprotocols: &[&str], extensions: &[&str]) -> ClientHandshake {
        let options = ClientOptions {
            subprotocols: subprotocols.iter().map(|s| s.to_string()).collect(),
            extensions: extensions.iter().map(|s| s.to_string()).collect(),
            deflate: None,
            ..ClientOptions::default()
        };
        ClientHandshake {
            key: SAMPLE_KEY.into(),
            ..client(&options)
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into()
    }

    /// A 101 response to the sample key, with `extra` headers.
    fn switching(extra: &[(&str, &str)]) -> Response {
        let mut response = accept_response(SAMPLE_KEY, None, None, &Headers::new());
        for (name, value) in extra {
            response.headers.insert(name, value);
        }
        response
    }

    /// A valid request's headers, minus those named in `without`, plus `extra`.
    fn request(without: &[&str], extra: &[(&str, &str)]) -> Request {
        let mut headers = Headers::new();
        for (name, value) in [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", SAMPLE_KEY),
            ("Sec-WebSocket-Version", "13"),
        ] {
            if !without.iter().any(|w| w.eq_ignore_ascii_case(name)) {
                headers.insert(name, value);
            }
        }
        for (name, value) in extra {
            headers.insert(name, value);
        }
        Request {
            method: "GET".into(),
            path: "/chat".into(),
            headers,
        }
    }

    /// Validates `request` expecting a refusal; returns its error and response.
    fn refused(request: &Request, options: &ServerOptions) -> (Error, Response) {
        match validate_request(request, options) {
            Err(refusal) => refusal,
            Ok(valid) => panic!("expected a refusal, got {valid:?}"),
        }
    }

    fn assert_invalid_header(error: &Error, expected: &str) {
        match error {
            Error::InvalidHeader { name, .. } => assert_eq!(name, expected),
            other => panic!("expected InvalidHeader({expected}), got {other:?}"),
        }
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn headers_are_ordered_case_insensitive_and_keep_casing() {
        let mut list = Headers::new();
        assert!(list.is_empty());
        list.insert("X-Thing", "1");
        list.insert("Other", "2");
        list.insert("x-thing", "3");
        assert_eq!(list.len(), 3);
        assert_eq!(list.get("X-THING"), Some("1"));
        assert_eq!(list.get_all("x-Thing").collect::<Vec<_>>(), ["1", "3"]);
        assert!(list.contains("other"));
        assert!(!list.contains("missing"));
        let names: Vec<&str> = list.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["X-Thing", "Other", "x-thing"]);
        assert_eq!(
            list,
            headers(&[("X-Thing", "1"), ("Other", "2"), ("x-thing", "3")])
        );
    }

    #[test]
    fn headers_validate_rejects_splitting() {
        assert!(headers(&[("X-Ok", "a\tb c")]).validate().is_ok());
        for (name, value) in [
            ("X", "a\r\nInjected: 1"),
            ("X", "a\nb"),
            ("X", "\0"),
            ("Bad Name", "v"),
            ("", "v"),
            ("X:Y", "v"),
        ] {
            let result = headers(&[(name, value)]).validate();
            assert!(
                matches!(result, Err(Error::Config(_))),
                "{name:?}: {value:?}"
            );
        }
    }

    #[test]
    fn rfc6455_1_3_accept_key_sample() {
        assert_eq!(derive_accept_key(SAMPLE_KEY.as_bytes()), SAMPLE_ACCEPT);
        let response = accept_response(SAMPLE_KEY, None, None, &Headers::new());
        assert_eq!(
            response.headers.get("Sec-WebSocket-Accept"),
            Some(SAMPLE_ACCEPT)
        );
        let accepted = sample_client(&[], &[]).validate(&response).unwrap();
        assert_eq!(
            accepted,
            Accepted {
                subprotocol: None,
                extensions: vec![],
                deflate: None,
            }
        );
    }

    #[test]
    fn rfc6455_4_1_client_request() {
        let options = ClientOptions {
            origin: Some("https://example.com".into()),
            subprotocols: vec!["chat".into(), "superchat".into()],
            extensions: vec![],
            deflate: Some(DeflateConfig::client()),
            additional_headers: headers(&[("X-Test", "yes")]),
            user_agent: None,
        };
        let handshake =
            ClientHandshake::new(&uri("ws://user:pass@example.com:9000/chat?x=1"), &options)
                .unwrap();
        let key = handshake.key();
        assert_eq!(BASE64.decode(key).unwrap().len(), 16);
        let expected = format!(
            "GET /chat?x=1 HTTP/1.1\r\n\
             Host: example.com:9000\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Origin: https://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Authorization: Basic dXNlcjpwYXNz\r\n\
             User-Agent: {DEFAULT_USER_AGENT}\r\n\
             X-Test: yes\r\n\
             \r\n"
        );
        assert_eq!(text(&handshake.to_bytes()), expected);
        let request = handshake.request();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/chat?x=1");
        assert_eq!(request.headers.get("sec-websocket-key"), Some(key));
    }

    #[test]
    fn rfc6455_4_1_key_is_fresh_each_time() {
        let options = ClientOptions::default();
        assert_ne!(client(&options).key(), client(&options).key());
    }

    #[test]
    fn rfc6455_4_1_minimal_request_and_ipv6_host() {
        let handshake =
            ClientHandshake::new(&uri("wss://[::1]/"), &ClientOptions::default()).unwrap();
        let headers = &handshake.request().headers;
        assert_eq!(headers.get("Host"), Some("[::1]"));
        assert_eq!(
            headers.get("Sec-WebSocket-Extensions"),
            Some("permessage-deflate; client_max_window_bits")
        );
        for absent in ["Origin", "Sec-WebSocket-Protocol", "Authorization"] {
            assert!(!headers.contains(absent), "{absent}");
        }
    }

    #[test]
    fn user_agent_option_and_overrides() {
        let custom = ClientOptions {
            user_agent: Some("test/1".into()),
            ..ClientOptions::default()
        };
        let sent = &client(&custom).request.headers;
        assert_eq!(sent.get_all("User-Agent").collect::<Vec<_>>(), ["test/1"]);
        let overridden = ClientOptions {
            origin: Some("https://a.example".into()),
            additional_headers: headers(&[
                ("user-agent", "mine"),
                ("Host", "virtual.example"),
                ("Origin", "https://b.example"),
            ]),
            ..ClientOptions::default()
        };
        let sent = &client(&overridden).request.headers;
        assert_eq!(sent.get_all("User-Agent").collect::<Vec<_>>(), ["mine"]);
        assert_eq!(
            sent.get_all("Host").collect::<Vec<_>>(),
            ["virtual.example"]
        );
        assert_eq!(
            sent.get_all("Origin").collect::<Vec<_>>(),
            ["https://b.example"]
        );
    }

    #[test]
    fn client_rejects_invalid_options() {
        let cases = [
            ClientOptions {
                subprotocols: vec!["a b".into()],
                ..ClientOptions::default()
            },
            ClientOptions {
                subprotocols: vec![String::new()],
                ..ClientOptions::default()
            },
            ClientOptions {
                extensions: vec!["; x=1".into()],
                ..ClientOptions::default()
            },
            ClientOptions {
                origin: Some("https://a\r\nX-Injected: 1".into()),
                ..ClientOptions::default()
            },
            ClientOptions {
                user_agent: Some("ua\n".into()),
                ..ClientOptions::default()
            },
            ClientOptions {
                additional_headers: headers(&[("X-Test", "a\r\nb")]),
                ..ClientOptions::default()
            },
            ClientOptions {
                additional_headers: headers(&[("Bad Name", "v")]),
                ..ClientOptions::default()
            },
            ClientOptions {
                additional_headers: headers(&[("sec-websocket-key", SAMPLE_KEY)]),
                ..ClientOptions::default()
            },
        ];
        for options in cases {
            let result = ClientHandshake::new(&uri("ws://h/"), &options);
            assert!(matches!(result, Err(Error::Config(_))), "{options:?}");
        }
        let mut bad_resource = uri("ws://h/");
        bad_resource.resource = "/a b".into();
        let result = ClientHandshake::new(&bad_resource, &ClientOptions::default());
        assert!(matches!(result, Err(Error::Config(_))));
    }

    #[test]
    fn rfc6455_4_round_trip() {
        let options = ClientOptions {
            subprotocols: vec!["chat".into(), "superchat".into()],
            ..ClientOptions::default()
        };
        let handshake =
            ClientHandshake::new(&uri("ws://user:pw@example.com:8080/room?id=7"), &options)
                .unwrap();
        let mut wire = handshake.to_bytes();
        let head_length = wire.len();
        wire.extend_from_slice(b"\x81\x80early frame");
        let (request, used) = parse_request(&wire, &limits()).unwrap().unwrap();
        assert_eq!(used, head_length);
        assert_eq!(&request, handshake.request());

        let server = ServerOptions {
            subprotocols: vec!["superchat".into(), "chat".into()],
            origins: Some(vec![None]),
            deflate: None,
        };
        let valid = validate_request(&request, &server).unwrap();
        assert_eq!(valid.key, handshake.key());
        assert_eq!(valid.subprotocols, ["chat", "superchat"]);
        assert_eq!(valid.origin, None);
        let chosen = select_subprotocol(&valid.subprotocols, &server.subprotocols);
        assert_eq!(chosen.as_deref(), Some("superchat"));

        let response = accept_response(
            &valid.key,
            chosen.as_deref(),
            None,
            &headers(&[("Server", "ferrows-test")]),
        );
        let mut wire = response.to_bytes();
        assert!(text(&wire).starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(!text(&wire).contains("Content-Length"));
        let head_length = wire.len();
        wire.extend_from_slice(b"\x81\x05hello");
        let (parsed, used) = ClientHandshake::parse_response(&wire, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(used, head_length);
        assert_eq!(parsed, response);
        let accepted = handshake.validate(&parsed).unwrap();
        assert_eq!(accepted.subprotocol.as_deref(), Some("superchat"));
        assert!(accepted.extensions.is_empty());
    }

    #[test]
    fn rfc6455_4_1_client_accepts_case_insensitive_tokens() {
        let mut response = switching(&[]);
        response.headers = headers(&[
            ("upgrade", "WebSocket"),
            ("CONNECTION", "keep-alive, upgrade"),
            ("sec-websocket-accept", SAMPLE_ACCEPT),
        ]);
        assert!(sample_client(&[], &[]).validate(&response).is_ok());
    }

    #[test]
    fn rfc6455_4_1_non_101_is_invalid_status() {
        let mut response = Response::new(403, "go away");
        response.headers.insert("X-Why", "because");
        match sample_client(&[], &[]).validate(&response) {
            Err(Error::InvalidStatus(got)) => {
                assert_eq!(got.status, 403);
                assert_eq!(got.reason, "Forbidden");
                assert_eq!(got.headers.get("X-Why"), Some("because"));
                assert_eq!(got.body, b"go away");
            }
            other => panic!("expected InvalidStatus, got {other:?}"),
        }
    }

    #[test]
    fn rfc6455_4_1_client_rejects_bad_upgrade_connection_and_accept() {
        let client = sample_client(&[], &[]);
        let check = |response: Response, name: &str| match client.validate(&response) {
            Err(error) => assert_invalid_header(&error, name),
            Ok(accepted) => panic!("expected InvalidHeader({name}), got {accepted:?}"),
        };
        let without = |name: &str| {
            let mut response = switching(&[]);
            let kept: Vec<(String, String)> = response
                .headers
                .iter()
                .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            response.headers = kept.into();
            response
        };
        check(without("Upgrade"), "Upgrade");
        let mut response = without("Upgrade");
        response.headers.insert("Upgrade", "h2c");
        check(response, "Upgrade");
        check(without("Connection"), "Connection");
        let mut response = without("Connection");
        response.headers.insert("Connection", "keep-alive");
        check(response, "Connection");
        check(without("Sec-WebSocket-Accept"), "Sec-WebSocket-Accept");
        let mut response = without("Sec-WebSocket-Accept");
        response
            .headers
            .insert("Sec-WebSocket-Accept", &derive_accept_key(b"other key"));
        check(response, "Sec-WebSocket-Accept");
        check(
            switching(&[("Sec-WebSocket-Accept", SAMPLE_ACCEPT)]),
            "Sec-WebSocket-Accept",
        );
    }

    #[test]
    fn rfc6455_4_1_subprotocol_must_be_offered() {
        let offered = sample_client(&["chat"], &[]);
        let ok = offered.validate(&switching(&[("Sec-WebSocket-Protocol", "chat")]));
        assert_eq!(ok.unwrap().subprotocol.as_deref(), Some("chat"));
        for (client, response) in [
            (
                &offered,
                switching(&[("Sec-WebSocket-Protocol", "superchat")]),
            ),
            (
                &offered,
                switching(&[("Sec-WebSocket-Protocol", "chat, chat")]),
            ),
            (
                &offered,
                switching(&[
                    ("Sec-WebSocket-Protocol", "chat"),
                    ("Sec-WebSocket-Protocol", "chat"),
                ]),
            ),
            (
                &sample_client(&[], &[]),
                switching(&[("Sec-WebSocket-Protocol", "chat")]),
            ),
        ] {
            let result = client.validate(&response);
            assert!(matches!(result, Err(Error::Negotiation(_))), "{result:?}");
        }
    }

    #[test]
    fn rfc6455_9_1_extensions_must_be_offered() {
        let offered = sample_client(&[], &["x-foo; a=1"]);
        let accepted = offered
            .validate(&switching(&[("Sec-WebSocket-Extensions", "x-foo; a=2")]))
            .unwrap();
        assert_eq!(accepted.extensions, ["x-foo; a=2"]);
        assert_eq!(accepted.deflate, None);
        for (client, value) in [
            (&offered, "x-webkit-deflate-frame"),
            (&offered, "x-foo, x-other; a=\"1,2\""),
            (&offered, "permessage-deflate"),
            (&sample_client(&[], &[]), "x-foo"),
        ] {
            let result = client.validate(&switching(&[("Sec-WebSocket-Extensions", value)]));
            assert!(
                matches!(result, Err(Error::Negotiation(_))),
                "{value}: {result:?}"
            );
        }
    }

    #[test]
    fn split_list_keeps_quoted_commas() {
        assert_eq!(
            split_list(" a, ,b; x=\"1,\\\"2\" ,\tc ,"),
            ["a", "b; x=\"1,\\\"2\"", "c"]
        );
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn parse_response_needs_the_whole_head() {
        let wire = switching(&[]).to_bytes();
        for end in 0..wire.len() {
            let parsed = ClientHandshake::parse_response(&wire[..end], &limits());
            assert!(matches!(parsed, Ok(None)), "{end}: {parsed:?}");
        }
        assert!(ClientHandshake::parse_response(&wire, &limits())
            .unwrap()
            .is_some());
    }

    #[test]
    fn parse_request_needs_the_whole_head() {
        let wire = sample_client(&[], &[]).to_bytes();
        for end in 0..wire.len() {
            let parsed = parse_request(&wire[..end], &limits());
            assert!(matches!(parsed, Ok(None)), "{end}: {parsed:?}");
        }
        assert!(parse_request(&wire, &limits()).unwrap().is_some());
    }

    #[test]
    fn oversize_heads_are_refused() {
        let small = HandshakeLimits {
            max_head_bytes: 256,
            max_headers: 8,
            max_line_bytes: 64,
        };
        let mut partial = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        while partial.len() <= small.max_head_bytes {
            partial.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        let result = ClientHandshake::parse_response(
            &partial,
            &HandshakeLimits {
                max_headers: 64,
                ..small
            },
        );
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("head")));
        // A complete head over the limit is refused too.
        partial.extend_from_slice(b"\r\n");
        let result = ClientHandshake::parse_response(
            &partial,
            &HandshakeLimits {
                max_headers: 64,
                ..small
            },
        );
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("head")));

        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(64));
        let result = parse_request(long_line.as_bytes(), &small);
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("line")));
        let long_partial = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(64));
        let result = parse_request(long_partial.as_bytes(), &small);
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("line")));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=small.max_headers {
            many.extend_from_slice(b"X: y\r\n");
        }
        many.extend_from_slice(b"\r\n");
        let result = parse_request(&many, &small);
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("too many headers")));
    }

    #[test]
    fn malformed_heads_are_refused() {
        let bad_utf8 = b"HTTP/1.1 101 OK\r\nX-Bin: \xff\xfe\r\n\r\n";
        let result = ClientHandshake::parse_response(bad_utf8, &limits());
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("X-Bin")));
        let result = ClientHandshake::parse_response(b"HTTP/1.1 abc\r\n\r\n", &limits());
        assert!(matches!(result, Err(Error::InvalidMessage(_))));
        let result = parse_request(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &limits());
        assert!(matches!(result, Err(Error::InvalidMessage(_))));
    }

    #[test]
    fn rfc6455_4_1_request_must_be_http_1_1_without_body() {
        let result = parse_request(b"GET / HTTP/1.0\r\nHost: h\r\n\r\n", &limits());
        assert!(matches!(result, Err(Error::InvalidMessage(m)) if m.contains("HTTP/1.1")));
        for header in [
            "Content-Length: 5",
            "Content-Length: x",
            "Transfer-Encoding: chunked",
        ] {
            let wire = format!("GET / HTTP/1.1\r\nHost: h\r\n{header}\r\n\r\n");
            let result = parse_request(wire.as_bytes(), &limits());
            assert!(
                matches!(result, Err(Error::InvalidMessage(m)) if m.contains("body")),
                "{header}"
            );
        }
        let wire = b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_request(wire, &limits()).unwrap().is_some());
    }

    #[test]
    fn body_length_reads_content_length() {
        let mut response = Response::new(500, "");
        assert_eq!(ClientHandshake::body_length(&response), None);
        response.headers.insert("Content-Length", "12");
        assert_eq!(ClientHandshake::body_length(&response), Some(12));
        response.headers.insert("Transfer-Encoding", "chunked");
        assert_eq!(ClientHandshake::body_length(&response), None);
        for bad in ["", "-1", "+1", "1 2", "abc"] {
            let response = Response {
                headers: headers(&[("Content-Length", bad)]),
                ..Response::new(500, "")
            };
            assert_eq!(ClientHandshake::body_length(&response), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc6455_4_2_1_server_accepts_case_insensitive_tokens() {
        let request = request(
            &["Upgrade", "Connection"],
            &[
                ("upgrade", "WebSocket"),
                ("connection", "keep-alive, Upgrade"),
                ("Origin", "https://example.com"),
                ("Sec-WebSocket-Protocol", "a, b"),
                ("Sec-WebSocket-Protocol", "c"),
                (
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; client_max_window_bits, x",
                ),
            ],
        );
        let valid = validate_request(&request, &ServerOptions::default()).unwrap();
        assert_eq!(
            valid,
            ValidRequest {
                key: SAMPLE_KEY.into(),
                subprotocols: vec!["a".into(), "b".into(), "c".into()],
                extensions: vec![
                    "permessage-deflate; client_max_window_bits".into(),
                    "x".into()
                ],
                // The default server caps the client's window at 12 bits.
                deflate: Some(Agreement {
                    client_max_window_bits: Some(12),
                    server_max_window_bits: Some(12),
                    ..Agreement::default()
                }),
                origin: Some("https://example.com".into()),
            }
        );
    }

    #[test]
    fn rfc6455_4_2_1_method_must_be_get() {
        let mut post = request(&[], &[]);
        post.method = "POST".into();
        let (error, response) = refused(&post, &ServerOptions::default());
        assert!(matches!(error, Error::InvalidMessage(_)));
        assert_eq!(response.status, 405);
        assert_eq!(response.reason, "Method Not Allowed");
        assert_eq!(response.headers.get("Allow"), Some("GET"));
    }

    #[test]
    fn rfc6455_4_2_1_host_is_required() {
        let (error, response) = refused(&request(&["Host"], &[]), &ServerOptions::default());
        assert_invalid_header(&error, "Host");
        assert_eq!(response.status, 400);
        let two_hosts = request(&[], &[("Host", "other.example")]);
        assert_eq!(refused(&two_hosts, &ServerOptions::default()).1.status, 400);
    }

    #[test]
    fn rfc6455_4_2_1_upgrade_websocket_or_426() {
        for request in [
            request(&["Upgrade"], &[]),
            request(&["Upgrade"], &[("Upgrade", "h2c")]),
        ] {
            let (error, response) = refused(&request, &ServerOptions::default());
            assert_invalid_header(&error, "Upgrade");
            assert_eq!(response.status, 426);
            assert_eq!(response.headers.get("Upgrade"), Some("websocket"));
            assert_eq!(response.headers.get("Connection"), Some("Upgrade"));
            assert!(text(&response.body).contains("WebSocket client"));
        }
    }

    #[test]
    fn rfc6455_4_2_1_connection_upgrade_or_400() {
        let request = request(&["Connection"], &[("Connection", "keep-alive")]);
        let (error, response) = refused(&request, &ServerOptions::default());
        assert_invalid_header(&error, "Connection");
        assert_eq!(response.status, 400);
        assert_eq!(response.headers.get("Connection"), Some("close"));
    }

    #[test]
    fn rfc6455_4_2_1_key_must_be_16_bytes_base64() {
        for request in [
            request(&["Sec-WebSocket-Key"], &[]),
            request(&[], &[("Sec-WebSocket-Key", SAMPLE_KEY)]),
            request(
                &["Sec-WebSocket-Key"],
                &[("Sec-WebSocket-Key", "not base64!")],
            ),
            request(
                &["Sec-WebSocket-Key"],
                &[("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA")],
            ),
            request(
                &["Sec-WebSocket-Key"],
                &[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ")],
            ),
        ] {
            let (error, response) = refused(&request, &ServerOptions::default());
            assert_invalid_header(&error, "Sec-WebSocket-Key");
            assert_eq!(response.status, 400);
        }
    }

    #[test]
    fn rfc6455_4_2_2_version_must_be_13_or_426() {
        for request in [
            request(&["Sec-WebSocket-Version"], &[]),
            request(
                &["Sec-WebSocket-Version"],
                &[("Sec-WebSocket-Version", "8")],
            ),
            request(&[], &[("Sec-WebSocket-Version", "13")]),
        ] {
            let (error, response) = refused(&request, &ServerOptions::default());
            assert_invalid_header(&error, "Sec-WebSocket-Version");
            assert_eq!(response.status, 426);
            assert_eq!(response.headers.get("Sec-WebSocket-Version"), Some("13"));
            assert_eq!(response.headers.get("Upgrade"), Some("websocket"));
        }
    }

    #[test]
    fn rfc6455_4_2_1_origin_allow_list_or_403() {
        let options = ServerOptions {
            origins: Some(vec![Some("https://good.example".into())]),
            ..ServerOptions::default()
        };
        let good = request(&[], &[("Origin", "https://good.example")]);
        let valid = validate_request(&good, &options).unwrap();
        assert_eq!(valid.origin.as_deref(), Some("https://good.example"));

        let bad = request(&[], &[("Origin", "https://evil.example")]);
        let (error, response) = refused(&bad, &options);
        assert!(matches!(error, Error::InvalidOrigin(Some(o)) if o == "https://evil.example"));
        assert_eq!(response.status, 403);

        let (error, response) = refused(&request(&[], &[]), &options);
        assert!(matches!(error, Error::InvalidOrigin(None)));
        assert_eq!(response.status, 403);

        let allow_none = ServerOptions {
            origins: Some(vec![None]),
            ..ServerOptions::default()
        };
        assert!(validate_request(&request(&[], &[]), &allow_none).is_ok());

        let two = request(
            &[],
            &[("Origin", "https://good.example"), ("Origin", "https://x")],
        );
        let (error, response) = refused(&two, &ServerOptions::default());
        assert_invalid_header(&error, "Origin");
        assert_eq!(response.status, 400);
    }

    #[test]
    fn rfc6455_4_2_1_subprotocols_must_be_tokens() {
        let request = request(&[], &[("Sec-WebSocket-Protocol", "chat, a/b")]);
        let (error, response) = refused(&request, &ServerOptions::default());
        assert_invalid_header(&error, "Sec-WebSocket-Protocol");
        assert_eq!(response.status, 400);
    }

    #[test]
    fn refusals_explain_themselves_in_plain_text() {
        let (error, response) = refused(&request(&["Host"], &[]), &ServerOptions::default());
        let body = text(&response.body);
        assert_eq!(
            body,
            format!("Failed to open a WebSocket connection: {error}.\n")
        );
        assert_eq!(
            response.headers.get("Content-Type"),
            Some("text/plain; charset=utf-8")
        );
        let wire = response.to_bytes();
        let (parsed, used) = ClientHandshake::parse_response(&wire, &limits())
            .unwrap()
            .unwrap();
        assert_eq!(
            ClientHandshake::body_length(&parsed),
            Some(response.body.len())
        );
        assert_eq!(&wire[used..], response.body);
    }

    #[test]
    fn a_missing_header_is_named_as_websockets_names_it() {
        let options = ServerOptions::default();
        let (missing, response) = refused(&request(&["Sec-WebSocket-Key"], &[]), &options);
        assert_eq!(missing.to_string(), "missing Sec-WebSocket-Key header");
        assert_eq!(
            text(&response.body),
            "Failed to open a WebSocket connection: missing Sec-WebSocket-Key header.\n"
        );
        let (wrong, _) = refused(
            &request(&["Sec-WebSocket-Key"], &[("Sec-WebSocket-Key", "short")]),
            &options,
        );
        assert!(wrong
            .to_string()
            .starts_with("invalid Sec-WebSocket-Key header: "));
    }

    #[test]
    fn rfc6455_4_2_2_select_subprotocol_prefers_ours() {
        let offered = ["a".to_string(), "b".to_string(), "c".to_string()];
        let ours = ["c".to_string(), "b".to_string()];
        assert_eq!(select_subprotocol(&offered, &ours).as_deref(), Some("c"));
        assert_eq!(select_subprotocol(&offered, &["z".to_string()]), None);
        assert_eq!(select_subprotocol(&[], &ours), None);
    }

    #[test]
    fn rfc6455_4_2_2_accept_response() {
        let extra = headers(&[("Server", "ferrows"), ("upgrade", "h2c"), ("Server", "app")]);
        let response =
            accept_response(SAMPLE_KEY, Some("chat"), Some("permessage-deflate"), &extra);
        assert_eq!(
            text(&response.to_bytes()),
            format!(
                "HTTP/1.1 101 Switching Protocols\r\n\
                 Upgrade: websocket\r\n\
                 Connection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\
                 Sec-WebSocket-Protocol: chat\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate\r\n\
                 Server: ferrows\r\n\
                 Server: app\r\n\
                 \r\n"
            )
        );
    }

    #[test]
    fn response_serialization() {
        let response = Response::new(404, "nope\n");
        assert_eq!(
            text(&response.to_bytes()),
            "HTTP/1.1 404 Not Found\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 5\r\n\
             \r\n\
             nope\n"
        );
        let mut response = Response::new(200, "abc");
        response.headers.insert("content-length", "3");
        assert_eq!(text(&response.to_bytes()).matches("ength: 3").count(), 1);
        let empty = Response::new(204, Vec::new());
        assert!(empty.headers.is_empty());
        assert_eq!(text(&empty.to_bytes()), "HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(Response::new(599, "").reason, "");
    }

    #[test]
    fn response_serialization_cannot_be_split() {
        let mut response = Response::new(400, "");
        response.reason = "Bad\r\nX-Injected: 1".into();
        response.headers.insert("X-Evil", "a\r\nX-Injected: 2");
        response.headers.insert("X-Fine", "ok");
        let wire = response.to_bytes();
        assert_eq!(
            text(&wire),
            "HTTP/1.1 400 Bad  X-Injected: 1\r\nX-Fine: ok\r\n\r\n"
        );
    }
}
