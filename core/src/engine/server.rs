//! Serving connections: an accept loop on the runtime reads and validates each opening
//! handshake, then hands it to the application, which accepts it (choosing a subprotocol and
//! headers) or answers it with any HTTP response. The application's code never runs on a
//! runtime thread.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};

use super::config::ServerConfig;
use super::connection::{Connection, HandshakeInfo, Notifier, Setup};
use super::slot::{deadline_after, Signal};
use super::transport::{SharedTcp, Transport};
use super::{runtime, tls};
use crate::error::{Error, Result};
use crate::metrics::{Refusal, ServerMetrics};
use crate::protocol::close::GOING_AWAY;
use crate::protocol::handshake::{
    accept_response, parse_request, select_subprotocol, validate_request, Headers, Request,
    Response, ValidRequest,
};
use crate::protocol::Role;

/// What the application decided about a handshake.
enum Decision {
    Accept {
        connection: Connection,
        response: Response,
    },
    Respond(Response),
}

/// An opening handshake waiting for the application's decision. Dropping it answers 500.
///
/// The request may not be a valid WebSocket upgrade: the application sees it first (to answer
/// health checks or other plain HTTP requests), and [`PendingHandshake::accept`] refuses it then.
pub struct PendingHandshake {
    request: Request,
    /// The validated upgrade, or why it is not one and the response that says so.
    valid: std::result::Result<ValidRequest, (Error, Response)>,
    remote_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    decision: oneshot::Sender<Decision>,
    server: Arc<ServerShared>,
}

impl PendingHandshake {
    /// The client's request: path and headers.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The subprotocols the client offered, in its order.
    pub fn offered_subprotocols(&self) -> &[String] {
        self.valid.as_ref().map_or(&[], |valid| &valid.subprotocols)
    }

    /// The client's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The subprotocol the server's configuration would pick: its first one the client offered.
    pub fn default_subprotocol(&self) -> Option<String> {
        select_subprotocol(
            self.offered_subprotocols(),
            &self.server.config.handshake.subprotocols,
        )
    }

    /// Accepts the connection with `subprotocol` (which the client must have offered) and
    /// extra response headers. The connection is usable at once; sends wait in its outbox
    /// until the response is written. A request that is no valid upgrade gets its error
    /// response (400, 403, 426...) and the error is returned.
    pub fn accept(self, subprotocol: Option<String>, headers: &Headers) -> Result<Connection> {
        let valid = match self.valid {
            Ok(valid) => valid,
            Err((error, mut response)) => {
                self.server.metrics.record_refused(Refusal::of(&error));
                add_headers(&mut response, &self.server.config.response_headers);
                let _ = self.decision.send(Decision::Respond(response));
                return Err(error);
            }
        };
        if let Some(chosen) = &subprotocol {
            if !valid.subprotocols.contains(chosen) {
                self.server.metrics.record_refused(Refusal::Subprotocol);
                return Err(Error::Negotiation(format!(
                    "subprotocol {chosen:?} was not offered by the client"
                )));
            }
        }
        let mut all_headers = self.server.config.response_headers.clone();
        for (name, value) in headers.iter() {
            all_headers.insert(name, value);
        }
        let config = &self.server.config;
        let deflate = valid.deflate.zip(config.handshake.deflate.clone());
        let extensions = deflate.as_ref().map(|(agreement, _)| agreement.to_header());
        let response = accept_response(
            &valid.key,
            subprotocol.as_deref(),
            extensions.as_deref(),
            &all_headers,
        );
        let connection = Connection::new(Setup {
            role: Role::Server,
            config: config.protocol.clone(),
            deflate,
            inbox: config.inbox,
            outbox: config.outbox,
            info: HandshakeInfo {
                request: self.request,
                response: response.clone(),
                subprotocol,
                local_addr: self.local_addr,
                remote_addr: self.remote_addr,
            },
            metrics: Some(self.server.metrics.clone()),
        });
        self.server.track(&connection);
        let decision = Decision::Accept {
            connection: connection.clone(),
            response,
        };
        if self.decision.send(decision).is_err() {
            // The client went away or the handshake timed out: nothing will run it.
            connection.abort(Error::Timeout("opening handshake"));
            self.server.forget(&connection);
        }
        Ok(connection)
    }

