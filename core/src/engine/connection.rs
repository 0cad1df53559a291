//! An open connection on the runtime: a reader task and a writer task drive the protocol
//! state machine, and a handle lets any thread send, receive, ping and close with timeouts.
//!
//! Memory is bounded both ways. The protocol's inbox holds received data up to its high
//! watermark (payload plus a fixed charge per chunk), then the reader stops reading the
//! socket; outgoing frames are encoded on the sender's thread into the protocol's output, and
//! a sender waits while the bytes not yet written to the socket exceed the outbox's high
//! mark. The writer takes new output only once its last write is done, so a peer that sends
//! pings and never reads is owed a few pongs, kept in the protocol, not one per ping.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

use super::broadcast::{Outcome, SlowPolicy};
use super::config::Watermarks;
use super::slot::{deadline_after, Signal, Slot};
use super::transport::{SharedTcp, Transport};
use crate::error::{CloseInfo, Error, Result};
use crate::metrics::{Pause, ServerMetrics};
use crate::protocol::handshake::{Request, Response};
use crate::protocol::{self, Chunk, Event, MessageKind};

/// Size of the socket read buffer: small enough not to waste memory per idle connection.
const READ_BUFFER: usize = 16 * 1024;

/// What the opening handshake established.
#[derive(Debug, Clone)]
pub struct HandshakeInfo {
    /// The opening request.
    pub request: Request,
    /// The opening response (101).
    pub response: Response,
    /// The negotiated subprotocol.
    pub subprotocol: Option<String>,
    /// This end's address.
    pub local_addr: Option<SocketAddr>,
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
}

/// Waits for the pong answering one ping.
#[derive(Debug, Clone, Default)]
pub struct PongWaiter {
    slot: Arc<Slot<Result<Duration, CloseInfo>>>,
}

impl PongWaiter {
    /// Waits up to `timeout` (forever with `None`) for the pong; returns the round-trip time.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Duration> {
        super::runtime::check_may_block()?;
        let outcome = self.slot.wait(timeout).ok_or(Error::Timeout("pong"))?;
        outcome
            .clone()
            .expect("a waited slot is filled")
            .map_err(Error::ConnectionClosed)
    }

    /// The latency if the pong arrived already.
    pub fn try_result(&self) -> Option<Result<Duration>> {
        self.slot
            .lock()
            .clone()
            .map(|outcome| outcome.map_err(Error::ConnectionClosed))
    }

    fn resolve(&self, outcome: Result<Duration, CloseInfo>) {
        self.slot.fill(outcome);
    }
}

/// The final state of a finished connection.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The close frames exchanged.
    pub info: CloseInfo,
    /// Why it failed, when it did (payload too big, protocol error, timeout, I/O error).
    pub cause: Option<Arc<Error>>,
}

struct Inner {
    protocol: protocol::Connection,
    /// The inbox's arrival count last looked at: receivers wake when it moves.
    arrivals_seen: u64,
    /// The reader stopped reading: the inbox is over its budget.
    reading_paused: bool,
    /// Bytes handed to the writer and not yet written.
    in_flight: usize,
    /// A sender found the outbox over its high mark, and no sender has seen it drained to
    /// its low mark since: one pause for the metrics, however many senders or wait slices.
    writing_paused: bool,
    /// The socket, for threads to use directly (plain TCP only): senders write to it while
    /// the writer task is idle, and a receiver finding the inbox empty reads and waits on it.
    socket: Option<Arc<TcpStream>>,
    /// A receiving thread is waiting on the socket: the reader task leaves it alone.
    inline_reading: bool,
    /// Waiters of our pings, by the protocol's ping id (increasing).
    pings: VecDeque<(u64, PongWaiter)>,
    /// How the connection ends, once the protocol is closed: it becomes `ended` when the
    /// writer task has written everything sent before (or given up on a peer that stopped
    /// reading).
    closing: Option<Ended>,
    ended: Option<Ended>,
    receiving: bool,
    /// Output a deferred send left for [`Connection::flush`]: the writer task is not woken
    /// for it meanwhile.
    deferred: bool,
}

impl Inner {
    fn unsent(&self) -> usize {
        self.protocol.output_len() + self.in_flight
    }

