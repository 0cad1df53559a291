//! ferrows-loadgen: the benchmark suite's load generator and reference echo server, in Rust
//! so that no Python runs on the client side of a server measurement. One thread (pin it
//! with taskset); loopback only. Results are JSON lines on stdout.
//!
//!   echo --port P [--raw]                          the reference echo server (prints "ready")
//!   load --port P --connections N --inflight K --size S [--raw] --pid SERVER
//!        --warmup SECONDS --seconds SECONDS --runs R   one line per run: messages, seconds,
//!                                                      server CPU, p50/p99 latency
//!   idle --port P --connections N --deadline SECONDS --pid SERVER [--probe SECONDS]
//!                                                 server RSS before and after N idle
//!                                                 connections (each echoed once), or as
//!                                                 many as opened by the deadline; with
//!                                                 --probe, a live client's echo latency
//!                                                 (256 B, one in flight) before and beside
//!                                                 them
//!   handshakes --port P --concurrency C [--ca PEM] --pid SERVER --warmup --seconds --runs
//!                                                 opening + closing handshakes, plain or TLS
//!   receive --port P --connections N --size S --rounds R --deadline SECONDS
//!                                                 holds N connections that only read: prints
//!                                                 {"opened": N} once all are open, then
//!                                                 {"round": k, "monotonic_s": T} when every
//!                                                 connection has received k messages of S
//!                                                 bytes (T: CLOCK_MONOTONIC, as Python's
//!                                                 time.monotonic()), up to R rounds

mod echo;
mod ws;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::rustls;

/// Connections opening at once: more only overflows the servers' listen queues.
const OPENING_AT_ONCE: usize = 64;
/// How long the load's connections may take to open.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);
/// How much longer than asked a window may last while nothing completes in it.
const WINDOW_PATIENCE: Duration = Duration::from_secs(30);
/// The idle connections' one message.
const IDLE_MESSAGE: &[u8] = b"0123456789abcdef";
/// The live client's message size beside idle connections.
const PROBE_SIZE: usize = 256;

fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let args = Args::parse(argv);
    raise_file_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let outcome = runtime.and_then(|runtime| {
        tokio::task::LocalSet::new().block_on(&runtime, async {
            match mode.as_str() {
                "echo" => echo::serve(args.number("port")? as u16, args.flag("raw")).await,
                "load" => load(&args).await,
                "idle" => idle(&args).await,
                "handshakes" => handshakes(&args).await,
                "receive" => receive(&args).await,
                _ => Err(io::Error::other(format!(
                    "unknown mode {mode:?}: see the source"
                ))),
            }
        })
    });
    if let Err(error) = outcome {
        eprintln!("loadgen {mode}: {error}");
        std::process::exit(1);
    }
    // Open connections end with the process: no closing handshakes to wait for.
    std::process::exit(0);
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(argv: impl Iterator<Item = String>) -> Self {
        let mut map = HashMap::new();
        let mut argv = argv.peekable();
        while let Some(name) = argv.next() {
            let name = name.trim_start_matches("--").to_owned();
            let value = match argv.peek() {
                Some(next) if !next.starts_with("--") => argv.next().unwrap_or_default(),
                _ => String::new(),
            };
            map.insert(name, value);
        }
        Args(map)
    }

    fn number(&self, name: &str) -> io::Result<f64> {
        let value = self
            .0
            .get(name)
            .ok_or_else(|| io::Error::other(format!("--{name} missing")))?;
        value
            .parse()
            .map_err(|_| io::Error::other(format!("--{name} {value:?}: not a number")))
    }

    fn count(&self, name: &str) -> io::Result<usize> {
        Ok(self.number(name)? as usize)
    }

    fn flag(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn address(&self) -> io::Result<String> {
        Ok(format!("127.0.0.1:{}", self.count("port")?))
    }

    fn windows(&self) -> io::Result<Windows> {
        Ok(Windows {
            opening: Duration::ZERO,
            warmup: Duration::from_secs_f64(self.number("warmup")?),
            length: Duration::from_secs_f64(self.number("seconds")?),
            runs: self.count("runs")?,
            pid: self.count("pid")?,
        })
    }
}

