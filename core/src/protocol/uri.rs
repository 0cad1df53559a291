//! WebSocket URIs (RFC 6455 §3): `ws://` and `wss://`, parsed into what the connect step and
//! the opening handshake need.

use std::fmt;
use std::net::Ipv6Addr;

use crate::error::{Error, Result};

/// A parsed `ws://` or `wss://` URI: where to connect and which resource to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUri {
    /// True for `wss://`: the connection runs over TLS.
    pub secure: bool,
    /// The host, lowercased; an IPv6 literal is stored without its brackets.
    pub host: String,
    /// The explicit port, else the scheme's default (80 for `ws`, 443 for `wss`).
    pub port: u16,
    /// The resource name for the request line: path plus `?query`, `/` when the path is empty.
    pub resource: String,
    /// Percent-decoded user name and password, sent as HTTP Basic credentials.
    pub user_info: Option<(String, String)>,
}

impl WsUri {
    /// Parses a `ws://` or `wss://` URI (scheme case-insensitive). Fragments, an empty host,
    /// a bad port, whitespace and control characters are refused with [`Error::InvalidUri`].
    /// Non-ASCII characters in the path or query are percent-encoded, as for an IRI.
    pub fn parse(uri: &str) -> Result<WsUri> {
        parse_parts(uri).map_err(|reason| Error::InvalidUri {
            uri: uri.to_owned(),
            reason,
        })
    }

    /// The value of the `Host` header: the host (bracketed if IPv6), plus `:port` only when
    /// the port is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port(self.secure) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// Where to connect: the host without brackets (for DNS or an IP parse) and the port.
    pub fn authority(&self) -> (String, u16) {
        (self.host.clone(), self.port)
    }
}

/// The canonical form of the URI, without the user info (so it never leaks credentials).
impl fmt::Display for WsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.resource)
    }
}

fn default_port(secure: bool) -> u16 {
    if secure {
        443
    } else {
        80
    }
}

