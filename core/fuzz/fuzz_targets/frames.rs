//! The frame parser and message layer: arbitrary bytes from the peer, cut into pieces at
//! input-chosen points, must never panic, never make the connection write more than a small
//! multiple of what it read, and only produce well-formed events.
//!
//! Input layout:
//! - byte 0, flags: bit 0 server role (else client), bit 1 take data as chunks (else as
//!   whole messages), bit 2 tight limits (64-byte messages, 32-byte frames), bit 3 at most
//!   4 frames per message, bits 4-7 the clock step per piece (3 s units);
//! - byte 1: the number of cut points (low 3 bits), followed by that many u16 LE offsets;
//!   bit 3 permessage-deflate negotiated (with a 4 KiB inbox limit, so that input that
//!   inflates past it is held), bit 4 without context takeover;
//! - the rest: the bytes the peer sends.
#![no_main]

use std::time::{Duration, Instant};

use ferrows_core::protocol::message::CHUNK_OVERHEAD;
use ferrows_core::protocol::{
    Agreement, Chunk, Connection, DeflateConfig, Event, MessageKind, ProtocolConfig, Role,
};
use libfuzzer_sys::fuzz_target;

/// Output allowed per input byte: an empty ping (2 bytes) is answered by a masked pong (6).
const OUTPUT_PER_INPUT_BYTE: usize = 3;
/// Output allowed on top: our own close frame (at most 131 bytes) and one keepalive ping.
const OUTPUT_SLACK: usize = 256;
/// The inbox limit in deflate mode: input beyond it is held.
const INBOX_LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut_count, rest)) = rest.split_first() else {
        return;
    };
    let cuts_len = 2 * usize::from(cut_count & 7);
    if rest.len() < cuts_len {
        return;
    }
    let (cuts, wire) = rest.split_at(cuts_len);
    let mut offsets: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (wire.len() + 1))
        .collect();
    offsets.sort_unstable();
    let mut pieces = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for end in offsets.into_iter().chain([wire.len()]) {
        pieces.push(&wire[start..end]);
        start = end;
    }

    let role = if flags & 1 == 1 {
        Role::Server
    } else {
        Role::Client
    };
    let mut config = ProtocolConfig::default();
    if flags & 4 != 0 {
        config.max_message_size = Some(64);
        config.max_frame_size = Some(32);
    }
    if flags & 8 != 0 {
        config.max_fragments = Some(4);
    }
    let step = Duration::from_secs(3 * u64::from(flags >> 4));
    let deflate = (cut_count & 8 != 0).then(|| {
        let no_takeover = cut_count & 16 != 0;
        Agreement {
            server_no_context_takeover: no_takeover,
            client_no_context_takeover: no_takeover,
            ..Agreement::default()
        }
    });
    let mut checker = Checker::new(&config, flags & 2 != 0, deflate.is_some());
    drive(role, config, deflate, &pieces, step, &mut checker);
    checker.finish();
});

/// Feeds `pieces` to a new connection, running its timers `step` apart, and hands every
/// event, every piece of received data (as messages or chunks) and the output to `checker`.
/// The only code that speaks the protocol's API.
fn drive(
    role: Role,
    config: ProtocolConfig,
    deflate: Option<Agreement>,
    pieces: &[&[u8]],
    step: Duration,
    checker: &mut Checker,
) {
    let mut now = Instant::now();
    let mut connection = Connection::new(role, config, now);
    if let Some(agreement) = deflate {
        connection.enable_deflate(agreement, &DeflateConfig::server());
        connection.set_inbox_limit(Some(INBOX_LIMIT));
    }
    let take_data = |connection: &mut Connection, checker: &mut Checker, now: Instant| loop {
        let inbox = connection.inbox();
        checker.inbox(inbox.len(), inbox.charged_bytes(), inbox.arrivals());
        if checker.chunks {
            while let Some(chunk) = connection.pop_chunk() {
                checker.chunk(chunk);
            }
        } else {
            while let Some((kind, data)) = connection.pop_message() {
                checker.message(kind, &data);
            }
        }
        // Input held for room goes in once the inbox was emptied; it shrinks each time.
        if !connection.holds_input() || connection.is_closed() {
            break;
        }
        connection.receive_data(&[], now);
    };
    let drain = |connection: &mut Connection, checker: &mut Checker, now: Instant| {
        take_data(connection, checker, now);
        while let Some(event) = connection.poll_event() {
            checker.event(event);
        }
        checker.output(connection.take_output().len());
    };
    for piece in pieces {
        checker.input(piece.len());
        connection.receive_data(piece, now);
        drain(&mut connection, checker, now);
        now += step;
        connection.handle_timeout(now);
        drain(&mut connection, checker, now);
    }
    connection.receive_eof();
    drain(&mut connection, checker, now);
    assert!(connection.is_closed(), "end of file closes the connection");
}

