//! The RFC 6455 state machine of an open connection: frames in, events out; messages,
//! pings and closes in, bytes out; and the next deadline, with time passed in by the driver.

use std::collections::VecDeque;
use std::io::Cursor;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::close::{self, INTERNAL_ERROR, INVALID_DATA, MESSAGE_TOO_BIG, PROTOCOL_ERROR};
use super::deflate::{Agreement, Compressor, DeflateConfig, DeflateKey, InflateError, Inflater};
use super::mask::{apply_mask, copy_into, extend_masked, mask_into};
use super::message::{message_buffer, Chunk, Inbox};
use super::utf8::Utf8Validator;
use super::ProtocolConfig;
use crate::error::{CloseFrame, CloseInfo, Error};
use crate::metrics::{Pause, ServerMetrics};

/// Which end of the connection we are: clients mask, servers require masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that opened the connection.
    Client,
    /// The end that accepted it.
    Server,
}

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// Where the connection is in its life (RFC 6455 §4–§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// A close frame was sent or received; waiting for the rest of the closing handshake.
    Closing,
    /// Finished: the driver closes the transport once the output is flushed.
    Closed,
}

/// Something the peer did besides sending data (which waits in the [`Inbox`]), for the
/// driver to hand to the application.
#[derive(Debug)]
pub enum Event {
    /// A ping arrived (its pong is owed: written with the next output taken; past
    /// [`MAX_OWED_PONGS`] unwritten, the latest ping's pong replaces the newest owed one).
    Ping(Vec<u8>),
    /// A pong arrived; `acknowledged` is set when it answers one of our pings.
    Pong {
        /// The pong's payload.
        data: Vec<u8>,
        /// The ping it answers, and with it every ping sent before it (RFC 6455 §5.5.3 lets
        /// a peer answer only the latest).
        acknowledged: Option<PingAck>,
    },
    /// The connection is over; always the last event. `error` says why it failed, if it did.
    Closed {
        /// The close frames exchanged.
        info: CloseInfo,
        /// The failure that ended the connection, if any.
        error: Option<Error>,
    },
}

/// Our ping that a pong answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAck {
    /// The id [`Connection::send_ping`] returned; every ping with a lower id is answered too.
    pub id: u64,
    /// Its round-trip time.
    pub latency: Duration,
}

/// A ping of ours waiting for its pong.
struct PendingPing {
    id: u64,
    payload: Vec<u8>,
    sent_at: Instant,
}

/// Pongs owed and not yet written, at most: a peer that sends a few pings at once gets an
/// answer to each (as conformance suites expect); a flood whose answers are not read costs
/// this many pongs.
pub const MAX_OWED_PONGS: usize = 16;

/// Pings of ours waiting for a pong at once, at most: each one is remembered until answered.
pub const MAX_PENDING_PINGS: usize = 1024;

/// Reading position inside the frame stream.
enum ReadState {
    Header,
    Payload {
        header: FrameHeader,
        remaining: u64,
        consumed: usize,
    },
}

impl ReadState {
    /// Inside a payload: its frame's header, the bytes remaining and those consumed.
    fn payload(&mut self) -> Option<(&FrameHeader, &mut u64, &mut usize)> {
        match self {
            ReadState::Header => None,
            ReadState::Payload {
                header,
                remaining,
                consumed,
            } => Some((header, remaining, consumed)),
        }
    }
}

/// The message being received: the current frame's data goes to the inbox when the frame
/// ends (text up to its last whole character).
struct Incoming {
    kind: MessageKind,
    /// The message's data not yet in the inbox (inflated, when compressed).
    data: Vec<u8>,
    /// The message's size so far (inflated), for the size limit.
    size: usize,
    frames: usize,
    utf8: Utf8Validator,
    /// Compressed with permessage-deflate (RSV1 on its first frame): `wire` counts the
    /// compressed bytes, bounded apart from the inflated size.
    compressed: bool,
    wire: u64,
}

/// permessage-deflate, once negotiated: the agreement and each direction's codec.
struct Deflate {
    agreement: Agreement,
    compressor: Compressor,
    inflater: Inflater,
}

/// One WebSocket connection's protocol state, without I/O.
pub struct Connection {
    role: Role,
    config: ProtocolConfig,
    state: State,
    read: ReadState,
    header_buf: Vec<u8>,
    control: Vec<u8>,
    incoming: Option<Incoming>,
    inbox: Inbox,
    /// A fragmented message is being sent; `true` when it is compressed.
    sending_fragmented: Option<bool>,
    deflate: Option<Deflate>,
    /// Unmasked compressed input on its way to the inflater.
    unmasked: Vec<u8>,
    /// Above this many charged bytes in the inbox, input is held instead of processed.
    inbox_limit: Option<usize>,
    /// Input received while the inbox was over its limit, processed once it is not: a few
    /// compressed bytes can inflate to many messages, so a read's worth of input could
    /// otherwise fill the inbox far past what its driver allows before it pauses reading.
    held_input: Vec<u8>,
    output: Vec<u8>,
    /// Payloads of the pongs owed, not yet in `output`, oldest first: at most
    /// [`MAX_OWED_PONGS`]; past that, the latest ping replaces the newest owed pong (RFC 6455
    /// §5.5.3 allows answering only the latest), so a flood of pings whose answers the peer
    /// does not read costs a few pongs, not one each.
    owed_pongs: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    close: CloseInfo,
    failure: Option<Error>,
    /// After a protocol failure the rest of the input is noise.
    discard_input: bool,
    close_deadline: Option<Instant>,
    pending_pings: VecDeque<PendingPing>,
    next_ping_id: u64,
    next_keepalive: Option<Instant>,
    keepalive_deadline: Option<Instant>,
    latency: Option<Duration>,
    /// Broadcasts this connection missed for being slow ([`Connection::count_broadcast_skip`]).
    broadcast_skips: u64,
    /// The server's counters, for a connection it accepted.
    metrics: Option<Arc<ServerMetrics>>,
}

