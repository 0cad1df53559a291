//! Inline I/O on plain TCP: the hand-off between application threads and a connection's
//! runtime tasks (docs/ARCHITECTURE.md, "Inline I/O on plain TCP").
//!
//! A sending thread writes its frames to the socket itself while the writer task has nothing
//! in flight; a receiving thread that finds the inbox empty reads the socket itself and waits
//! in poll() while the reader task stands aside. These tests drive both ends of real loopback
//! connections from std threads and check that no byte reorders, tears or repeats at those
//! hand-offs, that blocked receivers come back when the connection ends, and that reading
//! stops at the inbox budget.
//!
//! Every wait is bounded by time (and loops by count too); sleeps only vary the load. Where a
//! test wants a thread to be inside its inline wait, it reads the thread's current system
//! call from /proc (Linux) instead of guessing with a sleep.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ferrows_core::engine::{
    connect, ClientConfig, Connection, Ended, Server, ServerConfig, Watermarks,
};
use ferrows_core::protocol::handshake::Headers;
use ferrows_core::protocol::message::CHUNK_OVERHEAD;
use ferrows_core::protocol::MessageKind;
use ferrows_core::{CloseInfo, Error};

/// Bounds every wait that should succeed long before it: a failure, not a hang.
const WAIT: Duration = Duration::from_secs(10);
/// How soon a receiver blocked in recv(None) must return once the connection ends.
const END_BOUND: Duration = Duration::from_secs(2);
/// The engine's socket read size (`READ_BUFFER` in engine/connection.rs): one read adds at
/// most this much payload to the inbox.
const READ_SIZE: usize = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// Both ends of one loopback connection.
struct Pair {
    /// Kept so that the listener lives as long as the test.
    _server: Server,
    server: Connection,
    client: Connection,
}

fn open_pair(server_config: ServerConfig, mut client_config: ClientConfig) -> Pair {
    // Uncompressed: these tests are about bytes on the wire and in the budgets, and their
    // patterned messages would shrink a thousandfold (compression through the engine is
    // tested from the faces: tests/python, tests/c, the interop matrix, Autobahn).
    client_config.handshake.deflate = None;
    let server = Server::bind("127.0.0.1", 0, server_config).expect("bind");
    let port = server.local_addr().port();
    let pending = connect(&format!("ws://127.0.0.1:{port}/"), client_config).expect("connect");
    let handshake = server
        .accept(Some(WAIT))
        .expect("server accept")
        .expect("a handshake within the wait");
    let server_side = handshake
        .accept(None, &Headers::new())
        .expect("accepting the handshake");
    let client = pending
        .wait(Some(WAIT))
        .expect("client open")
        .expect("the client opens within the wait");
    // The server's end is usable before its tasks start, but a receive begun before then
    // waits for the reader task instead of reading inline (see
    // `a_receive_begun_before_the_tasks_start_reads_inline`). A message received proves
    // they have started.
    client
        .send(MessageKind::Text, b"hello", true, Some(WAIT))
        .expect("hello");
    let hello = server_side.recv(Some(WAIT)).expect("hello");
    assert_eq!(hello, (MessageKind::Text, b"hello".to_vec()));
    Pair {
        _server: server,
        server: server_side,
        client,
    }
}

/// Sends an opening request from a bare TCP socket and accepts it: returns the socket (the
/// response not read yet) and the server's connection, which may not have started yet.
fn raw_upgrade(server: &Server) -> (std::net::TcpStream, Connection) {
    let address = server.local_addr();
    let mut peer = std::net::TcpStream::connect(address).expect("raw connect");
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    peer.write_all(request.as_bytes()).expect("raw request");
    let connection = server
        .accept(Some(WAIT))
        .expect("server accept")
        .expect("a handshake within the wait")
        .accept(None, &Headers::new())
        .expect("accepting the handshake");
    (peer, connection)
}

/// A server connection whose client is a bare TCP socket that did the opening handshake by
/// hand, sent one message, and then reads nothing and answers nothing, until it is dropped.
fn open_with_silent_peer(server_config: ServerConfig) -> (Server, Connection, std::net::TcpStream) {
    let server = Server::bind("127.0.0.1", 0, server_config).expect("bind");
    let (mut peer, connection) = raw_upgrade(&server);
    // Read the response head only, byte by byte, so that nothing after it is consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "response head too long");
        peer.read_exact(&mut byte)
            .expect("reading the 101 response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "unexpected response: {}",
        String::from_utf8_lossy(&head)
    );
    // A masked text frame "hello": once the server has received it, its tasks run (see
    // `open_pair`).
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81, 0x80 | 5];
    frame.extend_from_slice(&key);
    frame.extend(b"hello".iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    peer.write_all(&frame).expect("raw hello");
    let hello = connection.recv(Some(WAIT)).expect("hello");
    assert_eq!(hello, (MessageKind::Text, b"hello".to_vec()));
    (server, connection, peer)
}

/// Closes from the client and checks both ends saw a clean closing handshake.
fn close_cleanly(pair: &Pair) {
    let ended = pair
        .client
        .close(1000, "done", Some(WAIT))
        .expect("client close");
    assert!(ended.info.is_ok(), "client end: {}", ended.info);
    let ended = pair.server.wait_ended(Some(WAIT)).expect("server end");
    assert!(ended.info.is_ok(), "server end: {}", ended.info);
}

/// Nothing beyond what was expected arrived: no message was duplicated.
fn assert_nothing_more(connection: &Connection, side: &str) {
    match connection.recv(Some(Duration::from_millis(30))) {
        Err(Error::Timeout(_)) => {}
        Ok((kind, data)) => panic!(
            "{side}: an extra {kind:?} message of {} bytes arrived (header {:?})",
            data.len(),
            header(kind, &data)
        ),
        Err(error) => panic!("{side}: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------------------------

fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .expect("spawning a thread")
}

/// Joins a thread, failing the test with the thread's own panic.
fn join<T>(handle: JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Polls `condition` until it holds, failing after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_micros(500));
    }
}

/// A thread's kernel id (Linux), to find it in /proc.
type Tid = libc::c_long;

#[cfg(target_os = "linux")]
fn current_tid() -> Tid {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

#[cfg(not(target_os = "linux"))]
fn current_tid() -> Tid {
    0
}

/// True while thread `tid` of this process sits in poll() (the inline wait of a receiver);
/// a thread waiting on the connection's condition variable shows futex instead.
#[cfg(target_os = "linux")]
fn in_poll(tid: Tid) -> bool {
    #[cfg(target_arch = "x86_64")]
    const POLLS: [Tid; 2] = [libc::SYS_poll, libc::SYS_ppoll];
    #[cfg(not(target_arch = "x86_64"))]
    const POLLS: [Tid; 1] = [libc::SYS_ppoll];
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<Tid>().ok())
        .is_some_and(|number| POLLS.contains(&number))
}

/// Elsewhere the tests cannot see it and go on; their checks hold either way.
#[cfg(not(target_os = "linux"))]
fn in_poll(_tid: Tid) -> bool {
    true
}

