//! Frame building and parsing, and connection helpers, for the protocol tests: frames are
//! built by hand (opcode, FIN, RSV bits, optional mask key, payload, in the 7-bit, 16-bit or
//! 64-bit length form) and the bytes from `take_output()` are parsed back into frames.
#![allow(dead_code)] // each test binary uses its own part

use std::time::Instant;

use ferrows_core::protocol::{Chunk, Connection, Event, MessageKind, ProtocolConfig, Role, State};
use ferrows_core::{CloseInfo, Error};

// ---------------------------------------------------------------------------------------------
// Frame building and parsing
// ---------------------------------------------------------------------------------------------

pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The key the peer of a server masks its frames with (the RFC 6455 §5.7 example key).
pub const PEER_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
pub const ROLES: [Role; 2] = [Role::Client, Role::Server];

/// How a frame's payload length is written (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenForm {
    /// The minimal form for the length.
    Auto,
    /// 7 bits, 0–125.
    Short,
    /// 126 followed by 16 bits.
    Medium,
    /// 127 followed by 64 bits.
    Long,
}

pub fn minimal_form(len: u64) -> LenForm {
    if len <= 125 {
        LenForm::Short
    } else if len <= 0xffff {
        LenForm::Medium
    } else {
        LenForm::Long
    }
}

/// A frame to send to the connection under test.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len_form: LenForm,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl AsRef<[u8]>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len_form: LenForm::Auto,
            payload: payload.as_ref().to_vec(),
        }
    }

    pub fn text(payload: impl AsRef<[u8]>) -> Self {
        Self::new(TEXT, payload)
    }

    pub fn binary(payload: impl AsRef<[u8]>) -> Self {
        Self::new(BINARY, payload)
    }

    pub fn cont(payload: impl AsRef<[u8]>) -> Self {
        Self::new(CONT, payload)
    }

    pub fn ping(payload: impl AsRef<[u8]>) -> Self {
        Self::new(PING, payload)
    }

    pub fn pong(payload: impl AsRef<[u8]>) -> Self {
        Self::new(PONG, payload)
    }

    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_ref());
        Self::new(CLOSE, payload)
    }

    pub fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    pub fn masked(mut self, key: [u8; 4]) -> Self {
        self.mask = Some(key);
        self
    }

    pub fn unmasked(mut self) -> Self {
        self.mask = None;
        self
    }

    pub fn len_form(mut self, form: LenForm) -> Self {
        self.len_form = form;
        self
    }

    /// Masks the frame as the peer of a connection with `role` must (RFC 6455 §5.1): the peer
    /// of a server is a client and masks; the peer of a client is a server and does not.
    pub fn to(self, role: Role) -> Self {
        match role {
            Role::Server => self.masked(PEER_KEY),
            Role::Client => self.unmasked(),
        }
    }

    /// The header alone, declaring `len` bytes of payload.
    pub fn header(&self, len: u64) -> Vec<u8> {
        encode_header(
            self.fin,
            self.rsv,
            self.opcode,
            self.mask,
            len,
            self.len_form,
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header(self.payload.len() as u64);
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(key) = self.mask {
            for (i, byte) in out[start..].iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        out
    }
}

pub fn encode_header(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    form: LenForm,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | ((rsv & 0x7) << 4) | (opcode & 0x0f)];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let form = if form == LenForm::Auto {
        minimal_form(len)
    } else {
        form
    };
    match form {
        LenForm::Short => {
            assert!(len <= 125, "length {len} does not fit the 7-bit form");
            out.push(mask_bit | len as u8);
        }
        LenForm::Medium => {
            let len = u16::try_from(len).expect("length fits the 16-bit form");
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        }
        LenForm::Long => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        LenForm::Auto => unreachable!(),
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    out
}

/// A frame parsed out of the connection's output, its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub len_form: LenForm,
    pub payload: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Wire {
    /// The status code of a close frame, if it carries one.
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, CLOSE, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }

    pub fn close_reason(&self) -> &[u8] {
        self.payload.get(2..).unwrap_or_default()
    }
}