/// How a broadcast message reaches a connection ([`Connection::broadcast_encoding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BroadcastEncoding {
    /// The unmasked, uncompressed frame every such connection shares.
    Plain,
    /// The unmasked frame compressed by a stateless compressor with this key, shared by every
    /// connection with the same key.
    Compressed(DeflateKey),
    /// Encoded for this connection alone: a client masks each frame with its own key, and a
    /// compressor with context takeover depends on the messages before.
    Own,
}

/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
const MAX_HEADER: usize = 14;

impl Connection {
    /// Starts an open connection (the opening handshake is done) at time `now`.
    pub fn new(role: Role, config: ProtocolConfig, now: Instant) -> Self {
        let next_keepalive = after(now, config.ping_interval);
        Self {
            role,
            config,
            state: State::Open,
            read: ReadState::Header,
            header_buf: Vec::with_capacity(MAX_HEADER),
            control: Vec::new(),
            incoming: None,
            inbox: Inbox::default(),
            sending_fragmented: None,
            deflate: None,
            unmasked: Vec::new(),
            inbox_limit: None,
            held_input: Vec::new(),
            output: Vec::new(),
            owed_pongs: VecDeque::new(),
            events: VecDeque::new(),
            close: CloseInfo::default(),
            failure: None,
            discard_input: false,
            close_deadline: None,
            pending_pings: VecDeque::new(),
            next_ping_id: 0,
            next_keepalive,
            keepalive_deadline: None,
            latency: None,
            broadcast_skips: 0,
            metrics: None,
        }
    }

    /// Counts this connection, accepted by a server, in `metrics` from now until it ends:
    /// its messages, pings and close code.
    pub fn attach_metrics(&mut self, metrics: Arc<ServerMetrics>) {
        metrics.record_accepted();
        self.metrics = Some(metrics);
    }

    /// The counters of the server that accepted this connection; `None` for a client's.
    pub fn server_metrics(&self) -> Option<&Arc<ServerMetrics>> {
        self.metrics.as_ref()
    }

    /// Counts a pause for lack of room in the server's metrics, if attached (the driver
    /// decides when to pause).
    pub fn record_pause(&self, side: Pause) {
        if let Some(metrics) = &self.metrics {
            metrics.record_pause(side);
        }
    }