    fn inbox_bytes(&self) -> usize {
        self.protocol.inbox().charged_bytes()
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Signalled when data arrives in the inbox or the connection ends.
    readable: Signal,
    /// Signalled when unsent bytes fall below the low watermark or the connection ends.
    writable: Signal,
    /// Wakes the writer task: output is waiting, or a timer changed.
    wake_writer: Notify,
    /// Wakes the reader task when the inbox drains to its low watermark.
    resume_reading: Notify,
    /// Wakes the reader task when a receiving thread stops waiting on the socket.
    inline_done: Notify,
    /// Set once the protocol is closed: the tasks finish.
    closed_tx: watch::Sender<bool>,
    inbox_marks: Watermarks,
    outbox_marks: Watermarks,
    info: HandshakeInfo,
    id: String,
    notifier: Mutex<Option<Notifier>>,
}

/// Called when data arrives or the connection ends, with the connection locked, on whichever
/// thread read the data (a runtime thread, or a receiving thread reading inline). It must be
/// quick and must not call back into the connection.
pub type Notifier = Arc<dyn Fn() + Send + Sync>;

/// A handle to an open connection. Cloning it gives another handle to the same connection;
/// one thread may send while another receives.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .finish()
    }
}

/// Everything needed to start a connection's tasks once its handshake is done.
pub struct Setup {
    /// Client or server.
    pub role: protocol::Role,
    /// Limits and timers.
    pub config: protocol::ProtocolConfig,
    /// Budget of received, unread bytes.
    pub inbox: Watermarks,
    /// Budget of sent, unwritten bytes.
    pub outbox: Watermarks,
    /// What the handshake established.
    pub info: HandshakeInfo,
    /// permessage-deflate as the handshake agreed it, with our side's settings.
    pub deflate: Option<(protocol::Agreement, protocol::DeflateConfig)>,
    /// The server's counters, for a connection it accepted.
    pub metrics: Option<Arc<ServerMetrics>>,
}

