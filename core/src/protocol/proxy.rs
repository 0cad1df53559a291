//! Proxies (sans-IO): proxy URLs, the choice of a proxy from the environment (as `websockets`
//! makes it), and the handshakes that open a tunnel through an HTTP proxy (CONNECT) or a
//! SOCKS5 proxy (RFC 1928, with RFC 1929 username/password). The handshake is a state
//! machine: it yields bytes to write and consumes bytes read; whoever owns the socket (the
//! engine, the asyncio face) moves them, then runs TLS and the WebSocket handshake inside.

use std::net::IpAddr;

use base64::Engine as _;

use super::handshake::{Headers, Response};
use super::uri::WsUri;
use crate::error::{Error, Result};

/// The largest HTTP proxy reply head read; beyond it, the reply is refused.
pub const MAX_REPLY_HEAD: usize = 16 * 1024;
/// The most headers an HTTP proxy reply may carry.
const MAX_REPLY_HEADERS: usize = 64;

/// How to speak to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyScheme {
    /// `http://`: HTTP CONNECT over TCP.
    Http,
    /// `https://`: HTTP CONNECT over TLS to the proxy.
    Https,
    /// `socks5://`: SOCKS5, the client resolves the server's name.
    Socks5,
    /// `socks5h://`: SOCKS5, the proxy resolves the server's name.
    Socks5h,
}

/// A parsed proxy URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The protocol spoken to the proxy.
    pub scheme: ProxyScheme,
    /// The proxy's host, lowercased, an IPv6 literal without brackets.
    pub host: String,
    /// The proxy's port (default 80 for http, 443 for https, 1080 for SOCKS).
    pub port: u16,
    /// Percent-decoded user name and password.
    pub credentials: Option<(String, String)>,
}

impl Proxy {
    /// Parses `http://`, `https://`, `socks5://` and `socks5h://` URLs, with optional
    /// `user:password@` and port; a path other than `/`, a query or a fragment is refused.
    pub fn parse(url: &str) -> Result<Proxy> {
        parse_proxy(url).map_err(|reason| Error::InvalidProxy {
            proxy: redact(url),
            reason,
        })
    }

    /// True when the client, not the proxy, must resolve the server's name.
    pub fn resolves_locally(&self) -> bool {
        self.scheme == ProxyScheme::Socks5
    }

    /// True when the connection to the proxy itself runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == ProxyScheme::Https
    }
}