/// Waits until thread `tid` is blocked in poll(): its receive is reading inline.
fn wait_blocked_in_poll(tid: Tid, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !in_poll(tid) {
        if Instant::now() >= deadline {
            let syscall = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"));
            panic!("{what} never waited in poll(); its system call now: {syscall:?}");
        }
        thread::sleep(Duration::from_micros(500));
    }
}

/// What a receive returned.
type Received = ferrows_core::Result<(MessageKind, Vec<u8>)>;

/// A thread blocked in `recv(None)`, and what that call returns, with when.
struct BlockedRecv {
    tid: Tid,
    outcome: Receiver<(Received, Instant)>,
    thread: JoinHandle<()>,
}

impl BlockedRecv {
    fn start(connection: &Connection, name: &str) -> BlockedRecv {
        let connection = connection.clone();
        let (tid_tx, tid_rx) = mpsc::channel();
        let (outcome_tx, outcome) = mpsc::channel();
        let thread = spawn(name, move || {
            tid_tx.send(current_tid()).unwrap();
            let result = connection.recv(None);
            let _ = outcome_tx.send((result, Instant::now()));
        });
        let tid = tid_rx.recv_timeout(WAIT).expect("the receiver's thread id");
        let blocked = BlockedRecv {
            tid,
            outcome,
            thread,
        };
        wait_blocked_in_poll(blocked.tid, name);
        blocked
    }

    /// What recv returned, no later than `bound` after `since`; also how long after `since`.
    fn outcome_within(self, since: Instant, bound: Duration, what: &str) -> (Received, Duration) {
        let left = (since + bound).saturating_duration_since(Instant::now());
        let (result, at) = match self.outcome.recv_timeout(left) {
            Ok(outcome) => outcome,
            Err(_) => panic!("{what}: recv(None) still blocked {bound:?} after the trigger"),
        };
        join(self.thread);
        (result, at.saturating_duration_since(since))
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// splitmix64: a well-mixed hash of a counter.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic generator, for load variation and test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATTERN_LEN: usize = 1 << 17;

/// Printable ASCII noise that message bodies are cut from: valid text and binary alike, and
/// cheap to build and compare (slices, not byte loops).
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut rng = Rng(42);
        (0..PATTERN_LEN)
            .map(|_| b' ' + rng.below(95) as u8)
            .collect()
    })
}

/// Appends pattern bytes from `start` (cycling) until `data` is `len` long.
fn fill(data: &mut Vec<u8>, len: usize, start: usize) {
    let pattern = pattern();
    let mut at = start % PATTERN_LEN;
    while data.len() < len {
        let take = (len - data.len()).min(PATTERN_LEN - at);
        data.extend_from_slice(&pattern[at..at + take]);
        at = 0;
    }
}

/// Text messages start with `{seq:08x}{stream:02x}|`.
const TEXT_HEADER: usize = 11;
/// Binary messages start with the sequence number (u32, little-endian) and the stream id,
/// cut to the message's length (a 1-byte message carries the low byte of its number).
const BINARY_HEADER: usize = 5;

/// Message `seq` of stream `stream`, `len` bytes long: its kind and content follow from
/// the three, so a receiver can check both order and integrity.
fn message(stream: u8, seq: u32, len: usize) -> (MessageKind, Vec<u8>) {
    let text = seq % 3 == 0 && len >= TEXT_HEADER;
    let mut data = Vec::with_capacity(len);
    if text {
        data.extend_from_slice(format!("{seq:08x}{stream:02x}|").as_bytes());
    } else {
        let mut head = seq.to_le_bytes().to_vec();
        head.push(stream);
        data.extend_from_slice(&head[..len.min(BINARY_HEADER)]);
    }
    fill(
        &mut data,
        len,
        mix(u64::from(stream) << 32 | u64::from(seq)) as usize,
    );
    let kind = if text {
        MessageKind::Text
    } else {
        MessageKind::Binary
    };
    (kind, data)
}

/// Where two byte strings first differ.
fn first_difference(expected: &[u8], got: &[u8]) -> usize {
    expected
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(got.len()))
}

/// The stream and sequence number a message says it carries, when it is long enough.
fn header(kind: MessageKind, data: &[u8]) -> Option<(u8, u32)> {
    match kind {
        MessageKind::Text if data.len() >= TEXT_HEADER && data[10] == b'|' => {
            let text = std::str::from_utf8(&data[..10]).ok()?;
            let seq = u32::from_str_radix(&text[..8], 16).ok()?;
            let stream = u8::from_str_radix(&text[8..10], 16).ok()?;
            Some((stream, seq))
        }
        MessageKind::Binary if data.len() >= BINARY_HEADER => {
            let seq = u32::from_le_bytes(data[..4].try_into().unwrap());
            Some((data[4], seq))
        }
        _ => None,
    }
}

/// A numbered sequence of messages whose sizes spread over orders of magnitude between
/// `min` and `max` (both included, and both hit regularly).
#[derive(Debug, Clone, Copy)]
struct Stream {
    id: u8,
    count: u32,
    min: usize,
    max: usize,
}

impl Stream {
    fn len(&self, seq: u32) -> usize {
        match seq % 997 {
            0 => return self.max,
            1 => return self.min,
            _ => {}
        }
        let hash = mix(u64::from(self.id) << 40 | u64::from(seq) << 1 | 1);
        let bits = usize::BITS - self.max.leading_zeros();
        let span = 1u64 << (hash % u64::from(bits));
        (self.min + ((hash >> 16) % span) as usize).min(self.max)
    }

    fn message(&self, seq: u32) -> (MessageKind, Vec<u8>) {
        message(self.id, seq, self.len(seq))
    }

    /// Fails unless `got` is exactly message `seq`.
    fn check(&self, seq: u32, got: &(MessageKind, Vec<u8>), side: &str) {
        let (kind, data) = self.message(seq);
        if got.0 != kind || got.1 != data {
            panic!(
                "{side}: expected message {seq} of stream {} ({kind:?}, {} bytes), got {:?} \
                 of {} bytes claiming (stream, seq) {:?}, first difference at byte {}",
                self.id,
                data.len(),
                got.0,
                got.1.len(),
                header(got.0, &got.1),
                first_difference(&data, &got.1)
            );
        }
    }
}

/// How a sender paces itself.
#[derive(Clone, Copy)]
enum Pace {
    /// Now and then a pause of up to 200 µs, so the writer task is sometimes idle, sometimes
    /// not, when a send comes.
    Light(u64),
    /// Bursts and gaps: yields, sub-millisecond to 1.5 ms pauses, and rare 6 ms ones (longer
    /// than the receiver's longest timeout).
    Irregular(u64),
}

/// This end's budgets, for failure messages.
fn state(connection: &Connection) -> String {
    format!(
        "this end: {} bytes unsent, {} bytes in the inbox",
        connection.unsent_bytes(),
        connection.inbox_bytes()
    )
}