impl Connection {
    /// Creates the handle; [`Connection::start`] then runs it on a stream.
    pub(crate) fn new(setup: Setup) -> Self {
        let (closed_tx, _) = watch::channel(false);
        let mut protocol = protocol::Connection::new(setup.role, setup.config, Instant::now());
        if let Some((agreement, config)) = &setup.deflate {
            protocol.enable_deflate(*agreement, config);
        }
        protocol.set_inbox_limit(Some(setup.inbox.high));
        if let Some(metrics) = setup.metrics {
            protocol.attach_metrics(metrics);
        }
        let inner = Inner {
            protocol,
            arrivals_seen: 0,
            reading_paused: false,
            in_flight: 0,
            writing_paused: false,
            socket: None,
            inline_reading: false,
            pings: VecDeque::new(),
            closing: None,
            ended: None,
            receiving: false,
            deferred: false,
        };
        Self {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                readable: Signal::default(),
                writable: Signal::default(),
                wake_writer: Notify::new(),
                resume_reading: Notify::new(),
                inline_done: Notify::new(),
                closed_tx,
                inbox_marks: setup.inbox,
                outbox_marks: setup.outbox,
                info: setup.info,
                id: new_id(),
                notifier: Mutex::new(None),
            }),
        }
    }

    /// Spawns the reader and writer tasks on `transport`; `leftover` holds bytes that
    /// arrived with the handshake.
    pub(crate) fn start(
        &self,
        runtime: &tokio::runtime::Handle,
        transport: Transport,
        leftover: Vec<u8>,
    ) {
        let mut inner = self.lock();
        if !leftover.is_empty() {
            inner.protocol.receive_data(&leftover, Instant::now());
            self.dispatch(&mut inner);
        }
        match transport {
            Transport::Plain(tcp) => {
                let socket = Arc::new(tcp);
                inner.socket = Some(socket.clone());
                // A receive begun before the start waits on the condition variable: wake it
                // to read the socket itself.
                self.shared.readable.notify_all();
                runtime.spawn(read_loop_plain(self.clone(), socket.clone()));
                runtime.spawn(write_loop(self.clone(), SharedTcp(socket)));
            }
            Transport::Secure(stream) => {
                let (reader, writer) = tokio::io::split(stream);
                runtime.spawn(read_loop(self.clone(), reader));
                runtime.spawn(write_loop(self.clone(), writer));
            }
        }
    }

    /// Ends a connection whose transport never started (the handshake response failed).
    pub(crate) fn abort(&self, error: Error) {
        let mut inner = self.lock();
        inner.protocol.receive_transport_error(error);
        self.dispatch(&mut inner);
        self.finish(&mut inner);
    }

    /// Makes the end official once the writer is done: waiters wake, the reader stops.
    fn finish(&self, inner: &mut Inner) {
        let Some(ended) = inner.closing.take() else {
            return;
        };
        inner.ended = Some(ended);
        // The tasks end now and drop theirs: handles kept by the application hold no socket.
        inner.socket = None;
        self.shared.closed_tx.send_replace(true);
        self.shared.writable.notify_all();
        self.wake_receivers();
    }

    /// Wakes threads waiting to receive, and tells the notifier (event-loop integrations).
    fn wake_receivers(&self) {
        self.shared.readable.notify_all();
        if let Some(notify) = &*self
            .shared
            .notifier
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            notify();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the function told of new data and of the end (event-loop integrations). It is
    /// called at once if data is already waiting or the connection has ended.
    pub fn set_notifier(&self, notifier: Option<Notifier>) {
        let inner = self.lock();
        let pending = inner.protocol.inbox().has_chunk() || inner.ended.is_some();
        if let (true, Some(notify)) = (pending, &notifier) {
            notify();
        }
        *self
            .shared
            .notifier
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = notifier;
    }

    /// Hands the protocol's events to ping waiters and the final state, and wakes whoever
    /// waits for them or for received data. Called with the lock held after every change to
    /// the protocol.
    fn dispatch(&self, inner: &mut Inner) {
        while let Some(event) = inner.protocol.poll_event() {
            match event {
                Event::Pong {
                    acknowledged: Some(ack),
                    ..
                } => {
                    while inner.pings.front().is_some_and(|(id, _)| *id <= ack.id) {
                        if let Some((_, waiter)) = inner.pings.pop_front() {
                            waiter.resolve(Ok(ack.latency));
                        }
                    }
                }
                Event::Ping(_) | Event::Pong { .. } => {}
                Event::Closed { info, error } => {
                    for (_, waiter) in inner.pings.drain(..) {
                        waiter.resolve(Err(info.clone()));
                    }
                    if let Some(error) = &error {
                        log::debug!("connection {} failed: {error}", self.shared.id);
                    }
                    inner.closing = Some(Ended {
                        info,
                        cause: error.map(Arc::new),
                    });
                }
            }
        }
        let arrivals = inner.protocol.inbox().arrivals();
        if arrivals != inner.arrivals_seen {
            inner.arrivals_seen = arrivals;
            self.wake_receivers();
        }
        if (inner.protocol.has_output() && !inner.deferred) || inner.protocol.is_closed() {
            self.shared.wake_writer.notify_one();
        }
    }

    /// True when the reader must stop: received data is over budget. Output does not stop
    /// it: what the peer alone makes us send is bounded by construction (a few owed pongs, one
    /// close frame), the application's sends wait for room, and two peers that stopped
    /// reading while their output waited would wait for each other for ever.
    fn over_budget(&self, inner: &Inner) -> bool {
        inner.inbox_bytes() >= self.shared.inbox_marks.high
    }

    /// Lets the reader go on once the inbox is back at its low mark, after the protocol
    /// processed the input it held for room (which may fill the inbox again).
    fn resume_reading_if_drained(&self, inner: &mut Inner) {
        if !inner.reading_paused || inner.inbox_bytes() > self.shared.inbox_marks.low {
            return;
        }
        if inner.protocol.holds_input() {
            inner.protocol.receive_data(&[], Instant::now());
            self.dispatch(inner);
            if self.over_budget(inner) {
                return;
            }
        }
        inner.reading_paused = false;
        self.shared.resume_reading.notify_one();
    }

    /// Receives the next chunk of data, waiting up to `timeout` (`None`: forever,
    /// zero: don't wait). A whole message arrives as one chunk unless it was fragmented.
    pub fn recv_chunk(&self, timeout: Option<Duration>) -> Result<Chunk> {
        self.receive(timeout, |protocol| Ok(protocol.pop_chunk()))
    }

    /// Receives a whole message, waiting up to `timeout` (`None`: forever, zero: don't
    /// wait). A message that has begun to arrive when the time is up stays in the
    /// protocol's inbox, and the next call goes on with it. Fails with
    /// [`Error::Concurrency`] if another thread is receiving: two receivers would tear
    /// messages apart.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<(MessageKind, Vec<u8>)> {
        let _receiving = self.begin_receive()?;
        self.recv_message(timeout)
    }

    /// [`Connection::recv`] for a caller that holds the [`ReceiveGuard`] already.
    pub fn recv_message(&self, timeout: Option<Duration>) -> Result<(MessageKind, Vec<u8>)> {
        self.receive(timeout, protocol::Connection::next_message)
    }

    /// Waits up to `timeout` until `take` finds something in the protocol's inbox.
    fn receive<T>(
        &self,
        timeout: Option<Duration>,
        take: impl FnMut(&mut protocol::Connection) -> Result<Option<T>>,
    ) -> Result<T> {
        if timeout != Some(Duration::ZERO) {
            super::runtime::check_may_block()?;
        }
        let mut reading_inline = false;
        let received = self.receive_until(deadline_after(timeout), take, &mut reading_inline);
        if reading_inline {
            self.end_inline_reading(&mut self.lock());
        }
        received
    }

    /// [`Connection::receive`]'s loop. Once this thread has waited on the socket, the reader
    /// task stays aside until the receive ends (`reading_inline` says so): waking it after
    /// each wait, only for it to find the thread waiting again, cost a hand-over per wait.
    fn receive_until<T>(
        &self,
        deadline: Option<Instant>,
        mut take: impl FnMut(&mut protocol::Connection) -> Result<Option<T>>,
        reading_inline: &mut bool,
    ) -> Result<T> {
        let mut inner = self.lock();
        loop {
            let taken = take(&mut inner.protocol)?;
            // Taking data, even part of a message (kept aside), may have made room.
            self.resume_reading_if_drained(&mut inner);
            if let Some(taken) = taken {
                return Ok(taken);
            }
            if let Some(ended) = &inner.ended {
                return Err(Error::ConnectionClosed(ended.info.clone()));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout("recv"));
            }
            inner = match inner.socket.clone() {
                Some(socket)
                    if (*reading_inline || !inner.inline_reading)
                        && !inner.reading_paused
                        && !inner.protocol.is_closed() =>
                {
                    self.read_inline(inner, &socket, deadline, reading_inline)?
                }
                _ => {
                    if std::mem::take(reading_inline) {
                        self.end_inline_reading(&mut inner);
                    }
                    self.shared
                        .readable
                        .wait_until(inner, deadline)
                        .ok_or(Error::Timeout("recv"))?
                }
            };
        }
    }

    /// Reads the socket on the receiving thread: what is there at once, else waits for it to
    /// become readable (marked as reading inline), sparing the hand-off from the reader task.
    /// The wait is sliced so that an end decided by a timer (keepalive, close timeout) is
    /// noticed.
    fn read_inline<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        socket: &TcpStream,
        deadline: Option<Instant>,
        reading_inline: &mut bool,
    ) -> Result<MutexGuard<'a, Inner>> {
        match read_plain(&mut inner, socket) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            read => {
                self.end_read(&mut inner, read.map(|(count, _)| count));
                return Ok(inner);
            }
        }
        let now = Instant::now();
        let slice = match deadline {
            Some(deadline) if now >= deadline => return Err(Error::Timeout("recv")),
            Some(deadline) => (deadline - now).min(INLINE_WAIT_SLICE),
            None => INLINE_WAIT_SLICE,
        };
        inner.inline_reading = true;
        *reading_inline = true;
        drop(inner);
        wait_readable(socket, slice);
        Ok(self.lock())
    }

    /// The receiving thread stops reading inline: the reader task watches the socket again.
    fn end_inline_reading(&self, inner: &mut Inner) {
        inner.inline_reading = false;
        self.shared.inline_done.notify_one();
    }

    /// Feeds the outcome of a socket read into `buffer` to the protocol and dispatches the
    /// events.
    fn absorb_read(&self, inner: &mut Inner, read: std::io::Result<usize>, buffer: &[u8]) {
        if let Ok(count @ 1..) = read {
            inner
                .protocol
                .receive_data(&buffer[..count], Instant::now());
        }
        self.end_read(inner, read);
    }

    /// Tells the protocol how a read ended (the bytes it read are in the protocol already)
    /// and dispatches the events.
    fn end_read(&self, inner: &mut Inner, read: std::io::Result<usize>) {
        match read {
            Ok(0) => inner.protocol.receive_eof(),
            Ok(_) => {}
            Err(error) => inner.protocol.receive_transport_error(Error::Io(error)),
        }
        self.dispatch(inner);
        if self.over_budget(inner) && !inner.reading_paused {
            inner.reading_paused = true;
            inner.protocol.record_pause(Pause::Reading);
        }
    }

    /// Marks this connection as being received from, for [`Connection::recv`]'s check.
    pub fn begin_receive(&self) -> Result<ReceiveGuard<'_>> {
        let mut inner = self.lock();
        if inner.receiving {
            return Err(Error::Concurrency(
                "cannot call recv while another thread is already running recv".into(),
            ));
        }
        inner.receiving = true;
        Ok(ReceiveGuard { connection: self })
    }

    /// Waits up to `timeout` until unsent bytes are below the high watermark.
    fn wait_writable<'a>(
        &'a self,
        mut inner: MutexGuard<'a, Inner>,
        timeout: Option<Duration>,
    ) -> Result<MutexGuard<'a, Inner>> {
        if inner.unsent() <= self.shared.outbox_marks.low {
            inner.writing_paused = false;
        }
        if inner.unsent() < self.shared.outbox_marks.high {
            return Ok(inner);
        }
        if !inner.writing_paused {
            inner.writing_paused = true;
            inner.protocol.record_pause(Pause::Writing);
        }
        if timeout == Some(Duration::ZERO) {
            return Err(Error::Timeout("send would block"));
        }
        super::runtime::check_may_block()?;
        let deadline = deadline_after(timeout);
        loop {
            if let Some(ended) = &inner.ended {
                return Err(Error::ConnectionClosed(ended.info.clone()));
            }
            if inner.unsent() <= self.shared.outbox_marks.low {
                return Ok(inner);
            }
            inner = self
                .shared
                .writable
                .wait_until(inner, deadline)
                .ok_or(Error::Timeout("send"))?;
        }
    }

    /// Sends a whole message, waiting up to `timeout` while the outgoing buffer is above
    /// its high watermark (zero: fail at once with a timeout instead of waiting). With
    /// permessage-deflate, `compress` false sends it uncompressed.
    pub fn send(
        &self,
        kind: MessageKind,
        data: &[u8],
        compress: bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.queue(timeout, Write::Now, |protocol| {
            protocol.send_message_with(kind, data, compress)
        })
        .map(drop)
    }

    /// Like [`Connection::send`], but the frame may wait in the outgoing buffer for
    /// [`Connection::flush`], so that the messages an application sends while it handles a
    /// batch of events leave in one system call. It is written at once when the buffer
    /// holds [`DEFER_LIMIT`] bytes or more. True when this call left output waiting for a
    /// flush that no earlier call had left (the caller flushes each such connection once).
    pub fn send_deferred(
        &self,
        kind: MessageKind,
        data: &[u8],
        compress: bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        self.queue(timeout, Write::Deferred, |protocol| {
            protocol.send_message_with(kind, data, compress)
        })
    }

    /// Writes what deferred sends left in the outgoing buffer (what the socket does not take
    /// at once goes to the writer task).
    pub fn flush(&self) {
        let mut inner = self.lock();
        if inner.deferred {
            self.write_now(&mut inner);
        }
    }

    /// Ends a deferral: writes the output from this thread if it can, and wakes the writer
    /// task for the rest.
    fn write_now(&self, inner: &mut Inner) {
        inner.deferred = false;
        write_inline(inner);
        self.dispatch(inner);
    }

    /// Starts the closing handshake and writes the close frame after what waits.
    fn close_locked(&self, inner: &mut Inner, code: u16, reason: &str) -> Result<()> {
        inner.protocol.close(code, reason, Instant::now())?;
        self.write_now(inner);
        // The close timeout is a new deadline for the writer's timer.
        self.shared.wake_writer.notify_one();
        Ok(())
    }

    /// Sends one fragment of a message (`kind` and `compress` count on the first; `fin`
    /// ends the message), with the same waiting rule as [`Connection::send`].
    pub fn send_fragment(
        &self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
        compress: bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.queue(timeout, Write::Now, |protocol| {
            protocol.send_fragment_with(kind, data, fin, compress)
        })
        .map(drop)
    }

    /// Encodes a frame once there is room, then writes it now or defers it; true when it
    /// began a deferral.
    fn queue(
        &self,
        timeout: Option<Duration>,
        write: Write,
        encode: impl FnOnce(&mut protocol::Connection) -> Result<()>,
    ) -> Result<bool> {
        let mut inner = self.lock();
        if inner.protocol.state() != protocol::State::Open {
            // Closing: no need to wait for room first to be refused.
            return Err(Error::ConnectionClosed(inner.protocol.close_info().clone()));
        }
        if inner.deferred && inner.unsent() >= self.shared.outbox_marks.high {
            // What waits must be on its way before this thread waits for room.
            self.write_now(&mut inner);
        }
        let mut inner = self.wait_writable(inner, timeout)?;
        encode(&mut inner.protocol)?;
        if write == Write::Deferred && inner.unsent() < DEFER_LIMIT {
            let began = !inner.deferred;
            // A write under way takes the new output when it is done, with no wake-up.
            inner.deferred = inner.deferred || inner.in_flight == 0;
            self.dispatch(&mut inner);
            return Ok(began && inner.deferred);
        }
        self.write_now(&mut inner);
        Ok(false)
    }

    /// Takes one broadcast message ([`super::broadcast`]) without waiting: queued (and
    /// written inline when the socket takes it), or left out as `policy` says when the
    /// outbox is at its high watermark.
    pub(crate) fn take_broadcast(
        &self,
        message: &mut protocol::Broadcast<'_>,
        policy: &SlowPolicy,
    ) -> Outcome {
        let mut inner = self.lock();
        if inner.ended.is_some() || inner.protocol.state() != protocol::State::Open {
            return Outcome::NotOpen;
        }
        if inner.unsent() >= self.shared.outbox_marks.high {
            inner.protocol.count_broadcast_skip();
            let SlowPolicy::Close { code, reason } = policy else {
                return Outcome::Skipped;
            };
            if self.close_locked(&mut inner, *code, reason).is_err() {
                return Outcome::NotOpen;
            }
            return Outcome::Closed;
        }
        // Refused only in the middle of a fragmented message: its frames must not be split.
        if message.send_to(&mut inner.protocol).is_err() {
            return Outcome::Skipped;
        }
        self.write_now(&mut inner);
        Outcome::Sent
    }

    /// Broadcasts this connection missed for being slow (skipped or closed by the policy).
    pub fn broadcast_skips(&self) -> u64 {
        self.lock().protocol.broadcast_skips()
    }

    /// Sends a ping with `payload` (at most 125 bytes) and returns a waiter for its pong.
    pub fn ping(&self, payload: &[u8]) -> Result<PongWaiter> {
        let mut inner = self.lock();
        let id = inner.protocol.send_ping(payload, Instant::now())?;
        let waiter = PongWaiter::default();
        inner.pings.push_back((id, waiter.clone()));
        self.write_now(&mut inner);
        Ok(waiter)
    }

    /// Sends an unsolicited pong.
    pub fn pong(&self, payload: &[u8]) -> Result<()> {
        let mut inner = self.lock();
        inner.protocol.send_pong(payload)?;
        self.write_now(&mut inner);
        Ok(())
    }

    /// Starts the closing handshake without waiting for it to finish.
    pub fn start_close(&self, code: u16, reason: &str) -> Result<()> {
        let mut inner = self.lock();
        if inner.ended.is_some() || inner.protocol.is_closed() {
            return Ok(()); // over already, or ending: the writer is flushing
        }
        self.close_locked(&mut inner, code, reason)
    }

    /// Closes with `code` and `reason` and waits until the connection has ended: everything
    /// sent before is flushed first. The protocol's close timeout bounds the wait; `timeout`
    /// bounds it further.
    pub fn close(&self, code: u16, reason: &str, timeout: Option<Duration>) -> Result<Ended> {
        self.start_close(code, reason)?;
        self.wait_ended(timeout)
    }

    /// Waits up to `timeout` for the connection to end.
    pub fn wait_ended(&self, timeout: Option<Duration>) -> Result<Ended> {
        super::runtime::check_may_block()?;
        let deadline = deadline_after(timeout);
        let mut inner = self.lock();
        loop {
            if let Some(ended) = &inner.ended {
                return Ok(ended.clone());
            }
            inner = self
                .shared
                .readable
                .wait_until(inner, deadline)
                .ok_or(Error::Timeout("close"))?;
        }
    }

    /// Resolves once the connection has ended (for tasks on the runtime).
    pub(crate) async fn closed(&self) {
        let mut closed = self.shared.closed_tx.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// How the connection ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.lock().ended.clone()
    }

    /// The handshake's request, response, subprotocol and addresses.
    pub fn info(&self) -> &HandshakeInfo {
        &self.shared.info
    }

    /// A unique identifier, for logs.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The counters of the server that accepted this connection (a broadcast counts the
    /// connections it skips there); `None` for a client's.
    pub fn server_metrics(&self) -> Option<Arc<ServerMetrics>> {
        self.lock().protocol.server_metrics().cloned()
    }

    /// The permessage-deflate parameters agreed, if it was negotiated.
    pub fn deflate(&self) -> Option<protocol::Agreement> {
        self.lock().protocol.deflate().copied()
    }

    /// The latency measured by the last answered ping.
    pub fn latency(&self) -> Option<Duration> {
        self.lock().protocol.latency()
    }

    /// Whether a whole message waits to be received.
    pub fn has_message(&self) -> bool {
        self.lock().protocol.inbox().has_message()
    }

    /// What received, unconsumed data is charged against the inbox budget: its bytes plus a
    /// fixed overhead per queued chunk.
    pub fn inbox_bytes(&self) -> usize {
        self.lock().inbox_bytes()
    }

    /// Bytes sent and not yet written to the socket.
    pub fn unsent_bytes(&self) -> usize {
        self.lock().unsent()
    }
}

