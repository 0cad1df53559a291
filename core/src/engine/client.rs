//! Opening client connections: DNS, TCP, TLS and the opening handshake, all under one
//! timeout, on the runtime. The caller waits for the outcome with its own timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::config::ClientConfig;
use super::connection::{Connection, HandshakeInfo, Setup};
use super::slot::Slot;
use super::tls::TlsClientOptions;
use super::transport::{SharedTcp, Stream, Transport};
use super::{runtime, tls};
use crate::error::{Error, Result};
use crate::protocol::handshake::{ClientHandshake, HandshakeLimits, Response};
use crate::protocol::proxy::{Proxy, ProxyHandshake};
use crate::protocol::uri::WsUri;
use crate::protocol::Role;

/// The local and remote addresses of the TCP connection (to the proxy, if there is one).
type Addresses = (Option<SocketAddr>, Option<SocketAddr>);

/// The most body read from a refused handshake response, for the error report.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A connection being opened. Dropping it abandons the attempt.
pub struct PendingConnect {
    outcome: Arc<Slot<Result<Connection>>>,
    _attempt: ConnectAttempt,
}

impl PendingConnect {
    /// Waits up to `timeout` (`None`: until the open timeout ends it) for the connection.
    /// `Ok(None)` means the wait timed out and the attempt goes on.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<Connection>> {
        runtime::check_may_block()?;
        let Some(mut outcome) = self.outcome.wait(timeout) else {
            return Ok(None);
        };
        match outcome.take() {
            Some(result) => result.map(Some),
            None => Err(Error::Concurrency(
                "another thread already took this connection".into(),
            )),
        }
    }
}

/// An opening under way on the runtime; dropping it abandons the attempt.
pub struct ConnectAttempt {
    task: JoinHandle<()>,
}

impl Drop for ConnectAttempt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts opening a connection to `uri`. URI and TLS configuration errors are reported at
/// once; network and handshake errors through [`PendingConnect::wait`].
pub fn connect(uri: &str, config: ClientConfig) -> Result<PendingConnect> {
    let outcome = Arc::new(Slot::default());
    let sender = outcome.clone();
    let attempt = connect_then(uri, config, move |result| sender.fill(result))?;
    Ok(PendingConnect {
        outcome,
        _attempt: attempt,
    })
}

/// Starts opening a connection to `uri` and calls `done` with the outcome, on a runtime
/// thread (it must not block). URI and TLS configuration errors are returned at once.
pub fn connect_then(
    uri: &str,
    config: ClientConfig,
    done: impl FnOnce(Result<Connection>) + Send + 'static,
) -> Result<ConnectAttempt> {
    connect_after(Duration::ZERO, uri, config, done)
}

/// [`connect_then`] after waiting `delay` on the runtime (a reconnection's backoff); the
/// open timeout starts after it, and dropping the attempt cancels the wait too.
pub fn connect_after(
    delay: Duration,
    uri: &str,
    config: ClientConfig,
    done: impl FnOnce(Result<Connection>) + Send + 'static,
) -> Result<ConnectAttempt> {
    let uri = WsUri::parse(uri)?;
    let tls = if uri.secure {
        Some(tls::client_config(&config.tls)?)
    } else {
        None
    };
    let handshake = ClientHandshake::new(&uri, &config.handshake)?;
    let proxy = config.proxy.resolve(&uri)?;
    let runtime = runtime::handle()?;
    let spawn_handle = runtime.clone();
    let task = runtime.spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let open = open(&spawn_handle, uri, handshake, tls, proxy, config.clone());
        let result = match config.open_timeout {
            Some(limit) => tokio::time::timeout(limit, open)
                .await
                .unwrap_or(Err(Error::Timeout("opening handshake"))),
            None => open.await,
        };
        done(result);
    });
    Ok(ConnectAttempt { task })
}

/// Resolves `host` and connects to the first address that answers.
async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(Error::Io(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no address found for {host}"),
        )
    })))
}

async fn open(
    runtime: &tokio::runtime::Handle,
    uri: WsUri,
    handshake: ClientHandshake,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Option<Proxy>,
    config: ClientConfig,
) -> Result<Connection> {
    let (host, port) = uri.authority();
    let ((local_addr, remote_addr), transport) = match &proxy {
        None => {
            let tcp = connect_tcp(&host, port).await?;
            let addresses = (tcp.local_addr().ok(), tcp.peer_addr().ok());
            let transport = match tls {
                Some(tls_config) => {
                    let name = tls::server_name(&config.tls, &host)?;
                    secure(SharedTcp::new(tcp), tls_config, name).await?
                }
                None => Transport::Plain(tcp),
            };
            (addresses, transport)
        }
        Some(proxy) => tunnel(proxy, &host, port, tls, &config).await?,
    };
    finish_handshake(
        runtime,
        transport,
        handshake,
        config,
        local_addr,
        remote_addr,
    )
    .await
}

