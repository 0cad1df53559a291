//! The connection engine on ferrows' own tokio runtime: sockets, TLS, timers, servers, and
//! per-connection inboxes and outboxes with byte budgets. Consumers on other threads (the
//! Python sync face, the C ABI) wait on it with timeouts; nothing here calls into them.

pub mod broadcast;
pub mod client;
pub mod config;
pub mod connection;
pub mod runtime;
pub mod server;
mod slot;
pub mod tls;
pub mod transport;

pub use crate::protocol::Chunk;
pub use broadcast::{broadcast, Outcome, SlowPolicy};
pub use client::{connect, connect_after, connect_then, ConnectAttempt, PendingConnect};
pub use config::{ClientConfig, ProxySetting, ServerConfig, Watermarks};
pub use connection::{Connection, Ended, HandshakeInfo, Notifier, PongWaiter};
pub use server::{PendingHandshake, Server};
pub use slot::Signal;
pub use tls::{TlsClientOptions, TlsServerOptions};