/// Clears the "receiving" mark when a receive ends.
pub struct ReceiveGuard<'a> {
    connection: &'a Connection,
}

impl Drop for ReceiveGuard<'_> {
    fn drop(&mut self) {
        self.connection.lock().receiving = false;
    }
}

/// A random UUID (version 4, RFC 9562), for logs.
fn new_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Writes the protocol's output straight to the socket from the sending thread, when that
/// keeps bytes in order (no write under way) and the socket takes them without blocking.
/// What remains goes to the writer task as usual.
fn write_inline(inner: &mut Inner) {
    if inner.in_flight > 0 || !inner.protocol.has_output() {
        return;
    }
    let Some(socket) = &inner.socket else {
        return;
    };
    // Errors and WouldBlock are left to the writer task, which reports or waits.
    if let Ok(written) = socket.try_write(inner.protocol.output()) {
        inner.protocol.consume_output(written);
    }
}

/// Whether a send writes now or may wait for [`Connection::flush`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Now,
    Deferred,
}

/// Deferred sends stop deferring once this much output waits: one write of it is as cheap
/// per byte as any larger one.
pub const DEFER_LIMIT: usize = 64 * 1024;

/// How long a receiving thread waits on the socket before looking at the connection again.
const INLINE_WAIT_SLICE: Duration = Duration::from_millis(100);