/// Runs TLS over `stream`, checking the certificate against `name`.
async fn secure<S: Stream>(
    stream: S,
    tls_config: Arc<rustls::ClientConfig>,
    name: rustls_pki_types::ServerName<'static>,
) -> Result<Transport> {
    let stream = tokio_rustls::TlsConnector::from(tls_config)
        .connect(name, stream)
        .await
        .map_err(tls::handshake_error)?;
    Ok(Transport::Secure(Box::new(stream)))
}

/// Opens a tunnel to `host:port` through `proxy` (over TLS to an `https://` proxy), then TLS
/// to the server inside it for wss://. Returns the addresses of the socket to the proxy and
/// the transport.
async fn tunnel(
    proxy: &Proxy,
    host: &str,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: &ClientConfig,
) -> Result<(Addresses, Transport)> {
    let target = if proxy.resolves_locally() {
        resolve(host, port).await?.ip().to_string()
    } else {
        host.to_owned()
    };
    let user_agent = config.handshake.user_agent.as_deref();
    let mut handshake = ProxyHandshake::new(proxy, &target, port, user_agent)?;
    let tcp = connect_tcp(&proxy.host, proxy.port).await?;
    let addresses = (tcp.local_addr().ok(), tcp.peer_addr().ok());
    let mut stream = if proxy.is_tls() {
        // The proxy is verified with the same roots as servers, by its own name.
        let proxy_tls = tls::client_config(&config.tls)?;
        let name = tls::server_name(&TlsClientOptions::default(), &proxy.host)?;
        secure(SharedTcp::new(tcp), proxy_tls, name).await?
    } else {
        Transport::Plain(tcp)
    };
    let mut chunk = [0u8; 1024];
    while !handshake.is_open() {
        let output = handshake.output();
        if !output.is_empty() {
            stream.write_all(&output).await?;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Proxy(
                "the proxy closed the connection before the tunnel opened".into(),
            ));
        }
        handshake.receive(&chunk[..n])?;
    }
    let transport = match tls {
        Some(tls_config) => {
            let name = tls::server_name(&config.tls, host)?;
            secure(stream, tls_config, name).await?
        }
        None => stream,
    };
    Ok((addresses, transport))
}

/// The first address of `host`, for SOCKS5 proxies that expect the client to resolve.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no address found for {host}"),
            ))
        })
}

async fn finish_handshake(
    runtime: &tokio::runtime::Handle,
    mut stream: Transport,
    handshake: ClientHandshake,
    config: ClientConfig,
    local_addr: Option<SocketAddr>,
    remote_addr: Option<SocketAddr>,
) -> Result<Connection> {
    stream.write_all(&handshake.to_bytes()).await?;
    let (mut response, mut rest) = read_response(&mut stream, &config.limits).await?;
    if response.status != 101 {
        read_error_body(&mut stream, &mut response, &mut rest).await;
    }
    let accepted = handshake.validate(&response)?;
    let deflate = accepted.deflate.zip(config.handshake.deflate.clone());
    let connection = Connection::new(Setup {
        role: Role::Client,
        config: config.protocol,
        deflate,
        inbox: config.inbox,
        outbox: config.outbox,
        info: HandshakeInfo {
            request: handshake.request().clone(),
            response,
            subprotocol: accepted.subprotocol,
            local_addr,
            remote_addr,
        },
        metrics: None,
    });
    connection.start(runtime, stream, rest);
    Ok(connection)
}

/// Reads the response head; returns it with the bytes that followed it.
async fn read_response(
    stream: &mut Transport,
    limits: &HandshakeLimits,
) -> Result<(Response, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::InvalidMessage(
                "connection closed before the handshake response".into(),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some((response, used)) = ClientHandshake::parse_response(&buffer, limits)? {
            return Ok((response, buffer.split_off(used)));
        }
    }
}

