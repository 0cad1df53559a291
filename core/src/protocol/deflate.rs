//! permessage-deflate (RFC 7692): the negotiation in both roles, and the codec the message
//! layer runs on each compressed message.
//!
//! The backend is zlib-rs (pure Rust): it honours window bits 9–15 and memLevel both ways.
//! Raw deflate cannot compress with an 8-bit window, so 8 is never offered nor answered; a
//! server declines an offer that would make it compress with 8, and a client told to
//! compress with 8 keeps the extension and sends every message uncompressed (legal per
//! message). Inflating works with any window: the inflater's window is never below 9.
//!
//! Memory: a zlib-rs compressor costs a fixed 128 KiB hash table plus windows and buffers
//! set by `window_bits` and `mem_level`; an inflater 7 KiB plus a 32 KiB window (zlib-rs
//! allocates the largest whatever the bits). Neither stays with a connection between
//! messages: when a message ends, its compressor or inflater goes back to a small
//! process-wide pool, and a direction with context takeover keeps only what the next message
//! may refer to, the last window of uncompressed bytes, which the next state taken from the
//! pool starts from as its dictionary. An idle connection thus holds at most a window per
//! direction (4 KiB each at 12 bits). A state given back keeps its stream, tagged with its
//! direction, so a busy connection takes its own back and goes on; only a connection whose
//! state another one took pays for resetting one and loading its window.

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use zlib_rs::{
    Deflate, DeflateConfig as ZlibConfig, DeflateFlush, Inflate, InflateFlush, Method, Status,
    Strategy,
};

use super::connection::Role;
use crate::error::Error;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The smallest window we compress with: raw deflate refuses 8.
pub const MIN_WINDOW_BITS: u8 = 9;
/// The largest window RFC 7692 allows (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The tail of a sync-flushed deflate block, removed from each message on the wire and put
/// back before inflating (RFC 7692 §7.2.1, §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How one side wants permessage-deflate, in RFC 7692's parameters.
///
/// As a client: what to offer. `client_max_window_bits` `None` offers the bare parameter
/// (the server picks our window); `Some(n)` offers `client_max_window_bits=n`.
/// `server_max_window_bits` and the `no_context_takeover` flags are offered when set.
///
/// As a server: what to answer. `server_max_window_bits` caps our compression window (and
/// is answered even when not offered); `client_max_window_bits` caps the client's window,
/// answered only when the client offered that parameter (RFC 7692 §7.1.2.2);
/// `server_no_context_takeover` and `client_no_context_takeover` are answered when set (and
/// whenever the client offered them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Compression level, 0 (stored) to 9 (smallest output, slowest).
    pub level: u8,
    /// zlib's memLevel, 1 to 9: memory of the compressor's buffers against speed and ratio.
    pub mem_level: u8,
    /// Messages shorter than this many bytes are sent uncompressed.
    pub min_size: usize,
    /// The server's window, 9 to 15 (see the type's documentation for each role).
    pub server_max_window_bits: Option<u8>,
    /// The client's window, 9 to 15 (see the type's documentation for each role).
    pub client_max_window_bits: Option<u8>,
    /// Ask that the server reset its compressor after each message.
    pub server_no_context_takeover: bool,
    /// Ask that the client reset its compressor after each message.
    pub client_no_context_takeover: bool,
}

/// The default compression level: see docs/compression.md for the measurement behind it.
pub const DEFAULT_LEVEL: u8 = 2;
/// The default memLevel: zlib's buffers at 1/8 of memLevel 8, for a small loss of ratio.
pub const DEFAULT_MEM_LEVEL: u8 = 5;
/// The default size under which messages go uncompressed: smaller ones seldom shrink by
/// more than the cost of compressing them.
pub const DEFAULT_MIN_SIZE: usize = 32;
/// The windows a server caps both directions to by default: 4 KiB instead of 32 KiB.
pub const DEFAULT_SERVER_WINDOW_BITS: u8 = 12;