/// One non-blocking read of a plain socket, whoever the caller is, fed to the protocol:
/// straight into the message being assembled while a large payload is under way
/// ([`protocol::Connection::payload_room`]: no copy, and reads as long as the payload), else
/// through a buffer on the stack. Returns the bytes read (0 at end of file) and whether they
/// emptied the socket: fewer than there was room for (TCP hands over all it holds).
fn read_plain(inner: &mut Inner, socket: &TcpStream) -> std::io::Result<(usize, bool)> {
    let socket = socket2::SockRef::from(socket);
    if let Some(room) = inner.protocol.payload_room(READ_BUFFER) {
        let room_len = room.len();
        let count = socket.recv(room)?;
        if count > 0 {
            // SAFETY: recv initialized the first `count` bytes of the room just given.
            unsafe {
                inner
                    .protocol
                    .receive_payload_in_place(count, Instant::now())
            };
        }
        return Ok((count, count > 0 && count < room_len));
    }
    let mut buffer = [MaybeUninit::<u8>::uninit(); READ_BUFFER];
    let count = socket.recv(&mut buffer)?;
    // SAFETY: recv initialized the first `count` bytes.
    let data = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), count) };
    if count > 0 {
        inner.protocol.receive_data(data, Instant::now());
    }
    Ok((count, count > 0 && count < READ_BUFFER))
}