/// The URL without its user info, for error messages that must not leak credentials.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://***@{}", &url[..start], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn parse_proxy(url: &str) -> Result<Proxy, String> {
    let (scheme_name, rest) = url.split_once("://").ok_or("missing \"scheme://\"")?;
    let scheme = match scheme_name.to_ascii_lowercase().as_str() {
        "http" => ProxyScheme::Http,
        "https" => ProxyScheme::Https,
        "socks5" => ProxyScheme::Socks5,
        "socks5h" => ProxyScheme::Socks5h,
        other => {
            return Err(format!(
                "scheme {other:?} isn't supported (http, https, socks5, socks5h)"
            ))
        }
    };
    let default_port = match scheme {
        ProxyScheme::Http => 80,
        ProxyScheme::Https => 443,
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => 1080,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !(tail.is_empty() || tail == "/") {
        return Err("a path, query or fragment is meaningless for a proxy".into());
    }
    // The proxy URL has the same authority syntax as a WebSocket URI: parse it as one.
    let as_ws = WsUri::parse(&format!("ws://{authority}/")).map_err(|e| match e {
        Error::InvalidUri { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if host_port
        .rsplit_once(']')
        .map_or(host_port, |(_, p)| p)
        .contains(':')
    {
        as_ws.port
    } else {
        default_port
    };
    Ok(Proxy {
        scheme,
        host: as_ws.host,
        port,
        credentials: as_ws.user_info,
    })
}

/// The proxy `websockets` would use for `uri`, from environment variables read through
/// `var` (so that each face reads its own environment): `no_proxy` first, then, for wss://,
/// `wss_proxy`, `socks_proxy`, `https_proxy`; for ws://, `ws_proxy`, `socks_proxy`,
/// `https_proxy`, `http_proxy`. Each name is read lowercase first, then uppercase, as
/// Python's `urllib.request.getproxies` does (an empty lowercase value hides the uppercase
/// one; `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set, as under CGI). A
/// `socks_proxy` written `http://host:port` means `socks5h://host:port`. `all_proxy` is not
/// read, as `websockets` does not read it.
pub fn proxy_from_env(uri: &WsUri, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let read = |name: &str| -> Option<String> {
        let lower = format!("{name}_proxy");
        if let Some(value) = var(&lower) {
            return (!value.is_empty()).then_some(value);
        }
        if name == "http" && var("REQUEST_METHOD").is_some() {
            return None;
        }
        var(&lower.to_ascii_uppercase()).filter(|value| !value.is_empty())
    };
    if let Some(no_proxy) = read("no") {
        if bypasses(&no_proxy, &uri.host, uri.port) {
            return None;
        }
    }
    let names: &[&str] = if uri.secure {
        &["wss", "socks", "https"]
    } else {
        &["ws", "socks", "https", "http"]
    };
    names.iter().find_map(|&name| {
        read(name).map(|proxy| match proxy.strip_prefix("http://") {
            Some(address) if name == "socks" => format!("socks5h://{address}"),
            _ => proxy,
        })
    })
}

/// Whether `no_proxy` (comma-separated names, `*` for all) exempts `host:port`, as Python's
/// `urllib.request.proxy_bypass_environment`: an entry matches the host or `host:port`
/// exactly, or as a domain suffix; leading dots are ignored; case is ignored.
pub fn bypasses(no_proxy: &str, host: &str, port: u16) -> bool {
    if no_proxy.trim() == "*" {
        return true;
    }
    let host = host.to_ascii_lowercase();
    let host_port = format!("{host}:{port}");
    no_proxy
        .split(',')
        .map(|entry| entry.trim().trim_start_matches('.').to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            let suffix = format!(".{entry}");
            host == entry
                || host_port == entry
                || host.ends_with(&suffix)
                || host_port.ends_with(&suffix)
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the HTTP proxy's reply head.
    HttpReply,
    /// Waiting for the SOCKS5 method selection.
    SocksMethod,
    /// Waiting for the SOCKS5 username/password verdict.
    SocksAuth,
    /// Waiting for the SOCKS5 connect reply.
    SocksReply,
    /// The tunnel is open.
    Open,
}

/// The opening of a tunnel to `host:port` through a proxy. Write what [`output`] returns,
/// feed what the proxy sends to [`receive`], until it reports the tunnel open. Bytes from the
/// proxy beyond its reply are an error: the server speaks only after the client does.
///
/// [`output`]: ProxyHandshake::output
/// [`receive`]: ProxyHandshake::receive
#[derive(Debug)]
pub struct ProxyHandshake {
    state: State,
    /// Bytes to write to the proxy.
    output: Vec<u8>,
    /// Bytes received and not yet consumed; bounded by [`MAX_REPLY_HEAD`].
    input: Vec<u8>,
    credentials: Option<(String, String)>,
    /// The SOCKS5 connect request, sent once the method (and auth) are settled.
    socks_connect: Vec<u8>,
}

impl ProxyHandshake {
    /// Starts the handshake with `proxy` for a tunnel to `host:port`. `host` is a name or an
    /// IP literal (IPv6 without brackets); for `socks5://` the caller passes the resolved IP.
    /// `user_agent` goes in the CONNECT request if given.
    pub fn new(proxy: &Proxy, host: &str, port: u16, user_agent: Option<&str>) -> Result<Self> {
        let mut handshake = ProxyHandshake {
            state: State::Open,
            output: Vec::new(),
            input: Vec::new(),
            credentials: proxy.credentials.clone(),
            socks_connect: Vec::new(),
        };
        match proxy.scheme {
            ProxyScheme::Http | ProxyScheme::Https => {
                handshake.output = connect_request(host, port, user_agent, &proxy.credentials);
                handshake.state = State::HttpReply;
            }
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
                if let Some((user, password)) = &proxy.credentials {
                    if user.is_empty() || user.len() > 255 || password.len() > 255 {
                        return Err(Error::Proxy(
                            "SOCKS5 user names and passwords have 1 to 255 bytes".into(),
                        ));
                    }
                }
                handshake.socks_connect = socks_connect_request(host, port)?;
                // Offer no authentication, and username/password when there are credentials.
                handshake.output = if proxy.credentials.is_some() {
                    vec![5, 2, 0, 2]
                } else {
                    vec![5, 1, 0]
                };
                handshake.state = State::SocksMethod;
            }
        }
        Ok(handshake)
    }

    /// Takes the bytes to write to the proxy now (empty when there is nothing to write).
    pub fn output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True once the tunnel is open: the next bytes belong to the server.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Consumes bytes from the proxy; returns whether the tunnel is now open. A refusal, a
    /// malformed or oversized reply, or bytes after the reply are errors.
    pub fn receive(&mut self, data: &[u8]) -> Result<bool> {
        if self.state == State::Open {
            if data.is_empty() {
                return Ok(true);
            }
            return Err(Error::Proxy("the proxy sent data after its reply".into()));
        }
        if self.input.len() + data.len() > MAX_REPLY_HEAD {
            return Err(Error::Proxy(format!(
                "the proxy's reply exceeds {MAX_REPLY_HEAD} bytes"
            )));
        }
        self.input.extend_from_slice(data);
        while self.state != State::Open {
            let used = match self.state {
                State::HttpReply => self.http_reply()?,
                State::SocksMethod => self.socks_method()?,
                State::SocksAuth => self.socks_auth()?,
                State::SocksReply => self.socks_reply()?,
                State::Open => unreachable!("the loop stops at Open"),
            };
            let Some(used) = used else {
                return Ok(false);
            };
            self.input.drain(..used);
        }
        if !self.input.is_empty() {
            return Err(Error::Proxy("the proxy sent data after its reply".into()));
        }
        Ok(true)
    }

    /// Parses the CONNECT reply: any 2xx opens the tunnel, anything else is refused.
    fn http_reply(&mut self) -> Result<Option<usize>> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_REPLY_HEADERS];
        let mut reply = httparse::Response::new(&mut headers);
        let used = match reply.parse(&self.input) {
            Ok(httparse::Status::Complete(used)) => used,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => {
                return Err(Error::Proxy(format!(
                    "invalid HTTP reply from the proxy: {error}"
                )))
            }
        };
        let status = reply.code.unwrap_or(0);
        if !(200..300).contains(&status) {
            let mut response_headers = Headers::new();
            for header in reply.headers.iter() {
                response_headers.insert(header.name, &String::from_utf8_lossy(header.value));
            }
            return Err(Error::ProxyStatus(Box::new(Response {
                status,
                reason: reply.reason.unwrap_or("").to_owned(),
                headers: response_headers,
                body: Vec::new(),
            })));
        }
        self.state = State::Open;
        Ok(Some(used))
    }

    fn socks_method(&mut self) -> Result<Option<usize>> {
        let [version, method, ..] = self.input[..] else {
            return Ok(None);
        };
        if version != 5 {
            return Err(Error::Proxy(format!(
                "not a SOCKS5 proxy: it answered version {version}"
            )));
        }
        match (method, &self.credentials) {
            (0, _) => {
                self.output = std::mem::take(&mut self.socks_connect);
                self.state = State::SocksReply;
            }
            (2, Some((user, password))) => {
                let mut auth = vec![1, user.len() as u8];
                auth.extend_from_slice(user.as_bytes());
                auth.push(password.len() as u8);
                auth.extend_from_slice(password.as_bytes());
                self.output = auth;
                self.state = State::SocksAuth;
            }
            (0xFF, None) => {
                return Err(Error::Proxy(
                    "the SOCKS5 proxy requires authentication: give credentials in the proxy URL"
                        .into(),
                ))
            }
            (0xFF, Some(_)) => {
                return Err(Error::Proxy(
                    "the SOCKS5 proxy accepts neither no authentication nor username/password"
                        .into(),
                ))
            }
            (other, _) => {
                return Err(Error::Proxy(format!(
                    "the SOCKS5 proxy chose method {other}, which was not offered"
                )))
            }
        }
        Ok(Some(2))
    }

    fn socks_auth(&mut self) -> Result<Option<usize>> {
        let [_version, status, ..] = self.input[..] else {
            return Ok(None);
        };
        if status != 0 {
            return Err(Error::Proxy(
                "the SOCKS5 proxy rejected the user name and password".into(),
            ));
        }
        self.output = std::mem::take(&mut self.socks_connect);
        self.state = State::SocksReply;
        Ok(Some(2))
    }

    fn socks_reply(&mut self) -> Result<Option<usize>> {
        let [version, reply, _reserved, address_type, ..] = self.input[..] else {
            return Ok(None);
        };
        if version != 5 {
            return Err(Error::Proxy(format!(
                "invalid SOCKS5 reply: version {version}"
            )));
        }
        if reply != 0 {
            return Err(Error::Proxy(format!(
                "the SOCKS5 proxy refused the connection: {} (reply {reply})",
                socks_reply_text(reply)
            )));
        }
        let address_length = match address_type {
            1 => 4,
            4 => 16,
            3 => match self.input.get(4) {
                Some(&length) => 1 + usize::from(length),
                None => return Ok(None),
            },
            other => {
                return Err(Error::Proxy(format!(
                    "invalid SOCKS5 reply: address type {other}"
                )))
            }
        };
        let length = 4 + address_length + 2;
        if self.input.len() < length {
            return Ok(None);
        }
        self.state = State::Open;
        Ok(Some(length))
    }
}

/// The CONNECT request for `host:port`.
fn connect_request(
    host: &str,
    port: u16,
    user_agent: Option<&str>,
    credentials: &Option<(String, String)>,
) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(agent) = user_agent {
        request.push_str(&format!("User-Agent: {agent}\r\n"));
    }
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// The SOCKS5 CONNECT request for `host:port`: an IP literal as an address, else a name.
fn socks_connect_request(host: &str, port: u16) -> Result<Vec<u8>> {
    let mut request = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let length = u8::try_from(host.len())
                .map_err(|_| Error::Proxy("SOCKS5 host names have at most 255 bytes".into()))?;
            request.push(3);
            request.push(length);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    Ok(request)
}

/// RFC 1928 §6's meaning of a reply code.
fn socks_reply_text(reply: u8) -> &'static str {
    match reply {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unassigned reply code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str) -> Proxy {
        Proxy::parse(url).unwrap()
    }

    #[test]
    fn proxy_urls_parse_with_default_ports_and_credentials() {
        let parsed = proxy("HTTP://User%40x:p%3Ass@Proxy.Example:3128");
        assert_eq!(parsed.scheme, ProxyScheme::Http);
        assert_eq!(parsed.host, "proxy.example");
        assert_eq!(parsed.port, 3128);
        assert_eq!(parsed.credentials, Some(("User@x".into(), "p:ss".into())));
        assert_eq!(proxy("https://p").port, 443);
        assert_eq!(proxy("http://p/").port, 80);
        assert_eq!(proxy("socks5h://[::1]").port, 1080);
        assert_eq!(proxy("socks5h://[::1]").host, "::1");
        assert!(proxy("socks5://p:1").resolves_locally());
        assert!(!proxy("socks5h://p:1").resolves_locally());
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_leaking_the_password() {
        for url in [
            "ftp://p",
            "p:3128",
            "http://",
            "http://p/path",
            "http://p?q",
            "http://p:99999",
            "http://user@p",
        ] {
            let error = Proxy::parse(url).unwrap_err();
            assert!(
                matches!(error, Error::InvalidProxy { .. }),
                "{url}: {error:?}"
            );
        }
        let error = Proxy::parse("http://user:secret@p/x")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    fn chosen(uri: &str, pairs: &'static [(&'static str, &'static str)]) -> Option<String> {
        proxy_from_env(&WsUri::parse(uri).unwrap(), env(pairs))
    }

    #[test]
    fn the_environment_is_read_in_websockets_order() {
        let all = &[
            ("ws_proxy", "http://ws"),
            ("wss_proxy", "http://wss"),
            ("socks_proxy", "socks5h://socks"),
            ("https_proxy", "http://https"),
            ("http_proxy", "http://http"),
        ];
        assert_eq!(chosen("ws://h/", all).as_deref(), Some("http://ws"));
        assert_eq!(chosen("wss://h/", all).as_deref(), Some("http://wss"));
        let no_ws = &[
            ("socks_proxy", "http://socks:1080"),
            ("https_proxy", "http://https"),
        ];
        assert_eq!(
            chosen("ws://h/", no_ws).as_deref(),
            Some("socks5h://socks:1080")
        );
        let http_only = &[("http_proxy", "http://http")];
        assert_eq!(chosen("ws://h/", http_only).as_deref(), Some("http://http"));
        assert_eq!(chosen("wss://h/", http_only), None);
        assert_eq!(chosen("ws://h/", &[("all_proxy", "http://all")]), None);
        assert_eq!(chosen("ws://h/", &[]), None);
    }

    #[test]
    fn lowercase_wins_and_an_empty_lowercase_hides_uppercase() {
        let both = &[
            ("HTTPS_PROXY", "http://upper"),
            ("https_proxy", "http://lower"),
        ];
        assert_eq!(chosen("wss://h/", both).as_deref(), Some("http://lower"));
        let upper = &[("HTTPS_PROXY", "http://upper")];
        assert_eq!(chosen("wss://h/", upper).as_deref(), Some("http://upper"));
        let hidden = &[("HTTPS_PROXY", "http://upper"), ("https_proxy", "")];
        assert_eq!(chosen("wss://h/", hidden), None);
        let cgi = &[("HTTP_PROXY", "http://upper"), ("REQUEST_METHOD", "GET")];
        assert_eq!(chosen("ws://h/", cgi), None);
    }

    #[test]
    fn no_proxy_matches_names_suffixes_ports_and_star() {
        let pairs = &[
            ("http_proxy", "http://p"),
            ("no_proxy", " .example.com, localhost:8080,10.0.0.1"),
        ];
        assert_eq!(chosen("ws://example.com/", pairs), None);
        assert_eq!(chosen("ws://a.Example.com/", pairs), None);
        assert_eq!(chosen("ws://localhost:8080/", pairs), None);
        assert_eq!(chosen("ws://10.0.0.1:9/", pairs), None);
        assert!(chosen("ws://localhost:8081/", pairs).is_some());
        assert!(chosen("ws://notexample.com/", pairs).is_some());
        assert_eq!(
            chosen("ws://x/", &[("http_proxy", "http://p"), ("NO_PROXY", "*")]),
            None
        );
    }

    /// Runs a handshake against scripted replies, returning what the client wrote.
    fn exchange(handshake: &mut ProxyHandshake, replies: &[&[u8]]) -> Result<Vec<Vec<u8>>> {
        let mut written = vec![handshake.output()];
        for reply in replies {
            handshake.receive(reply)?;
            written.push(handshake.output());
        }
        Ok(written)
    }

    #[test]
    fn http_connect_sends_basic_credentials_and_accepts_any_2xx() {
        let mut handshake =
            ProxyHandshake::new(&proxy("http://u:p@h:1"), "::1", 8080, Some("ferrows")).unwrap();
        let request = String::from_utf8(handshake.output()).unwrap();
        assert_eq!(
            request,
            "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: ferrows\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert!(!handshake.receive(b"HTTP/1.1 299 Whatever\r\nX: y").unwrap());
        assert!(handshake.receive(b"\r\n\r\n").unwrap());
        assert!(handshake.is_open());
        assert!(matches!(handshake.receive(b"x"), Err(Error::Proxy(_))));
    }

    #[test]
    fn http_refusals_carry_the_status() {
        let mut handshake = ProxyHandshake::new(&proxy("http://h"), "s", 80, None).unwrap();
        let error = exchange(
            &mut handshake,
            &[b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"],
        )
        .unwrap_err();
        match error {
            Error::ProxyStatus(response) => {
                assert_eq!(response.status, 407);
                assert_eq!(response.headers.get("proxy-authenticate"), Some("Basic"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_oversized_and_overlong_http_replies_are_errors() {
        let mut handshake = ProxyHandshake::new(&proxy("http://h"), "s", 80, None).unwrap();
        assert!(matches!(
            handshake.receive(b"SSH-2.0-x\r\n\r\n"),
            Err(Error::Proxy(_))
        ));
        let mut handshake = ProxyHandshake::new(&proxy("http://h"), "s", 80, None).unwrap();
        handshake.receive(b"HTTP/1.1 200 OK\r\n").unwrap();
        let header = format!("X: {}\r\n", "a".repeat(1000));
        let mut error = None;
        for _ in 0..(MAX_REPLY_HEAD / header.len() + 2) {
            if let Err(e) = handshake.receive(header.as_bytes()) {
                error = Some(e);
                break;
            }
        }
        assert!(
            matches!(error, Some(Error::Proxy(ref m)) if m.contains("exceeds")),
            "{error:?}"
        );
        let mut handshake = ProxyHandshake::new(&proxy("http://h"), "s", 80, None).unwrap();
        let error = handshake
            .receive(b"HTTP/1.1 200 OK\r\n\r\nearly")
            .unwrap_err();
        assert!(error.to_string().contains("after its reply"), "{error}");
    }

    #[test]
    fn socks5_without_credentials_sends_the_name_for_remote_dns() {
        let mut handshake =
            ProxyHandshake::new(&proxy("socks5h://h"), "server", 443, None).unwrap();
        let written = exchange(
            &mut handshake,
            &[&[5, 0], &[5, 0, 0, 1, 127, 0], &[0, 1, 0x1F, 0x90]],
        )
        .unwrap();
        assert_eq!(written[0], [5, 1, 0]);
        assert_eq!(written[1], b"\x05\x01\x00\x03\x06server\x01\xbb");
        assert!(handshake.is_open());
    }

    #[test]
    fn socks5_with_credentials_authenticates_then_connects_to_an_ip() {
        let mut handshake =
            ProxyHandshake::new(&proxy("socks5://user:pw@h"), "::1", 80, None).unwrap();
        let mut reply = vec![5, 0, 0, 4];
        reply.extend_from_slice(&[0; 18]);
        let written = exchange(&mut handshake, &[&[5, 2], &[1, 0], &reply]).unwrap();
        assert_eq!(written[0], [5, 2, 0, 2]);
        assert_eq!(written[1], b"\x01\x04user\x02pw");
        let mut connect = vec![5, 1, 0, 4];
        connect.extend_from_slice(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        connect.extend_from_slice(&[0, 80]);
        assert_eq!(written[2], connect);
        assert!(handshake.is_open());
    }

    #[test]
    fn socks5_failures_say_what_failed() {
        let cases: &[(&str, &[&[u8]], &str)] = &[
            ("socks5h://h", &[&[5, 0xFF]], "requires authentication"),
            ("socks5h://u:p@h", &[&[5, 0xFF]], "accepts neither"),
            ("socks5h://h", &[&[5, 2]], "not offered"),
            (
                "socks5h://u:wrong@h",
                &[&[5, 2], &[1, 1]],
                "rejected the user name",
            ),
            ("socks5h://h", &[&[4, 0]], "not a SOCKS5 proxy"),
            (
                "socks5h://h",
                &[&[5, 0], &[5, 5, 0, 1]],
                "connection refused (reply 5)",
            ),
            ("socks5h://h", &[&[5, 0], &[5, 0, 0, 9]], "address type 9"),
            (
                "socks5h://h",
                &[&[5, 0], &[5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]],
                "after its reply",
            ),
        ];
        for (url, replies, expected) in cases {
            let mut handshake = ProxyHandshake::new(&proxy(url), "s", 1, None).unwrap();
            let error = exchange(&mut handshake, replies).unwrap_err();
            assert!(matches!(error, Error::Proxy(_)), "{url}: {error:?}");
            assert!(error.to_string().contains(expected), "{url}: {error}");
        }
    }

    #[test]
    fn socks5_refuses_names_and_credentials_too_long_for_the_protocol() {
        let long = "a".repeat(256);
        let error = ProxyHandshake::new(&proxy("socks5h://h"), &long, 1, None).unwrap_err();
        assert!(error.to_string().contains("255"), "{error}");
        let url = format!("socks5h://u:{long}@h");
        let error = ProxyHandshake::new(&proxy(&url), "s", 1, None).unwrap_err();
        assert!(error.to_string().contains("255"), "{error}");
    }
}
