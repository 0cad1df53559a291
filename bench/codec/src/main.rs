//! permessage-deflate through the protocol core, no I/O: client and server connections at
//! the server defaults (12-bit windows, memLevel 5, level 2, context takeover), JSON-like
//! text messages. For each size, two patterns:
//! - `busy`: one pair of connections sends every message (a connection's codec states come
//!   back to it from the pool as it left them);
//! - `interleaved`: 32 pairs take turns (more directions than the pool holds, so each
//!   message starts from a reset state and the connection's window).
//!
//! Prints, per size and pattern, the median over runs of the µs one message takes to be
//! compressed by one side (send + take_output) and inflated by the other (receive_data +
//! pop_message), and the compression ratio.
//!   usage: ferrows-codec-bench [SECONDS_PER_RUN] [RUNS]

use std::time::{Duration, Instant};

use ferrows_core::protocol::{
    Agreement, Connection, DeflateConfig, MessageKind, ProtocolConfig, Role,
};

const SIZES: [usize; 4] = [200, 1024, 4096, 65536];
const INTERLEAVED_PAIRS: usize = 32;
const TEXTS: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map_or(1.0, |s| s.parse().expect("seconds"));
    let runs: usize = args.next().map_or(3, |s| s.parse().expect("runs"));
    println!("| message | pattern | compress µs | inflate µs | ratio |");
    println!("|---|---|---:|---:|---:|");
    for size in SIZES {
        let texts: Vec<Vec<u8>> = (0..TEXTS).map(|seed| json_like(size, seed)).collect();
        for (pattern, pairs) in [("busy", 1), ("interleaved", INTERLEAVED_PAIRS)] {
            let mut compress = Vec::new();
            let mut inflate = Vec::new();
            let mut ratio = 0.0;
            for _ in 0..runs {
                let run = measure(&texts, pairs, Duration::from_secs_f64(seconds));
                compress.push(run.compress_us);
                inflate.push(run.inflate_us);
                ratio = run.ratio;
            }
            println!(
                "| {size} B | {pattern} | {:.2} | {:.2} | {ratio:.2} |",
                median(&mut compress),
                median(&mut inflate)
            );
        }
    }
}

struct Run {
    compress_us: f64,
    inflate_us: f64,
    ratio: f64,
}

/// Messages from `texts` sent by the clients of `pairs` pairs in turn, for `length`.
fn measure(texts: &[Vec<u8>], pairs: usize, length: Duration) -> Run {
    let mut pairs: Vec<_> = (0..pairs).map(|_| pair()).collect();
    let (mut compressing, mut inflating) = (Duration::ZERO, Duration::ZERO);
    let (mut plain, mut wire, mut count) = (0usize, 0usize, 0usize);
    let end = Instant::now() + length;
    let mut round = 0;
    while Instant::now() < end {
        round += 1;
        for (index, (client, server)) in pairs.iter_mut().enumerate() {
            // Each pair walks through the texts as the busy one does, from its own place.
            let text = &texts[(round + index * 13) % texts.len()];
            let started = Instant::now();
            client.send_message(MessageKind::Text, text).expect("send");
            let bytes = client.take_output();
            let compressed = Instant::now();
            server.receive_data(&bytes, compressed);
            let (_, message) = server.pop_message().expect("a message");
            inflating += compressed.elapsed();
            compressing += compressed - started;
            assert_eq!(&message, text);
            plain += text.len();
            wire += bytes.len();
            count += 1;
        }
    }
    Run {
        compress_us: compressing.as_secs_f64() * 1e6 / count as f64,
        inflate_us: inflating.as_secs_f64() * 1e6 / count as f64,
        ratio: plain as f64 / wire as f64,
    }
}

fn pair() -> (Connection, Connection) {
    let config = ProtocolConfig {
        ping_interval: None,
        max_message_size: None,
        ..ProtocolConfig::default()
    };
    let agreement = Agreement {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: Some(12),
        client_max_window_bits: Some(12),
    };
    let now = Instant::now();
    let mut client = Connection::new(Role::Client, config.clone(), now);
    let mut server = Connection::new(Role::Server, config, now);
    client.enable_deflate(agreement, &DeflateConfig::client());
    server.enable_deflate(agreement, &DeflateConfig::client());
    (client, server)
}

/// About `size` bytes of text that compresses as JSON does, varied by `seed`.
fn json_like(size: usize, seed: usize) -> Vec<u8> {
    let mut text = String::new();
    let mut i = seed * 1000;
    while text.len() < size {
        text.push_str(&format!(
            r#"{{"id":{i},"user":"user{}","score":{},"tags":["a","b"]}},"#,
            i % 97,
            i * 7
        ));
        i += 1;
    }
    text.truncate(size);
    text.into_bytes()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