/// Blocks the calling thread until `socket` is readable or `timeout` passes.
fn wait_readable(socket: &TcpStream, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut poll_fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call. Errors (EINTR) end the wait
    // early, which the caller's loop handles.
    unsafe { libc::poll(&mut poll_fd, 1, millis) };
}

/// Reads a TLS stream into the protocol until the connection closes.
async fn read_loop<R: AsyncRead + Unpin>(connection: Connection, mut reader: R) {
    read_tls_until_closed(&connection, &mut reader).await;
    linger(&mut reader).await;
}

async fn read_tls_until_closed<R: AsyncRead + Unpin>(connection: &Connection, reader: &mut R) {
    let mut closed = connection.shared.closed_tx.subscribe();
    let mut buffer = vec![0u8; READ_BUFFER];
    loop {
        let paused = connection.lock().reading_paused;
        if paused {
            tokio::select! {
                _ = connection.shared.resume_reading.notified() => continue,
                _ = closed.wait_for(|closed| *closed) => return,
            }
        }
        let read = tokio::select! {
            read = reader.read(&mut buffer) => read,
            _ = closed.wait_for(|closed| *closed) => return,
        };
        let closed = super::runtime::reading(|| {
            let mut inner = connection.lock();
            connection.absorb_read(&mut inner, read, &buffer);
            inner.protocol.is_closed()
        });
        if closed {
            return;
        }
    }
}