/// The invariants, checked as the events and output arrive.
struct Checker {
    /// Data is taken as chunks, else as whole messages.
    chunks: bool,
    /// permessage-deflate: received data may be many times what was read.
    inflates: bool,
    max_message_size: Option<usize>,
    input: usize,
    output: usize,
    /// Events other than `Closed`: each one takes a frame, at least 2 bytes of input.
    events: usize,
    /// Payload bytes handed over in events: never more than was read.
    event_bytes: usize,
    closed: bool,
    /// Set once the output that went with `Closed` was taken: nothing may follow.
    flushed_after_close: bool,
    /// The inbox's arrival count when `Closed` came: no data arrives after it.
    arrivals_at_close: Option<u64>,
    /// The kind and size so far of the message being streamed.
    streamed: Option<(MessageKind, usize)>,
}

impl Checker {
    fn new(config: &ProtocolConfig, chunks: bool, inflates: bool) -> Self {
        Self {
            chunks,
            inflates,
            max_message_size: config.max_message_size,
            input: 0,
            output: 0,
            events: 0,
            event_bytes: 0,
            closed: false,
            flushed_after_close: false,
            arrivals_at_close: None,
            streamed: None,
        }
    }

    fn input(&mut self, len: usize) {
        self.input += len;
    }

    fn output(&mut self, len: usize) {
        assert!(
            !self.flushed_after_close || len == 0,
            "{len} bytes of output after Closed"
        );
        self.output += len;
        assert!(
            self.output <= OUTPUT_PER_INPUT_BYTE * self.input + OUTPUT_SLACK,
            "{} bytes written for {} read",
            self.output,
            self.input
        );
        self.flushed_after_close = self.closed;
    }

    /// The inbox is bounded by what was read: items by frames (two bytes each at least),
    /// bytes by payload plus the fixed charge per item; nothing arrives after `Closed`.
    fn inbox(&mut self, items: usize, charged: usize, arrivals: u64) {
        assert!(
            2 * items <= self.input,
            "{items} chunks queued from {} bytes",
            self.input
        );
        // Inflated data is bounded by the inbox limit plus one message instead.
        let bound = if self.inflates {
            INBOX_LIMIT + self.max_message_size.unwrap_or(usize::MAX - INBOX_LIMIT)
        } else {
            self.input
        };
        assert!(
            charged <= bound + CHUNK_OVERHEAD * items,
            "{charged} bytes charged for {items} chunks from {} bytes read",
            self.input
        );
        match self.arrivals_at_close {
            Some(at_close) => assert_eq!(arrivals, at_close, "data arrived after Closed"),
            None if self.closed => self.arrivals_at_close = Some(arrivals),
            None => {}
        }
    }

    fn message(&mut self, kind: MessageKind, data: &[u8]) {
        self.check_size(data.len());
        self.check_text(kind, data);
        self.counted(data.len());
    }

    fn chunk(&mut self, chunk: Chunk) {
        let Chunk { kind, data, fin } = chunk;
        let size = match self.streamed {
            Some((started, size)) => {
                assert_eq!(started, kind, "chunk kind changed mid-message");
                size + data.len()
            }
            None => data.len(),
        };
        assert!(
            fin || !data.is_empty(),
            "an empty chunk that does not end its message"
        );
        self.check_size(size);
        self.check_text(kind, &data);
        self.streamed = (!fin).then_some((kind, size));
        self.counted(data.len());
    }

    fn event(&mut self, event: Event) {
        assert!(!self.closed, "event after Closed: {event:?}");
        match event {
            Event::Ping(data) | Event::Pong { data, .. } => {
                assert!(data.len() <= 125, "control payload of {}", data.len());
                self.counted(data.len());
            }
            Event::Closed { .. } => self.closed = true,
        }
    }

    /// Counts an item handed over with `len` bytes of payload.
    fn counted(&mut self, len: usize) {
        self.event_bytes += len;
        self.events += 1;
        assert!(
            2 * self.events <= self.input,
            "{} events from {} bytes read",
            self.events,
            self.input
        );
        assert!(
            self.inflates || self.event_bytes <= self.input,
            "{} bytes of events from {} read",
            self.event_bytes,
            self.input
        );
    }

    fn check_size(&self, size: usize) {
        if let Some(limit) = self.max_message_size {
            assert!(size <= limit, "message of {size} bytes over limit {limit}");
        }
    }

    fn check_text(&self, kind: MessageKind, data: &[u8]) {
        if kind == MessageKind::Text {
            assert!(std::str::from_utf8(data).is_ok(), "text is not UTF-8");
        }
    }

    fn finish(&self) {
        assert!(self.closed, "no Closed event");
    }
}