    /// Answers the request with `response` instead of upgrading (a health check, 401, 403...).
    pub fn respond(self, mut response: Response) {
        add_headers(&mut response, &self.server.config.response_headers);
        let _ = self.decision.send(Decision::Respond(response));
    }

    /// Whether the handshake's task is gone (the client left or it timed out): answering
    /// it would reach no one.
    fn abandoned(&self) -> bool {
        self.decision.is_closed()
    }
}

struct AcceptQueue {
    pending: VecDeque<PendingHandshake>,
    closed: bool,
}

impl AcceptQueue {
    /// Whether another handshake may wait: fewer than `backlog` still-awaited ones do.
    fn has_room(&mut self, backlog: usize) -> bool {
        if self.pending.len() >= backlog {
            // Drops the abandoned ones only when full: each handshake's check stays cheap.
            self.pending.retain(|pending| !pending.abandoned());
        }
        !self.closed && self.pending.len() < backlog
    }

    /// The oldest handshake whose client still waits.
    fn pop(&mut self) -> Option<PendingHandshake> {
        while let Some(pending) = self.pending.pop_front() {
            if !pending.abandoned() {
                return Some(pending);
            }
        }
        None
    }
}

struct ServerShared {
    config: ServerConfig,
    queue: Mutex<AcceptQueue>,
    queued: Signal,
    /// Accepted connections by id, until they end: [`Server::shutdown`] closes them. An
    /// ended one leaves at once, so that its socket closes when the application lets go.
    live: Mutex<HashMap<String, Connection>>,
    shutdown_tx: watch::Sender<bool>,
    notifier: Mutex<Option<Notifier>>,
    metrics: Arc<ServerMetrics>,
}

impl ServerShared {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, connection: &Connection) {
        self.live()
            .insert(connection.id().to_owned(), connection.clone());
    }

    fn forget(&self, connection: &Connection) {
        self.live().remove(connection.id());
    }
}

/// A listening WebSocket server.
pub struct Server {
    shared: Arc<ServerShared>,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds `host:port` (port 0 picks a free port; see [`Server::local_addr`]) and starts
    /// accepting connections on the runtime.
    pub fn bind(host: &str, port: u16, config: ServerConfig) -> Result<Server> {
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let runtime = runtime::handle()?;
        let std_listener = listen(host, port, config.effective_backlog())?;
        let local_addr = std_listener.local_addr()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(ServerShared {
            config,
            queue: Mutex::new(AcceptQueue {
                pending: VecDeque::new(),
                closed: false,
            }),
            queued: Signal::default(),
            live: Mutex::new(HashMap::new()),
            shutdown_tx,
            notifier: Mutex::new(None),
            metrics: Arc::default(),
        });
        runtime.spawn(accept_loop(listener, tls, shared.clone(), shutdown_rx));
        Ok(Server { shared, local_addr })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits up to `timeout` for the next validated handshake. `Ok(None)` means the wait
    /// timed out; [`Error::ConnectionClosed`] that the server was shut down.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Option<PendingHandshake>> {
        if timeout != Some(Duration::ZERO) {
            runtime::check_may_block()?;
        }
        let deadline = deadline_after(timeout);
        let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(pending) = queue.pop() {
                return Ok(Some(pending));
            }
            if queue.closed {
                return Err(Error::ConnectionClosed(Default::default()));
            }
            match self.shared.queued.wait_until(queue, deadline) {
                Some(guard) => queue = guard,
                None => return Ok(None),
            }
        }
    }

    /// Whether a validated handshake waits for [`Server::accept`].
    pub fn has_pending(&self) -> bool {
        let queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        !queue.pending.is_empty()
    }

    /// Stops accepting, closes every open connection with 1001 and waits up to `timeout`
    /// for their closing handshakes. Returns how many connections were still open then.
    pub fn shutdown(&self, timeout: Option<Duration>) -> Result<usize> {
        runtime::check_may_block()?;
        self.stop_accepting();
        let connections: Vec<Connection> = self.shared.live().drain().map(|(_, c)| c).collect();
        for connection in &connections {
            let _ = connection.start_close(GOING_AWAY, "server shutting down");
        }
        let deadline = deadline_after(timeout);
        let mut still_open = 0;
        for connection in &connections {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if connection.wait_ended(left).is_err() {
                still_open += 1;
            }
        }
        Ok(still_open)
    }

    /// Stops listening and answers the handshakes not yet accepted with 503; open
    /// connections go on. Never blocks.
    pub fn stop_accepting(&self) {
        self.shared.shutdown_tx.send_replace(true);
        let pending: Vec<PendingHandshake> = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.closed = true;
            queue.pending.drain(..).collect()
        };
        for handshake in pending {
            handshake.respond(Response::new(503, "server shutting down\n"));
        }
        self.shared.queued.notify_all();
    }

    /// Sets the function told (on a runtime thread) of each handshake waiting for
    /// [`Server::accept`]; called at once if some are waiting already.
    pub fn set_notifier(&self, notifier: Option<Notifier>) {
        // Stored first, then checked: a handshake queued in between is told twice, not never.
        *self
            .shared
            .notifier
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = notifier.clone();
        let waiting = !self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .is_empty();
        if let (true, Some(notify)) = (waiting, notifier) {
            notify();
        }
    }

    /// This server's counters: handshakes, messages, close codes, pings, pauses.
    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.shared.metrics
    }

    /// Open connections accepted by this server.
    pub fn connection_count(&self) -> usize {
        let live = self.shared.live();
        live.values().filter(|c| c.ended().is_none()).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Also breaks the cycle between the server and its queued handshakes.
        self.stop_accepting();
    }
}