/// Reads plain TCP into the protocol until the connection closes. Reads happen under the
/// connection's lock, as a receiving thread's inline reads do, so bytes never reorder; while
/// such a thread waits on the socket, this task stands aside.
async fn read_loop_plain(connection: Connection, socket: Arc<TcpStream>) {
    read_plain_until_closed(&connection, &socket).await;
    linger(&mut SharedTcp(socket)).await;
}

async fn read_plain_until_closed(connection: &Connection, socket: &TcpStream) {
    let mut closed = connection.shared.closed_tx.subscribe();
    loop {
        let (paused, inline) = {
            let inner = connection.lock();
            (inner.reading_paused, inner.inline_reading)
        };
        if paused || inline {
            let resumed = if paused {
                &connection.shared.resume_reading
            } else {
                &connection.shared.inline_done
            };
            tokio::select! {
                _ = resumed.notified() => continue,
                _ = closed.wait_for(|closed| *closed) => return,
            }
        }
        tokio::select! {
            ready = socket.readable() => {
                if let Err(error) = ready {
                    let mut inner = connection.lock();
                    connection.end_read(&mut inner, Err(error));
                    return;
                }
            }
            _ = closed.wait_for(|closed| *closed) => return,
        }
        if super::runtime::reading(|| read_plain_once(connection, socket)) {
            return;
        }
    }
}