/// Parses one frame from the front of `bytes`; None if it is incomplete.
pub fn parse_one(bytes: &[u8]) -> Option<(Wire, usize)> {
    let first = *bytes.first()?;
    let second = *bytes.get(1)?;
    let (len, len_form, mut pos) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            LenForm::Medium,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?),
            LenForm::Long,
            10,
        ),
        n => (u64::from(n), LenForm::Short, 2),
    };
    let mask = if second & 0x80 != 0 {
        let key: [u8; 4] = bytes.get(pos..pos + 4)?.try_into().ok()?;
        pos += 4;
        Some(key)
    } else {
        None
    };
    let end = pos.checked_add(usize::try_from(len).ok()?)?;
    let mut payload = bytes.get(pos..end)?.to_vec();
    if let Some(key) = mask {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    let wire = Wire {
        fin: first & 0x80 != 0,
        rsv: (first >> 4) & 0x7,
        opcode: first & 0x0f,
        mask,
        len_form,
        payload,
        raw: bytes[..end].to_vec(),
    };
    Some((wire, end))
}

/// Parses a whole output buffer into frames; trailing garbage is a test failure.
pub fn parse_wire(mut bytes: &[u8]) -> Vec<Wire> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = parse_one(bytes)
            .unwrap_or_else(|| panic!("incomplete frame in the output: {bytes:02x?}"));
        frames.push(frame);
        bytes = &bytes[used..];
    }
    frames
}

/// Checks what every frame we send must satisfy: masked iff we are a client (§5.1, §5.3),
/// no RSV bits (§5.2) but RSV1 on the first frame of a compressed message when `deflate`
/// (RFC 7692 §6), a known opcode, the minimal length form (§5.2), unfragmented control
/// frames of at most 125 bytes (§5.5).
pub fn check_sent_frames(role: Role, frames: &[Wire], deflate: bool) {
    for frame in frames {
        assert_eq!(
            frame.mask.is_some(),
            role == Role::Client,
            "§5.1: a {role:?} masks its frames iff it is a client: {frame:?}"
        );
        let first_data_frame = matches!(frame.opcode, TEXT | BINARY);
        if !(deflate && first_data_frame && frame.rsv == 4) {
            assert_eq!(frame.rsv, 0, "§5.2: RSV bits sent: {frame:?}");
        }
        assert!(
            matches!(frame.opcode, CONT | TEXT | BINARY | CLOSE | PING | PONG),
            "§5.2: reserved opcode sent: {frame:?}"
        );
        assert_eq!(
            frame.len_form,
            minimal_form(frame.payload.len() as u64),
            "§5.2: the minimal number of bytes MUST be used to encode the length: {frame:?}"
        );
        if frame.opcode >= 0x8 {
            assert!(frame.fin, "§5.5: fragmented control frame sent: {frame:?}");
            assert!(frame.payload.len() <= 125, "§5.5: control frame too long");
        }
    }
}

/// Takes and parses the connection's output, checking the invariants of sent frames.
pub fn take_frames(conn: &mut Connection) -> Vec<Wire> {
    let frames = parse_wire(&conn.take_output());
    check_sent_frames(conn.role(), &frames, conn.deflate().is_some());
    frames
}

pub fn take_events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// The Closed event of `events`, checking there is at most one and that it is the last.
pub fn closed_event(events: &[Event]) -> Option<(&CloseInfo, Option<&Error>)> {
    let count = events
        .iter()
        .filter(|e| matches!(e, Event::Closed { .. }))
        .count();
    assert!(count <= 1, "more than one Closed event: {events:?}");
    match events.last() {
        Some(Event::Closed { info, error }) => Some((info, error.as_ref())),
        _ => {
            assert_eq!(count, 0, "Closed is not the last event: {events:?}");
            None
        }
    }
}

/// Moves the error out of the (single, last) Closed event.
pub fn into_closed(events: Vec<Event>) -> Option<(CloseInfo, Option<Error>)> {
    closed_event(&events)?;
    match events.into_iter().last() {
        Some(Event::Closed { info, error }) => Some((info, error)),
        _ => unreachable!(),
    }
}