/// 10,000 connections need more descriptors than the usual soft limit: take the hard one.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// CPU time of process `pid` so far, in nanoseconds: its live threads from schedstat (the
/// scheduler's own accounting, finer than the 10 ms ticks of /proc/PID/stat), plus the
/// threads that have exited, which only /proc/PID/stat keeps (in ticks). A server with a
/// thread per connection ends threads while it is measured; summing the live ones alone
/// would make its CPU time go backwards.
fn process_cpu_ns(pid: usize) -> io::Result<u64> {
    let mut live_ns = 0;
    let mut live_ticks = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path();
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        live_ns += schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        live_ticks += cpu_ticks(&stat);
    }
    let process_ticks = cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?);
    let exited_ticks = process_ticks.saturating_sub(live_ticks);
    Ok(live_ns + exited_ticks * (1_000_000_000 / clock_ticks_per_second()))
}

/// utime + stime of a /proc stat line, in clock ticks (0 if it cannot be read).
fn cpu_ticks(stat: &str) -> u64 {
    // The fields after the command name, which may hold spaces, closed by the last ')'.
    let fields = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = fields.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    next() + next()
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Resident memory of process `pid`, in KiB.
fn resident_kib(pid: usize) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// What the connection tasks count, read by the measuring loop.
#[derive(Default)]
struct Tally {
    opened: usize,
    /// Idle connections the server refused, reset or closed before they opened, and after:
    /// counted, not fatal (a server with a thread per connection may give up before all are
    /// open).
    lost: usize,
    closed: usize,
    completed: u64,
    latencies_ns: Vec<u64>,
    error: Option<String>,
    /// Connections made by [`connect_from_next_source`].
    sources: usize,
}

/// What the connection tasks and the measuring loop share.
#[derive(Default)]
struct State {
    tally: RefCell<Tally>,
    /// Notified when a connection opens or fails.
    changed: Notify,
    /// Set, then notified, once every connection of a load has opened: the load starts
    /// then, so that opening is not slowed by the echoes of the first connections.
    go: Cell<bool>,
    started: Notify,
}

type Shared = Rc<State>;

/// Waits until the load may start.
async fn wait_for_go(shared: &Shared) {
    loop {
        let started = shared.started.notified();
        if shared.go.get() {
            return;
        }
        started.await;
    }
}

fn go(shared: &Shared) {
    shared.go.set(true);
    shared.started.notify_waiters();
}

fn fail(shared: &Shared, error: io::Error) {
    let mut tally = shared.tally.borrow_mut();
    tally.error.get_or_insert_with(|| error.to_string());
    drop(tally);
    shared.changed.notify_waiters();
}

fn opened(shared: &Shared) {
    shared.tally.borrow_mut().opened += 1;
    shared.changed.notify_waiters();
}

/// Waits until `count` connections opened; the first error or the deadline ends the wait.
async fn all_opened(shared: &Shared, count: usize) -> io::Result<()> {
    let opened = opened_by(shared, count, OPEN_DEADLINE).await?;
    if opened < count {
        return Err(io::Error::other(format!(
            "{opened} of {count} connections opened"
        )));
    }
    Ok(())
}

/// Waits until `count` connections opened or `limit` passed; returns how many did. The
/// first error ends the wait.
async fn opened_by(shared: &Shared, count: usize, limit: Duration) -> io::Result<usize> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let changed = shared.changed.notified();
        {
            let tally = shared.tally.borrow();
            if let Some(error) = &tally.error {
                return Err(io::Error::other(error.clone()));
            }
            if tally.opened + tally.lost >= count {
                return Ok(tally.opened);
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Ok(shared.tally.borrow().opened);
        }
    }
}

struct Windows {
    /// How long the connections took to open, reported with each window.
    opening: Duration,
    warmup: Duration,
    length: Duration,
    runs: usize,
    pid: usize,
}