impl DeflateConfig {
    /// What a client offers by default: `permessage-deflate; client_max_window_bits`, so
    /// the server may choose our window.
    pub fn client() -> Self {
        Self {
            level: DEFAULT_LEVEL,
            mem_level: DEFAULT_MEM_LEVEL,
            min_size: DEFAULT_MIN_SIZE,
            server_max_window_bits: None,
            client_max_window_bits: None,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }

    /// What a server accepts by default: 12-bit windows both ways, context takeover kept.
    pub fn server() -> Self {
        Self {
            server_max_window_bits: Some(DEFAULT_SERVER_WINDOW_BITS),
            client_max_window_bits: Some(DEFAULT_SERVER_WINDOW_BITS),
            ..Self::client()
        }
    }

    /// Checks every setting's range; [`Error::Config`] names the first one out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: &str| Err(Error::Config(what.to_owned()));
        if self.level > 9 {
            return bad("deflate level must be 0 to 9");
        }
        if !(1..=9).contains(&self.mem_level) {
            return bad("deflate mem_level must be 1 to 9");
        }
        for (name, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if bits.is_some_and(|b| !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&b)) {
                return Err(Error::Config(format!("{name} must be 9 to 15")));
            }
        }
        Ok(())
    }

    /// The client's offer, as an element of `Sec-WebSocket-Extensions`.
    pub fn offer(&self) -> String {
        element(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            // Offered always: bare when we let the server choose.
            Some(self.client_max_window_bits),
        )
    }
}

/// The parameters both sides agreed on in the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agreement {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (15 when `None`).
    pub server_max_window_bits: Option<u8>,
    /// The client compresses with at most this window (15 when `None`).
    pub client_max_window_bits: Option<u8>,
}

impl Agreement {
    /// The server's answer, as an element of `Sec-WebSocket-Extensions`.
    pub fn to_header(&self) -> String {
        element(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
            self.client_max_window_bits.map(Some),
        )
    }

    /// The window the end in `role` compresses with, and whether it resets after a message.
    fn sender(&self, role: Role) -> (u8, bool) {
        match role {
            Role::Server => (
                self.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
                self.server_no_context_takeover,
            ),
            Role::Client => (
                self.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
                self.client_no_context_takeover,
            ),
        }
    }
}

/// A `permessage-deflate` element with these parameters; `client_max_window_bits` is
/// `Some(None)` for the bare parameter.
fn element(
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
) -> String {
    let mut element = String::from(EXTENSION_NAME);
    if server_no_context_takeover {
        element.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        element.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = server_max_window_bits {
        let _ = write!(element, "; server_max_window_bits={bits}");
    }
    match client_max_window_bits {
        Some(Some(bits)) => {
            let _ = write!(element, "; client_max_window_bits={bits}");
        }
        Some(None) => element.push_str("; client_max_window_bits"),
        None => {}
    }
    element
}

/// The parameters of one offer or answer, each at most once, with their ranges checked.
#[derive(Debug, Default)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `Some(None)`: present without a value (only `client_max_window_bits` may be).
    server_max_window_bits: Option<Option<u8>>,
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses the parameters of a `permessage-deflate` element; `None` for another extension.
fn parse(element: &str) -> Option<Result<Params, String>> {
    let mut parts = element.split(';').map(|p| p.trim_matches([' ', '\t']));
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION_NAME) {
        return None;
    }
    let mut params = Params::default();
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((name, value)) => {
                let value = value.trim_matches([' ', '\t']);
                // RFC 7692 §7.1: a value may come as a quoted string.
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                (name.trim_matches([' ', '\t']), Some(value))
            }
            None => (part, None),
        };
        let result = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => flag(&mut params.server_no_context_takeover, value),
            "client_no_context_takeover" => flag(&mut params.client_no_context_takeover, value),
            "server_max_window_bits" => match value {
                None => Err("needs a value".to_owned()),
                Some(value) => window(&mut params.server_max_window_bits, Some(value)),
            },
            "client_max_window_bits" => window(&mut params.client_max_window_bits, value),
            _ => Err("is unknown".to_owned()),
        };
        if let Err(problem) = result {
            return Some(Err(format!("parameter {name:?} {problem}")));
        }
    }
    Some(Ok(params))
}