/// Parses `uri`, or says why it is not a WebSocket URI.
fn parse_parts(uri: &str) -> Result<WsUri, String> {
    if let Some(c) = uri.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("contains whitespace or control character {c:?}"));
    }
    let (scheme, rest) = uri.split_once(':').ok_or("missing scheme")?;
    let secure = if scheme.eq_ignore_ascii_case("ws") {
        false
    } else if scheme.eq_ignore_ascii_case("wss") {
        true
    } else {
        return Err(format!("scheme must be ws or wss, not {scheme:?}"));
    };
    let rest = rest
        .strip_prefix("//")
        .ok_or("missing \"//\" after the scheme")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains('#') {
        return Err("fragments are not allowed in WebSocket URIs".into());
    }
    let (user_info, host_port) = match authority.rsplit_once('@') {
        Some((info, host_port)) => (Some(parse_user_info(info)?), host_port),
        None => (None, authority),
    };
    let (host, port) = parse_host_port(host_port, secure)?;
    let mut resource = String::with_capacity(tail.len() + 1);
    if !tail.starts_with('/') {
        resource.push('/');
    }
    for c in tail.chars() {
        if c.is_ascii() {
            resource.push(c);
        } else {
            for byte in c.to_string().bytes() {
                resource.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    Ok(WsUri {
        secure,
        host,
        port,
        resource,
        user_info,
    })
}

/// Splits `user:password` and percent-decodes both; a user without a password is refused,
/// as it makes no sense for Basic authentication.
fn parse_user_info(info: &str) -> Result<(String, String), String> {
    let (user, password) = info.split_once(':').ok_or("user info without a password")?;
    Ok((percent_decode(user)?, percent_decode(password)?))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("invalid percent-encoding in user info")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user info is not UTF-8 once percent-decoded".into())
}

/// Parses `host[:port]` or `[ipv6][:port]`, lowercasing the host.
fn parse_host_port(text: &str, secure: bool) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or("unclosed '[' in the host")?;
        if address.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {address:?}"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("unexpected characters after the IPv6 address")?,
            ),
        };
        (address, port)
    } else {
        let (host, port) = match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        };
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(if c.is_ascii() {
                format!("invalid character {c:?} in the host")
            } else {
                "non-ASCII host names must be given in punycode (xn--...)".into()
            });
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = match port {
        // RFC 3986 §3.2.3: an empty port means the scheme's default.
        None | Some("") => default_port(secure),
        Some(digits) => digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse::<u16>().ok())
            .flatten()
            .filter(|&port| port != 0)
            .ok_or_else(|| format!("invalid port {digits:?}"))?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> WsUri {
        WsUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"))
    }

    fn reason(uri: &str) -> String {
        match WsUri::parse(uri) {
            Err(Error::InvalidUri { uri: got, reason }) => {
                assert_eq!(got, uri);
                reason
            }
            other => panic!("{uri}: expected InvalidUri, got {other:?}"),
        }
    }

    #[test]
    fn rfc6455_3_ws_default_port_and_resource() {
        let uri = parse("ws://h");
        assert_eq!(
            uri,
            WsUri {
                secure: false,
                host: "h".into(),
                port: 80,
                resource: "/".into(),
                user_info: None,
            }
        );
        assert_eq!(uri.host_header(), "h");
        assert_eq!(uri.authority(), ("h".to_owned(), 80));
        assert_eq!(uri.to_string(), "ws://h/");
    }

    #[test]
    fn rfc6455_3_wss_with_port_path_and_query() {
        let uri = parse("wss://h:8443/p?q=1");
        assert!(uri.secure);
        assert_eq!(uri.port, 8443);
        assert_eq!(uri.resource, "/p?q=1");
        assert_eq!(uri.host_header(), "h:8443");
        assert_eq!(uri.to_string(), "wss://h:8443/p?q=1");
    }

    #[test]
    fn rfc6455_3_default_port_depends_on_scheme() {
        let uri = parse("wss://h");
        assert_eq!(uri.port, 443);
        assert_eq!(parse("wss://h:443/").host_header(), "h");
        assert_eq!(parse("ws://h:443/").host_header(), "h:443");
        assert_eq!(parse("wss://h:80/").host_header(), "h:80");
    }

    #[test]
    fn rfc6455_3_scheme_and_host_are_case_insensitive() {
        let uri = parse("WSS://Example.COM/Path?Q=A");
        assert!(uri.secure);
        assert_eq!(uri.host, "example.com");
        assert_eq!(uri.resource, "/Path?Q=A");
    }

    #[test]
    fn rfc6455_3_query_without_path() {
        assert_eq!(parse("ws://h?x=1").resource, "/?x=1");
    }

    #[test]
    fn rfc6455_3_ipv6_literal() {
        let uri = parse("ws://[::1]:9000/x");
        assert_eq!(uri.host, "::1");
        assert_eq!(uri.port, 9000);
        assert_eq!(uri.resource, "/x");
        assert_eq!(uri.host_header(), "[::1]:9000");
        assert_eq!(uri.authority(), ("::1".to_owned(), 9000));
        assert_eq!(uri.to_string(), "ws://[::1]:9000/x");
        let uri = parse("wss://[FE80::1]");
        assert_eq!(uri.host, "fe80::1");
        assert_eq!(uri.host_header(), "[fe80::1]");
    }

    #[test]
    fn user_info_is_percent_decoded_and_hidden() {
        let uri = parse("ws://user:p%40ss@h/");
        assert_eq!(uri.user_info, Some(("user".into(), "p@ss".into())));
        assert_eq!(uri.host, "h");
        assert_eq!(uri.to_string(), "ws://h/");
        assert_eq!(
            parse("ws://a%3Ab:@h").user_info,
            Some(("a:b".into(), String::new()))
        );
    }

    #[test]
    fn iri_path_is_percent_encoded() {
        assert_eq!(
            parse("ws://h/caf\u{e9}?q=\u{e9}").resource,
            "/caf%C3%A9?q=%C3%A9"
        );
    }

    #[test]
    fn empty_port_means_default() {
        assert_eq!(parse("ws://h:/").port, 80);
    }

    #[test]
    fn rfc6455_3_rejects_other_schemes() {
        assert!(reason("http://h").contains("scheme"));
        assert!(reason("h").contains("scheme"));
        assert!(reason("ws:h").contains("//"));
    }

    #[test]
    fn rfc6455_3_rejects_fragments() {
        assert!(reason("ws://h/#f").contains("fragment"));
        assert!(reason("ws://h#f").contains("fragment"));
        assert!(reason("ws://h/p?q#").contains("fragment"));
    }

    #[test]
    fn rejects_empty_host() {
        assert!(reason("ws://").contains("empty host"));
        assert!(reason("ws://:80/").contains("empty host"));
        assert!(reason("ws://u:p@/").contains("empty host"));
    }

    #[test]
    fn rejects_bad_ports() {
        for uri in [
            "ws://h:99999",
            "ws://h:0",
            "ws://h:8a",
            "ws://h:+80",
            "ws://[::1]:x",
        ] {
            assert!(reason(uri).contains("port"), "{uri}");
        }
    }

    #[test]
    fn rejects_whitespace_and_control_characters() {
        for uri in [
            "ws://h /x",
            "ws://h/\n",
            "ws://h/\r\nX: y",
            " ws://h",
            "ws://h/\u{7f}",
        ] {
            assert!(reason(uri).contains("whitespace or control"), "{uri:?}");
        }
    }

    #[test]
    fn rejects_bad_hosts() {
        assert!(reason("ws://[::1").contains("unclosed"));
        assert!(reason("ws://[zz]/").contains("IPv6"));
        assert!(reason("ws://[::1]x/").contains("after the IPv6"));
        assert!(reason("ws://h%41/").contains("invalid character"));
        assert!(reason("ws://h\u{e9}/").contains("punycode"));
    }

    #[test]
    fn rejects_bad_user_info() {
        assert!(reason("ws://user@h/").contains("password"));
        assert!(reason("ws://u:%zz@h/").contains("percent"));
        assert!(reason("ws://u:%ff@h/").contains("UTF-8"));
    }
}
