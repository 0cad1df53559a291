//! Engine settings: the protocol's limits plus buffers, timeouts and TLS, with safe defaults.

use std::time::Duration;

use super::tls::{TlsClientOptions, TlsServerOptions};
use crate::error::Result;
use crate::protocol::handshake::{ClientOptions, HandshakeLimits, Headers, ServerOptions};
use crate::protocol::proxy::{proxy_from_env, Proxy};
use crate::protocol::uri::WsUri;
use crate::protocol::ProtocolConfig;

/// A byte budget: above `high` the producer waits (or the reader pauses) until the level
/// falls to `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    /// Above this many bytes, the producer waits.
    pub high: usize,
    /// The producer resumes once the level falls to this many bytes.
    pub low: usize,
}

impl Watermarks {
    /// A budget with `low` at a quarter of `high`, as websockets does for its write limit.
    pub fn with_high(high: usize) -> Self {
        Self {
            high,
            low: high / 4,
        }
    }
}

/// The inbox default: 4 MiB holds several maximum-size messages before reading pauses.
pub const DEFAULT_INBOX: Watermarks = Watermarks {
    high: 4 << 20,
    low: 1 << 20,
};
/// The outbox default: send() waits once 1 MiB is queued and not yet written.
pub const DEFAULT_OUTBOX: Watermarks = Watermarks {
    high: 1 << 20,
    low: 256 << 10,
};

/// Whether a client connects through a proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// Directly.
    #[default]
    Off,
    /// Through this proxy.
    Url(Proxy),
    /// Through the proxy the process environment names for each URI, as `websockets` chooses
    /// it ([`crate::protocol::proxy::proxy_from_env`]); directly if it names none.
    FromEnvironment,
}

impl ProxySetting {
    /// The proxy for `uri`, reading the process environment if the setting says so.
    pub fn resolve(&self, uri: &WsUri) -> Result<Option<Proxy>> {
        match self {
            ProxySetting::Off => Ok(None),
            ProxySetting::Url(proxy) => Ok(Some(proxy.clone())),
            ProxySetting::FromEnvironment => proxy_from_env(uri, |name| std::env::var(name).ok())
                .map(|url| Proxy::parse(&url))
                .transpose(),
        }
    }
}

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Limits and timers of the connection.
    pub protocol: ProtocolConfig,
    /// What the opening request carries: origin, subprotocols, headers.
    pub handshake: ClientOptions,
    /// Bounds on the handshake response.
    pub limits: HandshakeLimits,
    /// How wss:// servers are verified, and the client certificate.
    pub tls: TlsClientOptions,
    /// Bounds DNS, TCP connect, TLS and the opening handshake together.
    pub open_timeout: Option<Duration>,
    /// Budget of received, unread bytes.
    pub inbox: Watermarks,
    /// Budget of sent, unwritten bytes.
    pub outbox: Watermarks,
    /// Whether and through which proxy to connect.
    pub proxy: ProxySetting,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            protocol: ProtocolConfig::default(),
            handshake: ClientOptions::default(),
            limits: HandshakeLimits::default(),
            tls: TlsClientOptions::default(),
            open_timeout: Some(Duration::from_secs(10)),
            inbox: DEFAULT_INBOX,
            outbox: DEFAULT_OUTBOX,
            proxy: ProxySetting::Off,
        }
    }
}

/// How a server accepts connections.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits and timers of each connection.
    pub protocol: ProtocolConfig,
    /// Subprotocols and the origin allow-list.
    pub handshake: ServerOptions,
    /// Bounds on the handshake request.
    pub limits: HandshakeLimits,
    /// The certificate and key: the server speaks TLS when set.
    pub tls: Option<TlsServerOptions>,
    /// Bounds TLS, reading the request and the application's accept decision.
    pub handshake_timeout: Option<Duration>,
    /// Connections beyond this many (handshaking or open) get HTTP 503.
    pub max_connections: usize,
    /// Handshakes waiting for the application to accept them, and connections waiting in
    /// the kernel's listen queue (which the kernel caps at `net.core.somaxconn`); beyond
    /// this, HTTP 503. `None`: `max_connections`, so only that limit refuses connections.
    pub backlog: Option<usize>,
    /// Headers added to every handshake response (such as `Server`).
    pub response_headers: Headers,
    /// Budget of received, unread bytes, per connection.
    pub inbox: Watermarks,
    /// Budget of sent, unwritten bytes, per connection.
    pub outbox: Watermarks,
}

impl ServerConfig {
    /// The number of handshakes that may wait for the application.
    pub fn effective_backlog(&self) -> usize {
        self.backlog.unwrap_or(self.max_connections)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        let mut response_headers = Headers::new();
        response_headers.insert("Server", &format!("ferrows/{}", env!("CARGO_PKG_VERSION")));
        Self {
            protocol: ProtocolConfig::default(),
            handshake: ServerOptions::default(),
            limits: HandshakeLimits::default(),
            tls: None,
            handshake_timeout: Some(Duration::from_secs(10)),
            max_connections: 10_000,
            backlog: None,
            response_headers,
            inbox: DEFAULT_INBOX,
            outbox: DEFAULT_OUTBOX,
        }
    }
}
