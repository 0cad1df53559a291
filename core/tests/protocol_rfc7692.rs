//! permessage-deflate (RFC 7692) in the sans-IO core: the negotiation in both roles, the
//! codec on the wire (RFC 7692 §7.2.3's examples byte for byte), context takeover, window
//! bits, fragments, the per-message opt-out, and bad input: bombs (with the memory they are
//! allowed to cost, counted by this binary's allocator), corrupt data and misplaced RSV1.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use ferrows_core::protocol::deflate::{check_answer, negotiate};
use ferrows_core::protocol::{Agreement, Connection, DeflateConfig, MessageKind, Role};
use ferrows_core::Error;

mod support;
use support::*;

// ---------------------------------------------------------------------------------------------
// Memory accounting: bytes allocated by the current thread, live and at peak
// ---------------------------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // try_with: the allocator runs during thread teardown too.
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + delta);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns the most memory this thread held during it beyond what it held before.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    f();
    (PEAK.with(Cell::get) - base).max(0) as usize
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const MIB: usize = 1 << 20;

fn both_ways(agreement: Agreement) -> (Connection, Connection) {
    deflate_pair(agreement, &DeflateConfig::client(), quiet())
}

/// A client and a server that agreed on `agreement`, both with `settings`.
fn deflate_pair(
    agreement: Agreement,
    settings: &DeflateConfig,
    config: ferrows_core::protocol::ProtocolConfig,
) -> (Connection, Connection) {
    let now = Instant::now();
    let mut client = Connection::new(Role::Client, config.clone(), now);
    let mut server = Connection::new(Role::Server, config, now);
    client.enable_deflate(agreement, settings);
    server.enable_deflate(agreement, settings);
    (client, server)
}

/// Moves `from`'s output to `to`, returning the frames that crossed.
fn deliver(from: &mut Connection, to: &mut Connection) -> Vec<Wire> {
    let bytes = from.take_output();
    let frames = parse_wire(&bytes);
    check_sent_frames(from.role(), &frames, true);
    to.receive_data(&bytes, Instant::now());
    frames
}

