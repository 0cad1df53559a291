//! Limits and timers of the protocol state machine, with safe defaults.

use std::time::Duration;

/// The default of [`ProtocolConfig::max_fragments`]: generous (a 4 MiB message in 64-byte
/// frames fits), yet a message of a million one-byte frames is refused.
pub const DEFAULT_MAX_FRAGMENTS: usize = 100_000;

/// Settings of one connection's protocol state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Largest message accepted, in bytes; `None` is unlimited. Exceeding it closes with 1009.
    pub max_message_size: Option<usize>,
    /// Largest frame accepted, in bytes; `None` leaves only the message limit.
    pub max_frame_size: Option<usize>,
    /// Most frames one message may span; `None` is unlimited. Exceeding it closes with 1009:
    /// a message of many tiny frames costs work per frame that its size does not show.
    pub max_fragments: Option<usize>,
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
            max_fragments: Some(DEFAULT_MAX_FRAGMENTS),
            close_timeout: Some(Duration::from_secs(10)),
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
        }
    }
}