/// Reads a refused response's body (bounded, best effort) so the error can show it.
async fn read_error_body(stream: &mut Transport, response: &mut Response, rest: &mut Vec<u8>) {
    let wanted = ClientHandshake::body_length(response)
        .unwrap_or(MAX_ERROR_BODY)
        .min(MAX_ERROR_BODY);
    let mut body = std::mem::take(rest);
    let mut chunk = [0u8; 4096];
    let read_body = async {
        while body.len() < wanted {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read_body).await;
    body.truncate(wanted);
    response.body = body;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::ServerConfig;
    use crate::engine::server::Server;
    use crate::engine::tls::{test_pem, TlsClientOptions, TlsServerOptions};
    use crate::protocol::handshake::Headers;

    const WAIT: Option<Duration> = Some(Duration::from_secs(10));

    fn connect_trusting(server: &Server, ca: &str) -> Result<Option<Connection>> {
        let config = ClientConfig {
            tls: TlsClientOptions {
                ca_pem: Some(ca.as_bytes().to_vec()),
                no_system_roots: true,
                ..Default::default()
            },
            ..Default::default()
        };
        connect(&format!("wss://{}/", server.local_addr()), config)?.wait(WAIT)
    }

    /// A server on a loopback port with the test certificate.
    fn tls_server() -> Server {
        let tls = TlsServerOptions {
            cert_chain_pem: test_pem::SERVER_CERT.into(),
            key_pem: test_pem::SERVER_KEY.into(),
        };
        let config = ServerConfig {
            tls: Some(tls),
            ..Default::default()
        };
        Server::bind("127.0.0.1", 0, config).unwrap()
    }

    #[test]
    fn a_certificate_from_an_unknown_issuer_is_untrusted() {
        let server = tls_server();
        let untrusted = connect_trusting(&server, test_pem::OTHER_CA);
        assert!(
            matches!(untrusted, Err(Error::UntrustedCertificate(_))),
            "{untrusted:?}"
        );
        // The same server passes with the CA that issued its certificate.
        let connection = std::thread::scope(|scope| {
            scope.spawn(|| {
                let pending = server.accept(WAIT).unwrap().expect("a handshake");
                pending.accept(None, &Headers::new()).unwrap();
            });
            connect_trusting(&server, test_pem::CA)
        });
        assert!(matches!(connection, Ok(Some(_))), "{connection:?}");
        assert_eq!(server.shutdown(WAIT).unwrap(), 0);
    }

    /// Opens a TLS connection to `server` with `config` (the engine's configuration for some
    /// options), completes the WebSocket handshake (so the session tickets sent after the
    /// TLS handshake are read), and says how the TLS handshake went.
    fn tls_handshake_kind(
        server: &Server,
        config: &Arc<rustls::ClientConfig>,
    ) -> rustls::HandshakeKind {
        let address = server.local_addr();
        runtime::handle().unwrap().block_on(async {
            let tcp = TcpStream::connect(address).await.unwrap();
            let name = tls::server_name(&TlsClientOptions::default(), "127.0.0.1").unwrap();
            let mut stream = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .unwrap();
            let uri = WsUri::parse(&format!("wss://{address}/")).unwrap();
            let handshake = ClientHandshake::new(&uri, &Default::default()).unwrap();
            stream.write_all(&handshake.to_bytes()).await.unwrap();
            let mut response = Vec::new();
            let mut chunk = [0u8; 1024];
            while ClientHandshake::parse_response(&response, &HandshakeLimits::default())
                .unwrap()
                .is_none()
            {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the server closed before its response");
                response.extend_from_slice(&chunk[..n]);
            }
            stream.get_ref().1.handshake_kind().unwrap()
        })
    }

    #[test]
    fn connections_with_the_same_options_resume_the_tls_session() {
        use rustls::HandshakeKind::{Full, Resumed};
        let server = tls_server();
        let options = TlsClientOptions {
            // Options of their own (the CA and a blank line): other tests connect to other
            // servers at the same address, whose sessions would replace this server's in a
            // shared configuration.
            ca_pem: Some(format!("{}\n", test_pem::CA).into_bytes()),
            no_system_roots: true,
            ..Default::default()
        };
        // Held here: other tests fill the bounded cache of configurations, which may drop
        // this one between the connections.
        let resuming = tls::client_config(&options).unwrap();
        let not_resuming = tls::client_config(&TlsClientOptions {
            no_session_resumption: true,
            ..options
        })
        .unwrap();
        let kinds = std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..4 {
                    let pending = server.accept(WAIT).unwrap().expect("a handshake");
                    pending.accept(None, &Headers::new()).unwrap();
                }
            });
            [&resuming, &resuming, &not_resuming, &not_resuming]
                .map(|options| tls_handshake_kind(&server, options))
        });
        assert_eq!(kinds, [Full, Resumed, Full, Full]);
        server.shutdown(WAIT).unwrap();
    }

    #[test]
    fn a_server_speaking_no_tls_is_another_tls_failure() {
        let server = Server::bind("127.0.0.1", 0, ServerConfig::default()).unwrap();
        let result = connect_trusting(&server, test_pem::CA);
        assert!(matches!(result, Err(Error::Tls(_))), "{result:?}");
    }
}