fn send_all(connection: &Connection, stream: Stream, pace: Pace, side: &str) {
    let (mut rng, irregular) = match pace {
        Pace::Light(seed) => (Rng(seed), false),
        Pace::Irregular(seed) => (Rng(seed), true),
    };
    for seq in 0..stream.count {
        let (kind, data) = stream.message(seq);
        if let Err(error) = connection.send(kind, &data, true, Some(WAIT)) {
            panic!(
                "{side}: sending message {seq}: {error} ({})",
                state(connection)
            );
        }
        if irregular {
            match rng.below(1000) {
                0..=249 => thread::yield_now(),
                250..=309 => thread::sleep(Duration::from_micros(rng.below(1500))),
                310..=313 => thread::sleep(Duration::from_millis(6)),
                _ => {}
            }
        } else if rng.below(64) == 0 {
            thread::sleep(Duration::from_micros(rng.below(200)));
        }
    }
}

fn receive_all(connection: &Connection, stream: Stream, side: &str) {
    for seq in 0..stream.count {
        match connection.recv(Some(WAIT)) {
            Ok(got) => stream.check(seq, &got, side),
            Err(error) => panic!(
                "{side}: receiving message {seq}: {error} ({})",
                state(connection)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Order and integrity both ways at once
// ---------------------------------------------------------------------------------------------

/// 20,000 messages of 1 B to 64 KiB each way, sent by one thread and received by another on
/// each end at the same time: inline writes, inline reads and both tasks all take turns.
#[test]
fn both_ways_at_once_every_message_arrives_once_and_in_order() {
    let pair = open_pair(ServerConfig::default(), ClientConfig::default());
    let up = Stream {
        id: 1,
        count: 20_000,
        min: 1,
        max: 64 << 10,
    };
    let down = Stream { id: 2, ..up };
    let started = Instant::now();
    let threads = vec![
        spawn("client sender", {
            let client = pair.client.clone();
            move || send_all(&client, up, Pace::Light(1), "client sender")
        }),
        spawn("server receiver", {
            let server = pair.server.clone();
            move || receive_all(&server, up, "server receiver")
        }),
        spawn("server sender", {
            let server = pair.server.clone();
            move || send_all(&server, down, Pace::Light(2), "server sender")
        }),
        spawn("client receiver", {
            let client = pair.client.clone();
            move || receive_all(&client, down, "client receiver")
        }),
    ];
    for thread in threads {
        join(thread);
    }
    eprintln!(
        "both ways: 2 x {} messages in {:?}",
        up.count,
        started.elapsed()
    );
    assert_nothing_more(&pair.server, "server");
    assert_nothing_more(&pair.client, "client");
    assert_eq!(pair.server.inbox_bytes(), 0);
    assert_eq!(pair.client.inbox_bytes(), 0);
    close_cleanly(&pair);
}

// ---------------------------------------------------------------------------------------------
// 2. Receiver timeouts racing arrivals
// ---------------------------------------------------------------------------------------------

/// What a receiver's calls returned, by the timeout they used (0, 1 ms, 5 ms).
#[derive(Debug, Default)]
struct TimeoutCounts {
    timeouts: [u64; 3],
    messages: [u64; 3],
    calls: u64,
}

/// Receives `stream` with recv(Some(0 | 1 ms | 5 ms)) in rotation: the short ones leave
/// the reader task to read between calls, the others read inline and give up mid-wait.
fn receive_with_short_timeouts(
    connection: &Connection,
    stream: Stream,
    side: &str,
) -> TimeoutCounts {
    const TIMEOUTS: [Duration; 3] = [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(5),
    ];
    const MAX_CALLS: u64 = 10_000_000;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut counts = TimeoutCounts::default();
    let mut seq = 0;
    while seq < stream.count {
        assert!(
            Instant::now() < deadline && counts.calls < MAX_CALLS,
            "{side}: only {seq} of {} messages after {} calls",
            stream.count,
            counts.calls
        );
        let which = (counts.calls % 3) as usize;
        counts.calls += 1;
        match connection.recv(Some(TIMEOUTS[which])) {
            Ok(got) => {
                stream.check(seq, &got, side);
                seq += 1;
                counts.messages[which] += 1;
            }
            Err(Error::Timeout(_)) => counts.timeouts[which] += 1,
            Err(error) => panic!("{side}: receiving message {seq}: {error}"),
        }
    }
    counts
}

/// Receivers whose short timeouts keep expiring while messages (some larger than one read)
/// arrive at irregular times, both ways: nothing lost, nothing repeated, all in order.
#[test]
fn receive_timeouts_racing_arrivals_lose_and_repeat_nothing() {
    let pair = open_pair(ServerConfig::default(), ClientConfig::default());
    let up = Stream {
        id: 3,
        count: 5_000,
        min: 1,
        max: 40 << 10,
    };
    let down = Stream { id: 4, ..up };
    let senders = vec![
        spawn("client sender", {
            let client = pair.client.clone();
            move || send_all(&client, up, Pace::Irregular(3), "client sender")
        }),
        spawn("server sender", {
            let server = pair.server.clone();
            move || send_all(&server, down, Pace::Irregular(4), "server sender")
        }),
    ];
    let receivers = vec![
        spawn("server receiver", {
            let server = pair.server.clone();
            move || receive_with_short_timeouts(&server, up, "server receiver")
        }),
        spawn("client receiver", {
            let client = pair.client.clone();
            move || receive_with_short_timeouts(&client, down, "client receiver")
        }),
    ];
    for sender in senders {
        join(sender);
    }
    for (side, receiver) in ["server", "client"].into_iter().zip(receivers) {
        let counts = join(receiver);
        eprintln!("{side} receiver: {counts:?}");
        let [zero, one, five] = counts.timeouts;
        assert!(zero > 0, "{side}: no zero timeout expired: {counts:?}");
        assert!(
            one + five > 0,
            "{side}: no inline-reading timeout expired: {counts:?}"
        );
        // recv(0) takes what the reader task (or an earlier inline read) queued.
        assert!(
            counts.messages[0] > 0,
            "{side}: recv with timeout 0 never returned a message: {counts:?}"
        );
    }
    assert_nothing_more(&pair.server, "server");
    assert_nothing_more(&pair.client, "client");
    close_cleanly(&pair);
}

// ---------------------------------------------------------------------------------------------
// 3. Partial inline writes
// ---------------------------------------------------------------------------------------------

/// A big message far larger than the socket buffers on the way.
const BIG: usize = 16 << 20;
/// A second large one, later.
const MEDIUM: usize = 3 << 20;
/// The stream id of the partial-write tests.
const PARTIAL: u8 = 5;

/// The peer's inbox budget in the partial-write tests: the first messages fill it, so that
/// the peer's reader stops before the big one comes.
const PEER_INBOX: Watermarks = Watermarks {
    high: 256 << 10,
    low: 64 << 10,
};
/// How many 8 KiB messages go first: more than the peer's inbox holds.
const PREFIX: usize = 40;

/// The lengths sent: 8 KiB messages (more than the peer's inbox budget), the big one, small
/// ones, the medium one, small ones. Returns them with the index of the big one.
fn partial_write_plan() -> (Vec<usize>, usize) {
    let smalls = Stream {
        id: PARTIAL,
        count: 0,
        min: 1,
        max: 2000,
    };
    let mut lengths: Vec<usize> = (0..PREFIX).map(|seq| 8192 - seq % 7).collect();
    assert!(lengths.iter().sum::<usize>() > PEER_INBOX.high + READ_SIZE);
    let big = lengths.len();
    lengths.push(BIG);
    lengths.extend((0..30).map(|seq| smalls.len(100 + seq)));
    lengths.push(MEDIUM);
    lengths.extend((0..30).map(|seq| smalls.len(200 + seq)));
    (lengths, big)
}

/// Sends the plan, none of it allowed to wait (the outbox has room for all of it), calling
/// `before_big` before the big message. Returns the bytes unsent right after the big
/// message, and how many of the sends after it found bytes still unsent (queued behind the
/// writer task's, or the protocol's, pending output).
fn send_partial_write_plan(
    sender: &Connection,
    lengths: &[usize],
    big: usize,
    before_big: impl FnOnce(),
) -> (usize, usize) {
    let mut unsent_after_big = 0;
    let mut queued_behind = 0;
    let mut before_big = Some(before_big);
    for (seq, &len) in lengths.iter().enumerate() {
        if seq == big {
            (before_big.take().unwrap())();
        }
        if seq > big && sender.unsent_bytes() > 0 {
            queued_behind += 1;
        }
        let (kind, data) = message(PARTIAL, seq as u32, len);
        sender
            .send(kind, &data, true, Some(Duration::ZERO))
            .unwrap_or_else(|error| panic!("sending message {seq} ({len} bytes): {error}"));
        if seq == big {
            unsent_after_big = sender.unsent_bytes();
        }
    }
    (unsent_after_big, queued_behind)
}

fn check_partial_write_message(seq: usize, len: usize, got: &(MessageKind, Vec<u8>)) {
    let (kind, data) = message(PARTIAL, seq as u32, len);
    if got.0 != kind || got.1 != data {
        panic!(
            "peer: expected message {seq} ({len} bytes), got {} bytes claiming {:?}, first \
             difference at byte {}",
            got.1.len(),
            header(got.0, &got.1),
            first_difference(&data, &got.1)
        );
    }
}

/// Sends messages that fill the peer's inbox budget (its reader stops), one larger than
/// every socket buffer on the way, small ones, a second large one and more small ones, to an
/// engine peer whose receiving thread starts only once everything is queued: the big one is
/// written inline only in part and the writer task takes over the rest, and the small ones
/// queued behind it must not overtake it. Then the peer receives everything.
///
/// (The budget has to be full first: a frame is held outside the inbox until it is whole,
/// bounded by the message size limit, so a reader that is under budget reads all of the big
/// frame as fast as it comes.)
fn small_messages_stay_behind_a_partly_written_one(server_sends: bool) {
    let mut server_config = ServerConfig::default();
    let mut client_config = ClientConfig::default();
    // The sender's outbox holds everything, so sends never wait (and may not: timeout 0).
    let roomy = Watermarks {
        high: 128 << 20,
        low: 32 << 20,
    };
    if server_sends {
        server_config.outbox = roomy;
        client_config.inbox = PEER_INBOX;
        client_config.protocol.max_message_size = Some(64 << 20);
    } else {
        client_config.outbox = roomy;
        server_config.inbox = PEER_INBOX;
        server_config.protocol.max_message_size = Some(64 << 20);
    }
    let pair = open_pair(server_config, client_config);
    let (sender, peer) = if server_sends {
        (pair.server.clone(), pair.client.clone())
    } else {
        (pair.client.clone(), pair.server.clone())
    };
    let (lengths, big) = partial_write_plan();

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let receiver = spawn("peer receiver", {
        let lengths = lengths.clone();
        let peer = peer.clone();
        move || {
            go_rx.recv_timeout(WAIT).expect("the go-ahead to read");
            for (seq, &len) in lengths.iter().enumerate() {
                let got = peer
                    .recv(Some(WAIT))
                    .unwrap_or_else(|error| panic!("peer: receiving message {seq}: {error}"));
                check_partial_write_message(seq, len, &got);
            }
            assert_nothing_more(&peer, "peer");
        }
    });

    let (unsent_after_big, queued_behind) = send_partial_write_plan(&sender, &lengths, big, || {
        wait_for("the peer's reader to stop at its budget", WAIT, || {
            peer.inbox_bytes() >= PEER_INBOX.high
        })
    });
    let unsent_after_all = sender.unsent_bytes();
    eprintln!(
        "partial write ({}): {unsent_after_big} bytes unsent after the big message, \
         {unsent_after_all} after all, {queued_behind} of {} later sends queued behind",
        if server_sends {
            "server sends"
        } else {
            "client sends"
        },
        lengths.len() - big - 1
    );
    assert!(
        unsent_after_big > 0,
        "the {BIG}-byte message went out whole: the test did not make the writer take over"
    );
    assert_eq!(
        queued_behind,
        lengths.len() - big - 1,
        "a send after the big one found nothing unsent: the peer read"
    );
    // The peer reads nothing: no more than the socket buffers (a few MiB) can have left.
    assert!(
        unsent_after_all > MEDIUM,
        "only {unsent_after_all} bytes unsent with a peer that reads nothing"
    );
    go_tx.send(()).unwrap();
    join(receiver);
    wait_for("the sender's output to drain", WAIT, || {
        sender.unsent_bytes() == 0
    });
    close_cleanly(&pair);
}

#[test]
fn small_messages_stay_behind_a_partly_written_one_server_to_client() {
    small_messages_stay_behind_a_partly_written_one(true);
}

#[test]
fn small_messages_stay_behind_a_partly_written_one_client_to_server() {
    small_messages_stay_behind_a_partly_written_one(false);
}

/// Reads one unmasked frame (a server's) from a bare socket: its first byte and payload.
fn read_raw_frame(peer: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    peer.read_exact(&mut head).expect("a frame header");
    assert_eq!(head[1] & 0x80, 0, "a server's frame is not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut bytes = [0u8; 2];
            peer.read_exact(&mut bytes).expect("a 16-bit length");
            u64::from(u16::from_be_bytes(bytes))
        }
        127 => {
            let mut bytes = [0u8; 8];
            peer.read_exact(&mut bytes).expect("a 64-bit length");
            u64::from_be_bytes(bytes)
        }
        short => u64::from(short),
    };
    assert!(len <= 64 << 20, "a frame of {len} bytes");
    let mut payload = vec![0u8; len as usize];
    peer.read_exact(&mut payload).expect("a frame payload");
    (head[0], payload)
}

/// The same, from the server to a peer that reads nothing at all (a bare socket) until
/// everything is queued.
#[test]
fn small_messages_stay_behind_a_partly_written_one_to_a_silent_peer() {
    let config = ServerConfig {
        outbox: Watermarks {
            high: 128 << 20,
            low: 32 << 20,
        },
        ..ServerConfig::default()
    };
    let (_server, sender, mut peer) = open_with_silent_peer(config);
    let (lengths, big) = partial_write_plan();
    let (unsent_after_big, queued_behind) = send_partial_write_plan(&sender, &lengths, big, || {});
    let unsent_after_all = sender.unsent_bytes();
    eprintln!(
        "partial write (silent peer): {unsent_after_big} bytes unsent after the big message, \
         {unsent_after_all} after all, {queued_behind} of {} later sends queued behind",
        lengths.len() - big - 1
    );
    assert!(
        unsent_after_big > 0,
        "the {BIG}-byte message went out whole: the test did not make the writer take over"
    );
    assert_eq!(queued_behind, lengths.len() - big - 1);
    // Nothing reads: no more than the socket buffers (a few MiB) can have left.
    assert!(
        unsent_after_all > MEDIUM,
        "only {unsent_after_all} bytes unsent with a peer that reads nothing"
    );
    for (seq, &len) in lengths.iter().enumerate() {
        let (first, payload) = read_raw_frame(&mut peer);
        let kind = match first {
            0x81 => MessageKind::Text,
            0x82 => MessageKind::Binary,
            other => panic!("message {seq}: a frame starting with {other:#04x}"),
        };
        check_partial_write_message(seq, len, &(kind, payload));
    }
    wait_for("the sender's output to drain", WAIT, || {
        sender.unsent_bytes() == 0
    });
    sender.start_close(1000, "done").unwrap();
    let (first, payload) = read_raw_frame(&mut peer);
    assert_eq!((first, &payload[..2]), (0x88, &1000u16.to_be_bytes()[..]));
}

// ---------------------------------------------------------------------------------------------
// 4. A fragmented message across inline and reader-task reads
// ---------------------------------------------------------------------------------------------

/// What a recv returned, briefly (not a whole message's bytes).
fn describe(outcome: &Received) -> String {
    match outcome {
        Ok((kind, data)) => format!("a {kind:?} message of {} bytes", data.len()),
        Err(error) => format!("error: {error}"),
    }
}

/// A text message of multi-byte characters sent as fragments cut in the middle of
/// characters, some larger than one read, one empty. The peer sends each fragment only when
/// the test says so: alternately while no thread receives (the reader task must read it:
/// the inbox grows) and while the receiver is blocked in its inline wait (it reads it
/// itself). Between fragments every recv times out; then the message arrives whole, once.
#[test]
fn fragments_read_inline_and_by_the_reader_task_make_one_message() {
    const INLINE_RECV: Duration = Duration::from_millis(250);
    let pair = open_pair(ServerConfig::default(), ClientConfig::default());

    let mut rng = Rng(7);
    let alphabet = ['a', 'é', '€', '😀', 'z', 'ß', '中'];
    let mut text = String::new();
    while text.len() < 200_000 {
        text.push(alphabet[rng.below(alphabet.len() as u64) as usize]);
    }
    let sizes = [1, 2, 20_000, 0, 70_001, 3, 40_000, 17, 16_384, 5];
    let mut fragments: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    for size in sizes {
        fragments.push(text.as_bytes()[at..at + size].to_vec());
        at += size;
    }
    fragments.push(text.as_bytes()[at..].to_vec());
    let cut_in_characters = fragments
        .iter()
        .filter(|fragment| std::str::from_utf8(fragment).is_err())
        .count();
    assert!(
        cut_in_characters >= 3,
        "the fragments should split characters"
    );
    let last = fragments.len() - 1;

    // The peer's sending thread: one fragment per go-ahead.
    let (fragment_tx, fragment_rx) = mpsc::channel::<usize>();
    let (sent_tx, sent_rx) = mpsc::channel::<usize>();
    let sender = spawn("client fragment sender", {
        let client = pair.client.clone();
        let fragments = fragments.clone();
        move || {
            while let Ok(index) = fragment_rx.recv() {
                client
                    .send_fragment(
                        MessageKind::Text,
                        &fragments[index],
                        index == last,
                        true,
                        Some(WAIT),
                    )
                    .unwrap_or_else(|error| panic!("sending fragment {index}: {error}"));
                sent_tx.send(index).unwrap();
            }
        }
    });
    let release = |index: usize| {
        fragment_tx.send(index).unwrap();
        assert_eq!(
            sent_rx.recv_timeout(WAIT),
            Ok(index),
            "fragment {index} sent"
        );
    };

    // The receiving thread: one recv per command.
    let (command_tx, command_rx) = mpsc::channel::<Duration>();
    let (outcome_tx, outcome_rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let receiver = spawn("server receiver", {
        let server = pair.server.clone();
        move || {
            tid_tx.send(current_tid()).unwrap();
            while let Ok(timeout) = command_rx.recv() {
                outcome_tx.send(server.recv(Some(timeout))).unwrap();
            }
        }
    });
    let tid = tid_rx.recv_timeout(WAIT).unwrap();
    let outcome = || outcome_rx.recv_timeout(WAIT).expect("the receiver answers");

    let mut timeouts = 0;
    let mut inline_steps = 0;
    for (index, fragment) in fragments.iter().enumerate().take(last) {
        let early = if index % 2 == 0 {
            // No thread receives: the reader task reads the fragment into the inbox.
            let before = pair.server.inbox_bytes();
            release(index);
            wait_for(
                &format!("the reader task to queue fragment {index}"),
                WAIT,
                || pair.server.inbox_bytes() >= before + fragment.len(),
            );
            command_tx.send(Duration::from_millis(5)).unwrap();
            None
        } else {
            // The receiver waits inline when the fragment comes, unless its recv ran out
            // before it was seen waiting (a very slow machine): then the reader task reads
            // the fragment, which the test allows too.
            command_tx.send(INLINE_RECV).unwrap();
            let deadline = Instant::now() + WAIT;
            let early = loop {
                if in_poll(tid) {
                    inline_steps += 1;
                    break None;
                }
                match outcome_rx.try_recv() {
                    Ok(answer) => break Some(answer),
                    Err(TryRecvError::Empty) => {
                        assert!(
                            Instant::now() < deadline,
                            "the receiver neither waits nor answers"
                        );
                        thread::sleep(Duration::from_micros(200));
                    }
                    Err(TryRecvError::Disconnected) => panic!("the receiver is gone"),
                }
            };
            release(index);
            early
        };
        match early.unwrap_or_else(outcome) {
            Err(Error::Timeout(_)) => timeouts += 1,
            other => panic!(
                "after fragment {index} of {}: {}",
                last + 1,
                describe(&other)
            ),
        }
    }
    command_tx.send(WAIT).unwrap();
    wait_blocked_in_poll(tid, "the receiver");
    release(last);
    match outcome() {
        Ok((MessageKind::Text, data)) => {
            assert!(
                data == text.as_bytes(),
                "the message came torn: {} bytes of {}, first difference at byte {}",
                data.len(),
                text.len(),
                first_difference(text.as_bytes(), &data)
            );
        }
        other => panic!("the whole message: {}", describe(&other)),
    }
    // Nothing of it is left to come out again.
    pair.client
        .send(MessageKind::Text, b"after", true, Some(WAIT))
        .unwrap();
    command_tx.send(WAIT).unwrap();
    match outcome() {
        Ok((MessageKind::Text, data)) => assert_eq!(data, b"after"),
        other => panic!("the message after: {}", describe(&other)),
    }
    command_tx.send(Duration::from_millis(20)).unwrap();
    let extra = outcome();
    assert!(
        matches!(extra, Err(Error::Timeout(_))),
        "after the message: {}",
        describe(&extra)
    );
    assert_eq!(timeouts, last, "every recv between fragments timed out");
    eprintln!(
        "fragments: {inline_steps} of {} (and the last) released while the receiver waited \
         inline",
        last / 2
    );
    drop(command_tx);
    drop(fragment_tx);
    join(receiver);
    join(sender);
    close_cleanly(&pair);
}

// ---------------------------------------------------------------------------------------------
// 5. The end while a thread is blocked in an inline read
// ---------------------------------------------------------------------------------------------

fn expect_closed(result: Received, what: &str) -> CloseInfo {
    match result {
        Err(Error::ConnectionClosed(info)) => info,
        Ok((kind, data)) => panic!("{what}: a {kind:?} message of {} bytes", data.len()),
        Err(error) => panic!("{what}: {error} instead of ConnectionClosed"),
    }
}

fn code(frame: &Option<ferrows_core::CloseFrame>) -> Option<u16> {
    frame.as_ref().map(|frame| frame.code)
}

/// The peer closes while recv(None) waits inline, on either end.
#[test]
fn recv_blocked_inline_returns_when_the_peer_closes() {
    for server_receives in [true, false] {
        let what = if server_receives {
            "server receiving, client closing"
        } else {
            "client receiving, server closing"
        };
        let pair = open_pair(ServerConfig::default(), ClientConfig::default());
        let (receiving, closing) = if server_receives {
            (&pair.server, &pair.client)
        } else {
            (&pair.client, &pair.server)
        };
        let blocked = BlockedRecv::start(receiving, "receiver");
        let since = Instant::now();
        let closer = spawn("closer", {
            let closing = closing.clone();
            move || closing.close(1000, "peer closes", Some(WAIT))
        });
        let (result, after) = blocked.outcome_within(since, END_BOUND, what);
        let info = expect_closed(result, what);
        assert_eq!(code(&info.rcvd), Some(1000), "{what}: {info}");
        let ended: Ended = join(closer).expect("close");
        assert!(ended.info.is_ok(), "{what}: {}", ended.info);
        eprintln!("{what}: recv returned {after:?} after close");
    }
}

/// Another thread starts the closing handshake while recv(None) waits inline, on either end.
#[test]
fn recv_blocked_inline_returns_after_start_close_from_another_thread() {
    for server_receives in [true, false] {
        let what = if server_receives { "server" } else { "client" };
        let pair = open_pair(ServerConfig::default(), ClientConfig::default());
        let receiving = if server_receives {
            &pair.server
        } else {
            &pair.client
        };
        let blocked = BlockedRecv::start(receiving, "receiver");
        let since = Instant::now();
        let closer = spawn("closer", {
            let receiving = receiving.clone();
            move || receiving.start_close(1000, "from another thread")
        });
        join(closer).expect("start_close");
        let (result, after) = blocked.outcome_within(since, END_BOUND, what);
        let info = expect_closed(result, what);
        assert_eq!(code(&info.sent), Some(1000), "{what}: {info}");
        assert_eq!(code(&info.rcvd), Some(1000), "{what}: {info}");
        eprintln!("{what}: recv returned {after:?} after start_close");
        receiving.wait_ended(Some(WAIT)).expect("the end");
    }
}

/// Ends decided by a timer reach a receiver waiting inline, which only polls the socket
/// (the 100 ms slices): a close timeout with a peer that never answers, and a keepalive
/// timeout with a peer that never pongs.
#[test]
fn recv_blocked_inline_notices_an_end_decided_by_a_timer() {
    // Close timeout.
    let close_timeout = Duration::from_millis(300);
    let mut config = ServerConfig::default();
    config.protocol.close_timeout = Some(close_timeout);
    let (_server, connection, _peer) = open_with_silent_peer(config);
    let blocked = BlockedRecv::start(&connection, "receiver");
    let since = Instant::now();
    connection.start_close(1000, "no answer will come").unwrap();
    let (result, after) = blocked.outcome_within(since, close_timeout + END_BOUND, "close timeout");
    let info = expect_closed(result, "close timeout");
    assert_eq!(code(&info.sent), Some(1000), "{info}");
    assert_eq!(info.rcvd, None, "{info}");
    assert!(
        after >= close_timeout,
        "recv returned {after:?} after start_close, before the close timeout"
    );
    let ended = connection.wait_ended(Some(WAIT)).unwrap();
    assert!(
        matches!(ended.cause.as_deref(), Some(Error::Timeout(_))),
        "cause: {:?}",
        ended.cause
    );
    eprintln!("close timeout: recv returned {after:?} after start_close");

    // Keepalive timeout.
    let interval = Duration::from_millis(300);
    let mut config = ServerConfig::default();
    config.protocol.ping_interval = Some(interval);
    config.protocol.ping_timeout = Some(interval);
    // The keepalive timer starts with the connection.
    let since = Instant::now();
    let (_server, connection, _peer) = open_with_silent_peer(config);
    let blocked = BlockedRecv::start(&connection, "receiver");
    let (result, after) =
        blocked.outcome_within(since, 2 * interval + END_BOUND, "keepalive timeout");
    let info = expect_closed(result, "keepalive timeout");
    assert_eq!(code(&info.sent), Some(1011), "{info}");
    assert!(after >= 2 * interval, "recv returned after {after:?}");
    eprintln!("keepalive timeout: recv returned {after:?} after the connection opened");
}

/// A receive that waited on the socket inline, over several wait slices, hands the socket
/// back to the reader task when it ends (here by its timeout): a ping that arrives while no
/// thread receives is answered.
#[test]
fn a_ping_after_an_inline_receive_ended_is_answered_by_the_reader_task() {
    let (_server, connection, mut peer) = open_with_silent_peer(ServerConfig::default());
    let outcome = connection.recv(Some(Duration::from_millis(250)));
    assert!(
        matches!(outcome, Err(Error::Timeout(_))),
        "recv: {outcome:?}"
    );
    let key = [0x55, 0x66, 0x77, 0x88];
    let mut ping = vec![0x89, 0x80 | 2];
    ping.extend_from_slice(&key);
    ping.extend(b"p1".iter().zip(key.iter()).map(|(b, k)| b ^ k));
    peer.write_all(&ping).expect("raw ping");
    peer.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(read_raw_frame(&mut peer), (0x8a, b"p1".to_vec()));
}

/// The peer's TCP connection goes away (no close frame) while recv(None) waits inline.
#[test]
fn recv_blocked_inline_returns_when_the_peer_drops_tcp() {
    let (_server, connection, peer) = open_with_silent_peer(ServerConfig::default());
    let blocked = BlockedRecv::start(&connection, "receiver");
    let since = Instant::now();
    drop(peer);
    let (result, after) = blocked.outcome_within(since, END_BOUND, "peer dropped");
    let info = expect_closed(result, "peer dropped");
    assert_eq!(info.code(), 1006, "{info}");
    eprintln!("dropped peer: recv returned {after:?} after the drop");
}

// ---------------------------------------------------------------------------------------------
// 6. The inbox budget
// ---------------------------------------------------------------------------------------------

/// With a 64 KiB inbox, a receiver that takes one message and stops, and a peer that keeps
/// sending until the backpressure reaches it: the inbox stays within one read (and one
/// message) of its high mark, and once drained, everything arrives.
#[test]
fn reading_stops_at_the_inbox_budget_and_resumes_once_drained() {
    const HIGH: usize = 64 << 10;
    const LOW: usize = 16 << 10;
    let config = ServerConfig {
        inbox: Watermarks {
            high: HIGH,
            low: LOW,
        },
        ..ServerConfig::default()
    };
    let pair = open_pair(config, ClientConfig::default());
    let stream = Stream {
        id: 6,
        count: u32::MAX,
        min: 1024,
        max: 8192,
    };
    // One read of payload past the mark, a message's worth of slack, and the fixed charge of
    // every chunk one read can start.
    let bound = HIGH + READ_SIZE + stream.max + (READ_SIZE / stream.min + 2) * CHUNK_OVERHEAD;

    // The server's receiver takes one message, then stops until told to drain.
    let (took_tx, took_rx) = mpsc::channel::<()>();
    let (drain_tx, drain_rx) = mpsc::channel::<u32>();
    let receiver = spawn("server receiver", {
        let server = pair.server.clone();
        move || {
            let first = server.recv(Some(WAIT)).expect("the first message");
            stream.check(0, &first, "server receiver");
            took_tx.send(()).unwrap();
            let total = drain_rx.recv_timeout(WAIT).expect("the order to drain");
            let mut peak = 0;
            for seq in 1..total {
                let got = server
                    .recv(Some(WAIT))
                    .unwrap_or_else(|error| panic!("draining message {seq}: {error}"));
                stream.check(seq, &got, "server receiver");
                peak = peak.max(server.inbox_bytes());
            }
            assert_nothing_more(&server, "server");
            peak
        }
    });

    // The client sends until its sends time out for want of room (the server stopped
    // reading), for at least 300 ms and at most 5 s.
    let sender = spawn("client sender", {
        let client = pair.client.clone();
        move || {
            let started = Instant::now();
            let mut seq = 0;
            let mut timeouts = 0;
            while (timeouts < 3 || started.elapsed() < Duration::from_millis(300))
                && started.elapsed() < Duration::from_secs(5)
            {
                let (kind, data) = stream.message(seq);
                match client.send(kind, &data, true, Some(Duration::from_millis(20))) {
                    Ok(()) => seq += 1,
                    // Nothing was queued: the same message goes again.
                    Err(Error::Timeout(_)) => timeouts += 1,
                    Err(error) => panic!("client: sending message {seq}: {error}"),
                }
            }
            (seq, timeouts)
        }
    });

    // Watch the inbox while the client sends.
    took_rx.recv_timeout(WAIT).expect("the receiver took one");
    let mut peak = 0;
    let mut samples = 0u64;
    while !sender.is_finished() {
        peak = peak.max(pair.server.inbox_bytes());
        samples += 1;
        assert!(samples < 10_000_000, "the sender does not finish");
        thread::sleep(Duration::from_micros(50));
    }
    let (sent, timeouts) = join(sender);
    let held = pair.server.inbox_bytes();
    peak = peak.max(held);
    eprintln!(
        "budget: {sent} messages sent, {timeouts} send timeouts, {} bytes unsent, inbox \
         {held} bytes held, peak {peak} ({samples} samples), bound {bound}",
        pair.client.unsent_bytes()
    );
    assert!(timeouts >= 3, "the sender never felt backpressure");
    // Reading stops at the high mark; the receiver's one message may have left since.
    let first = stream.len(0) + CHUNK_OVERHEAD;
    assert!(
        held + first >= HIGH,
        "reading stopped with {held} bytes in the inbox, below the high mark {HIGH} (less \
         the {first} bytes of the one message taken)"
    );
    assert!(peak <= bound, "the inbox held {peak} bytes, over {bound}");

    drain_tx.send(sent).unwrap();
    let drain_peak = join(receiver);
    assert!(
        drain_peak <= bound,
        "while draining, the inbox held {drain_peak} bytes, over {bound}"
    );
    wait_for("the client's output to drain", WAIT, || {
        pair.client.unsent_bytes() == 0
    });
    close_cleanly(&pair);
}

// ---------------------------------------------------------------------------------------------
// 7. Several senders, pings and receivers at once
// ---------------------------------------------------------------------------------------------

/// Receives the interleaved `streams`, each in its own order.
fn receive_streams(connection: &Connection, streams: &[Stream], side: &str) {
    let mut next = vec![0u32; streams.len()];
    let total: u32 = streams.iter().map(|stream| stream.count).sum();
    for received in 0..total {
        let got = connection
            .recv(Some(WAIT))
            .unwrap_or_else(|error| panic!("{side}: message {received} of {total}: {error}"));
        let Some((id, seq)) = header(got.0, &got.1) else {
            panic!("{side}: a message without a header ({} bytes)", got.1.len());
        };
        let Some(index) = streams.iter().position(|stream| stream.id == id) else {
            panic!("{side}: a message of unknown stream {id}");
        };
        assert_eq!(
            seq, next[index],
            "{side}: stream {id} out of order ({received} received in all)"
        );
        streams[index].check(seq, &got, side);
        next[index] += 1;
    }
}

fn ping_repeatedly(connection: &Connection, count: u32, side: &str) {
    for round in 0..count {
        let payload = format!("ping {round:08}");
        let waiter = connection
            .ping(payload.as_bytes())
            .unwrap_or_else(|error| panic!("{side}: ping {round}: {error}"));
        waiter
            .wait(Some(WAIT))
            .unwrap_or_else(|error| panic!("{side}: pong {round}: {error}"));
    }
}

/// Two sending threads and a pinging thread on each end, and one receiver on each: inline
/// writes from several threads race each other and the writer task; pongs are read inline
/// or by the reader task. Each stream arrives whole and in its order; every ping is answered.
#[test]
fn concurrent_senders_and_pings_keep_each_stream_in_order() {
    let pair = open_pair(ServerConfig::default(), ClientConfig::default());
    let base = Stream {
        id: 0,
        count: 3_000,
        min: 16,
        max: 24 << 10,
    };
    let up = [Stream { id: 10, ..base }, Stream { id: 11, ..base }];
    let down = [Stream { id: 20, ..base }, Stream { id: 21, ..base }];
    let mut threads = Vec::new();
    for (index, stream) in up.into_iter().enumerate() {
        let client = pair.client.clone();
        threads.push(spawn("client sender", move || {
            send_all(
                &client,
                stream,
                Pace::Light(10 + index as u64),
                "client sender",
            )
        }));
    }
    for (index, stream) in down.into_iter().enumerate() {
        let server = pair.server.clone();
        threads.push(spawn("server sender", move || {
            send_all(
                &server,
                stream,
                Pace::Light(20 + index as u64),
                "server sender",
            )
        }));
    }
    threads.push(spawn("client pinger", {
        let client = pair.client.clone();
        move || ping_repeatedly(&client, 300, "client")
    }));
    threads.push(spawn("server pinger", {
        let server = pair.server.clone();
        move || ping_repeatedly(&server, 300, "server")
    }));
    threads.push(spawn("server receiver", {
        let server = pair.server.clone();
        move || receive_streams(&server, &up, "server receiver")
    }));
    threads.push(spawn("client receiver", {
        let client = pair.client.clone();
        move || receive_streams(&client, &down, "client receiver")
    }));
    for thread in threads {
        join(thread);
    }
    assert_nothing_more(&pair.server, "server");
    assert_nothing_more(&pair.client, "client");
    close_cleanly(&pair);
}

/// While each end's receiver waits inline in recv(None), pings go both ways: the pinging
/// end's pong is read by its blocked receiver (the reader task stands aside), the other
/// end's pong is written for a receiver that is busy waiting. The receivers stay blocked
/// throughout, then each gets the one message sent to it.
#[test]
fn pongs_arrive_while_receivers_wait_inline() {
    let pair = open_pair(ServerConfig::default(), ClientConfig::default());
    let server_blocked = BlockedRecv::start(&pair.server, "server receiver");
    let client_blocked = BlockedRecv::start(&pair.client, "client receiver");
    for round in 0..50u32 {
        let (pinging, side) = if round % 2 == 0 {
            (&pair.server, "server")
        } else {
            (&pair.client, "client")
        };
        let started = Instant::now();
        pinging
            .ping(&round.to_be_bytes())
            .unwrap_or_else(|error| panic!("{side}: ping {round}: {error}"))
            .wait(Some(END_BOUND))
            .unwrap_or_else(|error| {
                panic!(
                    "{side}: pong {round} after {:?}: {error}",
                    started.elapsed()
                )
            });
    }
    for (blocked, side) in [(&server_blocked, "server"), (&client_blocked, "client")] {
        assert!(
            matches!(blocked.outcome.try_recv(), Err(TryRecvError::Empty)),
            "{side}: recv(None) returned during the pings"
        );
        wait_blocked_in_poll(blocked.tid, side);
    }
    let since = Instant::now();
    pair.client
        .send(MessageKind::Text, b"to the server", true, Some(WAIT))
        .unwrap();
    pair.server
        .send(MessageKind::Binary, b"to the client", true, Some(WAIT))
        .unwrap();
    let (got, _) = server_blocked.outcome_within(since, END_BOUND, "server");
    assert_eq!(got.unwrap(), (MessageKind::Text, b"to the server".to_vec()));
    let (got, _) = client_blocked.outcome_within(since, END_BOUND, "client");
    assert_eq!(
        got.unwrap(),
        (MessageKind::Binary, b"to the client".to_vec())
    );
    close_cleanly(&pair);
}

/// A receive begun on a server connection right after `PendingHandshake::accept` returns,
/// before the handshake task has written the response and started the connection's tasks,
/// should still read inline once the socket is there: `Connection::start` wakes a receiver
/// that found no socket yet.
#[cfg(target_os = "linux")]
#[test]
fn a_receive_begun_before_the_tasks_start_reads_inline() {
    for attempt in 0..50 {
        let server = Server::bind("127.0.0.1", 0, ServerConfig::default()).expect("bind");
        let (peer, connection) = raw_upgrade(&server);
        let blocked = {
            let connection = connection.clone();
            let (tid_tx, tid_rx) = mpsc::channel();
            let (outcome_tx, outcome) = mpsc::channel();
            let thread = spawn("early receiver", move || {
                tid_tx.send(current_tid()).unwrap();
                let _ = outcome_tx.send((connection.recv(None), Instant::now()));
            });
            let tid = tid_rx.recv_timeout(WAIT).expect("the receiver's thread id");
            BlockedRecv {
                tid,
                outcome,
                thread,
            }
        };
        // Well past the handshake task's start (a loopback write and a spawn).
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut polled = false;
        while !polled && Instant::now() < deadline {
            thread::sleep(Duration::from_micros(500));
            polled = in_poll(blocked.tid);
        }
        let syscall = std::fs::read_to_string(format!("/proc/self/task/{}/syscall", blocked.tid));
        drop(peer);
        let since = Instant::now();
        let (result, _) = blocked.outcome_within(since, END_BOUND, "early receiver");
        expect_closed(result, "early receiver");
        assert!(
            polled,
            "attempt {attempt}: the receive never read inline in 500 ms; its system call: \
             {syscall:?} (on x86_64, 202 is futex: the condition variable)"
        );
    }
}

/// Both ends send at once while neither receives, until each has more than its outbox's
/// high mark unsent (its sends time out): each inbox fills and each reader stops. Then both
/// ends receive: everything sent should arrive. (A reader that also stopped while its own
/// output was over budget would deadlock here: neither end's output could drain.)
#[test]
fn both_ends_over_their_outbox_budget_drain_once_both_receive() {
    let budget = Watermarks {
        high: 256 << 10,
        low: 64 << 10,
    };
    let pair = open_pair(
        ServerConfig {
            inbox: budget,
            outbox: budget,
            ..ServerConfig::default()
        },
        ClientConfig {
            inbox: budget,
            outbox: budget,
            ..ClientConfig::default()
        },
    );
    let up = Stream {
        id: 30,
        count: u32::MAX,
        min: 8 << 10,
        max: 16 << 10,
    };
    let down = Stream { id: 31, ..up };

    /// Sends until a send has waited 200 ms for room in vain: the peer stopped reading.
    fn send_until_stuck(connection: Connection, stream: Stream) -> u32 {
        let started = Instant::now();
        let mut seq = 0;
        loop {
            assert!(started.elapsed() < WAIT, "the sends never ran out of room");
            let (kind, data) = stream.message(seq);
            match connection.send(kind, &data, true, Some(Duration::from_millis(200))) {
                Ok(()) => seq += 1,
                Err(Error::Timeout(_)) => return seq,
                Err(error) => panic!("sending message {seq}: {error}"),
            }
        }
    }
    let senders = [
        spawn("client sender", {
            let client = pair.client.clone();
            move || send_until_stuck(client, up)
        }),
        spawn("server sender", {
            let server = pair.server.clone();
            move || send_until_stuck(server, down)
        }),
    ];
    let [client_sent, server_sent] = senders.map(join);
    for (side, connection) in [("server", &pair.server), ("client", &pair.client)] {
        assert!(
            connection.unsent_bytes() >= budget.high,
            "{side}: {}",
            state(connection)
        );
    }
    eprintln!(
        "outbox budgets: the client sent {client_sent} messages, the server {server_sent}; \
         server {}; client {}",
        state(&pair.server),
        state(&pair.client)
    );

    fn receive_sent(connection: Connection, stream: Stream, count: u32, side: &'static str) {
        for seq in 0..count {
            match connection.recv(Some(Duration::from_secs(3))) {
                Ok(got) => stream.check(seq, &got, side),
                Err(error) => panic!(
                    "{side}: message {seq} of {count}: {error} ({})",
                    state(&connection)
                ),
            }
        }
    }
    let receivers = [
        spawn("server receiver", {
            let server = pair.server.clone();
            move || receive_sent(server, up, client_sent, "server")
        }),
        spawn("client receiver", {
            let client = pair.client.clone();
            move || receive_sent(client, down, server_sent, "client")
        }),
    ];
    for receiver in receivers {
        join(receiver);
    }
    close_cleanly(&pair);
}