/// Never a shallower listen queue than std's `TcpListener::bind` gives.
const MIN_LISTEN_QUEUE: usize = 128;

/// Binds `host:port` (the first address that works) with a listen queue `backlog` deep.
fn listen(host: &str, port: u16, backlog: usize) -> Result<std::net::TcpListener> {
    let mut last_error = None;
    for address in (host, port).to_socket_addrs()? {
        match listen_on(address, backlog.max(MIN_LISTEN_QUEUE)) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(Error::Io(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("no address found for {host}"),
        )
    })))
}

fn listen_on(address: SocketAddr, queue: usize) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As std does on Unix: a restarted server binds its port again at once.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    // The kernel caps the queue at net.core.somaxconn.
    socket.listen(i32::try_from(queue).unwrap_or(i32::MAX))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<ServerShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (tcp, remote_addr) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // The slot is held until the connection ends (or its handshake does not succeed).
        let slot = slots.clone().try_acquire_owned().ok();
        let has_slot = slot.is_some();
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let deadline = shared
                .config
                .handshake_timeout
                .map(|limit| tokio::time::Instant::now() + limit);
            let local_addr = tcp.local_addr().ok();
            let serve = async {
                let transport = match acceptor {
                    // Fallible: the socket comes back with the error, so that the refusal
                    // is counted before the client sees the connection close.
                    Some(acceptor) => {
                        match acceptor.accept(SharedTcp::new(tcp)).into_fallible().await {
                            Ok(stream) => Transport::Secure(Box::new(stream)),
                            Err((error, socket)) => {
                                log::debug!("TLS handshake from {remote_addr} failed: {error}");
                                shared.metrics.record_refused(Refusal::Tls);
                                drop(socket);
                                return None;
                            }
                        }
                    }
                    None => Transport::Plain(tcp),
                };
                handshake(transport, &shared, has_slot, local_addr, remote_addr).await
            };
            let Some(accepted) = within(deadline, serve).await.unwrap_or_else(|| {
                log::debug!("opening handshake from {remote_addr} timed out");
                None
            }) else {
                return;
            };
            let connection = accepted.open(deadline).await;
            // This task's state is sized for a TLS and WebSocket handshake (about 10 KiB):
            // a task of a few hundred bytes waits for the end instead, so that an open
            // connection does not keep it.
            tokio::spawn(forget_when_closed(connection, shared, slot));
        });
    }
}

/// Waits for `connection` to end, then removes it from the server's list and frees its slot.
async fn forget_when_closed(
    connection: Connection,
    shared: Arc<ServerShared>,
    slot: Option<OwnedSemaphorePermit>,
) {
    connection.closed().await;
    shared.forget(&connection);
    drop(slot);
}

