//! Broadcast: one message encoded once for many connections.
//!
//! A server's frames are not masked, so one frame fits every server-side connection: it is
//! encoded once, and with permessage-deflate compressed once per compressor key among the
//! connections without context takeover on our side. A connection whose bytes depend on it
//! alone (a client masks each frame with a fresh key; a compressor with context takeover
//! depends on the messages before) encodes the message itself, as `send_message` would.

use tungstenite::protocol::frame::FrameHeader;

use super::connection::{data_opcode, BroadcastEncoding, Connection, MessageKind};
use super::deflate::{Compressor, DeflateKey};
use crate::error::Error;

/// A message being broadcast: its frames, encoded on first use and then shared.
pub struct Broadcast<'a> {
    kind: MessageKind,
    data: &'a [u8],
    plain: Option<Vec<u8>>,
    /// Compressed frames by compressor key: a server has one or a few keys.
    compressed: Vec<(DeflateKey, Vec<u8>)>,
}

/// A frame a [`Broadcast`] encoded for a connection, for [`Connection::send_shared`] or to
/// be written as it is (after the connection's pending output).
#[derive(Debug, Clone, Copy)]
pub struct SharedFrame<'b> {
    bytes: &'b [u8],
    /// The message's length and how it was encoded: a connection takes the frame only if it
    /// would have encoded the message the same way.
    message_len: usize,
    encoding: BroadcastEncoding,
}

impl<'b> SharedFrame<'b> {
    /// The frame's bytes.
    pub fn bytes(&self) -> &'b [u8] {
        self.bytes
    }

    /// The length of the message it carries (before compression).
    pub fn message_len(&self) -> usize {
        self.message_len
    }

    /// Whether `connection` would encode the message into these very bytes.
    pub(crate) fn fits(&self, connection: &Connection) -> bool {
        connection.broadcast_encoding(self.message_len) == self.encoding
    }
}

impl<'a> Broadcast<'a> {
    /// Prepares to broadcast `data` as one `kind` message; nothing is encoded yet.
    pub fn new(kind: MessageKind, data: &'a [u8]) -> Self {
        Self {
            kind,
            data,
            plain: None,
            compressed: Vec::new(),
        }
    }

    /// The shared frame for `connection`, or `None` when it must encode the message itself
    /// ([`Broadcast::send_to`] does either).
    pub fn frame_for(&mut self, connection: &Connection) -> Option<SharedFrame<'_>> {
        let encoding = connection.broadcast_encoding(self.data.len());
        let frame = match encoding {
            BroadcastEncoding::Own => return None,
            BroadcastEncoding::Plain => {
                if self.plain.is_none() {
                    self.plain = Some(frame(self.kind, false, self.data));
                }
                self.plain.as_deref()
            }
            BroadcastEncoding::Compressed(key) => {
                let index = match self.compressed.iter().position(|(k, _)| *k == key) {
                    Some(index) => index,
                    None => {
                        let mut payload = Vec::new();
                        Compressor::stateless(key).compress(self.data, &mut payload, true);
                        let frame = frame(self.kind, true, &payload);
                        self.compressed.push((key, frame));
                        self.compressed.len() - 1
                    }
                };
                Some(self.compressed[index].1.as_slice())
            }
        };
        frame.map(|bytes| SharedFrame {
            bytes,
            message_len: self.data.len(),
            encoding,
        })
    }

    /// Queues the message on `connection`: the shared frame when one fits it, else encoded
    /// by the connection itself.
    pub fn send_to(&mut self, connection: &mut Connection) -> Result<(), Error> {
        match self.frame_for(connection) {
            Some(frame) => connection.send_shared(frame),
            None => connection.send_message(self.kind, self.data),
        }
    }

    /// How many shared frames were encoded so far: one per distinct encoding (plain, or
    /// compressed with one key), whatever the number of connections.
    pub fn shared_encodings(&self) -> usize {
        usize::from(self.plain.is_some()) + self.compressed.len()
    }
}

/// A final, unmasked data frame carrying `payload`; `compressed` sets RSV1 (RFC 7692 §6).
fn frame(kind: MessageKind, compressed: bool, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: true,
        rsv1: compressed,
        rsv2: false,
        rsv3: false,
        opcode: data_opcode(kind),
        mask: None,
    };
    let mut out = Vec::with_capacity(10 + payload.len());
    header
        .format(payload.len() as u64, &mut out)
        .expect("writing to a Vec cannot fail");
    out.extend_from_slice(payload);
    out
}
