//! A server's metrics as the engine counts them, over real loopback connections: what one
//! exchange leaves, and the handle a connection gives to its server's counters.

use std::sync::Arc;
use std::time::Duration;

use ferrows_core::engine::{connect, ClientConfig, Server, ServerConfig};
use ferrows_core::protocol::handshake::Headers;
use ferrows_core::protocol::MessageKind;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn an_exchange_is_counted_on_the_server_that_accepted_it() {
    let server = Server::bind("127.0.0.1", 0, ServerConfig::default()).expect("bind");
    let port = server.local_addr().port();
    let pending =
        connect(&format!("ws://127.0.0.1:{port}/"), ClientConfig::default()).expect("connect");
    let handshake = server
        .accept(Some(WAIT))
        .expect("accept")
        .expect("a handshake");
    let accepted = handshake.accept(None, &Headers::new()).expect("upgrade");
    let client = pending
        .wait(Some(WAIT))
        .expect("client open")
        .expect("opened in time");

    client
        .send(MessageKind::Text, b"hello", true, Some(WAIT))
        .expect("send");
    assert_eq!(accepted.recv(Some(WAIT)).expect("recv").1, b"hello");
    accepted
        .send(MessageKind::Binary, b"back!!", true, Some(WAIT))
        .expect("send");
    assert_eq!(client.recv(Some(WAIT)).expect("recv").1, b"back!!");
    let latency = accepted
        .ping(b"p")
        .expect("ping")
        .wait(Some(WAIT))
        .expect("pong");
    client.close(1000, "", Some(WAIT)).expect("close");
    accepted.wait_ended(Some(WAIT)).expect("ended");

    let snapshot = server.metrics().snapshot();
    assert_eq!(
        (snapshot.accepted, snapshot.closed, snapshot.open()),
        (1, 1, 0)
    );
    assert_eq!((snapshot.messages_in, snapshot.bytes_in), (1, 5));
    assert_eq!((snapshot.messages_out, snapshot.bytes_out), (1, 6));
    assert_eq!(snapshot.close_codes[0], 1);
    assert_eq!(snapshot.ping_buckets.iter().sum::<u64>(), 1);
    assert!((snapshot.ping_seconds - latency.as_secs_f64()).abs() < 1e-6);

    // A broadcast reaches the same counters through any connection the server accepted.
    let through_connection = accepted.server_metrics().expect("a server's connection");
    assert!(Arc::ptr_eq(&through_connection, server.metrics()));
    through_connection.record_broadcast_skips(2);
    assert_eq!(server.metrics().snapshot().broadcast_skips, 2);
    assert!(client.server_metrics().is_none());
}