fn flag(slot: &mut bool, value: Option<&str>) -> Result<(), String> {
    if value.is_some() {
        return Err("takes no value".into());
    }
    if std::mem::replace(slot, true) {
        return Err("is repeated".into());
    }
    Ok(())
}

fn window(slot: &mut Option<Option<u8>>, value: Option<&str>) -> Result<(), String> {
    if slot.is_some() {
        return Err("is repeated".into());
    }
    let bits = match value {
        None => None,
        // 1*DIGIT without a leading zero, 8 to 15 (RFC 7692 §7.1.2).
        Some(v) if !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()) => {
            match v.parse::<u8>() {
                Ok(bits @ 8..=15) => Some(bits),
                _ => return Err(format!("has {v:?}, not 8 to 15")),
            }
        }
        Some(v) => return Err(format!("has {v:?}, not 8 to 15")),
    };
    *slot = Some(bits);
    Ok(())
}

/// The server's choice among the client's extension offers (in the client's order): the
/// first acceptable `permessage-deflate` offer and our answer to it. Invalid offers are
/// declined with a logged reason and the next one is tried; so is an offer that would have
/// us compress with an 8-bit window.
pub fn negotiate(offers: &[String], config: &DeflateConfig) -> Option<Agreement> {
    offers.iter().find_map(|offer| match parse(offer)? {
        Err(reason) => {
            log::debug!("declining the offer {offer:?}: {reason}");
            None
        }
        Ok(params) => {
            let agreement = answer(&params, config);
            if agreement.is_none() {
                log::debug!("declining the offer {offer:?}: it asks for an 8-bit window");
            }
            agreement
        }
    })
}

fn answer(offer: &Params, config: &DeflateConfig) -> Option<Agreement> {
    let server_max_window_bits = match (
        offer.server_max_window_bits.flatten(),
        config.server_max_window_bits,
    ) {
        (Some(8), _) => return None,
        (Some(asked), Some(cap)) => Some(asked.min(cap)),
        (Some(asked), None) => Some(asked),
        (None, Some(cap)) if cap < MAX_WINDOW_BITS => Some(cap),
        (None, _) => None,
    };
    let client_max_window_bits = match offer.client_max_window_bits {
        // Not offered: the client may not support it, so it must not be answered.
        None => None,
        Some(hint) => match (hint, config.client_max_window_bits) {
            (Some(hint), Some(cap)) => Some(hint.min(cap)),
            (hint, cap) => hint.or(cap),
        }
        // 8 is never answered: the client keeps to its own hint and we inflate with more.
        .filter(|&bits| bits >= MIN_WINDOW_BITS),
    };
    Some(Agreement {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    })
}

/// Checks the server's answer to our offer (the accepted extensions of its 101 response,
/// already known to be among those offered): `None` when it declined permessage-deflate,
/// [`Error::Negotiation`] when its answer breaks RFC 7692 §7.1.
pub fn check_answer(
    accepted: &[String],
    offered: &DeflateConfig,
) -> Result<Option<Agreement>, Error> {
    let mut answers = accepted.iter().filter_map(|element| parse(element));
    let Some(answer) = answers.next() else {
        return Ok(None);
    };
    let fail = |reason: String| Err(Error::Negotiation(format!("permessage-deflate: {reason}")));
    if answers.next().is_some() {
        return fail("accepted more than once".into());
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(reason) => return fail(reason),
    };
    if offered.server_no_context_takeover && !answer.server_no_context_takeover {
        return fail("server_no_context_takeover was offered and not answered".into());
    }
    let server_max_window_bits = answer.server_max_window_bits.flatten();
    if let Some(asked) = offered.server_max_window_bits {
        match server_max_window_bits {
            None => {
                return fail(format!(
                    "server_max_window_bits={asked} was offered and not answered"
                ))
            }
            Some(bits) if bits > asked => {
                return fail(format!(
                    "server_max_window_bits={bits} is above the {asked} offered"
                ))
            }
            Some(_) => {}
        }
    }
    let client_max_window_bits = match answer.client_max_window_bits {
        None => None,
        Some(None) => return fail("client_max_window_bits needs a value in an answer".into()),
        Some(Some(bits)) => match offered.client_max_window_bits {
            Some(limit) if bits > limit => {
                return fail(format!(
                    "client_max_window_bits={bits} is above the {limit} offered"
                ))
            }
            _ => Some(bits),
        },
    };
    Ok(Some(Agreement {
        server_no_context_takeover: answer.server_no_context_takeover,
        client_no_context_takeover: answer.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    }))
}