/// Text that compresses as JSON does.
fn json_like(records: usize) -> String {
    (0..records)
        .map(|i| {
            format!(
                r#"{{"id":{i},"user":"user{}","score":{},"tags":["a","b"]}}"#,
                i % 97,
                i * 7
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn offers(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn agreement(
    server_bits: Option<u8>,
    client_bits: Option<u8>,
    snct: bool,
    cnct: bool,
) -> Agreement {
    Agreement {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

// ---------------------------------------------------------------------------------------------
// §7.1 negotiation
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7692_7_1_server_answers_the_first_acceptable_offer() {
    let server = DeflateConfig::server();
    let plain = DeflateConfig {
        server_max_window_bits: None,
        client_max_window_bits: None,
        ..DeflateConfig::server()
    };
    let cases: &[(&DeflateConfig, &[&str], Option<&str>)] = &[
        // The server's default caps its own window, and the client's when it may.
        (
            &server,
            &["permessage-deflate"],
            Some("permessage-deflate; server_max_window_bits=12"),
        ),
        (
            &server,
            &["permessage-deflate; client_max_window_bits"],
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        ),
        (
            &server,
            &["permessage-deflate; client_max_window_bits=10; server_max_window_bits=14"],
            Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"),
        ),
        (&plain, &["permessage-deflate"], Some("permessage-deflate")),
        // client_max_window_bits is answered only when offered (RFC 7692 §7.1.2.2).
        (
            &plain,
            &["permessage-deflate; client_max_window_bits=11"],
            Some("permessage-deflate; client_max_window_bits=11"),
        ),
        (
            &plain,
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        // Quoted values, any case, optional whitespace.
        (
            &plain,
            &["Permessage-Deflate ;\tserver_max_window_bits=\"10\""],
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        // An 8-bit server window cannot be compressed with: that offer is declined, the
        // next one taken.
        (
            &plain,
            &[
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=9",
            ],
            Some("permessage-deflate; server_max_window_bits=9"),
        ),
        (
            &plain,
            &["permessage-deflate; server_max_window_bits=8"],
            None,
        ),
        // A client hint of 8 is not answered: we inflate with a larger window.
        (
            &plain,
            &["permessage-deflate; client_max_window_bits=8"],
            Some("permessage-deflate"),
        ),
        // Invalid offers are declined and the next one tried.
        (
            &plain,
            &[
                "permessage-deflate; server_max_window_bits",
                "permessage-deflate",
            ],
            Some("permessage-deflate"),
        ),
        (
            &plain,
            &["permessage-deflate; server_max_window_bits=16"],
            None,
        ),
        (
            &plain,
            &["permessage-deflate; server_max_window_bits=010"],
            None,
        ),
        (
            &plain,
            &["permessage-deflate; client_max_window_bits=7"],
            None,
        ),
        (
            &plain,
            &["permessage-deflate; server_no_context_takeover=1"],
            None,
        ),
        (
            &plain,
            &["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
            None,
        ),
        (
            &plain,
            &["permessage-deflate; client_max_window_bits; client_max_window_bits=10"],
            None,
        ),
        (&plain, &["permessage-deflate; x-unknown"], None),
        // Other extensions are not ours to answer.
        (
            &plain,
            &["x-webkit-deflate-frame", "permessage-deflate"],
            Some("permessage-deflate"),
        ),
        (&plain, &[], None),
    ];
    for (config, offered, expected) in cases {
        let answer = negotiate(&offers(offered), config).map(|a| a.to_header());
        assert_eq!(answer.as_deref(), *expected, "offers {offered:?}");
    }
    let demanding = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        ..plain.clone()
    };
    assert_eq!(
        negotiate(&offers(&["permessage-deflate"]), &demanding)
            .map(|a| a.to_header())
            .as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[test]
fn rfc7692_7_1_client_offers_and_checks_the_answer() {
    let client = DeflateConfig::client();
    assert_eq!(client.offer(), "permessage-deflate; client_max_window_bits");
    let asking = DeflateConfig {
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(11),
        server_no_context_takeover: true,
        ..DeflateConfig::client()
    };
    assert_eq!(
        asking.offer(),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"
    );
    let ok: &[(&DeflateConfig, &str, Agreement)] = &[
        (&client, "permessage-deflate", Agreement::default()),
        (
            &client,
            "permessage-deflate; client_max_window_bits=8; client_no_context_takeover",
            agreement(None, Some(8), false, true),
        ),
        (
            &client,
            "permessage-deflate; server_max_window_bits=8",
            agreement(Some(8), None, false, false),
        ),
        (
            &asking,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11",
            agreement(Some(9), Some(11), true, false),
        ),
    ];
    for (offered, answer, expected) in ok {
        let agreed = check_answer(&offers(&[answer]), offered).unwrap();
        assert_eq!(agreed, Some(*expected), "{answer}");
    }
    let refused: &[(&DeflateConfig, &[&str])] = &[
        (&client, &["permessage-deflate", "permessage-deflate"]),
        (&client, &["permessage-deflate; client_max_window_bits"]),
        (&client, &["permessage-deflate; server_max_window_bits"]),
        (&client, &["permessage-deflate; foo"]),
        (&asking, &["permessage-deflate; server_max_window_bits=10; client_max_window_bits=11"]),
        (&asking, &["permessage-deflate; server_no_context_takeover; client_max_window_bits=11"]),
        (&asking, &["permessage-deflate; server_no_context_takeover; server_max_window_bits=11"]),
        (&asking, &["permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12"]),
    ];
    for (offered, answer) in refused {
        let result = check_answer(&offers(answer), offered);
        assert!(
            matches!(result, Err(Error::Negotiation(_))),
            "{answer:?}: {result:?}"
        );
    }
    assert_eq!(check_answer(&offers(&["x-other"]), &client).unwrap(), None);
}

// ---------------------------------------------------------------------------------------------
// §7.2.3 the RFC's examples, byte for byte
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7692_7_2_3_examples_inflate() {
    let hello = b"Hello".to_vec();
    let compressed = |payload: &[u8]| Frame::text(payload).rsv(4).to(Role::Client).encode();
    let examples: Vec<(&str, Vec<u8>)> = vec![
        (
            "7.2.3.1 a message compressed",
            compressed(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        ),
        (
            "7.2.3.1 the same message in two fragments",
            [
                Frame::text([0xf2, 0x48]).rsv(4).fin(false).encode(),
                Frame::cont([0xcd, 0xc9, 0xc9, 0x07, 0x00]).encode(),
            ]
            .concat(),
        ),
        (
            "7.2.3.3 a stored block",
            compressed(&[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ]),
        ),
        (
            "7.2.3.4 a block with BFINAL set",
            compressed(&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]),
        ),
        (
            "7.2.3.5 two deflate blocks in one message",
            compressed(&[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ]),
        ),
    ];
    for (what, wire) in examples {
        let (mut client, _) = both_ways(Agreement::default());
        client.receive_data(&wire, Instant::now());
        assert_eq!(
            messages(&mut client),
            [(MessageKind::Text, hello.clone())],
            "{what}"
        );
        // The connection goes on: an uncompressed message after it.
        client.receive_data(&Frame::text("plain").encode(), Instant::now());
        assert_eq!(
            messages(&mut client),
            [(MessageKind::Text, b"plain".to_vec())],
            "{what}"
        );
    }
    // 7.2.3.2: the second "Hello" refers back into the first one's window.
    let (mut client, _) = both_ways(Agreement::default());
    client.receive_data(
        &compressed(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        Instant::now(),
    );
    client.receive_data(&compressed(&[0xf2, 0x00, 0x11, 0x00, 0x00]), Instant::now());
    assert_eq!(
        messages(&mut client),
        [
            (MessageKind::Text, hello.clone()),
            (MessageKind::Text, hello)
        ]
    );
}

#[test]
fn rfc7692_7_2_1_sent_messages_drop_the_sync_tail_and_set_rsv1_on_the_first_frame_only() {
    let (mut client, mut server) = both_ways(Agreement::default());
    let text = json_like(200);
    client
        .send_message(MessageKind::Text, text.as_bytes())
        .unwrap();
    let frames = deliver(&mut client, &mut server);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].rsv, 4, "RSV1 marks the compressed message");
    assert!(!frames[0].payload.ends_with(&[0, 0, 0xff, 0xff]));
    assert!(
        frames[0].payload.len() * 3 < text.len(),
        "{} of {}",
        frames[0].payload.len(),
        text.len()
    );
    assert_eq!(
        messages(&mut server),
        [(MessageKind::Text, text.clone().into_bytes())]
    );

    let parts = [&text[..1000], &text[1000..1001], "", &text[1001..]];
    for (i, part) in parts.iter().enumerate() {
        server
            .send_fragment(MessageKind::Text, part.as_bytes(), i == parts.len() - 1)
            .unwrap();
    }
    let frames = deliver(&mut server, &mut client);
    let rsv: Vec<u8> = frames.iter().map(|f| f.rsv).collect();
    assert_eq!(rsv, [4, 0, 0, 0], "RSV1 on the first fragment only");
    assert_eq!(
        messages(&mut client),
        [(MessageKind::Text, text.into_bytes())]
    );
}

// ---------------------------------------------------------------------------------------------
// Context takeover and window bits, both roles
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7692_7_1_1_context_takeover_across_messages_and_reset_without_it() {
    let message = json_like(40);
    for (no_takeover, expect_shrinks) in [(false, true), (true, false)] {
        let (mut client, mut server) = both_ways(agreement(None, None, no_takeover, no_takeover));
        let mut sizes = Vec::new();
        for _ in 0..3 {
            for from_client in [true, false] {
                let (from, to) = if from_client {
                    (&mut client, &mut server)
                } else {
                    (&mut server, &mut client)
                };
                from.send_message(MessageKind::Binary, message.as_bytes())
                    .unwrap();
                let frames = deliver(from, to);
                sizes.push((from.role(), frames[0].payload.len()));
                assert_eq!(
                    messages(to),
                    [(MessageKind::Binary, message.clone().into_bytes())]
                );
            }
        }
        for role in [Role::Client, Role::Server] {
            let mine: Vec<usize> = sizes
                .iter()
                .filter(|(r, _)| *r == role)
                .map(|s| s.1)
                .collect();
            if expect_shrinks {
                assert!(mine[1] * 4 < mine[0], "{role:?} with takeover: {mine:?}");
            } else {
                assert!(
                    mine.iter().all(|s| *s == mine[0]),
                    "{role:?} without takeover: {mine:?}"
                );
            }
        }
    }
}

/// Sends `message` each way between `client` and `server`, checks that it arrives intact and
/// returns the compressed payload sizes, client's first.
fn exchange(client: &mut Connection, server: &mut Connection, message: &[u8]) -> [usize; 2] {
    let mut sizes = [0; 2];
    for (size, from_client) in sizes.iter_mut().zip([true, false]) {
        let (from, to) = if from_client {
            (&mut *client, &mut *server)
        } else {
            (&mut *server, &mut *client)
        };
        from.send_message(MessageKind::Binary, message).unwrap();
        let frames = deliver(from, to);
        assert_eq!(
            frames[0].rsv,
            0b100,
            "{:?} compressed its message",
            from.role()
        );
        *size = frames[0].payload.len();
        assert_eq!(messages(to), [(MessageKind::Binary, message.to_vec())]);
    }
    sizes
}

#[test]
fn context_takeover_keeps_each_connection_its_own_window_across_pooled_states() {
    // Compressors and inflaters go back to a shared pool between messages, so connections
    // take each other's states: each must still start from its own window.
    let server_defaults = agreement(Some(12), Some(12), false, false);
    let mut pairs: Vec<_> = (0..3).map(|_| both_ways(server_defaults)).collect();
    let texts: Vec<String> = (0..3)
        .map(|i| format!("connection {i}: {}", json_like(30 + 10 * i)))
        .collect();
    let mut first = Vec::new();
    for round in 0..3 {
        for (index, ((client, server), text)) in pairs.iter_mut().zip(&texts).enumerate() {
            let sizes = exchange(client, server, text.as_bytes());
            if round == 0 {
                first.push(sizes);
            } else {
                let before = first[index];
                assert!(
                    sizes.iter().zip(before).all(|(now, was)| now * 4 < was),
                    "round {round}: {sizes:?} after {before:?}"
                );
            }
        }
    }
}

#[test]
fn a_pooled_state_taken_by_another_connection_does_not_carry_its_stream() {
    // A state goes back to the pool still holding its connection's stream, for that
    // connection to go on with. Settings no other test uses make the second connection
    // take the first one's states: it must reset them, else its message would refer to
    // bytes its peer never saw.
    let settings = DeflateConfig {
        level: 9,
        mem_level: 9,
        ..DeflateConfig::client()
    };
    let agreed = agreement(Some(10), Some(10), false, false);
    let (mut first_client, mut first_server) = deflate_pair(agreed, &settings, quiet());
    let (mut second_client, mut second_server) = deflate_pair(agreed, &settings, quiet());
    let text = json_like(12);
    let fresh = exchange(&mut first_client, &mut first_server, text.as_bytes());
    // The same text: a state still holding the first stream would send back-references.
    let other = exchange(&mut second_client, &mut second_server, text.as_bytes());
    assert_eq!(other, fresh, "the second connection started from nothing");
    let again = exchange(&mut first_client, &mut first_server, text.as_bytes());
    assert!(
        again.iter().zip(fresh).all(|(now, was)| now * 4 < was),
        "the first connection went on from its own window: {again:?} after {fresh:?}"
    );
}

#[test]
fn idle_connections_with_context_takeover_keep_only_their_windows() {
    // The suite's memory scenario in the core: connections at the server defaults (12-bit
    // windows, memLevel 5, context takeover) that each sent a 4 KiB message each way and
    // are held open. A compressor kept per connection would cost zlib-rs' 128 KiB hash
    // table and more on each side; a window costs 4 KiB per direction and side.
    const PAIRS: usize = 100;
    let message = json_like(80);
    assert!((4000..5000).contains(&message.len()), "{}", message.len());
    let before = LIVE.with(Cell::get);
    let pairs: Vec<_> = (0..PAIRS)
        .map(|_| {
            let (mut client, mut server) = both_ways(agreement(Some(12), Some(12), false, false));
            exchange(&mut client, &mut server, message.as_bytes());
            (client, server)
        })
        .collect();
    // The pool's few states are counted too, shared among the pairs.
    let per_pair = (LIVE.with(Cell::get) - before) as usize / PAIRS;
    assert!(
        per_pair < 64 * 1024,
        "{per_pair} bytes held per idle pair of connections"
    );
    drop(pairs);
}

#[test]
fn rfc7692_7_1_2_every_window_size_both_ways() {
    let text = json_like(2000); // ~120 KB: longer than every window
    for server_bits in 9..=15 {
        for client_bits in [9, 12, 15] {
            for no_takeover in [false, true] {
                let agreed = agreement(
                    Some(server_bits),
                    Some(client_bits),
                    no_takeover,
                    !no_takeover,
                );
                let (mut client, mut server) =
                    deflate_pair(agreed, &DeflateConfig::client(), unlimited());
                for _ in 0..2 {
                    client
                        .send_message(MessageKind::Text, text.as_bytes())
                        .unwrap();
                    deliver(&mut client, &mut server);
                    server
                        .send_message(MessageKind::Text, text.as_bytes())
                        .unwrap();
                    deliver(&mut server, &mut client);
                }
                let what = format!("{agreed:?}");
                assert_eq!(messages(&mut server).len(), 2, "{what}");
                for (_, data) in messages(&mut client) {
                    assert!(data == text.as_bytes(), "{what}");
                }
            }
        }
    }
}

#[test]
fn rfc7692_a_peer_told_8_bits_sends_uncompressed_and_still_inflates() {
    let agreed = agreement(Some(8), Some(8), false, false);
    let (mut client, mut server) = both_ways(agreed);
    let text = json_like(50);
    for from_client in [true, false] {
        let (from, to) = if from_client {
            (&mut client, &mut server)
        } else {
            (&mut server, &mut client)
        };
        from.send_message(MessageKind::Text, text.as_bytes())
            .unwrap();
        let frames = deliver(from, to);
        assert_eq!(frames[0].rsv, 0, "8 bits: sent uncompressed");
        assert_eq!(
            messages(to),
            [(MessageKind::Text, text.clone().into_bytes())]
        );
    }
    // What a zlib told 8 sends (a 9-bit window) inflates: the inflater takes at least 9.
    let (mut sender, _) = both_ways(agreement(None, Some(9), false, false));
    sender
        .send_message(MessageKind::Text, text.as_bytes())
        .unwrap();
    client.enable_deflate(agreed, &DeflateConfig::client());
    let wire = sender.take_output();
    server.receive_data(&wire, Instant::now());
    assert_eq!(
        messages(&mut server),
        [(MessageKind::Text, text.into_bytes())]
    );
}

// ---------------------------------------------------------------------------------------------
// The sender's choice: opt-out, size threshold, in-place encoding
// ---------------------------------------------------------------------------------------------

#[test]
fn per_message_opt_out_and_size_threshold() {
    let settings = DeflateConfig {
        min_size: 100,
        ..DeflateConfig::client()
    };
    let (mut client, mut server) = deflate_pair(Agreement::default(), &settings, quiet());
    let long = json_like(20);
    let cases: [(&[u8], bool, u8); 4] = [
        (long.as_bytes(), true, 4),
        (long.as_bytes(), false, 0),
        (&long.as_bytes()[..99], true, 0),
        (&long.as_bytes()[..100], true, 4),
    ];
    for (data, compress, rsv) in cases {
        assert_eq!(client.compresses(data.len(), compress), rsv == 4);
        client
            .send_message_with(MessageKind::Binary, data, compress)
            .unwrap();
        let frames = deliver(&mut client, &mut server);
        assert_eq!(
            frames[0].rsv,
            rsv,
            "{} bytes, compress={compress}",
            data.len()
        );
        assert_eq!(
            messages(&mut server),
            [(MessageKind::Binary, data.to_vec())]
        );
    }
    // Uncompressed fragments when asked, whatever the size.
    client
        .send_fragment_with(MessageKind::Text, long.as_bytes(), false, false)
        .unwrap();
    client
        .send_fragment_with(MessageKind::Text, b"!", true, true)
        .unwrap();
    let frames = deliver(&mut client, &mut server);
    assert!(frames.iter().all(|f| f.rsv == 0));
    assert_eq!(
        messages(&mut server),
        [(MessageKind::Text, format!("{long}!").into_bytes())]
    );
    // A message encoded in place goes uncompressed, and the context stays in step.
    let frame_len = client.message_frame_len(long.len());
    let out = encode_in_place(&mut client, MessageKind::Text, long.as_bytes(), frame_len).unwrap();
    assert_eq!(parse_wire(&out)[0].rsv, 0);
    server.receive_data(&out, Instant::now());
    client
        .send_message(MessageKind::Text, long.as_bytes())
        .unwrap();
    assert_eq!(deliver(&mut client, &mut server)[0].rsv, 4);
    let both = (MessageKind::Text, long.clone().into_bytes());
    assert_eq!(messages(&mut server), [both.clone(), both]);
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7692_8_a_bomb_fails_with_1009_holding_no_more_than_the_limit() {
    // 64 MiB of zeros compress to about 64 KiB: a message 64 times over the 1 MiB limit.
    let smallest = DeflateConfig {
        level: 9,
        ..DeflateConfig::client()
    };
    let (mut sender, _) = deflate_pair(Agreement::default(), &smallest, unlimited());
    let zeros = vec![0u8; 64 * MIB];
    sender.send_message(MessageKind::Binary, &zeros).unwrap();
    drop(zeros);
    let bomb = sender.take_output();
    assert!(
        bomb.len() < MIB,
        "the bomb is small on the wire: {}",
        bomb.len()
    );

    let config = ferrows_core::protocol::ProtocolConfig {
        max_message_size: Some(MIB),
        ..quiet()
    };
    let (_, mut server) = deflate_pair(Agreement::default(), &DeflateConfig::client(), config);
    let peak = peak_during(|| {
        for piece in bomb.chunks(16 << 10) {
            server.receive_data(piece, Instant::now());
        }
    });
    let frames = take_frames(&mut server);
    let error = assert_failed_with(&mut server, &frames, 1009, "bomb");
    assert!(matches!(error, Error::PayloadTooBig(_)), "{error:?}");
    // The limit plus zlib's state and a read's worth of buffers; never the inflated size.
    assert!(
        peak < 2 * MIB + 512 * 1024,
        "peak {peak} bytes for a 1 MiB limit"
    );
}

#[test]
fn rfc7692_8_corrupt_data_fails_with_1007() {
    for (what, payload) in [
        ("reserved block type", vec![0xff, 0xff, 0xff]),
        (
            "stored block length check",
            vec![0x00, 0x05, 0x00, 0x00, 0x00],
        ),
    ] {
        let (_, mut server) = both_ways(Agreement::default());
        let wire = Frame::binary(payload).rsv(4).to(Role::Server).encode();
        let error = feed_expect_failure(&mut server, &wire, Instant::now(), 1007, what);
        assert_protocol_error(&error, 1007, what);
    }
    // Inflated text that is not UTF-8.
    let (mut sender, mut receiver) = both_ways(Agreement::default());
    sender
        .send_message(MessageKind::Binary, &[0xc3; 64])
        .unwrap();
    let mut wire = sender.take_output();
    wire[0] = (wire[0] & 0xf0) | TEXT;
    let error = feed_expect_failure(&mut receiver, &wire, Instant::now(), 1007, "invalid UTF-8");
    assert_protocol_error(&error, 1007, "invalid UTF-8");
}

#[test]
fn rfc7692_6_rsv1_only_on_the_first_frame_of_a_data_message() {
    let now = Instant::now();
    let misplaced = [
        (
            "on a continuation",
            [
                Frame::binary("a").fin(false).encode(),
                Frame::cont("b").rsv(4).encode(),
            ]
            .concat(),
        ),
        ("on a ping", Frame::ping("p").rsv(4).encode()),
        ("on a close", Frame::close(1000, "").rsv(4).encode()),
    ];
    for (what, wire) in misplaced {
        let (mut client, _) = both_ways(Agreement::default());
        let error = feed_expect_failure(&mut client, &wire, now, 1002, what);
        assert_protocol_error(&error, 1002, what);
    }
    let mut plain = open(Role::Client, now);
    let error = feed_expect_failure(
        &mut plain,
        &Frame::text([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
            .rsv(4)
            .encode(),
        now,
        1002,
        "not negotiated",
    );
    assert_protocol_error(&error, 1002, "not negotiated");
}

#[test]
fn compressed_messages_split_anywhere_and_empty_ones() {
    let sends_everything = DeflateConfig {
        min_size: 0,
        ..DeflateConfig::client()
    };
    let (mut client, mut server) = deflate_pair(Agreement::default(), &sends_everything, quiet());
    let text = json_like(30);
    client
        .send_message(MessageKind::Text, text.as_bytes())
        .unwrap();
    client
        .send_fragment(MessageKind::Binary, b"", false)
        .unwrap();
    client
        .send_fragment(MessageKind::Binary, b"", true)
        .unwrap();
    // An empty last fragment after a flushed one, and an empty whole message.
    client
        .send_fragment(MessageKind::Binary, b"ab", false)
        .unwrap();
    client
        .send_fragment(MessageKind::Binary, b"", true)
        .unwrap();
    client.send_message(MessageKind::Text, b"").unwrap();
    client.send_message(MessageKind::Text, b"after").unwrap();
    let wire = client.take_output();
    for byte in wire.chunks(1) {
        server.receive_data(byte, Instant::now());
    }
    assert_eq!(
        messages(&mut server),
        [
            (MessageKind::Text, text.into_bytes()),
            (MessageKind::Binary, Vec::new()),
            (MessageKind::Binary, b"ab".to_vec()),
            (MessageKind::Text, Vec::new()),
            (MessageKind::Text, b"after".to_vec()),
        ]
    );
    // A compressed message without any payload is empty, and leaves the inflater as it was.
    server.receive_data(
        &Frame::binary([]).rsv(4).to(Role::Server).encode(),
        Instant::now(),
    );
    client
        .send_message(MessageKind::Text, b"still in step")
        .unwrap();
    deliver(&mut client, &mut server);
    assert_eq!(
        messages(&mut server),
        [
            (MessageKind::Binary, Vec::new()),
            (MessageKind::Text, b"still in step".to_vec())
        ]
    );
}

#[test]
fn input_that_inflates_past_the_inbox_limit_is_held_until_there_is_room() {
    const LIMIT: usize = 256 << 10;
    const MESSAGE: usize = 64 << 10;
    const COUNT: usize = 200; // 12.5 MiB inflated from about 128 KiB
    let (mut client, mut server) = both_ways(Agreement::default());
    server.set_inbox_limit(Some(LIMIT));
    for i in 0..COUNT {
        let data = vec![i as u8; MESSAGE];
        client.send_message(MessageKind::Binary, &data).unwrap();
    }
    let wire = client.take_output();
    assert!(
        wire.len() * 50 < COUNT * MESSAGE,
        "{} bytes on the wire",
        wire.len()
    );
    server.receive_data(&wire, Instant::now());
    let mut received = 0;
    for round in 0..COUNT {
        let charged = server.inbox().charged_bytes();
        assert!(
            charged <= LIMIT + MESSAGE + 64,
            "round {round}: {charged} charged"
        );
        for (_, data) in messages(&mut server) {
            assert_eq!(data, vec![received as u8; MESSAGE]);
            received += 1;
        }
        if !server.holds_input() {
            break;
        }
        server.receive_data(&[], Instant::now());
    }
    assert_eq!(received, COUNT);
    // Input held past a close is dropped with the connection.
    server.receive_data(
        &Frame::close(1000, "").to(Role::Server).encode(),
        Instant::now(),
    );
    assert!(!server.holds_input());
}