/// Runs `work` until `deadline`; `None` if it passed first.
async fn within<T>(
    deadline: Option<tokio::time::Instant>,
    work: impl Future<Output = T>,
) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.ok(),
        None => Some(work.await),
    }
}

/// A handshake the application accepted: the response still has to be written.
struct Accepted {
    stream: Transport,
    connection: Connection,
    response: Response,
    /// Bytes that followed the request.
    rest: Vec<u8>,
}

impl Accepted {
    /// Writes the response and starts the connection, or ends it if that fails: either way
    /// the connection the application holds comes to an end.
    async fn open(mut self, deadline: Option<tokio::time::Instant>) -> Connection {
        let written = within(deadline, self.stream.write_all(&self.response.to_bytes())).await;
        match written {
            Some(Ok(())) => {
                self.connection
                    .start(&tokio::runtime::Handle::current(), self.stream, self.rest)
            }
            Some(Err(error)) => self.connection.abort(Error::Io(error)),
            None => self.connection.abort(Error::Timeout("opening handshake")),
        }
        self.connection
    }
}

/// Reads and validates one opening handshake and waits for the application's decision.
/// Returns the accepted connection; any other answer is written here.
async fn handshake(
    mut stream: Transport,
    shared: &Arc<ServerShared>,
    has_slot: bool,
    local_addr: Option<SocketAddr>,
    remote_addr: SocketAddr,
) -> Option<Accepted> {
    let refuse = |error: &dyn std::fmt::Display, mut response: Response| {
        log::debug!("refused handshake from {remote_addr}: {error}");
        add_headers(&mut response, &shared.config.response_headers);
        response.to_bytes()
    };
    let (request, rest) = match read_request(&mut stream, shared).await {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return None,
        Err(error) => {
            shared.metrics.record_refused(Refusal::BadRequest);
            let answer = refuse(&error, Response::new(400, format!("{error}\n")));
            let _ = stream.write_all(&answer).await;
            return None;
        }
    };
    let valid = validate_request(&request, &shared.config.handshake);
    if !has_slot {
        shared.metrics.record_refused(Refusal::Limit);
        let answer = refuse(
            &"too many connections",
            Response::new(503, "too many connections\n"),
        );
        let _ = stream.write_all(&answer).await;
        return None;
    }
    let (decision_tx, decision_rx) = oneshot::channel();
    let pending = PendingHandshake {
        request,
        valid,
        remote_addr: Some(remote_addr),
        local_addr,
        decision: decision_tx,
        server: shared.clone(),
    };
    let refused = {
        let mut queue = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.has_room(shared.config.effective_backlog()) {
            queue.pending.push_back(pending);
            None
        } else {
            Some(pending)
        }
    };
    match refused {
        None => {
            shared.queued.notify_one();
            if let Some(notify) = &*shared.notifier.lock().unwrap_or_else(|e| e.into_inner()) {
                notify();
            }
        }
        Some(pending) => {
            shared.metrics.record_refused(Refusal::Limit);
            pending.respond(Response::new(503, "server busy\n"));
        }
    }
    let answer = match decision_rx.await {
        Ok(Decision::Accept {
            connection,
            response,
        }) => {
            return Some(Accepted {
                stream,
                connection,
                response,
                rest,
            })
        }
        Ok(Decision::Respond(response)) => response,
        Err(_) => Response::new(500, "handshake abandoned\n"),
    };
    let _ = stream.write_all(&answer.to_bytes()).await;
    let _ = stream.shutdown().await;
    None
}

fn add_headers(response: &mut Response, headers: &Headers) {
    for (name, value) in headers.iter() {
        if !response.headers.contains(name) {
            response.headers.insert(name, value);
        }
    }
}

/// Reads the request head; `None` when the client went away first.
async fn read_request(
    stream: &mut Transport,
    shared: &ServerShared,
) -> Result<Option<(Request, Vec<u8>)>> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        if let Some((request, used)) = parse_request(&buffer, &shared.config.limits)? {
            return Ok(Some((request, buffer.split_off(used))));
        }
    }
}