/// Compressors and inflaters kept between messages for the whole process, by their
/// settings, at most this many of each: process-wide, so that a thread per connection (the
/// sync face) does not keep one per idle connection.
const POOL_SIZE: usize = 8;

/// What a compressor is made with: level, memLevel, window bits. Two compressors with the
/// same key that reset after each message turn a message into the same bytes.
pub(crate) type DeflateKey = (u8, u8, u8);

/// A pool of codec states by their settings. A state given back under context takeover
/// keeps its stream, tagged with the direction that used it: when that direction takes it
/// again (a busy connection, the common case) it goes on without the reset and the
/// dictionary load that any other taker pays (about half of compressing a small message).
type Pool<K, T> = Mutex<Vec<Pooled<K, T>>>;

struct Pooled<K, T> {
    key: K,
    /// The direction whose stream the state still holds; `None`: the state is reset.
    owner: Option<u64>,
    state: T,
}

static DEFLATERS: Pool<DeflateKey, Deflate> = Mutex::new(Vec::new());
static INFLATERS: Pool<(), Inflate> = Mutex::new(Vec::new());

/// Tags of the directions with context takeover, unique for the process's life.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(0);

fn new_owner() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// How a state came out of the pool.
enum Taken<T> {
    /// The taker's own stream, as it left it.
    Continued(T),
    /// Another's stream: reset it before use.
    Dirty(T),
    /// A reset state.
    Clean(T),
}

/// Takes `owner`'s own state if pooled, else a reset one for `key`, else any for `key`.
fn take_pooled<K: PartialEq, T>(
    pool: &Pool<K, T>,
    key: &K,
    owner: Option<u64>,
) -> Option<Taken<T>> {
    let mut pool = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let own = owner.and_then(|owner| pool.iter().position(|p| p.owner == Some(owner)));
    let index = own
        .or_else(|| pool.iter().position(|p| p.key == *key && p.owner.is_none()))
        .or_else(|| pool.iter().position(|p| p.key == *key))?;
    let pooled = pool.swap_remove(index);
    Some(match pooled.owner {
        None => Taken::Clean(pooled.state),
        Some(_) if own.is_some() => Taken::Continued(pooled.state),
        Some(_) => Taken::Dirty(pooled.state),
    })
}

fn give_back<K, T>(pool: &Pool<K, T>, key: K, owner: Option<u64>, state: T) {
    let mut pool = pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if pool.len() < POOL_SIZE {
        pool.push(Pooled { key, owner, state });
    }
}

/// The last `1 << bits` bytes of a direction's uncompressed stream: all that a message may
/// refer back to under context takeover, kept between messages instead of a codec state.
struct Window {
    bytes: Vec<u8>,
    size: usize,
}

impl Window {
    fn new(bits: u8) -> Self {
        Self {
            bytes: Vec::new(),
            size: 1 << bits,
        }
    }

    /// Appends `data`, keeping only the last window of the stream.
    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.size)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.size);
        self.bytes.drain(..overflow);
        if self.bytes.len() + data.len() > self.bytes.capacity() {
            // Straight to the window's size, never past it.
            self.bytes.reserve_exact(self.size - self.bytes.len());
        }
        self.bytes.extend_from_slice(data);
    }
}

/// Our side's compressor: whether and how the messages we send are compressed.
pub(crate) struct Compressor {
    key: DeflateKey,
    /// Context takeover: what the next message starts from (`None` without takeover).
    history: Option<Window>,
    /// Context takeover: the tag of this direction's state in the pool.
    owner: Option<u64>,
    /// 8-bit window: nothing is compressed (RFC 7692 allows per-message choice).
    disabled: bool,
    min_size: usize,
    /// The state compressing a message, from its first bytes to its end.
    state: Option<Deflate>,
}

