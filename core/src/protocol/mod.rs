//! The sans-IO protocol core: bytes in, events and bytes out, plus the next deadline.
//! It knows nothing of sockets, threads, clocks or Python; every face drives it.

pub mod broadcast;
pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod handshake;
pub mod mask;
pub mod message;
pub mod proxy;
pub mod uri;
pub mod utf8;

pub use broadcast::{Broadcast, SharedFrame};
pub use config::ProtocolConfig;
pub use connection::{Connection, Event, MessageKind, PingAck, Role, State};
pub use deflate::{Agreement, DeflateConfig};
pub use message::{recycle_message_buffer, recycle_shared_message_buffer, Chunk, Inbox};