/// Asserts the connection failed (RFC 6455 §7.1.7) with `code`: `frames` (its output) holds
/// exactly one close frame, with that code; it is Closed; and its one Closed event, the last,
/// records the frame sent and carries an error, which is returned.
pub fn assert_failed_with(conn: &mut Connection, frames: &[Wire], code: u16, what: &str) -> Error {
    let closes: Vec<&Wire> = frames.iter().filter(|f| f.opcode == CLOSE).collect();
    assert_eq!(
        closes.len(),
        1,
        "{what}: expected exactly one close frame in the output, got {frames:?}"
    );
    assert_eq!(
        closes[0].close_code(),
        Some(code),
        "{what}: close code sent (frames {frames:?})"
    );
    assert_eq!(conn.state(), State::Closed, "{what}: state");
    let events = take_events(conn);
    let shown = format!("{events:?}");
    let (info, error) =
        into_closed(events).unwrap_or_else(|| panic!("{what}: no Closed event in {shown}"));
    assert_eq!(
        info.sent.as_ref().map(|f| f.code),
        Some(code),
        "{what}: info.sent in {shown}"
    );
    error.unwrap_or_else(|| panic!("{what}: the Closed event carries no error: {shown}"))
}

/// Feeds `bytes` to `conn` and asserts it fails with `code`; returns the error.
pub fn feed_expect_failure(
    conn: &mut Connection,
    bytes: &[u8],
    now: Instant,
    code: u16,
    what: &str,
) -> Error {
    conn.receive_data(bytes, now);
    let frames = take_frames(conn);
    assert_failed_with(conn, &frames, code, what)
}

pub fn assert_protocol_error(error: &Error, code: u16, what: &str) {
    assert!(
        matches!(error, Error::Protocol { code: c, .. } if *c == code),
        "{what}: expected Error::Protocol {{ code: {code} }}, got {error:?}"
    );
}

/// Defaults, without keepalive pings so that no timer interferes.
pub fn quiet() -> ProtocolConfig {
    ProtocolConfig {
        ping_interval: None,
        ..ProtocolConfig::default()
    }
}

pub fn unlimited() -> ProtocolConfig {
    ProtocolConfig {
        max_message_size: None,
        max_frame_size: None,
        ..quiet()
    }
}

pub fn open(role: Role, now: Instant) -> Connection {
    Connection::new(role, quiet(), now)
}

/// Takes every whole message waiting in the inbox.
pub fn messages(conn: &mut Connection) -> Vec<(MessageKind, Vec<u8>)> {
    std::iter::from_fn(|| conn.pop_message()).collect()
}

/// Takes every chunk waiting in the inbox, in arrival order, as (kind, data, fin).
pub fn chunks(conn: &mut Connection) -> Vec<(MessageKind, Vec<u8>, bool)> {
    std::iter::from_fn(|| conn.pop_chunk())
        .map(|Chunk { kind, data, fin }| (kind, data, fin))
        .collect()
}

/// Asserts that no data waits in the inbox.
pub fn assert_inbox_empty(conn: &Connection, what: &str) {
    let inbox = conn.inbox();
    assert!(
        inbox.is_empty() && !inbox.has_message() && inbox.charged_bytes() == 0,
        "{what}: the inbox holds data: len {} has_message {} charged {}",
        inbox.len(),
        inbox.has_message(),
        inbox.charged_bytes()
    );
}

/// [`Connection::encode_message_into`] into a new buffer of `len` bytes, left uninitialized
/// as a driver's own buffers may be.
pub fn encode_in_place(
    conn: &mut Connection,
    kind: MessageKind,
    data: &[u8],
    len: usize,
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(len);
    conn.encode_message_into(kind, data, &mut out.spare_capacity_mut()[..len])?;
    // SAFETY: encode_message_into succeeded, so it wrote all `len` bytes.
    unsafe { out.set_len(len) };
    Ok(out)
}