/// One read of the socket into the protocol, under the connection's lock, unless an inline
/// reader or a full inbox stops it; true once the protocol is closed.
fn read_plain_once(connection: &Connection, socket: &TcpStream) -> bool {
    let mut inner = connection.lock();
    if inner.inline_reading || inner.reading_paused {
        return false;
    }
    // The read buffer lives on read_plain's stack, not in the task: an idle connection
    // holds none (16 KiB each, on servers with many connections). try_io clears tokio's
    // readiness when the socket turns out empty (an inline reader may have emptied it),
    // so the next readable() really waits. A short read emptied it too: it clears the
    // readiness as well, sparing the read that would find nothing. Tokio keeps readiness
    // that an event newer than this read brought.
    let mut short_read = None;
    let read = socket.try_io(tokio::io::Interest::READABLE, || {
        match read_plain(&mut inner, socket)? {
            (count, true) => {
                short_read = Some(count);
                Err(std::io::ErrorKind::WouldBlock.into())
            }
            (count, false) => Ok(count),
        }
    });
    let read = match short_read {
        Some(count) => Ok(count),
        None if matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) => {
            return false;
        }
        None => read,
    };
    connection.end_read(&mut inner, read);
    inner.protocol.is_closed()
}

/// How long a reader goes on reading, once the connection is over, for the peer to close.
const LINGER: Duration = Duration::from_secs(2);

/// Once the connection is over, reads and drops what the peer still sends until it closes,
/// for at most [`LINGER`]: closing a socket with unread input sends a reset, and a reset can
/// destroy our close frame in the peer's buffers before the peer reads it (a peer that was
/// still sending a message we refused with 1009 would see 1006 instead).
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while matches!(reader.read(&mut buffer).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// How long the writer keeps trying to flush what was sent before a close, once the protocol
/// has no timer left (the peer stopped reading).
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Writes the protocol's output, coalescing everything queued into each write, and runs the
/// protocol's timers, also while a write waits on a peer that does not read. Once the
/// protocol is closed, flushes what was sent before, shuts the socket down and makes the end
/// official; bytes it could not write stay counted in `unsent_bytes`.
async fn write_loop<W: AsyncWrite + Unpin>(connection: Connection, mut writer: W) {
    let mut buffer = Vec::new();
    let mut written = 0;
    let mut flush_deadline = None;
    loop {
        let (deadline, closed) = {
            let mut inner = connection.lock();
            // New output is taken once the last write is done: until then it stays in the
            // protocol, where owed pongs stay bounded rather than queued one per ping.
            if written == buffer.len() {
                buffer.clear();
                written = 0;
                inner.protocol.drain_output_into(&mut buffer);
                inner.in_flight = buffer.len();
            }
            (inner.protocol.next_deadline(), inner.protocol.is_closed())
        };
        if closed && written == buffer.len() {
            // Best effort: the peer may be gone already.
            let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
            connection.finish(&mut connection.lock());
            return;
        }
        let deadline = if closed {
            *flush_deadline.get_or_insert_with(|| Instant::now() + FINAL_FLUSH)
        } else {
            match deadline {
                Some(deadline) => deadline,
                None => Instant::now() + Duration::from_secs(3600),
            }
        };
        let sleep = tokio::time::sleep_until(deadline.into());
        if written < buffer.len() {
            tokio::select! {
                result = writer.write(&buffer[written..]) => {
                    let mut inner = connection.lock();
                    match result {
                        Ok(n) if n > 0 => {
                            written += n;
                            inner.in_flight = buffer.len() - written;
                            if inner.unsent() <= connection.shared.outbox_marks.low {
                                connection.shared.writable.notify_all();
                            }
                        }
                        outcome => {
                            let error = outcome.err().unwrap_or_else(|| {
                                std::io::Error::new(std::io::ErrorKind::WriteZero, "socket closed")
                            });
                            inner.protocol.receive_transport_error(Error::Io(error));
                            connection.dispatch(&mut inner);
                            connection.finish(&mut inner);
                            return;
                        }
                    }
                }
                _ = sleep => {
                    if connection.on_timer(closed) {
                        return;
                    }
                }
            }
        } else {
            tokio::select! {
                _ = connection.shared.wake_writer.notified() => {}
                _ = sleep => {
                    connection.on_timer(closed);
                }
            }
        }
    }
}

impl Connection {
    /// The writer's timer fired: runs the protocol's timers, or gives up flushing after a
    /// close. True when the writer should stop.
    fn on_timer(&self, closed: bool) -> bool {
        let mut inner = self.lock();
        if closed {
            log::debug!(
                "connection {}: peer stopped reading; giving up the flush",
                self.shared.id
            );
            self.finish(&mut inner);
            return true;
        }
        inner.protocol.handle_timeout(Instant::now());
        self.dispatch(&mut inner);
        false
    }
}