impl Windows {
    /// After the warm-up, prints one JSON line per window: what completed, the server's CPU
    /// time and the latency percentiles of what completed in it.
    async fn measure(&self, shared: &Shared) -> io::Result<()> {
        tokio::time::sleep(self.warmup).await;
        for _ in 0..self.runs {
            let (completed, cpu, started) = self.snapshot(shared)?;
            shared.tally.borrow_mut().latencies_ns.clear();
            // A window lasts `length`, longer (in steps of `length`) until something
            // completes in it: a loaded machine may stall a server that long.
            let give_up = Instant::now() + self.length + WINDOW_PATIENCE;
            let (completed_end, cpu_end, ended) = loop {
                tokio::time::sleep(self.length).await;
                let end = self.snapshot(shared)?;
                if end.0 > completed || Instant::now() >= give_up {
                    break end;
                }
            };
            let mut latencies = std::mem::take(&mut shared.tally.borrow_mut().latencies_ns);
            latencies.sort_unstable();
            println!(
                "{{\"count\": {}, \"seconds\": {:.6}, \"server_cpu_s\": {:.6}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"open_s\": {:.3}}}",
                completed_end - completed,
                (ended - started).as_secs_f64(),
                cpu_end.saturating_sub(cpu) as f64 / 1e9,
                percentile_us(&latencies, 0.50),
                percentile_us(&latencies, 0.99),
                self.opening.as_secs_f64(),
            );
        }
        Ok(())
    }

    fn snapshot(&self, shared: &Shared) -> io::Result<(u64, u64, Instant)> {
        let tally = shared.tally.borrow();
        if let Some(error) = &tally.error {
            return Err(io::Error::other(error.clone()));
        }
        Ok((tally.completed, process_cpu_ns(self.pid)?, Instant::now()))
    }
}

/// The `p` quantile of sorted latencies in nanoseconds, in microseconds (0 when empty).
fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    let index = ((sorted_ns.len() as f64 * p) as usize).min(sorted_ns.len().max(1) - 1);
    sorted_ns.get(index).map_or(0.0, |&ns| ns as f64 / 1000.0)
}

/// Opens one connection: TCP, then the opening handshake unless `raw`.
async fn open(address: &str, raw: bool, gate: &Semaphore) -> io::Result<(TcpStream, Vec<u8>)> {
    let _permit = gate.acquire().await.map_err(io::Error::other)?;
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    if !raw {
        ws::client_handshake(&mut stream, address, &mut buf).await?;
    }
    Ok((stream, buf))
}

/// Counts the messages that `buf` completes: raw bytes in `size` units, or WebSocket data
/// frames (each message one frame, as sent) whose payload must be `size` bytes.
fn take_messages(
    buf: &mut Vec<u8>,
    raw: bool,
    size: usize,
    partial: &mut usize,
) -> io::Result<usize> {
    if raw {
        *partial += buf.len();
        buf.clear();
        let whole = *partial / size;
        *partial %= size;
        return Ok(whole);
    }
    let (mut whole, mut consumed) = (0, 0);
    while let Some(head) = ws::parse_head(&buf[consumed..]) {
        if buf.len() < consumed + head.frame_len() {
            buf.reserve(consumed + head.frame_len() - buf.len());
            break;
        }
        consumed += head.frame_len();
        match head.opcode {
            ws::OP_BINARY | ws::OP_TEXT | ws::OP_CONTINUATION => *partial += head.payload_len,
            ws::OP_CLOSE => return Err(io::Error::other("the server closed the connection")),
            _ => continue,
        }
        if head.fin {
            if *partial != size {
                return Err(io::Error::other(format!(
                    "echo of {partial} bytes, sent {size}"
                )));
            }
            *partial = 0;
            whole += 1;
        }
    }
    buf.drain(..consumed);
    Ok(whole)
}