impl Compressor {
    pub(crate) fn new(agreement: &Agreement, config: &DeflateConfig, role: Role) -> Self {
        let (bits, reset_each_message) = agreement.sender(role);
        let disabled = bits < MIN_WINDOW_BITS;
        let bits = bits.max(MIN_WINDOW_BITS);
        Self {
            key: (config.level, config.mem_level, bits),
            history: (!reset_each_message).then(|| Window::new(bits)),
            owner: (!reset_each_message).then(new_owner),
            disabled,
            min_size: config.min_size,
            state: None,
        }
    }

    /// A fresh compressor for `key` that resets after each message: what
    /// [`super::broadcast::Broadcast`] compresses a message with once for many connections.
    pub(crate) fn stateless(key: DeflateKey) -> Self {
        Self {
            key,
            history: None,
            owner: None,
            disabled: false,
            min_size: 0,
            state: None,
        }
    }

    /// The key of a compressor whose output depends on the message alone (no context
    /// takeover, not disabled): any connection with the same key can take the same bytes.
    pub(crate) fn shared_key(&self) -> Option<DeflateKey> {
        (self.history.is_none() && !self.disabled).then_some(self.key)
    }

    /// Whether a message of `len` bytes is compressed, `compress` being the sender's wish.
    pub(crate) fn wants(&self, len: usize, compress: bool) -> bool {
        compress && !self.disabled && len >= self.min_size
    }

    /// Whether a fragmented message is compressed: its length is not known in advance.
    pub(crate) fn wants_fragmented(&self, compress: bool) -> bool {
        compress && !self.disabled
    }

    /// Appends `data` compressed to `out`; `fin` ends the message (its sync tail removed).
    pub(crate) fn compress(&mut self, data: &[u8], out: &mut Vec<u8>, fin: bool) {
        let mut state = self.state.take().unwrap_or_else(|| self.take_state());
        if let Some(history) = &mut self.history {
            history.push(data);
        }
        let start = out.len();
        let mut input = data;
        loop {
            // A sync flush of n bytes takes at most n plus 5 bytes per 16 KiB block plus
            // the flush's own few: reserve that, and loop in case zlib wants more.
            out.reserve(input.len() + input.len() / 1024 + 64);
            let before_in = state.total_in();
            let before_out = state.total_out();
            let status = state
                .compress_uninit(input, out.spare_capacity_mut(), DeflateFlush::SyncFlush)
                .expect("compressing in a valid state cannot fail");
            let consumed = (state.total_in() - before_in) as usize;
            let produced = (state.total_out() - before_out) as usize;
            // SAFETY: zlib initialized the `produced` bytes after the vector's length.
            unsafe { out.set_len(out.len() + produced) };
            input = &input[consumed..];
            let full = out.len() == out.capacity();
            if input.is_empty() && !full || status == Status::BufError {
                break;
            }
        }
        if fin {
            if out.len() == start {
                // Nothing new since the last flush (an empty message or last fragment):
                // the header of an empty stored block, which the receiver's appended tail
                // completes (RFC 7692 §7.2.3.6).
                out.push(0x00);
            } else {
                out.truncate(out.len() - SYNC_TAIL.len());
            }
            if self.owner.is_none() {
                state.reset();
            }
            give_back(&DEFLATERS, self.key, self.owner, state);
            return;
        }
        self.state = Some(state);
    }

    /// A state for the next message: this direction's own from the pool as it left it,
    /// else one reset and started from the window.
    fn take_state(&self) -> Deflate {
        let mut state = match take_pooled(&DEFLATERS, &self.key, self.owner) {
            Some(Taken::Continued(state)) => return state,
            Some(Taken::Dirty(mut state)) => {
                state.reset();
                state
            }
            Some(Taken::Clean(state)) => state,
            None => {
                let (level, mem_level, bits) = self.key;
                Deflate::new_with_config(ZlibConfig {
                    level: i32::from(level),
                    method: Method::Deflated,
                    window_bits: -i32::from(bits),
                    mem_level: i32::from(mem_level),
                    strategy: Strategy::Default,
                })
            }
        };
        if let Some(history) = self.history.as_ref().filter(|h| !h.bytes.is_empty()) {
            state
                .set_dictionary(&history.bytes)
                .expect("a reset raw compressor takes a dictionary");
        }
        state
    }
}