    fn record_sent(&self, bytes: usize, whole: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.record_sent(bytes, whole);
        }
    }

    /// Turns on permessage-deflate as the opening handshake agreed: `config` is our side's
    /// settings (level, memLevel, the size under which messages go uncompressed).
    pub fn enable_deflate(&mut self, agreement: Agreement, config: &DeflateConfig) {
        self.deflate = Some(Deflate {
            agreement,
            compressor: Compressor::new(&agreement, config, self.role),
            inflater: Inflater::new(&agreement, self.role),
        });
    }

    /// The permessage-deflate parameters agreed, if it was negotiated.
    pub fn deflate(&self) -> Option<&Agreement> {
        self.deflate.as_ref().map(|d| &d.agreement)
    }

    /// True when a message of `len` bytes sent with `compress` would be compressed, which
    /// [`Connection::encode_message_into`] (always uncompressed) cannot do.
    pub fn compresses(&self, len: usize, compress: bool) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|d| d.compressor.wants(len, compress))
    }

    /// Holds input instead of processing it while the inbox is charged more than `limit`
    /// bytes (the driver's high watermark, at which it stops reading): the inbox then grows
    /// past the limit by one message at most, however much the input inflates. Held input
    /// is processed by the next [`Connection::receive_data`], an empty one will do, once the
    /// application has taken data.
    pub fn set_inbox_limit(&mut self, limit: Option<usize>) {
        self.inbox_limit = limit;
    }

    /// True while input waits for room in the inbox ([`Connection::set_inbox_limit`]).
    pub fn holds_input(&self) -> bool {
        !self.held_input.is_empty()
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The close frames exchanged so far.
    pub fn close_info(&self) -> &CloseInfo {
        &self.close
    }

    /// The round-trip time measured by the last answered ping.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How many events are waiting for [`Connection::poll_event`].
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// Received data waiting for the application, to look at; take it with
    /// [`Connection::pop_message`], [`Connection::next_message`] or [`Connection::pop_chunk`].
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// How many pings were sent so far, keepalive's and the driver's (ping ids are this
    /// count before each).
    pub fn pings_sent(&self) -> u64 {
        self.next_ping_id
    }

    /// Takes the next whole message, if all of it has arrived.
    pub fn pop_message(&mut self) -> Option<(MessageKind, Vec<u8>)> {
        self.inbox.pop_message()
    }

    /// [`Connection::pop_message`] for a receiver: refuses while a message is partly taken
    /// as chunks, whose rest would otherwise pass for a message of its own.
    pub fn next_message(&mut self) -> Result<Option<(MessageKind, Vec<u8>)>, Error> {
        if self.inbox.mid_stream() {
            return Err(Error::Concurrency(
                "a message is being received in chunks: take its rest as chunks".into(),
            ));
        }
        Ok(self.inbox.pop_message())
    }

    /// Takes the next chunk of received data, in arrival order.
    pub fn pop_chunk(&mut self) -> Option<Chunk> {
        self.inbox.pop_chunk()
    }

    /// Bytes waiting to be written to the transport.
    pub fn output(&mut self) -> &[u8] {
        self.flush_pong();
        &self.output
    }

    /// How many bytes are waiting to be written, counting the owed pongs.
    pub fn output_len(&self) -> usize {
        let pongs: usize = self
            .owed_pongs
            .iter()
            .map(|p| self.frame_len(p.len()))
            .sum();
        self.output.len() + pongs
    }

    /// True when bytes are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty() || !self.owed_pongs.is_empty()
    }

    /// Takes the bytes to write, leaving the output buffer empty.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.flush_pong();
        std::mem::take(&mut self.output)
    }

    /// Drops the first `count` bytes of what [`Connection::output`] returned: the driver
    /// wrote them.
    pub fn consume_output(&mut self, count: usize) {
        self.output.drain(..count);
    }

    /// Appends the bytes to write to `out` (lets a driver reuse its write buffer).
    pub fn drain_output_into(&mut self, out: &mut Vec<u8>) {
        self.flush_pong();
        if out.is_empty() {
            std::mem::swap(out, &mut self.output);
        } else {
            out.append(&mut self.output);
        }
    }

    /// True once the driver should flush the output and close the transport.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The earliest time at which [`Connection::handle_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.close_deadline,
            self.next_keepalive,
            self.keepalive_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`: keepalive pings, their timeout and the close timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.close_deadline = None;
            // With both close frames exchanged, a server slow to drop TCP is no failure.
            let error = self
                .close
                .rcvd
                .is_none()
                .then_some(Error::Timeout("closing handshake"));
            self.finish(error);
            return;
        }
        if self.keepalive_deadline.is_some_and(|d| now >= d) {
            self.keepalive_deadline = None;
            // The peer is gone or stuck: send 1011 and drop the transport without waiting.
            self.send_close_frame(INTERNAL_ERROR, "keepalive ping timeout");
            self.finish(Some(Error::Timeout("keepalive ping")));
            return;
        }
        if self.next_keepalive.is_some_and(|d| now >= d) {
            self.next_keepalive = after(now, self.config.ping_interval);
            if self.state == State::Open && self.keepalive_deadline.is_none() {
                let mut payload = rand::random::<[u8; 4]>().to_vec();
                while self.pending_pings.iter().any(|p| p.payload == payload) {
                    payload = rand::random::<[u8; 4]>().to_vec();
                }
                self.queue_ping(payload, now);
                self.keepalive_deadline = after(now, self.config.ping_timeout);
            }
        }
    }

    /// Feeds bytes read from the transport (after any input held for room in the inbox).
    pub fn receive_data(&mut self, data: &[u8], now: Instant) {
        if self.held_input.is_empty() {
            let used = self.consume(data, now);
            self.held_input.extend_from_slice(&data[used..]);
        } else {
            let mut held = std::mem::take(&mut self.held_input);
            held.extend_from_slice(data);
            let used = self.consume(&held, now);
            held.drain(..used);
            self.held_input = held;
        }
    }

    /// Processes `data` until it ends or the inbox is over its limit; returns the bytes
    /// used (all of them once the input is no longer read).
    fn consume(&mut self, data: &[u8], now: Instant) -> usize {
        let mut rest = data;
        while !rest.is_empty() && !self.discard_input && self.state != State::Closed {
            if self
                .inbox_limit
                .is_some_and(|limit| self.inbox.charged_bytes() > limit)
            {
                return data.len() - rest.len();
            }
            let used = match self.read {
                ReadState::Header => self.read_header(rest, now),
                ReadState::Payload { .. } => self.read_payload(rest, now),
            };
            rest = &rest[used..];
        }
        data.len()
    }

    /// The transport reached end of file.
    pub fn receive_eof(&mut self) {
        if self.state == State::Closed {
            return;
        }
        let error = if self.close.rcvd.is_some() || self.failure.is_some() {
            None
        } else {
            Some(Error::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection dropped without a close frame",
            )))
        };
        self.finish(error);
    }

    /// The transport failed (reset, TLS error...): the connection ends abnormally, unless the
    /// closing handshake is complete: then it ends as at end of file (a TLS peer that closes
    /// TCP without `close_notify` after the close frames did nothing wrong by RFC 6455).
    pub fn receive_transport_error(&mut self, error: Error) {
        if self.close.rcvd.is_some() && self.close.sent.is_some() {
            self.receive_eof();
        } else if self.state != State::Closed {
            self.finish(Some(error));
        }
    }

    /// Queues a whole message, compressed when permessage-deflate was negotiated and the
    /// message is not under the configured size.
    pub fn send_message(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), Error> {
        self.send_message_with(kind, data, true)
    }

    /// [`Connection::send_message`]; `compress` false sends this message uncompressed.
    pub fn send_message_with(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        compress: bool,
    ) -> Result<(), Error> {
        self.check_send_message()?;
        if self.compresses(data.len(), compress) {
            self.write_compressed_frame(data_opcode(kind), true, data);
        } else {
            self.write_frame(data_opcode(kind), true, data);
        }
        self.record_sent(data.len(), true);
        Ok(())
    }

    /// Checks that a whole message may be sent now: the connection is open and no fragmented
    /// message is under way.
    pub fn check_send_message(&self) -> Result<(), Error> {
        self.check_can_send()?;
        if self.sending_fragmented.is_some() {
            return Err(Error::Concurrency(
                "cannot send a message while a fragmented message is being sent".into(),
            ));
        }
        Ok(())
    }

    /// How a broadcast message of `len` bytes is encoded for this connection: shared bytes
    /// only where they are exactly what [`Connection::send_message`] would write.
    pub(crate) fn broadcast_encoding(&self, len: usize) -> BroadcastEncoding {
        if self.role == Role::Client {
            return BroadcastEncoding::Own;
        }
        match &self.deflate {
            Some(d) if d.compressor.wants(len, true) => match d.compressor.shared_key() {
                Some(key) => BroadcastEncoding::Compressed(key),
                None => BroadcastEncoding::Own,
            },
            _ => BroadcastEncoding::Plain,
        }
    }

    /// Queues a frame a [`super::broadcast::Broadcast`] encoded for this connection, as
    /// [`Connection::send_message`] would have queued it; refuses a frame encoded for a
    /// connection that encodes differently (a client, other deflate settings).
    pub fn send_shared(&mut self, frame: super::broadcast::SharedFrame<'_>) -> Result<(), Error> {
        self.check_send_message()?;
        if !frame.fits(self) {
            return Err(Error::Config(
                "a broadcast frame encoded for a connection with other settings".into(),
            ));
        }
        self.flush_pong();
        self.output.extend_from_slice(frame.bytes());
        self.record_shared(&frame);
        Ok(())
    }

    /// Counts a shared broadcast frame sent on this connection in its server's metrics, as
    /// [`Connection::send_message`] counts its own (a driver that writes the frame itself,
    /// without [`Connection::send_shared`], calls it).
    pub fn record_shared(&self, frame: &super::broadcast::SharedFrame<'_>) {
        self.record_sent(frame.message_len(), true);
    }

    /// Records that a broadcast skipped (or closed) this connection for being slow, here
    /// and in its server's metrics.
    pub fn count_broadcast_skip(&mut self) {
        self.broadcast_skips += 1;
        if let Some(metrics) = &self.metrics {
            metrics.record_broadcast_skips(1);
        }
    }

    /// Broadcasts this connection missed for being slow: skipped, or closed by the policy.
    pub fn broadcast_skips(&self) -> u64 {
        self.broadcast_skips
    }

    /// The size of the frame [`Connection::encode_message_into`] writes for `len` bytes.
    pub fn message_frame_len(&self, len: usize) -> usize {
        self.frame_len(len)
    }

    /// The size of a frame of ours carrying `len` bytes.
    fn frame_len(&self, len: usize) -> usize {
        let mask = if self.role == Role::Client { 4 } else { 0 };
        let length_bytes = match len {
            0..=125 => 0,
            126..=65535 => 2,
            _ => 8,
        };
        2 + length_bytes + mask + len
    }

    /// Encodes a whole message straight into `out`, which must be exactly
    /// [`Connection::message_frame_len`] bytes and may be uninitialized: a driver that owns
    /// its output buffers (a Python bytes object) is spared a copy and a zero fill. Only when
    /// no other output is pending, so that frames stay in order. The message goes
    /// uncompressed: a driver asks [`Connection::compresses`] first.
    pub fn encode_message_into(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        out: &mut [MaybeUninit<u8>],
    ) -> Result<(), Error> {
        self.check_can_send()?;
        if self.sending_fragmented.is_some() || self.has_output() {
            return Err(Error::Concurrency(
                "cannot encode a message in place while other output is pending".into(),
            ));
        }
        if out.len() != self.message_frame_len(data.len()) {
            return Err(Error::Config("output buffer of the wrong size".into()));
        }
        let header = self.frame_header(data_opcode(kind), true);
        let mut head = [0u8; MAX_HEADER];
        let mut cursor = Cursor::new(&mut head[..]);
        header
            .format(data.len() as u64, &mut cursor)
            .expect("the longest header fits");
        let (head_out, payload_out) = out.split_at_mut(cursor.position() as usize);
        copy_into(&head[..head_out.len()], head_out);
        match header.mask {
            Some(key) => mask_into(data, payload_out, key, 0),
            None => copy_into(data, payload_out),
        }
        self.record_sent(data.len(), true);
        Ok(())
    }

    /// Queues one fragment of a message; `kind` matters on the first one, `fin` ends it.
    /// With permessage-deflate, the message is compressed (whatever its size).
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), Error> {
        self.send_fragment_with(kind, data, fin, true)
    }

    /// [`Connection::send_fragment`]; `compress`, read on the first fragment, false sends
    /// the message uncompressed.
    pub fn send_fragment_with(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
        compress: bool,
    ) -> Result<(), Error> {
        self.check_can_send()?;
        let (opcode, compressed) = match self.sending_fragmented {
            Some(compressed) => (OpCode::Data(Data::Continue), compressed),
            None => {
                let compressed = self
                    .deflate
                    .as_ref()
                    .is_some_and(|d| d.compressor.wants_fragmented(compress));
                (data_opcode(kind), compressed)
            }
        };
        self.sending_fragmented = if fin { None } else { Some(compressed) };
        if compressed {
            self.write_compressed_frame(opcode, fin, data);
        } else {
            self.write_frame(opcode, fin, data);
        }
        self.record_sent(data.len(), fin);
        Ok(())
    }

    /// Queues a ping and returns its id; the pong that answers it reports the id and the
    /// latency ([`Event::Pong`]). A ping whose payload is still waiting for its pong is
    /// refused (the answers could not be told apart), and so is one past
    /// [`MAX_PENDING_PINGS`].
    pub fn send_ping(&mut self, payload: &[u8], now: Instant) -> Result<u64, Error> {
        self.check_can_send()?;
        check_control_payload(payload)?;
        if self.pending_pings.iter().any(|p| p.payload == payload) {
            return Err(Error::Concurrency(
                "already waiting for a pong with the same payload".into(),
            ));
        }
        if self.pending_pings.len() >= MAX_PENDING_PINGS {
            return Err(Error::Concurrency(format!(
                "{MAX_PENDING_PINGS} pings are waiting for a pong already"
            )));
        }
        Ok(self.queue_ping(payload.to_vec(), now))
    }

    /// Queues an unsolicited pong (a heartbeat without reply).
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        check_control_payload(payload)?;
        self.write_frame(OpCode::Control(Control::Pong), true, payload);
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason`.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) -> Result<(), Error> {
        if code != close::NO_STATUS && !close::is_valid_code(code) {
            return Err(Error::Config(format!("invalid close code {code}")));
        }
        if reason.len() > 123 || (code == close::NO_STATUS && !reason.is_empty()) {
            return Err(Error::Config("close reason longer than 123 bytes".into()));
        }
        match self.state {
            State::Open => {
                self.send_close_frame(code, reason);
                self.state = State::Closing;
                self.close_deadline = after(now, self.config.close_timeout);
                Ok(())
            }
            // Closing already: the handshake under way ends the connection.
            State::Closing => Ok(()),
            State::Closed => Err(Error::ConnectionClosed(self.close.clone())),
        }
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.state == State::Open {
            Ok(())
        } else {
            Err(Error::ConnectionClosed(self.close.clone()))
        }
    }

    fn queue_ping(&mut self, payload: Vec<u8>, now: Instant) -> u64 {
        self.write_frame(OpCode::Control(Control::Ping), true, &payload);
        let id = self.next_ping_id;
        self.next_ping_id += 1;
        self.pending_pings.push_back(PendingPing {
            id,
            payload,
            sent_at: now,
        });
        id
    }

    /// Writes the owed pongs into the output.
    fn flush_pong(&mut self) {
        while let Some(payload) = self.owed_pongs.pop_front() {
            self.write_frame(OpCode::Control(Control::Pong), true, &payload);
        }
    }

    /// A frame header for our role: clients mask every frame with a fresh key.
    fn frame_header(&self, opcode: OpCode, fin: bool) -> FrameHeader {
        let mask = match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        FrameHeader {
            is_final: fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
        }
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        if opcode != OpCode::Control(Control::Pong) {
            // Owed pongs answer pings that came before whatever we send now: they go first.
            self.flush_pong();
        }
        let header = self.frame_header(opcode, fin);
        let mask = header.mask;
        self.output.reserve(MAX_HEADER + payload.len());
        header
            .format(payload.len() as u64, &mut self.output)
            .expect("writing to a Vec cannot fail");
        extend_masked(&mut self.output, payload, mask, 0);
    }

    /// Writes a data frame whose payload is `data` compressed: RSV1 on a message's first
    /// frame (RFC 7692 §6), the payload compressed straight into the output after room for
    /// the longest header, then moved up against the real one.
    fn write_compressed_frame(&mut self, opcode: OpCode, fin: bool, data: &[u8]) {
        self.flush_pong();
        let deflate = self.deflate.as_mut().expect("compression was negotiated");
        let start = self.output.len();
        self.output.resize(start + MAX_HEADER, 0);
        deflate.compressor.compress(data, &mut self.output, fin);
        let payload_len = self.output.len() - start - MAX_HEADER;
        let mut header = self.frame_header(opcode, fin);
        header.rsv1 = opcode != OpCode::Data(Data::Continue);
        let mut head = [0u8; MAX_HEADER];
        let mut cursor = Cursor::new(&mut head[..]);
        header
            .format(payload_len as u64, &mut cursor)
            .expect("the longest header fits");
        let head_len = cursor.position() as usize;
        self.output
            .copy_within(start + MAX_HEADER.., start + head_len);
        self.output.truncate(start + head_len + payload_len);
        self.output[start..start + head_len].copy_from_slice(&head[..head_len]);
        if let Some(key) = header.mask {
            apply_mask(&mut self.output[start + head_len..], key, 0);
        }
    }

    fn send_close_frame(&mut self, code: u16, reason: &str) {
        if self.close.sent.is_some() {
            return;
        }
        let frame = CloseFrame {
            code,
            reason: reason.to_owned(),
        };
        self.write_frame(
            OpCode::Control(Control::Close),
            true,
            &close::payload(&frame),
        );
        self.close.sent = Some(frame);
        if self.close.rcvd_then_sent.is_none() {
            self.close.rcvd_then_sent = Some(self.close.rcvd.is_some());
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): send a close frame with `code`, ignore further
    /// input, and end the connection once that frame is flushed.
    fn fail(&mut self, code: u16, error: Error) {
        log::debug!("failing connection with {code}: {error}");
        self.discard_input = true;
        if self.failure.is_none() {
            self.failure = Some(error);
        }
        if self.state == State::Open {
            self.send_close_frame(code, &close_reason_for(code));
            self.state = State::Closing;
        }
        // The input is no longer trusted, so the peer's close cannot be read: end now and let
        // the driver flush our close frame before dropping the transport.
        self.finish(None);
    }

    /// Ends the connection: emits `Closed` and tells the driver to drop the transport.
    fn finish(&mut self, error: Option<Error>) {
        if self.state == State::Closed {
            return;
        }
        self.state = State::Closed;
        // Pongs owed on a connection that ends without our close frame have no one to go to.
        self.owed_pongs.clear();
        self.held_input = Vec::new();
        self.close_deadline = None;
        self.next_keepalive = None;
        self.keepalive_deadline = None;
        let error = self.failure.take().or(error);
        if let Some(metrics) = &self.metrics {
            metrics.record_closed(&self.close);
        }
        self.events.push_back(Event::Closed {
            info: self.close.clone(),
            error,
        });
    }

    fn read_header(&mut self, data: &[u8], now: Instant) -> usize {
        let (parsed, used) = if self.header_buf.is_empty() {
            let mut cursor = Cursor::new(data);
            let parsed = FrameHeader::parse(&mut cursor);
            (parsed, cursor.position() as usize)
        } else {
            let before = self.header_buf.len();
            let take = (MAX_HEADER - before).min(data.len());
            self.header_buf.extend_from_slice(&data[..take]);
            let mut cursor = Cursor::new(&self.header_buf[..]);
            let parsed = FrameHeader::parse(&mut cursor);
            let header_len = cursor.position() as usize;
            match parsed {
                Ok(Some(_)) => {
                    self.header_buf.clear();
                    (parsed, header_len - before)
                }
                _ => {
                    self.header_buf.truncate(before);
                    (parsed, 0)
                }
            }
        };
        match parsed {
            Ok(Some((header, length))) => {
                self.start_frame(header, length, now);
                used
            }
            Ok(None) => {
                if self.header_buf.is_empty() {
                    self.header_buf.extend_from_slice(data);
                } else {
                    let take = (MAX_HEADER - self.header_buf.len()).min(data.len());
                    self.header_buf.extend_from_slice(&data[..take]);
                    return take;
                }
                data.len()
            }
            Err(e) => {
                self.fail(
                    PROTOCOL_ERROR,
                    Error::Protocol {
                        code: PROTOCOL_ERROR,
                        reason: format!("bad frame header: {e}"),
                    },
                );
                data.len()
            }
        }
    }

    /// Validates a frame header against RFC 6455 §5 and the limits, then reads its payload.
    fn start_frame(&mut self, header: FrameHeader, length: u64, now: Instant) {
        if let Err((code, reason)) = self.check_header(&header, length) {
            let error = if code == MESSAGE_TOO_BIG {
                Error::PayloadTooBig(reason)
            } else {
                Error::Protocol { code, reason }
            };
            self.fail(code, error);
            return;
        }
        if let OpCode::Data(data) = header.opcode {
            if data != Data::Continue {
                let kind = if data == Data::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                self.incoming = Some(Incoming {
                    kind,
                    data: message_buffer(length),
                    size: 0,
                    frames: 0,
                    utf8: Utf8Validator::default(),
                    compressed: header.rsv1,
                    wire: 0,
                });
            }
            if let Some(incoming) = self.incoming.as_mut() {
                incoming.frames += 1;
            }
        } else {
            self.control.clear();
        }
        self.read = ReadState::Payload {
            header,
            remaining: length,
            consumed: 0,
        };
        if length == 0 {
            self.end_frame(now);
        }
    }

    fn check_header(&self, header: &FrameHeader, length: u64) -> Result<(), (u16, String)> {
        let protocol = |reason: &str| Err((PROTOCOL_ERROR, reason.to_owned()));
        if length >> 63 != 0 {
            // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
            return protocol("frame length with the most significant bit set");
        }
        if header.rsv2 || header.rsv3 {
            return protocol("reserved bits set without a negotiated extension");
        }
        if header.rsv1 {
            // RFC 7692 §6: RSV1 marks a compressed message, on its first frame only.
            let first_data_frame = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
            if self.deflate.is_none() {
                return protocol("RSV1 set without permessage-deflate");
            }
            if !first_data_frame {
                return protocol("RSV1 set on a control or continuation frame");
            }
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return protocol("client frame is not masked"),
            (Role::Client, true) => return protocol("server frame is masked"),
            _ => {}
        }
        match header.opcode {
            OpCode::Control(Control::Reserved(op)) | OpCode::Data(Data::Reserved(op)) => {
                Err((PROTOCOL_ERROR, format!("reserved opcode {op}")))
            }
            OpCode::Control(_) => {
                if !header.is_final {
                    return protocol("fragmented control frame");
                }
                if length > 125 {
                    return protocol("control frame payload over 125 bytes");
                }
                Ok(())
            }
            OpCode::Data(data) => {
                match (data, &self.incoming) {
                    (Data::Continue, None) => {
                        return protocol("continuation frame without a message")
                    }
                    (Data::Text | Data::Binary, Some(_)) => {
                        return protocol("new message before the previous one ended")
                    }
                    _ => {}
                }
                if let Some(limit) = self.config.max_frame_size {
                    if length > limit as u64 {
                        return Err((
                            MESSAGE_TOO_BIG,
                            format!("frame of {length} bytes exceeds limit of {limit} bytes"),
                        ));
                    }
                }
                if let (Some(limit), Some(incoming)) = (self.config.max_fragments, &self.incoming) {
                    if incoming.frames >= limit {
                        return Err((
                            MESSAGE_TOO_BIG,
                            format!("message of more than {limit} frames"),
                        ));
                    }
                }
                let compressed = match (&self.incoming, data) {
                    (Some(incoming), Data::Continue) => incoming.compressed,
                    _ => header.rsv1,
                };
                if let (Some(limit), true) = (self.config.max_message_size, compressed) {
                    // The inflated size is checked as it is produced; the compressed input
                    // is bounded too, at twice the limit, which no honest encoder nears.
                    let wire = self.incoming.as_ref().map_or(0, |m| m.wire);
                    if wire.saturating_add(length) > 2 * limit as u64 {
                        return Err((
                            MESSAGE_TOO_BIG,
                            format!("compressed message of over {} bytes", 2 * limit as u64),
                        ));
                    }
                } else if let Some(limit) = self.config.max_message_size {
                    let so_far = self.incoming.as_ref().map_or(0, |m| m.size) as u64;
                    if so_far.saturating_add(length) > limit as u64 {
                        return Err((
                            MESSAGE_TOO_BIG,
                            format!(
                                "message of over {} bytes exceeds limit of {limit} bytes",
                                so_far.saturating_add(length)
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    fn read_payload(&mut self, data: &[u8], now: Instant) -> usize {
        let Some((header, remaining, consumed)) = self.read.payload() else {
            unreachable!("read_payload outside a payload");
        };
        let take = (*remaining).min(data.len() as u64) as usize;
        let chunk = &data[..take];
        let mask = header.mask;
        let offset = *consumed;
        *remaining -= take as u64;
        *consumed += take;
        let done = *remaining == 0;
        let is_data = matches!(header.opcode, OpCode::Data(_));
        if is_data {
            let incoming = self.incoming.as_mut().expect("data frame has a message");
            let start = incoming.data.len();
            if incoming.compressed {
                incoming.wire += take as u64;
                let input = match mask {
                    Some(_) => {
                        self.unmasked.clear();
                        extend_masked(&mut self.unmasked, chunk, mask, offset);
                        &self.unmasked[..]
                    }
                    None => chunk,
                };
                let inflater = &mut self.deflate.as_mut().expect("negotiated").inflater;
                let max = self.config.max_message_size;
                if let Err(error) = inflate_into(incoming, inflater, Some(input), max) {
                    self.fail_inflate(error);
                    return take;
                }
            } else {
                extend_masked(&mut incoming.data, chunk, mask, offset);
                incoming.size += take;
            }
            if !self.check_new_text(start) {
                return take;
            }
        } else {
            extend_masked(&mut self.control, chunk, mask, offset);
        }
        if done {
            self.end_frame(now);
        }
        take
    }

    /// Validates the message's data from `start` on as UTF-8 when it is text, failing the
    /// connection when it is not; true when the data is fine.
    fn check_new_text(&mut self, start: usize) -> bool {
        let incoming = self.incoming.as_mut().expect("data frame has a message");
        if incoming.kind == MessageKind::Text
            && incoming.utf8.feed(&incoming.data[start..]).is_err()
        {
            self.fail_invalid_utf8();
            return false;
        }
        true
    }

    /// Room in the message being received for the current frame's payload, for a driver to
    /// read it from the transport straight into place (one copy fewer, reads as long as the
    /// payload) and then call [`Connection::receive_payload_in_place`]. Only while at least
    /// `min` bytes of an uncompressed data frame remain, with no input held and the inbox
    /// within its limit; otherwise input goes through [`Connection::receive_data`]. The room
    /// is what the message's buffer can take without growing, at most the frame's rest;
    /// when that is under `min` the buffer doubles (at least `min`), as it would for
    /// [`Connection::receive_data`]: a frame header alone does not make it allocate much.
    pub fn payload_room(&mut self, min: usize) -> Option<&mut [MaybeUninit<u8>]> {
        let ReadState::Payload {
            header, remaining, ..
        } = &self.read
        else {
            return None;
        };
        let inbox_full = self
            .inbox_limit
            .is_some_and(|limit| self.inbox.charged_bytes() > limit);
        if !matches!(header.opcode, OpCode::Data(_))
            || *remaining < min as u64
            || inbox_full
            || self.discard_input
            || self.state == State::Closed
            || !self.held_input.is_empty()
        {
            return None;
        }
        let remaining = *remaining;
        let incoming = self.incoming.as_mut().expect("data frame has a message");
        if incoming.compressed {
            return None;
        }
        let data = &mut incoming.data;
        if data.capacity() - data.len() < min {
            data.reserve(data.len().max(min));
        }
        let room = (data.capacity() - data.len()).min(remaining as usize);
        Some(&mut data.spare_capacity_mut()[..room])
    }

    /// Takes `count` bytes of payload that the driver read into the room
    /// [`Connection::payload_room`] gave, as [`Connection::receive_data`] would take them.
    ///
    /// # Safety
    /// The first `count` bytes of that room are written (initialized), and the connection
    /// did not change since the room was given.
    pub unsafe fn receive_payload_in_place(&mut self, count: usize, now: Instant) {
        let Some((header, remaining, consumed)) = self.read.payload() else {
            panic!("receive_payload_in_place without payload_room");
        };
        assert!(count as u64 <= *remaining, "more than the frame's payload");
        let incoming = self.incoming.as_mut().expect("data frame has a message");
        let start = incoming.data.len();
        assert!(
            count <= incoming.data.capacity() - start,
            "more than the room"
        );
        // SAFETY: the caller wrote these bytes of the buffer's spare capacity.
        unsafe { incoming.data.set_len(start + count) };
        if let Some(key) = header.mask {
            apply_mask(&mut incoming.data[start..], key, *consumed);
        }
        incoming.size += count;
        *remaining -= count as u64;
        *consumed += count;
        let done = *remaining == 0;
        if self.check_new_text(start) && done {
            self.end_frame(now);
        }
    }

    fn fail_inflate(&mut self, error: InflateError) {
        let (code, error) = match error {
            InflateError::TooBig => (
                MESSAGE_TOO_BIG,
                Error::PayloadTooBig(format!(
                    "inflated message exceeds limit of {} bytes",
                    self.config.max_message_size.unwrap_or(usize::MAX)
                )),
            ),
            // RFC 7692 §8: data that does not inflate fails the connection.
            InflateError::Corrupt => (
                INVALID_DATA,
                Error::Protocol {
                    code: INVALID_DATA,
                    reason: "invalid compressed data".into(),
                },
            ),
        };
        self.fail(code, error);
    }

    fn fail_invalid_utf8(&mut self) {
        self.fail(
            INVALID_DATA,
            Error::Protocol {
                code: INVALID_DATA,
                reason: "invalid UTF-8 in text message".into(),
            },
        );
    }

    fn end_frame(&mut self, now: Instant) {
        let ReadState::Payload { header, .. } =
            std::mem::replace(&mut self.read, ReadState::Header)
        else {
            unreachable!("end_frame outside a payload");
        };
        match header.opcode {
            OpCode::Data(_) => self.end_data_frame(header.is_final),
            OpCode::Control(Control::Ping) => {
                let payload = std::mem::take(&mut self.control);
                // RFC 6455 §5.5.2: answer unless the peer's close frame arrived already
                // (having sent ours does not excuse us). Past MAX_OWED_PONGS unwritten, the
                // latest ping replaces the newest owed pong.
                if self.close.rcvd.is_none() {
                    if self.owed_pongs.len() >= MAX_OWED_PONGS {
                        self.owed_pongs.pop_back();
                    }
                    self.owed_pongs.push_back(payload.clone());
                }
                self.events.push_back(Event::Ping(payload));
            }
            OpCode::Control(Control::Pong) => {
                let payload = std::mem::take(&mut self.control);
                let acknowledged = self.acknowledge_pings(&payload, now);
                self.events.push_back(Event::Pong {
                    data: payload,
                    acknowledged,
                });
            }
            OpCode::Control(Control::Close) => self.receive_close(now),
            OpCode::Control(Control::Reserved(_)) => unreachable!("rejected in check_header"),
        }
    }

    fn end_data_frame(&mut self, fin: bool) {
        if self.state != State::Open {
            // RFC 6455 §5.5.1: after sending a close frame, data is ignored.
            match self.incoming.as_mut() {
                Some(_) if fin => self.incoming = None,
                Some(incoming) => incoming.data.clear(),
                None => {}
            }
            return;
        }
        let incoming = self.incoming.as_mut().expect("data frame has a message");
        // A compressed message with no payload at all is empty: its inflater is untouched.
        if fin && incoming.compressed && incoming.wire > 0 {
            let start = incoming.data.len();
            let inflater = &mut self.deflate.as_mut().expect("negotiated").inflater;
            let max = self.config.max_message_size;
            if let Err(error) = inflate_into(incoming, inflater, None, max) {
                self.fail_inflate(error);
                return;
            }
            if incoming.kind == MessageKind::Text
                && incoming.utf8.feed(&incoming.data[start..]).is_err()
            {
                self.fail_invalid_utf8();
                return;
            }
        }
        if fin && incoming.kind == MessageKind::Text && incoming.utf8.finish().is_err() {
            self.fail_invalid_utf8();
            return;
        }
        // Text goes to the inbox up to its last whole character, so every chunk is valid.
        let pending = if fin { 0 } else { incoming.utf8.pending_len() };
        let keep = incoming.data.split_off(incoming.data.len() - pending);
        let chunk = std::mem::replace(&mut incoming.data, keep);
        let kind = incoming.kind;
        if fin {
            self.incoming = None;
        }
        if let Some(metrics) = &self.metrics {
            metrics.record_received(chunk.len(), fin);
        }
        self.inbox.push(kind, chunk, fin);
    }

    fn acknowledge_pings(&mut self, payload: &[u8], now: Instant) -> Option<PingAck> {
        let index = self
            .pending_pings
            .iter()
            .position(|p| p.payload == payload)?;
        // A pong answers its ping and every earlier one (RFC 6455 §5.5.3 lets peers skip).
        let ping = self.pending_pings.drain(..=index).next_back()?;
        let latency = now.saturating_duration_since(ping.sent_at);
        self.latency = Some(latency);
        if let Some(metrics) = &self.metrics {
            metrics.record_ping_latency(latency);
        }
        self.keepalive_deadline = None;
        Some(PingAck {
            id: ping.id,
            latency,
        })
    }

    fn receive_close(&mut self, now: Instant) {
        let payload = std::mem::take(&mut self.control);
        let frame = match close::parse_payload(&payload) {
            Ok(frame) => frame,
            Err((code, reason)) => {
                let error = Error::Protocol {
                    code,
                    reason: reason.into(),
                };
                self.fail(code, error);
                return;
            }
        };
        if self.close.rcvd.is_some() {
            return;
        }
        // Echo the peer's code and reason (an empty close is echoed empty), as websockets does.
        let (code, reason) = (frame.code, frame.reason.clone());
        self.close.rcvd = Some(frame);
        if self.close.sent.is_none() {
            self.send_close_frame(code, &reason);
        }
        self.state = State::Closing;
        match self.role {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            Role::Server => self.finish(None),
            // The client waits for the server to close it, bounded by the close timeout.
            Role::Client => {
                if self.close_deadline.is_none() {
                    self.close_deadline = after(now, self.config.close_timeout);
                }
            }
        }
    }
}

/// Inflates part of a compressed message (`None`: its end, the sync tail) onto the data of
/// `incoming`, counting the inflated bytes against the message limit `max`.
fn inflate_into(
    incoming: &mut Incoming,
    inflater: &mut Inflater,
    input: Option<&[u8]>,
    max: Option<usize>,
) -> Result<(), InflateError> {
    let start = incoming.data.len();
    // What the data may grow to: the limit less the message's bytes already passed on.
    let limit = max.map_or(usize::MAX, |max| max - (incoming.size - start));
    let result = match input {
        Some(input) => inflater.inflate(input, &mut incoming.data, limit),
        None => inflater.finish_message(&mut incoming.data, limit),
    };
    incoming.size += incoming.data.len() - start;
    result
}

/// `now + delay`, or no deadline for no delay or one too far away to represent.
fn after(now: Instant, delay: Option<Duration>) -> Option<Instant> {
    delay.and_then(|d| now.checked_add(d))
}

pub(crate) fn data_opcode(kind: MessageKind) -> OpCode {
    match kind {
        MessageKind::Text => OpCode::Data(Data::Text),
        MessageKind::Binary => OpCode::Data(Data::Binary),
    }
}

fn check_control_payload(payload: &[u8]) -> Result<(), Error> {
    if payload.len() > 125 {
        Err(Error::Config("control frame payload over 125 bytes".into()))
    } else {
        Ok(())
    }
}

fn close_reason_for(code: u16) -> String {
    match code {
        PROTOCOL_ERROR => "protocol error",
        INVALID_DATA => "invalid UTF-8",
        MESSAGE_TOO_BIG => "message too big",
        INTERNAL_ERROR => "internal error",
        _ => "",
    }
    .to_owned()
}