async fn load(args: &Args) -> io::Result<()> {
    let (connections, inflight, size) = (
        args.count("connections")?,
        args.count("inflight")?.max(1),
        args.count("size")?.max(1),
    );
    let raw = args.flag("raw");
    let payload = vec![b'x'; size];
    let message = if raw {
        payload
    } else {
        ws::client_frame(ws::OP_BINARY, &payload)
    };
    // `inflight` messages back to back: one write sends any number of replacements.
    let burst: Rc<[u8]> = message.repeat(inflight).into();
    let shared: Shared = Rc::default();
    let gate = Rc::new(Semaphore::new(OPENING_AT_ONCE));
    let address = args.address()?;
    let started = Instant::now();
    for _ in 0..connections {
        let (shared, gate, burst, address) =
            (shared.clone(), gate.clone(), burst.clone(), address.clone());
        tokio::task::spawn_local(async move {
            let outcome = match open(&address, raw, &gate).await {
                Ok((stream, buf)) => {
                    opened(&shared);
                    drive(stream, buf, &burst, inflight, size, raw, &shared).await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                fail(&shared, error);
            }
        });
    }
    all_opened(&shared, connections).await?;
    go(&shared);
    let windows = Windows {
        opening: started.elapsed(),
        ..args.windows()?
    };
    windows.measure(&shared).await
}

/// Keeps `inflight` echoes of `size` bytes outstanding on one connection, timing each.
async fn drive(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    burst: &[u8],
    inflight: usize,
    size: usize,
    raw: bool,
    shared: &Shared,
) -> io::Result<()> {
    let message_len = burst.len() / inflight;
    let mut sent = VecDeque::with_capacity(inflight);
    wait_for_go(shared).await;
    stream.write_all(burst).await?;
    sent.extend(std::iter::repeat_n(Instant::now(), inflight));
    let mut partial = 0;
    loop {
        let completed = take_messages(&mut buf, raw, size, &mut partial)?;
        if completed > 0 {
            let now = Instant::now();
            {
                let mut tally = shared.tally.borrow_mut();
                tally.completed += completed as u64;
                for started in sent.drain(..completed) {
                    tally.latencies_ns.push((now - started).as_nanos() as u64);
                }
            }
            stream.write_all(&burst[..completed * message_len]).await?;
            sent.extend(std::iter::repeat_n(Instant::now(), completed));
        }
        buf.reserve(64 * 1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
    }
}

async fn idle(args: &Args) -> io::Result<()> {
    let connections = args.count("connections")?;
    let pid = args.count("pid")?;
    let address = args.address()?;
    let probe_length = match args.0.get("probe") {
        Some(_) => Some(Duration::from_secs_f64(args.number("probe")?)),
        None => None,
    };
    // The live client opens first, so that its connection is not counted as idle memory.
    let probe = match probe_length {
        Some(length) => Some(Probe::start(&address, length).await?),
        None => None,
    };
    let p99_alone = match &probe {
        Some(probe) => Some(probe.p99_us().await?),
        None => None,
    };
    let before = resident_kib(pid)?;
    let shared: Shared = Rc::default();
    let gate = Rc::new(Semaphore::new(OPENING_AT_ONCE));
    let message: Rc<[u8]> = ws::client_frame(ws::OP_BINARY, IDLE_MESSAGE).into();
    for _ in 0..connections {
        let (shared, gate, message, address) = (
            shared.clone(),
            gate.clone(),
            message.clone(),
            address.clone(),
        );
        tokio::task::spawn_local(async move {
            if hold_idle(&address, &gate, &message, &shared).await.is_err() {
                shared.tally.borrow_mut().lost += 1;
                shared.changed.notify_waiters();
            }
        });
    }
    let started = Instant::now();
    let limit = Duration::from_secs_f64(args.number("deadline")?);
    let opened = opened_by(&shared, connections, limit).await?;
    if opened == 0 {
        return Err(io::Error::other("no connection opened"));
    }
    let after = resident_kib(pid)?;
    let open_s = started.elapsed().as_secs_f64();
    let latency = match (&probe, p99_alone) {
        (Some(probe), Some(alone)) => {
            let beside = probe.p99_us().await?;
            format!(", \"p99_alone_us\": {alone:.1}, \"p99_beside_idle_us\": {beside:.1}")
        }
        _ => String::new(),
    };
    println!(
        "{{\"connections\": {opened}, \"requested\": {connections}, \"lost\": {}, \"closed\": {}, \"open_s\": {open_s:.3}, \"rss_before_kib\": {before}, \"rss_after_kib\": {after}, \"kib_per_connection\": {:.2}{latency}}}",
        shared.tally.borrow().lost,
        shared.tally.borrow().closed,
        after.saturating_sub(before) as f64 / opened as f64
    );
    Ok(())
}

/// A live client beside idle connections: one connection echoing 256 B, one in flight.
struct Probe {
    shared: Shared,
    length: Duration,
}

impl Probe {
    async fn start(address: &str, length: Duration) -> io::Result<Probe> {
        let shared: Shared = Rc::default();
        let (stream, buf) = open(address, false, &Semaphore::new(1)).await?;
        let message = ws::client_frame(ws::OP_BINARY, &[b'x'; PROBE_SIZE]);
        let task_shared = shared.clone();
        tokio::task::spawn_local(async move {
            if let Err(error) =
                drive(stream, buf, &message, 1, PROBE_SIZE, false, &task_shared).await
            {
                fail(&task_shared, error);
            }
        });
        go(&shared);
        Ok(Probe { shared, length })
    }

    /// The 99th percentile of the echoes that complete in the next `length`.
    async fn p99_us(&self) -> io::Result<f64> {
        self.shared.tally.borrow_mut().latencies_ns.clear();
        tokio::time::sleep(self.length).await;
        let tally = self.shared.tally.borrow();
        if let Some(error) = &tally.error {
            return Err(io::Error::other(error.clone()));
        }
        let mut latencies = tally.latencies_ns.clone();
        if latencies.is_empty() {
            return Err(io::Error::other("the live client completed no echo"));
        }
        latencies.sort_unstable();
        Ok(percentile_us(&latencies, 0.99))
    }
}

/// Opens a connection, echoes `message` once, then holds it until the process ends or the
/// server closes it (counted); an error means it never opened.
async fn hold_idle(
    address: &str,
    gate: &Semaphore,
    message: &[u8],
    shared: &Shared,
) -> io::Result<()> {
    let (mut stream, mut buf) = open(address, false, gate).await?;
    stream.write_all(message).await?;
    let mut partial = 0;
    while take_messages(&mut buf, false, IDLE_MESSAGE.len(), &mut partial)? == 0 {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("closed before its echo"));
        }
    }
    opened(shared);
    let _ = stream.read_buf(&mut buf).await;
    shared.tally.borrow_mut().closed += 1;
    Ok(())
}