/// Why inflating a message stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The message would exceed the size limit.
    TooBig,
    /// The data is not valid deflate.
    Corrupt,
}

/// The inflater for the messages the peer sends.
pub(crate) struct Inflater {
    /// Context takeover: what the next message may refer to (`None` without takeover).
    history: Option<Window>,
    /// Context takeover: the tag of this direction's state in the pool.
    owner: Option<u64>,
    /// The state inflating a message, from its first bytes to its end.
    state: Option<Inflate>,
}

impl Inflater {
    pub(crate) fn new(agreement: &Agreement, role: Role) -> Self {
        let peer = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let (bits, reset_each_message) = agreement.sender(peer);
        Self {
            // A peer told 8 may still use 9 (zlib does): keep the larger window.
            history: (!reset_each_message).then(|| Window::new(bits.max(MIN_WINDOW_BITS))),
            owner: (!reset_each_message).then(new_owner),
            state: None,
        }
    }

    /// Inflates `input` (part of a compressed message) onto the end of `out`, which may
    /// grow to at most `limit` bytes: the output is produced in bounded steps and counted as
    /// it comes, so a bomb costs no more than the limit.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let state = self.state.take().unwrap_or_else(|| self.take_state());
        let state = self.state.insert(state);
        let history = &mut self.history;
        let start = out.len();
        let mut input = input;
        let status = loop {
            if out.len() == out.capacity() {
                // Grow by doubling from 16 KiB, never past one byte over the limit (which is
                // how an oversized message shows).
                let room = limit.saturating_add(1).saturating_sub(out.len());
                out.reserve(out.len().clamp(16 << 10, 1 << 30).min(room).max(1));
            }
            let room = limit.saturating_add(1).saturating_sub(out.len());
            let spare = out.spare_capacity_mut();
            let spare_len = spare.len().min(room);
            let spare: &mut [MaybeUninit<u8>] = &mut spare[..spare_len];
            let before_in = state.total_in();
            let before_out = state.total_out();
            let status = state
                .decompress_uninit(input, spare, InflateFlush::NoFlush)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (state.total_in() - before_in) as usize;
            let produced = (state.total_out() - before_out) as usize;
            // SAFETY: zlib initialized the `produced` bytes after the vector's length.
            unsafe { out.set_len(out.len() + produced) };
            input = &input[consumed..];
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd || produced < spare_len || status == Status::BufError {
                break status;
            }
        };
        if let Some(history) = history {
            history.push(&out[start..]);
        }
        if status == Status::StreamEnd {
            // A final block ends the stream (and its window): what follows is ignored, and
            // the next message starts a stream of its own.
            state.reset(false);
            if let Some(history) = history {
                history.bytes.clear();
            }
        }
        Ok(())
    }

    /// Ends a message: feeds the sync tail the sender removed, then gives the state back to
    /// the pool (the window, kept under context takeover, is in `history`).
    pub(crate) fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.inflate(&SYNC_TAIL, out, limit)?;
        if let Some(mut state) = self.state.take() {
            if self.owner.is_none() {
                state.reset(false);
            }
            give_back(&INFLATERS, (), self.owner, state);
        }
        Ok(())
    }

    /// A state for the next message: this direction's own from the pool as it left it,
    /// else one reset and started from the window.
    fn take_state(&self) -> Inflate {
        let mut state = match take_pooled(&INFLATERS, &(), self.owner) {
            Some(Taken::Continued(state)) => return state,
            Some(Taken::Dirty(mut state)) => {
                state.reset(false);
                state
            }
            Some(Taken::Clean(state)) => state,
            // The largest window inflates what any peer sends, and costs what a smaller one
            // does (zlib-rs allocates 32 KiB whatever the bits): one kind of state for all.
            None => Inflate::new(false, MAX_WINDOW_BITS),
        };
        if let Some(history) = self.history.as_ref().filter(|h| !h.bytes.is_empty()) {
            state
                .set_dictionary(&history.bytes)
                .expect("a reset raw inflater takes a dictionary");
        }
        state
    }
}
