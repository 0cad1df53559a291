//! The one error type of ferrows. Every face maps it once: Python to `ferrows.exceptions`,
//! C to stable result codes.

use std::fmt;

use crate::protocol::handshake::Response;

/// A close frame as sent or received: its code and UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code (1000 normal, 1001 going away, ...).
    pub code: u16,
    /// The reason, UTF-8, at most 123 bytes.
    pub reason: String,
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.reason)
        }
    }
}

/// How a connection ended: the close frames exchanged (if any) and in which order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close frame received from the peer, if one arrived.
    pub rcvd: Option<CloseFrame>,
    /// The close frame we sent, if one was sent.
    pub sent: Option<CloseFrame>,
    /// True when the peer's close frame arrived before ours was sent.
    pub rcvd_then_sent: Option<bool>,
}

impl CloseInfo {
    /// A clean close: both frames exchanged and the code is 1000 or 1001 (as websockets does).
    pub fn is_ok(&self) -> bool {
        let ok = |f: &Option<CloseFrame>| matches!(f, Some(c) if c.code == 1000 || c.code == 1001);
        ok(&self.rcvd) && ok(&self.sent)
    }

    /// The code a user should see: the received one, else the sent one, else 1006 (abnormal).
    pub fn code(&self) -> u16 {
        self.rcvd
            .as_ref()
            .or(self.sent.as_ref())
            .map_or(1006, |frame| frame.code)
    }

    /// The reason matching [`CloseInfo::code`].
    pub fn reason(&self) -> &str {
        self.rcvd
            .as_ref()
            .or(self.sent.as_ref())
            .map_or("", |frame| frame.reason.as_str())
    }
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rcvd, &self.sent) {
            (None, None) => write!(f, "no close frame received or sent"),
            (Some(r), None) => write!(f, "received {r}; then no close frame sent"),
            (None, Some(s)) => write!(f, "sent {s}; no close frame received"),
            (Some(r), Some(s)) => {
                if self.rcvd_then_sent == Some(true) {
                    write!(f, "received {r}; then sent {s}")
                } else {
                    write!(f, "sent {s}; then received {r}")
                }
            }
        }
    }
}

/// An `InvalidHeader`'s text: "missing X header" (as websockets words it), else "invalid X
/// header: reason".
fn header_problem(name: &str, reason: &str) -> String {
    if reason == "missing" {
        format!("missing {name} header")
    } else {
        format!("invalid {name} header: {reason}")
    }
}

/// What went wrong, specifically enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URI is not a valid ws:// or wss:// URI.
    #[error("invalid URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server answered the opening handshake with a status other than 101.
    #[error("server rejected WebSocket connection: HTTP {}", .0.status)]
    InvalidStatus(Box<Response>),
    /// A handshake header is missing or wrong.
    #[error("{}", header_problem(name, reason))]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Origin header is missing or not in the allow-list.
    #[error("invalid Origin header: {0:?}")]
    InvalidOrigin(Option<String>),
    /// The HTTP message of the handshake is malformed or too large.
    #[error("invalid HTTP message: {0}")]
    InvalidMessage(String),
    /// Subprotocol or extension negotiation failed.
    #[error("negotiation failed: {0}")]
    Negotiation(String),
    /// The peer broke the protocol; the connection closes with `code`.
    #[error("protocol error: {reason}")]
    Protocol {
        /// The close code the connection closes with (1002, 1007...).
        code: u16,
        /// What the peer did.
        reason: String,
    },
    /// A message or frame exceeded its size limit (close code 1009).
    #[error("payload too big: {0}")]
    PayloadTooBig(String),
    /// The connection is closed; the close frames tell how.
    #[error("connection closed: {0}")]
    ConnectionClosed(CloseInfo),
    /// A wait ran past its timeout (which wait is named).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A call that must not run concurrently with itself did (two recv calls at once).
    #[error("{0}")]
    Concurrency(String),
    /// A blocking call was made from a runtime thread, where it would deadlock.
    #[error("blocking call on a ferrows runtime thread would deadlock")]
    WouldDeadlock,
    /// TLS configuration or handshake failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's certificate failed verification: unknown issuer, wrong name, expired...
    #[error("TLS: untrusted certificate: {0}")]
    UntrustedCertificate(String),
    /// The proxy URL is not a valid http, https, socks5 or socks5h URL.
    #[error("invalid proxy {proxy:?}: {reason}")]
    InvalidProxy {
        /// The proxy URL as given, without its credentials.
        proxy: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The proxy broke its protocol, refused the credentials or (SOCKS) the connection.
    #[error("proxy: {0}")]
    Proxy(String),
    /// The HTTP proxy answered CONNECT with a status other than 2xx.
    #[error("proxy rejected connection: HTTP {}", .0.status)]
    ProxyStatus(Box<Response>),
    /// An invalid option or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An operating-system error (connect refused, reset...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The result type of ferrows.
pub type Result<T, E = Error> = std::result::Result<T, E>;