/// How many connections have received each number of messages, for `receive`.
struct Rounds {
    reached: RefCell<Vec<usize>>,
    connections: usize,
    /// Notified when a round completes on every connection.
    completed: Notify,
}

async fn receive(args: &Args) -> io::Result<()> {
    let (connections, size, rounds) = (
        args.count("connections")?,
        args.count("size")?,
        args.count("rounds")?,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.number("deadline")?);
    let shared: Shared = Rc::default();
    let progress = Rc::new(Rounds {
        reached: RefCell::new(vec![0; rounds]),
        connections,
        completed: Notify::new(),
    });
    let gate = Rc::new(Semaphore::new(OPENING_AT_ONCE));
    let address = args.address()?;
    for _ in 0..connections {
        let (shared, progress, gate, address) = (
            shared.clone(),
            progress.clone(),
            gate.clone(),
            address.clone(),
        );
        tokio::task::spawn_local(async move {
            let outcome = match open(&address, false, &gate).await {
                Ok((stream, buf)) => {
                    opened(&shared);
                    count_received(stream, buf, size, &progress).await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = outcome {
                fail(&shared, error);
                progress.completed.notify_waiters();
            }
        });
    }
    let opened = opened_by(&shared, connections, deadline - tokio::time::Instant::now()).await?;
    if opened < connections {
        return Err(io::Error::other(format!(
            "{opened} of {connections} connections opened"
        )));
    }
    println!("{{\"opened\": {opened}}}");
    for round in 1..=rounds {
        loop {
            let completed = progress.completed.notified();
            if let Some(error) = &shared.tally.borrow().error {
                return Err(io::Error::other(error.clone()));
            }
            if progress.reached.borrow()[round - 1] == connections {
                break;
            }
            if tokio::time::timeout_at(deadline, completed).await.is_err() {
                return Err(io::Error::other(format!(
                    "round {round} incomplete at the deadline"
                )));
            }
        }
        println!(
            "{{\"round\": {round}, \"monotonic_s\": {:.6}}}",
            monotonic_s()
        );
    }
    Ok(())
}

/// Reads one connection's messages of `size` bytes, counting them into `progress`.
async fn count_received(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    size: usize,
    progress: &Rounds,
) -> io::Result<()> {
    let (mut received, mut partial) = (0, 0);
    loop {
        for _ in 0..take_messages(&mut buf, false, size, &mut partial)? {
            let mut reached = progress.reached.borrow_mut();
            let slot = reached
                .get_mut(received)
                .ok_or_else(|| io::Error::other("more messages than rounds"))?;
            *slot += 1;
            received += 1;
            if *slot == progress.connections {
                progress.completed.notify_waiters();
            }
        }
        buf.reserve(64 * 1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
    }
}

/// CLOCK_MONOTONIC in seconds: the clock Python's `time.monotonic()` reads, so that the
/// server's process can compare its own times with ours.
fn monotonic_s() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a plain libc call on a stack value.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

async fn handshakes(args: &Args) -> io::Result<()> {
    let concurrency = args.count("concurrency")?;
    let tls = match args.0.get("ca") {
        Some(ca) => Some(tls_connector(ca)?),
        None => None,
    };
    let shared: Shared = Rc::default();
    let address = args.address()?;
    for _ in 0..concurrency {
        let (shared, address, tls) = (shared.clone(), address.clone(), tls.clone());
        tokio::task::spawn_local(async move {
            if let Err(error) = handshake_loop(&address, tls.as_ref(), &shared).await {
                fail(&shared, error);
            }
        });
    }
    args.windows()?.measure(&shared).await
}

/// Opens and closes connections one after the other, counting them.
async fn handshake_loop(
    address: &str,
    tls: Option<&tokio_rustls::TlsConnector>,
    shared: &Shared,
) -> io::Result<()> {
    loop {
        let tcp = connect_from_next_source(address, shared).await?;
        match tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
                    .map_err(io::Error::other)?;
                open_and_close(connector.connect(name, tcp).await?, address).await?
            }
            None => open_and_close(tcp, address).await?,
        }
        shared.tally.borrow_mut().completed += 1;
    }
}

/// Connects from the next of 250 loopback source addresses (127.0.1.1-250). Thousands of
/// connections a second from one address reuse its ports while the server still holds them
/// in TIME_WAIT (the server closes first, as RFC 6455 asks), and such a SYN can wait a
/// second for its retry: the figure would measure that wait, not the server.
async fn connect_from_next_source(address: &str, shared: &Shared) -> io::Result<TcpStream> {
    let index = {
        let mut tally = shared.tally.borrow_mut();
        tally.sources = tally.sources.wrapping_add(1);
        tally.sources % 250
    };
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((
        [127, 0, 1, 1 + index as u8],
        0,
    )))?;
    let address = tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let stream = socket.connect(address).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection's life: the opening handshake, a close frame, and the server's answer.
async fn open_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    ws::client_handshake(&mut stream, host, &mut buf).await?;
    stream.write_all(&ws::client_close()).await?;
    loop {
        while let Some(head) = ws::parse_head(&buf) {
            if buf.len() < head.frame_len() {
                break;
            }
            if head.opcode == ws::OP_CLOSE {
                return stream.shutdown().await;
            }
            buf.drain(..head.frame_len());
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// A TLS client trusting only the CA in `ca_pem`; full handshakes only (no resumption), so
/// that every connection costs the server what a new client costs.
fn tls_connector(ca_pem: &str) -> io::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
