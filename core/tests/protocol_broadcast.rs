//! Broadcast in the sans-IO core: one frame shared by every server-side connection, one
//! compressed frame per compressor key among connections without context takeover, and
//! the connections that encode for themselves (clients, context takeover) still decode to
//! the message.

use std::time::Instant;

use ferrows_core::protocol::{
    Agreement, Broadcast, Connection, DeflateConfig, MessageKind, ProtocolConfig, Role,
};

/// A connection in `role`, with permessage-deflate as `agreement` says, if any.
fn connection(role: Role, agreement: Option<Agreement>) -> Connection {
    let mut connection = Connection::new(role, ProtocolConfig::default(), Instant::now());
    if let Some(agreement) = agreement {
        let config = match role {
            Role::Server => DeflateConfig::server(),
            Role::Client => DeflateConfig::client(),
        };
        connection.enable_deflate(agreement, &config);
    }
    connection
}

/// What the peer of `sender` (same agreement) receives from its output.
fn received_by_peer(sender: &mut Connection, agreement: Option<Agreement>) -> Vec<u8> {
    let peer_role = match sender.role() {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut peer = connection(peer_role, agreement);
    peer.receive_data(&sender.take_output(), Instant::now());
    let (kind, data) = peer.pop_message().expect("a whole message");
    assert_eq!(kind, MessageKind::Text);
    data
}

fn no_takeover(bits: u8) -> Agreement {
    Agreement {
        server_no_context_takeover: true,
        server_max_window_bits: Some(bits),
        ..Agreement::default()
    }
}

const MESSAGE: &[u8] = b"the same message for everyone, long enough to be compressed: aaaaaaaa";

#[test]
fn one_plain_frame_for_every_server_connection() {
    let mut broadcast = Broadcast::new(MessageKind::Text, MESSAGE);
    let mut servers: Vec<_> = (0..5).map(|_| connection(Role::Server, None)).collect();
    let mut frames = Vec::new();
    for server in &mut servers {
        frames.push(broadcast.frame_for(server).unwrap().bytes().to_vec());
        broadcast.send_to(server).unwrap();
    }
    assert_eq!(broadcast.shared_encodings(), 1);
    assert!(frames.windows(2).all(|pair| pair[0] == pair[1]));
    for server in &mut servers {
        assert_eq!(received_by_peer(server, None), MESSAGE);
    }
}

#[test]
fn compressed_once_per_key_without_context_takeover() {
    let mut broadcast = Broadcast::new(MessageKind::Text, MESSAGE);
    let agreements = [
        no_takeover(12),
        no_takeover(12),
        no_takeover(10),
        no_takeover(12),
    ];
    let mut servers: Vec<_> = agreements
        .iter()
        .map(|a| connection(Role::Server, Some(*a)))
        .collect();
    for server in &mut servers {
        broadcast.send_to(server).unwrap();
    }
    // Two keys (12 and 10 bits): two compressions for four connections.
    assert_eq!(broadcast.shared_encodings(), 2);
    for (server, agreement) in servers.iter_mut().zip(agreements) {
        let output = server.output().to_vec();
        assert_eq!(output[0] & 0x40, 0x40, "RSV1: compressed");
        assert_eq!(received_by_peer(server, Some(agreement)), MESSAGE);
    }
}

#[test]
fn context_takeover_and_clients_encode_for_themselves() {
    let takeover = Agreement {
        server_max_window_bits: Some(12),
        ..Agreement::default()
    };
    let mut broadcast = Broadcast::new(MessageKind::Text, MESSAGE);
    let mut server = connection(Role::Server, Some(takeover));
    let mut client = connection(Role::Client, None);
    assert!(broadcast.frame_for(&server).is_none());
    assert!(broadcast.frame_for(&client).is_none());
    // Twice on the same connection: the second message uses the kept context.
    for _ in 0..2 {
        broadcast.send_to(&mut server).unwrap();
        broadcast.send_to(&mut client).unwrap();
    }
    assert_eq!(broadcast.shared_encodings(), 0);
    let mut peer = connection(Role::Client, Some(takeover));
    peer.receive_data(&server.take_output(), Instant::now());
    for _ in 0..2 {
        assert_eq!(peer.pop_message().unwrap().1, MESSAGE);
    }
    let mut peer = connection(Role::Server, None);
    let output = client.take_output();
    assert_eq!(output[1] & 0x80, 0x80, "client frames are masked");
    peer.receive_data(&output, Instant::now());
    for _ in 0..2 {
        assert_eq!(peer.pop_message().unwrap().1, MESSAGE);
    }
}

#[test]
fn small_messages_go_plain_on_deflate_connections() {
    let mut broadcast = Broadcast::new(MessageKind::Text, b"hi");
    let mut plain = connection(Role::Server, None);
    let mut deflate = connection(Role::Server, Some(no_takeover(12)));
    broadcast.send_to(&mut plain).unwrap();
    broadcast.send_to(&mut deflate).unwrap();
    // Under the minimum size the deflate connection sends it uncompressed: the same frame.
    assert_eq!(broadcast.shared_encodings(), 1);
    assert_eq!(plain.take_output(), deflate.take_output());
}

#[test]
fn refused_when_closed_or_mid_fragment() {
    let mut broadcast = Broadcast::new(MessageKind::Text, MESSAGE);
    let mut closed = connection(Role::Server, None);
    closed.close(1000, "", Instant::now()).unwrap();
    assert!(broadcast.send_to(&mut closed).is_err());
    let mut fragmenting = connection(Role::Server, None);
    fragmenting
        .send_fragment(MessageKind::Text, b"part", false)
        .unwrap();
    assert!(broadcast.send_to(&mut fragmenting).is_err());
}

#[test]
fn owed_pongs_go_before_the_shared_frame() {
    let mut server = connection(Role::Server, None);
    let mut client = connection(Role::Client, None);
    client.send_ping(b"p", Instant::now()).unwrap();
    server.receive_data(&client.take_output(), Instant::now());
    Broadcast::new(MessageKind::Text, MESSAGE)
        .send_to(&mut server)
        .unwrap();
    let output = server.take_output();
    assert_eq!(output[0], 0x8a, "the pong first");
    client.receive_data(&output, Instant::now());
    assert_eq!(client.pop_message().unwrap().1, MESSAGE);
}

#[test]
fn skips_are_counted_per_connection() {
    let mut server = connection(Role::Server, None);
    assert_eq!(server.broadcast_skips(), 0);
    server.count_broadcast_skip();
    server.count_broadcast_skip();
    assert_eq!(server.broadcast_skips(), 2);
}

#[test]
fn a_frame_for_one_encoding_is_refused_by_another() {
    let mut broadcast = Broadcast::new(MessageKind::Text, MESSAGE);
    let plain_server = connection(Role::Server, None);
    let mut compressing = connection(Role::Server, Some(no_takeover(12)));
    let mut client = connection(Role::Client, None);
    let frame = broadcast.frame_for(&plain_server).unwrap();
    assert!(compressing.send_shared(frame).is_err());
    assert!(client.send_shared(frame).is_err());
    assert!(!compressing.has_output() && !client.has_output());
}
