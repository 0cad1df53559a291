//! Compression level against speed and ratio, through the protocol core itself: a client
//! connection compresses a 64 KiB JSON-like text message again and again (context takeover,
//! 12-bit windows, memLevel 5, as the server default agrees), a server connection inflates
//! it. Prints, per level, compression MB/s (input bytes), the ratio, and inflation MB/s
//! (output bytes). Figures for docs/compression.md:
//!
//!     cargo run --release -p ferrows-core --example deflate_levels

use std::time::{Duration, Instant};

use ferrows_core::protocol::{
    Agreement, Connection, DeflateConfig, MessageKind, ProtocolConfig, Role,
};

/// JSON-like records with repeated keys and varied values, about `size` bytes.
fn document(size: usize) -> Vec<u8> {
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut state: u64 = 1;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut text = String::from("[");
    while text.len() < size {
        text.push_str(&format!(
            r#"{{"id": {}, "user": "{}{}", "score": {}.{:03}, "active": {}, "tags": ["{}", "{}"]}},"#,
            next() % 1_000_000_000,
            words[next() % 8],
            next() % 1000,
            next() % 1000,
            next() % 1000,
            next() % 2 == 0,
            words[next() % 8],
            words[next() % 8],
        ));
    }
    text.pop();
    text.push(']');
    text.into_bytes()
}

fn main() {
    const RUN: Duration = Duration::from_millis(700);
    let message = document(64 << 10);
    let config = ProtocolConfig {
        max_message_size: None,
        ping_interval: None,
        ..ProtocolConfig::default()
    };
    let agreement = Agreement {
        server_max_window_bits: Some(12),
        client_max_window_bits: Some(12),
        ..Agreement::default()
    };
    println!(
        "{} bytes of JSON-like text, windows 12 bits, memLevel 5",
        message.len()
    );
    println!("level  compress MB/s  ratio  inflate MB/s");
    for level in 1..=9 {
        let settings = DeflateConfig {
            level,
            ..DeflateConfig::server()
        };
        let now = Instant::now();
        let mut client = Connection::new(Role::Client, config.clone(), now);
        let mut server = Connection::new(Role::Server, config.clone(), now);
        client.enable_deflate(agreement, &settings);
        server.enable_deflate(agreement, &settings);
        let (mut sent, mut wire) = (0usize, Vec::new());
        let started = Instant::now();
        while started.elapsed() < RUN {
            client.send_message(MessageKind::Text, &message).unwrap();
            wire.extend_from_slice(&client.take_output());
            sent += 1;
        }
        let compress_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        for piece in wire.chunks(64 << 10) {
            server.receive_data(piece, Instant::now());
            while server.pop_message().is_some() {}
        }
        let inflate_secs = started.elapsed().as_secs_f64();
        let bytes = (sent * message.len()) as f64;
        println!(
            "{level:>5}  {:>13.0}  {:>5.2}  {:>12.0}",
            bytes / compress_secs / 1e6,
            bytes / wire.len() as f64,
            bytes / inflate_secs / 1e6,
        );
    }
}
