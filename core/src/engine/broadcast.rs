//! Broadcast on the engine: one message to many connections, encoded once
//! ([`crate::protocol::Broadcast`]), with the caller's policy for connections whose outbox
//! is over its high watermark.

use super::connection::Connection;
use crate::error::Error;
use crate::protocol::{close, Broadcast, MessageKind};

/// What to do with a connection whose unsent bytes are at or over its high watermark, where
/// `send` would wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Leave it out of this broadcast.
    Skip,
    /// Start its closing handshake with this code (1008 or 1013) and reason.
    Close {
        /// 1008 (policy violation) or 1013 (try again later).
        code: u16,
        /// At most 123 bytes.
        reason: String,
    },
}

impl SlowPolicy {
    /// Checks the close code and reason before any connection is touched.
    pub fn validate(&self) -> Result<(), Error> {
        if let SlowPolicy::Close { code, reason } = self {
            if ![close::POLICY_VIOLATION, close::TRY_AGAIN_LATER].contains(code) {
                return Err(Error::Config(format!(
                    "a slow consumer is closed with 1008 or 1013, not {code}"
                )));
            }
            if reason.len() > 123 {
                return Err(Error::Config("close reason longer than 123 bytes".into()));
            }
        }
        Ok(())
    }
}

/// What a broadcast did with one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// The message was queued (and written, if the socket took it at once).
    Sent = 0,
    /// Over its high watermark, or in the middle of sending a fragmented message: left out.
    Skipped = 1,
    /// Over its high watermark: its closing handshake was started ([`SlowPolicy::Close`]).
    Closed = 2,
    /// Closing or closed already: left out.
    NotOpen = 3,
}

/// Sends `data` as one `kind` message to every connection in `connections`, encoding the
/// frame once for all of them that can share it; returns what happened to each, in order.
/// Slow connections are skipped or closed as `policy` says, and counted
/// ([`Connection::broadcast_skips`]). Never waits for room.
pub fn broadcast<'c>(
    connections: impl IntoIterator<Item = &'c Connection>,
    kind: MessageKind,
    data: &[u8],
    policy: &SlowPolicy,
) -> Result<Vec<Outcome>, Error> {
    policy.validate()?;
    if kind == MessageKind::Text && std::str::from_utf8(data).is_err() {
        return Err(Error::Config("text message is not UTF-8".into()));
    }
    let mut message = Broadcast::new(kind, data);
    Ok(connections
        .into_iter()
        .map(|connection| connection.take_broadcast(&mut message, policy))
        .collect())
}
