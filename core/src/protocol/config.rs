//! Limits and timers of the protocol state machine, with safe defaults.

use std::time::Duration;

/// Settings of one connection's protocol state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Largest message accepted, in bytes; `None` is unlimited. Exceeding it closes with 1009.
    pub max_message_size: Option<usize>,
    /// Largest frame accepted, in bytes; `None` leaves only the message limit.
    pub max_frame_size: Option<usize>,
    /// Hand data over frame by frame ([`crate::protocol::Event::Fragment`]) instead of as
    /// reassembled messages.
    pub streaming: bool,
    /// How long to wait for the peer's side of the closing handshake.
    pub close_timeout: Option<Duration>,
    /// Send a keepalive ping this often; `None` disables keepalive.
    pub ping_interval: Option<Duration>,
    /// Close with 1011 if a keepalive ping is not answered within this time.
    pub ping_timeout: Option<Duration>,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            max_message_size: Some(1 << 20),
            max_frame_size: None,
            streaming: false,
            close_timeout: Some(Duration::from_secs(10)),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
        }
    }
}
