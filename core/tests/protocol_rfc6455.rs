//! RFC 6455 conformance tests of the sans-IO protocol core, through its public API only.
//!
//! Frames are built by hand (opcode, FIN, RSV bits, optional mask key, payload, in the 7-bit,
//! 16-bit or 64-bit length form) and the bytes from `take_output()` are parsed back into frames
//! (unmasking client frames), so the tests assert on the wire. Time is passed in: nothing sleeps.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use ferrows_core::protocol::config::DEFAULT_MAX_FRAGMENTS;
use ferrows_core::protocol::connection::{MAX_OWED_PONGS, MAX_PENDING_PINGS};
use ferrows_core::protocol::message::{
    recycle_message_buffer, CHUNK_OVERHEAD, INITIAL_MESSAGE_BUFFER, MAX_SPARE_BUFFER,
    MAX_SPARE_BYTES, MIN_SPARE_BUFFER,
};
use ferrows_core::protocol::{
    Chunk, Connection, Event, MessageKind, PingAck, ProtocolConfig, Role, State,
};
use ferrows_core::Error;

mod support;
use support::*;

// ---------------------------------------------------------------------------------------------
// §5.1 / §5.3 masking
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc6455_5_3_client_frames_masked_with_a_fresh_key_each_frame() {
    let t0 = Instant::now();
    let mut conn = open(Role::Client, t0);
    let payload = b"the same payload, twice over".to_vec();
    conn.send_message(MessageKind::Binary, &payload).unwrap();
    conn.send_message(MessageKind::Binary, &payload).unwrap();
    let frames = take_frames(&mut conn);
    assert_eq!(frames.len(), 2, "{frames:?}");
    for frame in &frames {
        assert!(frame.mask.is_some(), "§5.1: client frame not masked");
        assert_eq!(frame.opcode, BINARY);
        assert!(frame.fin);
        assert_eq!(frame.payload, payload, "unmasks to the payload");
        assert_ne!(
            &frame.raw[6..],
            &payload[..],
            "payload on the wire is masked"
        );
    }
    assert_ne!(
        frames[0].mask, frames[1].mask,
        "§5.3: a fresh masking key for each frame"
    );
    assert_ne!(
        frames[0].raw, frames[1].raw,
        "two identical sends differ on the wire"
    );

    // Over many frames of every kind, the keys keep changing.
    for i in 0..32u8 {
        conn.send_message(MessageKind::Text, b"x").unwrap();
        conn.send_ping(&[i], t0).unwrap();
        conn.send_pong(b"").unwrap();
    }
    let frames = take_frames(&mut conn);
    let mut keys: Vec<[u8; 4]> = frames.iter().map(|f| f.mask.unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert!(keys.len() > 90, "masking keys repeat: {keys:?}");
}

#[test]
fn rfc6455_5_1_server_frames_are_not_masked() {
    let t0 = Instant::now();
    let mut conn = open(Role::Server, t0);
    conn.send_message(MessageKind::Text, b"Hello").unwrap();
    conn.send_ping(b"p", t0).unwrap();
    conn.send_pong(b"q").unwrap();
    conn.close(1000, "bye", t0).unwrap();
    let out = conn.take_output();
    // RFC 6455 §5.7: a single-frame unmasked text message.
    assert_eq!(&out[..7], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    let frames = parse_wire(&out);
    check_sent_frames(Role::Server, &frames, false);
    let opcodes: Vec<u8> = frames.iter().map(|f| f.opcode).collect();
    assert_eq!(opcodes, [TEXT, PING, PONG, CLOSE]);
    assert!(frames.iter().all(|f| f.mask.is_none()));
}

#[test]
fn rfc6455_5_1_server_fails_an_unmasked_client_frame_with_1002() {
    let t0 = Instant::now();
    for frame in [
        Frame::text("hi"),
        Frame::binary([1, 2, 3]),
        Frame::ping("p"),
        Frame::close(1000, ""),
    ] {
        let mut conn = open(Role::Server, t0);
        let what = format!("unmasked {frame:?}");
        let error = feed_expect_failure(&mut conn, &frame.unmasked().encode(), t0, 1002, &what);
        assert_protocol_error(&error, 1002, &what);
    }
}

#[test]
fn rfc6455_5_1_client_fails_a_masked_server_frame_with_1002() {
    let t0 = Instant::now();
    for frame in [
        Frame::text("hi"),
        Frame::binary([1, 2, 3]),
        Frame::ping("p"),
        Frame::close(1000, ""),
    ] {
        let mut conn = open(Role::Client, t0);
        let what = format!("masked {frame:?}");
        let bytes = frame.masked([1, 2, 3, 4]).encode();
        let error = feed_expect_failure(&mut conn, &bytes, t0, 1002, &what);
        assert_protocol_error(&error, 1002, &what);
    }
}

#[test]
fn rfc6455_5_3_server_unmasks_client_frames_split_anywhere() {
    let t0 = Instant::now();
    // A payload whose length is no multiple of 4 or 8, so every mask offset is exercised.
    let payload: Vec<u8> = (0..=250u8).collect();
    let bytes = Frame::binary(&payload)
        .masked([0xde, 0xad, 0xbe, 0xef])
        .encode();
    for split in 0..=bytes.len() {
        let mut conn = open(Role::Server, t0);
        conn.receive_data(&bytes[..split], t0);
        conn.receive_data(&bytes[split..], t0);
        assert_eq!(
            messages(&mut conn),
            [(MessageKind::Binary, payload.clone())],
            "split at {split}"
        );
        assert!(take_events(&mut conn).is_empty(), "split at {split}");
    }
    // Three pieces at odd offsets.
    for a in (0..bytes.len()).step_by(7) {
        for b in (a..bytes.len()).step_by(13) {
            let mut conn = open(Role::Server, t0);
            conn.receive_data(&bytes[..a], t0);
            conn.receive_data(&bytes[a..b], t0);
            conn.receive_data(&bytes[b..], t0);
            assert_eq!(
                messages(&mut conn),
                [(MessageKind::Binary, payload.clone())],
                "split at {a}/{b}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §5.2 base framing
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc6455_5_2_sent_lengths_use_the_minimal_7_16_and_64_bit_forms() {
    let t0 = Instant::now();
    for role in ROLES {
        for (len, form) in [
            (0usize, LenForm::Short),
            (125, LenForm::Short),
            (126, LenForm::Medium),
            (65535, LenForm::Medium),
            (65536, LenForm::Long),
            (70000, LenForm::Long),
        ] {
            let mut conn = open(role, t0);
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            conn.send_message(MessageKind::Binary, &payload).unwrap();
            let frames = take_frames(&mut conn);
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].len_form, form, "{role:?} len {len}");
            assert_eq!(frames[0].payload, payload, "{role:?} len {len}");
        }
    }
}

#[test]
fn a_recycled_message_buffer_assembles_the_next_large_message_on_its_thread() {
    let t0 = Instant::now();
    let large = vec![7u8; INITIAL_MESSAGE_BUFFER * 4];
    for role in ROLES {
        let mut conn = Connection::new(role, unlimited(), t0);
        let receive = |conn: &mut Connection, payload: &[u8]| {
            conn.receive_data(&Frame::binary(payload).to(role).encode(), t0);
            let (_, data) = conn.pop_message().expect("a whole message");
            assert_eq!(data, payload);
            data
        };
        let first = receive(&mut conn, &large);
        let address = first.as_ptr();
        recycle_message_buffer(first);
        // A small message leaves the spare alone; the next large one is assembled in it.
        recycle_message_buffer(receive(&mut conn, b"small"));
        let second = receive(&mut conn, &large);
        assert_eq!(
            second.as_ptr(),
            address,
            "{role:?}: the spare was not reused"
        );
        // Taken, it is no one's spare: the next large message gets a buffer of its own.
        let third = receive(&mut conn, &large);
        assert_ne!(third.as_ptr(), second.as_ptr(), "{role:?}");
        // A buffer above the cap does not replace the spare.
        let third_address = third.as_ptr();
        recycle_message_buffer(third);
        recycle_message_buffer(Vec::with_capacity(MAX_SPARE_BUFFER + 1));
        let after = receive(&mut conn, &large);
        assert_eq!(
            after.as_ptr(),
            third_address,
            "{role:?}: the cap was not kept"
        );
        drop(second);
    }
}

/// Reads up to `limit` bytes of `wire` into the room the connection gives (as a driver's
/// socket read would); returns how many it took.
fn read_in_place(conn: &mut Connection, wire: &[u8], limit: usize, t0: Instant) -> usize {
    let room = conn.payload_room(1).expect("room for the payload");
    let count = room.len().min(wire.len()).min(limit);
    for (slot, byte) in room.iter_mut().zip(&wire[..count]) {
        slot.write(*byte);
    }
    // SAFETY: the first `count` bytes of the room were just written.
    unsafe { conn.receive_payload_in_place(count, t0) };
    count
}

#[test]
fn payloads_read_in_place_arrive_as_through_receive_data_unmasked_at_any_split() {
    let t0 = Instant::now();
    let payload: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    for role in ROLES {
        for limit in [1, 3, 4097, 65_536, usize::MAX] {
            let mut conn = Connection::new(role, unlimited(), t0);
            let frame = Frame::binary(&payload).to(role);
            let wire = frame.encode();
            let header_len = frame.header(payload.len() as u64).len();
            // The header, and the next message's first bytes only later.
            conn.receive_data(&wire[..header_len], t0);
            let mut at = header_len;
            while at < wire.len() {
                let room = conn.payload_room(1).expect("room").len();
                assert!(room <= wire.len() - at, "{role:?}: room past the frame");
                at += read_in_place(&mut conn, &wire[at..], limit, t0);
            }
            assert!(
                conn.payload_room(1).is_none(),
                "{role:?}: room between frames"
            );
            conn.receive_data(&Frame::text("next").to(role).encode(), t0);
            assert_eq!(
                messages(&mut conn),
                vec![
                    (MessageKind::Binary, payload.clone()),
                    (MessageKind::Text, b"next".to_vec())
                ],
                "{role:?}, reads of at most {limit}"
            );
        }
    }
}

#[test]
fn payload_room_only_for_data_frames_with_enough_left() {
    let t0 = Instant::now();
    let mut conn = Connection::new(Role::Client, unlimited(), t0);
    assert!(conn.payload_room(1).is_none(), "no frame under way");
    let ping = Frame::ping(vec![1; 100]);
    conn.receive_data(&ping.header(100), t0);
    assert!(conn.payload_room(1).is_none(), "a control frame");
    conn.receive_data(&[1; 100], t0);
    let binary = Frame::binary(vec![2; 1000]);
    conn.receive_data(&binary.header(1000), t0);
    assert_eq!(conn.payload_room(1000).map(|room| room.len()), Some(1000));
    assert!(
        conn.payload_room(1001).is_none(),
        "less left than asked for"
    );
    conn.receive_data(&[2; 1000], t0);
    assert_eq!(
        messages(&mut conn),
        vec![(MessageKind::Binary, vec![2; 1000])]
    );
}

#[test]
fn payload_room_does_not_grow_on_a_header_alone() {
    // On a thread of its own: no spare buffer from other tests.
    std::thread::spawn(|| {
        let t0 = Instant::now();
        let mut conn = Connection::new(Role::Client, unlimited(), t0);
        conn.receive_data(&Frame::binary([]).header(1 << 30), t0);
        let room = conn.payload_room(16 << 10).expect("room").len();
        assert!(
            room <= INITIAL_MESSAGE_BUFFER,
            "{room} bytes on a header alone"
        );
        // Filled, the buffer doubles, at least by what is asked.
        let wire = vec![0; room];
        read_in_place(&mut conn, &wire, usize::MAX, t0);
        let room = conn.payload_room(1 << 20).expect("room").len();
        assert!((1 << 20..=2 * INITIAL_MESSAGE_BUFFER.max(1 << 20)).contains(&room));
    })
    .join()
    .unwrap();
}

#[test]
fn invalid_text_read_in_place_fails_with_1007() {
    let t0 = Instant::now();
    let mut conn = Connection::new(Role::Client, unlimited(), t0);
    let mut text = vec![b'a'; 100_000];
    text[30_000] = 0xff;
    let wire = Frame::text(&text).encode();
    let header_len = wire.len() - text.len();
    conn.receive_data(&wire[..header_len], t0);
    let mut at = header_len;
    while conn.state() == State::Open && at < wire.len() {
        at += read_in_place(&mut conn, &wire[at..], 10_000, t0);
    }
    assert!(
        at < wire.len(),
        "the connection failed before the frame's end"
    );
    assert_eq!(
        into_closed(take_events(&mut conn)).and_then(|(info, _)| info.sent.map(|f| f.code)),
        Some(1007)
    );
    assert!(conn.payload_room(1).is_none(), "no room once failed");
}

#[test]
fn a_burst_of_large_messages_is_assembled_in_recycled_buffers_up_to_their_cap() {
    let t0 = Instant::now();
    let payload = vec![3u8; MIN_SPARE_BUFFER];
    // Spares twice the messages' size: a message assembled in one shows it by its capacity.
    let spare = 2 * MIN_SPARE_BUFFER;
    let room = MAX_SPARE_BYTES / spare;
    for role in ROLES {
        let mut conn = Connection::new(role, unlimited(), t0);
        (0..room + 8).for_each(|_| recycle_message_buffer(vec![0; spare]));
        // All held at once, as an inbox full of them would hold them.
        let frame = Frame::binary(&payload).to(role).encode();
        let held: Vec<Vec<u8>> = (0..room + 8)
            .map(|_| {
                conn.receive_data(&frame, t0);
                let (_, data) = conn.pop_message().expect("a whole message");
                assert_eq!(data, payload);
                data
            })
            .collect();
        let in_spares = held.iter().filter(|d| d.capacity() == spare).count();
        assert_eq!(
            in_spares, room,
            "{role:?}: spares kept beyond or below the cap"
        );
        // A message under the smallest spare is not assembled in one.
        held.into_iter().for_each(recycle_message_buffer);
        let small = vec![1u8; MIN_SPARE_BUFFER - 1];
        conn.receive_data(&Frame::binary(&small).to(role).encode(), t0);
        let (_, data) = conn.pop_message().expect("a whole message");
        assert_eq!(data.capacity(), small.len(), "{role:?}");
    }
}

#[test]
fn rfc6455_5_2_messages_encoded_in_place_match_queued_ones() {
    let t0 = Instant::now();
    for role in ROLES {
        for len in [0usize, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
            let mut conn = open(role, t0);
            let frame_len = conn.message_frame_len(len);
            let out = encode_in_place(&mut conn, MessageKind::Text, &payload, frame_len).unwrap();
            let frames = parse_wire(&out);
            assert_eq!(frames.len(), 1, "{role:?} len {len}");
            assert_eq!(frames[0].opcode, TEXT);
            assert!(frames[0].fin);
            assert_eq!(frames[0].payload, payload, "{role:?} len {len}");
            assert_eq!(frames[0].mask.is_some(), role == Role::Client);
            check_sent_frames(role, &frames, false);
        }
        // A wrong size, or output still pending, is refused rather than reordered.
        let mut conn = open(role, t0);
        assert!(encode_in_place(&mut conn, MessageKind::Binary, b"abc", 3).is_err());
        conn.send_ping(b"p", t0).unwrap();
        let frame_len = conn.message_frame_len(3);
        assert!(matches!(
            encode_in_place(&mut conn, MessageKind::Binary, b"abc", frame_len),
            Err(Error::Concurrency(_))
        ));
    }
}

#[test]
fn rfc6455_5_2_received_7_16_and_64_bit_lengths() {
    let t0 = Instant::now();
    for role in ROLES {
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70001] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 5) as u8).collect();
            let bytes = Frame::binary(&payload).to(role).encode();
            // Whole, then header byte by byte followed by the rest.
            for bytewise_header in [false, true] {
                let mut conn = open(role, t0);
                if bytewise_header {
                    let header_len = bytes.len() - len;
                    for byte in &bytes[..header_len] {
                        conn.receive_data(std::slice::from_ref(byte), t0);
                    }
                    conn.receive_data(&bytes[header_len..], t0);
                } else {
                    conn.receive_data(&bytes, t0);
                }
                assert_eq!(
                    messages(&mut conn),
                    [(MessageKind::Binary, payload.clone())],
                    "{role:?} len {len} bytewise {bytewise_header}"
                );
                assert!(take_events(&mut conn).is_empty());
                assert_eq!(conn.state(), State::Open);
                assert!(take_frames(&mut conn).is_empty());
            }
        }
    }
}

#[test]
fn rfc6455_5_2_rsv_bits_without_extension_fail_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for rsv in 1..=7u8 {
            for frame in [
                Frame::text("hi"),
                Frame::binary("b"),
                Frame::ping("p"),
                Frame::close(1000, ""),
            ] {
                let frame = frame.rsv(rsv).to(role);
                let what = format!("{role:?} rsv {rsv:03b} {frame:?}");
                let mut conn = open(role, t0);
                let error = feed_expect_failure(&mut conn, &frame.encode(), t0, 1002, &what);
                assert_protocol_error(&error, 1002, &what);
            }
        }
    }
}

#[test]
fn rfc6455_5_2_reserved_opcodes_fail_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for opcode in (3..=7u8).chain(11..=15) {
            for payload in [&b""[..], b"abc"] {
                let frame = Frame::new(opcode, payload).to(role);
                let what = format!("{role:?} opcode {opcode} payload {payload:?}");
                let mut conn = open(role, t0);
                let error = feed_expect_failure(&mut conn, &frame.encode(), t0, 1002, &what);
                assert_protocol_error(&error, 1002, &what);
                // The same, with the header arriving one byte at a time.
                let mut conn = open(role, t0);
                for byte in &frame.encode() {
                    conn.receive_data(std::slice::from_ref(byte), t0);
                }
                let frames = take_frames(&mut conn);
                assert_failed_with(&mut conn, &frames, 1002, &format!("{what} bytewise"));
            }
        }
    }
}

#[test]
fn rfc6455_5_2_reserved_opcode_inside_a_fragmented_message_fails_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::text("a").fin(false).to(role).encode(), t0);
        let frame = Frame::new(0x3, "b").to(role);
        feed_expect_failure(&mut conn, &frame.encode(), t0, 1002, &format!("{role:?}"));
    }
}

/// RFC 6455 §5.2: "the most significant bit MUST be 0" in the 64-bit length. With the default
/// limits such a length is also over the message limit, so 1009 is acceptable too.
#[test]
fn rfc6455_5_2_64_bit_length_with_msb_set_fails_with_default_limits() {
    let t0 = Instant::now();
    for role in ROLES {
        for len in [1u64 << 63, u64::MAX] {
            let mut conn = open(role, t0);
            let header = Frame::binary("")
                .len_form(LenForm::Long)
                .to(role)
                .header(len);
            conn.receive_data(&header, t0);
            let frames = take_frames(&mut conn);
            let code = frames
                .iter()
                .find(|f| f.opcode == CLOSE)
                .and_then(Wire::close_code);
            assert!(
                matches!(code, Some(1002 | 1009)),
                "{role:?} len {len:#x}: expected a close frame with 1002, got {frames:?}"
            );
            assert_failed_with(&mut conn, &frames, code.unwrap(), "msb set");
        }
    }
}

/// Without a size limit, nothing but the RFC rejects a 64-bit length with its top bit set.
#[test]
fn rfc6455_5_2_64_bit_length_with_msb_set_fails_without_limits() {
    let t0 = Instant::now();
    for role in ROLES {
        for len in [1u64 << 63, u64::MAX] {
            let mut conn = Connection::new(role, unlimited(), t0);
            let header = Frame::binary("")
                .len_form(LenForm::Long)
                .to(role)
                .header(len);
            conn.receive_data(&header, t0);
            conn.receive_data(b"some payload bytes", t0);
            let frames = take_frames(&mut conn);
            let code = frames
                .iter()
                .find(|f| f.opcode == CLOSE)
                .and_then(Wire::close_code);
            assert!(
                matches!(code, Some(1002 | 1009)),
                "{role:?} max_message_size None, 64-bit length {len:#x}: §5.2 requires the \
                 most significant bit to be 0, expected a close frame with 1002; got output \
                 {frames:?}, state {:?}",
                conn.state()
            );
        }
    }
}

/// A continuation frame declaring a 64-bit length near 2^64 after some bytes of the message:
/// the size check must not overflow (a debug build would panic).
#[test]
fn rfc6455_5_2_huge_continuation_length_fails_without_overflow() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::binary("abc").fin(false).to(role).encode(), t0);
        let header = Frame::cont("")
            .len_form(LenForm::Long)
            .to(role)
            .header(u64::MAX);
        let result = catch_unwind(AssertUnwindSafe(|| conn.receive_data(&header, t0)));
        assert!(
            result.is_ok(),
            "{role:?}: receive_data panicked on a continuation frame with 64-bit length {:#x} \
             after 3 bytes of the message",
            u64::MAX
        );
        let frames = take_frames(&mut conn);
        let code = frames
            .iter()
            .find(|f| f.opcode == CLOSE)
            .and_then(Wire::close_code);
        assert!(matches!(code, Some(1002 | 1009)), "{frames:?}");
        // The inbox holds only what arrived before the failure: the first, unfinished frame.
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Binary, b"abc".to_vec(), false)],
            "{role:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// §5.4 fragmentation
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc6455_5_4_text_fragments_are_reassembled_into_one_message() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        let mut bytes = Frame::text("Hel").fin(false).to(role).encode();
        bytes.extend(Frame::cont("").fin(false).to(role).encode());
        bytes.extend(Frame::cont("lo, ").fin(false).to(role).encode());
        bytes.extend(Frame::cont("world").to(role).encode());
        // Fed one byte at a time: the message is whole only after the last byte.
        for (i, byte) in bytes.iter().enumerate() {
            conn.receive_data(std::slice::from_ref(byte), t0);
            assert_eq!(
                conn.inbox().has_message(),
                i == bytes.len() - 1,
                "{role:?}: after byte {i}"
            );
        }
        let events = take_events(&mut conn);
        assert!(events.is_empty(), "{role:?}: {events:?}");
        assert_eq!(
            messages(&mut conn),
            [(MessageKind::Text, b"Hello, world".to_vec())]
        );
        assert_inbox_empty(&conn, &format!("{role:?}"));
        assert!(take_frames(&mut conn).is_empty());
        assert_eq!(conn.state(), State::Open);
    }
}

#[test]
fn rfc6455_5_4_binary_fragments_are_reassembled_into_one_message() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        let mut bytes = Frame::binary([0xff, 0xfe]).fin(false).to(role).encode();
        bytes.extend(Frame::cont([0x00]).fin(false).to(role).encode());
        bytes.extend(Frame::cont(vec![0xc0; 300]).to(role).encode());
        // A second message right after, in the same read.
        bytes.extend(Frame::binary("next").to(role).encode());
        conn.receive_data(&bytes, t0);
        let mut expected = vec![0xff, 0xfe, 0x00];
        expected.extend(vec![0xc0; 300]);
        assert_eq!(
            messages(&mut conn),
            [
                (MessageKind::Binary, expected),
                (MessageKind::Binary, b"next".to_vec())
            ]
        );
    }
}

#[test]
fn rfc6455_5_4_ping_between_fragments_is_answered_and_the_message_arrives_whole() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::text("fragment ").fin(false).to(role).encode(), t0);
        conn.receive_data(&Frame::ping("mid-message").to(role).encode(), t0);
        let frames = take_frames(&mut conn);
        assert_eq!(frames.len(), 1, "{role:?}: pong sent at once: {frames:?}");
        assert_eq!(frames[0].opcode, PONG);
        assert_eq!(frames[0].payload, b"mid-message");
        conn.receive_data(&Frame::cont("one, ").fin(false).to(role).encode(), t0);
        // A pong and another ping, byte by byte, between fragments: the message is whole only
        // once the last byte of its final fragment is in.
        let mut bytes = Frame::pong("unsolicited").to(role).encode();
        bytes.extend(Frame::ping("").to(role).encode());
        bytes.extend(Frame::cont("two").to(role).encode());
        for (i, byte) in bytes.iter().enumerate() {
            conn.receive_data(std::slice::from_ref(byte), t0);
            assert_eq!(
                conn.inbox().has_message(),
                i == bytes.len() - 1,
                "{role:?}: after byte {i}"
            );
        }
        let frames = take_frames(&mut conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!((frames[0].opcode, frames[0].payload.len()), (PONG, 0));
        let events = take_events(&mut conn);
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(
            matches!(&events[0], Event::Ping(p) if p == b"mid-message"),
            "{events:?}"
        );
        assert!(
            matches!(&events[1], Event::Pong { data, acknowledged: None } if data == b"unsolicited"),
            "{events:?}"
        );
        assert!(
            matches!(&events[2], Event::Ping(p) if p.is_empty()),
            "{events:?}"
        );
        assert_eq!(
            messages(&mut conn),
            [(MessageKind::Text, b"fragment one, two".to_vec())]
        );
    }
}

#[test]
fn rfc6455_5_4_continuation_without_a_started_message_fails_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for fin in [true, false] {
            let mut conn = open(role, t0);
            let what = format!("{role:?} fin {fin}");
            let bytes = Frame::cont("orphan").fin(fin).to(role).encode();
            let error = feed_expect_failure(&mut conn, &bytes, t0, 1002, &what);
            assert_protocol_error(&error, 1002, &what);
        }
        // Also right after a complete message.
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::text("done").to(role).encode(), t0);
        let bytes = Frame::cont("orphan").to(role).encode();
        feed_expect_failure(&mut conn, &bytes, t0, 1002, "continuation after a message");
    }
}

#[test]
fn rfc6455_5_4_new_data_frame_inside_a_fragmented_message_fails_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for (first, second) in [
            (TEXT, TEXT),
            (TEXT, BINARY),
            (BINARY, TEXT),
            (BINARY, BINARY),
        ] {
            for second_fin in [true, false] {
                let mut conn = open(role, t0);
                let what = format!("{role:?} {first} then {second} fin {second_fin}");
                conn.receive_data(&Frame::new(first, "a").fin(false).to(role).encode(), t0);
                let bytes = Frame::new(second, "b").fin(second_fin).to(role).encode();
                let error = feed_expect_failure(&mut conn, &bytes, t0, 1002, &what);
                assert_protocol_error(&error, 1002, &what);
                let events = take_events(&mut conn);
                assert!(events.is_empty(), "{events:?}");
                // Only the first fragment, which arrived before the failure, is queued.
                let kind = if first == TEXT {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                assert_eq!(chunks(&mut conn), [(kind, b"a".to_vec(), false)], "{what}");
            }
        }
    }
}

#[test]
fn rfc6455_5_4_chunks_deliver_fragments_with_fin_only_on_the_last() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::binary([1, 2]).fin(false).to(role).encode(), t0);
        assert!(!conn.inbox().has_message());
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Binary, vec![1, 2], false)],
            "{role:?}: the first fragment is delivered before the message ends"
        );
        conn.receive_data(&Frame::ping("x").to(role).encode(), t0);
        assert!(
            chunks(&mut conn).is_empty(),
            "{role:?}: a ping queues no data"
        );
        conn.receive_data(&Frame::cont([3]).fin(false).to(role).encode(), t0);
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Binary, vec![3], false)],
            "{role:?}: a continuation keeps the message's type"
        );
        conn.receive_data(&Frame::cont([4, 5, 6]).to(role).encode(), t0);
        assert!(conn.inbox().has_message());
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Binary, vec![4, 5, 6], true)]
        );
        let events = take_events(&mut conn);
        assert!(
            matches!(events.as_slice(), [Event::Ping(p)] if p == b"x"),
            "{events:?}"
        );
        assert_inbox_empty(&conn, &format!("{role:?}"));

        // A single-frame text message is one chunk with fin set.
        conn.receive_data(&Frame::text("whole").to(role).encode(), t0);
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Text, b"whole".to_vec(), true)]
        );

        // Fragments taken only after several arrived are coalesced into one chunk, while
        // the chunk after the end of the message is a chunk of its own.
        conn.receive_data(&Frame::text("ab").fin(false).to(role).encode(), t0);
        conn.receive_data(&Frame::cont("cd").fin(false).to(role).encode(), t0);
        conn.receive_data(&Frame::cont("ef").to(role).encode(), t0);
        conn.receive_data(&Frame::binary("gh").fin(false).to(role).encode(), t0);
        assert_eq!(conn.inbox().len(), 2, "{role:?}");
        assert_eq!(
            chunks(&mut conn),
            [
                (MessageKind::Text, b"abcdef".to_vec(), true),
                (MessageKind::Binary, b"gh".to_vec(), false)
            ],
            "{role:?}"
        );
        // An empty non-final fragment queues nothing; an empty final one ends the message.
        conn.receive_data(&Frame::cont("").fin(false).to(role).encode(), t0);
        assert_inbox_empty(&conn, &format!("{role:?} empty non-final fragment"));
        conn.receive_data(&Frame::cont("").to(role).encode(), t0);
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Binary, Vec::new(), true)],
            "{role:?}"
        );
        // An empty message is a chunk of its own, too.
        conn.receive_data(&Frame::text("").to(role).encode(), t0);
        assert_eq!(messages(&mut conn), [(MessageKind::Text, Vec::new())]);
        assert_eq!(conn.state(), State::Open);
        // The only output is the pong answering the ping.
        let frames = take_frames(&mut conn);
        let sent: Vec<(u8, &[u8])> = frames
            .iter()
            .map(|f| (f.opcode, f.payload.as_slice()))
            .collect();
        assert_eq!(sent, [(PONG, &b"x"[..])], "{role:?}");
    }
}

/// Checks the chunks of one text message taken from the inbox: each valid UTF-8 (chunks end
/// on character boundaries), none empty but the last, fin on the last only, and together
/// the original text.
fn check_text_chunks(chunks: &[(MessageKind, Vec<u8>, bool)], original: &str, what: &str) {
    assert!(!chunks.is_empty(), "{what}: no chunks");
    let mut joined = Vec::new();
    for (i, (kind, data, fin)) in chunks.iter().enumerate() {
        assert_eq!(*kind, MessageKind::Text, "{what}");
        assert!(
            std::str::from_utf8(data).is_ok(),
            "{what}: chunk {i} is not valid UTF-8: {data:02x?} (all: {chunks:?})"
        );
        assert_eq!(
            *fin,
            i == chunks.len() - 1,
            "{what}: fin on chunk {i} of {chunks:?}"
        );
        assert!(
            *fin || !data.is_empty(),
            "{what}: empty non-final chunk {i} queued: {chunks:?}"
        );
        joined.extend_from_slice(data);
    }
    assert_eq!(joined, original.as_bytes(), "{what}");
}

#[test]
fn rfc6455_5_4_text_chunks_split_mid_character_end_on_character_boundaries() {
    let t0 = Instant::now();
    for role in ROLES {
        // "€" (e2 82 ac) split across frames in every way.
        for frames in [
            vec![&b"\xe2"[..], b"\x82\xac"],
            vec![b"\xe2\x82", b"\xac"],
            vec![b"\xe2", b"\x82", b"\xac"],
            vec![b"price: \xe2", b"\x82", b"\xac", b" only"],
        ] {
            let original: Vec<u8> = frames.concat();
            let original = String::from_utf8(original).unwrap();
            let mut conn = open(role, t0);
            let last = frames.len() - 1;
            let mut taken = Vec::new();
            for (i, payload) in frames.iter().enumerate() {
                let opcode = if i == 0 { TEXT } else { CONT };
                let frame = Frame::new(opcode, payload).fin(i == last).to(role);
                conn.receive_data(&frame.encode(), t0);
                // Taken after each frame, so that each frame's chunk is seen on its own.
                taken.extend(chunks(&mut conn));
            }
            check_text_chunks(&taken, &original, &format!("{role:?} {frames:?}"));
            assert_eq!(conn.state(), State::Open);
        }
        // Every 3-way split of a text mixing 1- to 4-byte characters.
        let text = "a€b κό 𝄞!";
        let bytes = text.as_bytes();
        for s1 in 0..=bytes.len() {
            for s2 in s1..=bytes.len() {
                let what = format!("{role:?} split {s1}/{s2}");
                let mut conn = open(role, t0);
                let mut taken = Vec::new();
                conn.receive_data(&Frame::text(&bytes[..s1]).fin(false).to(role).encode(), t0);
                taken.extend(chunks(&mut conn));
                conn.receive_data(
                    &Frame::cont(&bytes[s1..s2]).fin(false).to(role).encode(),
                    t0,
                );
                taken.extend(chunks(&mut conn));
                conn.receive_data(&Frame::cont(&bytes[s2..]).to(role).encode(), t0);
                taken.extend(chunks(&mut conn));
                check_text_chunks(&taken, text, &what);
                assert_eq!(conn.state(), State::Open, "{what}");
                // Taken together at the end, the same frames make one chunk.
                let mut conn = open(role, t0);
                conn.receive_data(&Frame::text(&bytes[..s1]).fin(false).to(role).encode(), t0);
                conn.receive_data(
                    &Frame::cont(&bytes[s1..s2]).fin(false).to(role).encode(),
                    t0,
                );
                conn.receive_data(&Frame::cont(&bytes[s2..]).to(role).encode(), t0);
                assert_eq!(
                    chunks(&mut conn),
                    [(MessageKind::Text, bytes.to_vec(), true)],
                    "{what}: coalesced"
                );
            }
        }
    }
}

#[test]
fn rfc6455_5_4_send_fragment_produces_a_fragmented_message() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.send_fragment(MessageKind::Text, b"one ", false)
            .unwrap();
        conn.send_ping(b"between", t0).unwrap();
        conn.send_fragment(MessageKind::Text, b"two ", false)
            .unwrap();
        conn.send_fragment(MessageKind::Text, b"three", true)
            .unwrap();
        conn.send_message(MessageKind::Binary, b"after").unwrap();
        let frames = take_frames(&mut conn);
        let summary: Vec<(u8, bool, &[u8])> = frames
            .iter()
            .map(|f| (f.opcode, f.fin, f.payload.as_slice()))
            .collect();
        assert_eq!(
            summary,
            [
                (TEXT, false, &b"one "[..]),
                (PING, true, b"between"),
                (CONT, false, b"two "),
                (CONT, true, b"three"),
                (BINARY, true, b"after"),
            ],
            "{role:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// §5.5 control frames
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc6455_5_5_control_frame_payload_over_125_bytes_fails_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for opcode in [PING, PONG, CLOSE] {
            let mut payload = vec![b'a'; 126];
            if opcode == CLOSE {
                payload[..2].copy_from_slice(&1000u16.to_be_bytes());
            }
            let what = format!("{role:?} opcode {opcode} with 126 bytes");
            let frame = Frame::new(opcode, &payload).to(role);
            // Fail on the header alone: the payload needs not be read.
            let mut conn = open(role, t0);
            let error = feed_expect_failure(&mut conn, &frame.header(126), t0, 1002, &what);
            assert_protocol_error(&error, 1002, &what);
            let mut conn = open(role, t0);
            feed_expect_failure(&mut conn, &frame.encode(), t0, 1002, &what);
        }
        // 125 bytes is fine.
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::ping(vec![7u8; 125]).to(role).encode(), t0);
        let frames = take_frames(&mut conn);
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0].opcode, frames[0].payload.clone()),
            (PONG, vec![7u8; 125])
        );
    }
}

#[test]
fn rfc6455_5_5_fragmented_control_frame_fails_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for frame in [Frame::ping("p"), Frame::pong("p"), Frame::close(1000, "")] {
            let frame = frame.fin(false).to(role);
            let what = format!("{role:?} {frame:?}");
            let mut conn = open(role, t0);
            let error = feed_expect_failure(&mut conn, &frame.encode(), t0, 1002, &what);
            assert_protocol_error(&error, 1002, &what);
        }
    }
}

#[test]
fn rfc6455_5_5_2_ping_is_answered_with_a_pong_carrying_the_same_payload() {
    let t0 = Instant::now();
    for role in ROLES {
        for payload in [vec![], b"ping!".to_vec(), (0..125u8).collect::<Vec<u8>>()] {
            let mut conn = open(role, t0);
            conn.receive_data(&Frame::ping(&payload).to(role).encode(), t0);
            let frames = take_frames(&mut conn);
            assert_eq!(frames.len(), 1, "{frames:?}");
            assert_eq!(frames[0].opcode, PONG);
            assert!(frames[0].fin);
            assert_eq!(frames[0].payload, payload, "{role:?}");
            let events = take_events(&mut conn);
            assert!(
                matches!(events.as_slice(), [Event::Ping(p)] if *p == payload),
                "{events:?}"
            );
            assert_eq!(conn.state(), State::Open);
        }
    }
}

/// The size of a control frame of ours carrying `len` bytes (at most 125): clients mask.
fn control_frame_len(role: Role, len: usize) -> usize {
    assert!(len <= 125);
    2 + if role == Role::Client { 4 } else { 0 } + len
}

/// (opcode, payload) of each frame, for comparing outputs.
fn summary(frames: &[Wire]) -> Vec<(u8, Vec<u8>)> {
    frames
        .iter()
        .map(|f| (f.opcode, f.payload.clone()))
        .collect()
}

/// RFC 6455 §5.5.3: "If an endpoint receives a Ping frame and has not yet sent Pong frame(s)
/// in response to previous Ping frame(s), the endpoint MAY elect to send a Pong frame for
/// only the most recently processed Ping frame." A flood of pings the driver has not written
/// the answers to yet costs one pong, with the latest payload; it goes out before a close.
#[test]
fn rfc6455_5_5_3_ping_flood_owes_a_bounded_number_of_pongs_ending_with_the_latest() {
    const PINGS: usize = 10_000;
    let t0 = Instant::now();
    let payload = |i: usize| format!("ping {i}").into_bytes();
    // After ping `i` with the output not taken: the first MAX_OWED_PONGS - 1 pings are owed
    // their pong, then the latest one.
    let owed = |i: usize| -> Vec<Vec<u8>> {
        let first = i.min(MAX_OWED_PONGS - 1);
        (0..first).chain([i]).map(payload).collect()
    };
    for role in ROLES {
        // What follows the flood: nothing, the peer's close frame, or our close().
        for ending in ["nothing", "peer close", "our close"] {
            for one_read in [false, true] {
                let what = format!("{role:?} then {ending}, all in one read {one_read}");
                let mut conn = open(role, t0);
                if one_read {
                    let bytes: Vec<u8> = (0..PINGS)
                        .flat_map(|i| Frame::ping(payload(i)).to(role).encode())
                        .collect();
                    conn.receive_data(&bytes, t0);
                } else {
                    for i in 0..PINGS {
                        conn.receive_data(&Frame::ping(payload(i)).to(role).encode(), t0);
                        // What is owed stops growing at MAX_OWED_PONGS pongs.
                        assert!(conn.has_output(), "{what}: after ping {i}");
                        let owed_len: usize = owed(i)
                            .iter()
                            .map(|p| control_frame_len(role, p.len()))
                            .sum();
                        assert_eq!(conn.output_len(), owed_len, "{what}: after ping {i}");
                    }
                }
                // Every ping is reported, in order.
                let events = take_events(&mut conn);
                assert_eq!(events.len(), PINGS, "{what}");
                for (i, event) in events.iter().enumerate() {
                    assert!(
                        matches!(event, Event::Ping(p) if *p == payload(i)),
                        "{what}: event {i} is {event:?}"
                    );
                }
                let expected_close = match ending {
                    "peer close" => {
                        conn.receive_data(&Frame::close(1000, "bye").to(role).encode(), t0);
                        Some(1000)
                    }
                    "our close" => {
                        conn.close(1001, "going", t0).unwrap();
                        Some(1001)
                    }
                    _ => None,
                };
                let frames = take_frames(&mut conn);
                let mut expected: Vec<_> = owed(PINGS - 1).into_iter().map(|p| (PONG, p)).collect();
                if let Some(code) = expected_close {
                    let mut close = u16::to_be_bytes(code).to_vec();
                    close.extend_from_slice(if code == 1000 { b"bye" } else { b"going" });
                    expected.push((CLOSE, close));
                }
                assert_eq!(
                    summary(&frames),
                    expected,
                    "{what}: the owed pongs, the last one for the latest ping, before the close"
                );
                assert!(!conn.has_output(), "{what}");
                // A ping after the output was taken is answered again; after the peer's close
                // frame, none is.
                if ending != "peer close" {
                    conn.receive_data(&Frame::ping("again").to(role).encode(), t0);
                    let frames = take_frames(&mut conn);
                    assert_eq!(
                        summary(&frames),
                        [(PONG, b"again".to_vec())],
                        "{what}: a later ping"
                    );
                } else {
                    conn.receive_data(&Frame::ping("late").to(role).encode(), t0);
                    assert!(!conn.has_output(), "{what}");
                    assert!(take_frames(&mut conn).is_empty(), "{what}");
                }
            }
        }
    }
}

/// The pong owed for a received ping is written by every way of taking the output, and is
/// counted as output meanwhile.
#[test]
fn rfc6455_5_5_2_owed_pong_is_written_by_every_output_accessor() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        assert!(!conn.has_output() && conn.output_len() == 0);
        // output() writes it, and consume_output() drops it once written.
        conn.receive_data(&Frame::ping("a").to(role).encode(), t0);
        assert!(conn.has_output(), "{role:?}");
        let owed = conn.output_len();
        assert_eq!(owed, control_frame_len(role, 1), "{role:?}");
        let frames = parse_wire(conn.output());
        check_sent_frames(role, &frames, false);
        assert_eq!(summary(&frames), [(PONG, b"a".to_vec())], "{role:?}");
        assert_eq!(conn.output().len(), owed, "{role:?}: written once");
        assert_eq!(conn.output_len(), owed, "{role:?}");
        conn.consume_output(owed);
        assert!(!conn.has_output(), "{role:?}");
        assert!(conn.take_output().is_empty(), "{role:?}: not written twice");

        // drain_output_into() writes it, into an empty buffer or after what is there.
        conn.receive_data(&Frame::ping("b").to(role).encode(), t0);
        let mut out = Vec::new();
        conn.drain_output_into(&mut out);
        assert_eq!(summary(&parse_wire(&out)), [(PONG, b"b".to_vec())]);
        conn.receive_data(&Frame::ping("c").to(role).encode(), t0);
        conn.drain_output_into(&mut out);
        assert_eq!(
            summary(&parse_wire(&out)),
            [(PONG, b"b".to_vec()), (PONG, b"c".to_vec())],
            "{role:?}"
        );
        assert!(!conn.has_output(), "{role:?}");

        // A message cannot be encoded in place ahead of an owed pong.
        conn.receive_data(&Frame::ping("d").to(role).encode(), t0);
        let frame_len = conn.message_frame_len(3);
        assert!(
            matches!(
                encode_in_place(&mut conn, MessageKind::Binary, b"abc", frame_len),
                Err(Error::Concurrency(_))
            ),
            "{role:?}: encoded in place while a pong is owed"
        );
        assert_eq!(
            summary(&take_frames(&mut conn)),
            [(PONG, b"d".to_vec())],
            "{role:?}"
        );
        encode_in_place(&mut conn, MessageKind::Binary, b"abc", frame_len).unwrap();

        // Queued output and an owed pong are counted together, and both are written.
        conn.receive_data(&Frame::ping("e").to(role).encode(), t0);
        conn.send_message(MessageKind::Text, b"msg").unwrap();
        assert_eq!(
            conn.output_len(),
            conn.message_frame_len(3) + control_frame_len(role, 1),
            "{role:?}"
        );
        let mut sent = summary(&take_frames(&mut conn));
        sent.sort();
        assert_eq!(
            sent,
            [(TEXT, b"msg".to_vec()), (PONG, b"e".to_vec())],
            "{role:?}"
        );
    }
}

#[test]
fn rfc6455_5_5_3_pong_answering_our_ping_reports_the_latency() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        let id = conn.send_ping(b"p1", t0).unwrap();
        let frames = take_frames(&mut conn);
        assert_eq!(
            (frames[0].opcode, frames[0].payload.as_slice()),
            (PING, &b"p1"[..])
        );
        let t1 = t0 + Duration::from_millis(250);
        conn.receive_data(&Frame::pong("p1").to(role).encode(), t1);
        let events = take_events(&mut conn);
        assert!(
            matches!(
                events.as_slice(),
                [Event::Pong { data, acknowledged: Some(ack) }]
                    if data == b"p1"
                        && *ack == PingAck { id, latency: Duration::from_millis(250) }
            ),
            "{role:?}: {events:?}"
        );
        assert_eq!(conn.latency(), Some(Duration::from_millis(250)));
        // The same pong again answers nothing.
        conn.receive_data(&Frame::pong("p1").to(role).encode(), t1);
        let events = take_events(&mut conn);
        assert!(
            matches!(
                events.as_slice(),
                [Event::Pong {
                    acknowledged: None,
                    ..
                }]
            ),
            "{events:?}"
        );
        // An unsolicited pong acknowledges nothing either.
        conn.receive_data(&Frame::pong("other").to(role).encode(), t1);
        let events = take_events(&mut conn);
        assert!(
            matches!(
                events.as_slice(),
                [Event::Pong {
                    acknowledged: None,
                    ..
                }]
            ),
            "{events:?}"
        );
        // A pong answers nothing and sends nothing.
        assert!(take_frames(&mut conn).is_empty());
    }
}

/// The acknowledgement of each Pong event, in order; any other event is a failure.
fn acknowledgements(events: &[Event]) -> Vec<Option<PingAck>> {
    events
        .iter()
        .map(|e| match e {
            Event::Pong { acknowledged, .. } => *acknowledged,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn rfc6455_5_5_3_each_outstanding_ping_is_acknowledged_by_its_pong() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut conn = open(Role::Server, t0);
    let a = conn.send_ping(b"A", t0).unwrap();
    let b = conn.send_ping(b"B", t0 + ms(100)).unwrap();
    assert_ne!(a, b, "each ping has its own id");
    // The pong for the earlier ping acknowledges it.
    conn.receive_data(&Frame::pong("A").to(Role::Server).encode(), t0 + ms(300));
    conn.receive_data(&Frame::pong("B").to(Role::Server).encode(), t0 + ms(400));
    let events = take_events(&mut conn);
    assert_eq!(
        acknowledgements(&events),
        [
            Some(PingAck {
                id: a,
                latency: ms(300)
            }),
            Some(PingAck {
                id: b,
                latency: ms(300)
            })
        ]
    );
}

#[test]
fn rfc6455_5_5_3_pong_for_a_later_ping_acknowledges_the_earlier_ones() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut conn = open(Role::Client, t0);
    conn.send_ping(b"A", t0).unwrap();
    let b = conn.send_ping(b"B", t0 + ms(100)).unwrap();
    conn.receive_data(&Frame::pong("B").encode(), t0 + ms(300));
    conn.receive_data(&Frame::pong("A").encode(), t0 + ms(400));
    let events = take_events(&mut conn);
    assert_eq!(
        acknowledgements(&events),
        [
            Some(PingAck {
                id: b,
                latency: ms(200)
            }),
            None
        ]
    );
}

/// RFC 6455 §5.5.3: a peer may answer only the latest of several pings, so a pong
/// acknowledges its ping and every one sent before it, and no later one. Two pings waiting
/// with the same payload could not be told apart: the second is refused.
#[test]
fn rfc6455_5_5_3_pong_acknowledges_earlier_pings_and_leaves_later_ones_pending() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    for role in ROLES {
        let mut conn = open(role, t0);
        let first = conn.send_ping(b"first", t0).unwrap();
        let second = conn.send_ping(b"second", t0 + ms(10)).unwrap();
        let third = conn.send_ping(b"third", t0 + ms(20)).unwrap();
        assert!(
            first < second && second < third,
            "{role:?}: ids increase: {first} {second} {third}"
        );
        // A payload already waiting for its pong is refused, and nothing is sent for it.
        assert!(
            matches!(
                conn.send_ping(b"second", t0 + ms(30)),
                Err(Error::Concurrency(_))
            ),
            "{role:?}: duplicate payload accepted"
        );
        let frames = take_frames(&mut conn);
        let pings: Vec<&[u8]> = frames.iter().map(|f| f.payload.as_slice()).collect();
        assert_eq!(pings, [&b"first"[..], b"second", b"third"], "{role:?}");
        assert!(frames.iter().all(|f| f.opcode == PING));

        // The peer answers the second only: the second is acknowledged, and the first with it.
        conn.receive_data(&Frame::pong("second").to(role).encode(), t0 + ms(100));
        let events = take_events(&mut conn);
        assert_eq!(
            acknowledgements(&events),
            [Some(PingAck {
                id: second,
                latency: ms(90)
            })],
            "{role:?}"
        );
        assert_eq!(conn.latency(), Some(ms(90)));
        // The first is no longer waiting: its pong arriving late acknowledges nothing, and
        // its payload may be used again.
        conn.receive_data(&Frame::pong("first").to(role).encode(), t0 + ms(110));
        assert_eq!(
            acknowledgements(&take_events(&mut conn)),
            [None],
            "{role:?}"
        );
        let again = conn.send_ping(b"first", t0 + ms(120)).unwrap();
        assert!(again > third, "{role:?}: a new id: {again} after {third}");
        // The third is still waiting: its payload is refused, its pong acknowledges it alone.
        assert!(matches!(
            conn.send_ping(b"third", t0 + ms(120)),
            Err(Error::Concurrency(_))
        ));
        conn.receive_data(&Frame::pong("third").to(role).encode(), t0 + ms(200));
        assert_eq!(
            acknowledgements(&take_events(&mut conn)),
            [Some(PingAck {
                id: third,
                latency: ms(180)
            })],
            "{role:?}"
        );
        // The ping sent after the third is still waiting, and is acknowledged by its own pong.
        conn.receive_data(&Frame::pong("first").to(role).encode(), t0 + ms(300));
        assert_eq!(
            acknowledgements(&take_events(&mut conn)),
            [Some(PingAck {
                id: again,
                latency: ms(180)
            })],
            "{role:?}"
        );
        // Nothing is waiting any more.
        conn.receive_data(&Frame::pong("third").to(role).encode(), t0 + ms(400));
        assert_eq!(
            acknowledgements(&take_events(&mut conn)),
            [None],
            "{role:?}"
        );
        take_frames(&mut conn);
    }
}

#[test]
fn limits_pings_waiting_for_a_pong_are_bounded() {
    let t0 = Instant::now();
    let mut conn = open(Role::Server, t0);
    let payload = |i: usize| (i as u32).to_be_bytes();
    let mut ids = Vec::new();
    for i in 0..MAX_PENDING_PINGS {
        ids.push(conn.send_ping(&payload(i), t0).unwrap());
    }
    assert!(
        matches!(
            conn.send_ping(&payload(MAX_PENDING_PINGS), t0),
            Err(Error::Concurrency(_))
        ),
        "ping {} accepted",
        MAX_PENDING_PINGS + 1
    );
    assert_eq!(take_frames(&mut conn).len(), MAX_PENDING_PINGS);
    // Answering the latest acknowledges them all, and pings can be sent again.
    let last = payload(MAX_PENDING_PINGS - 1);
    conn.receive_data(&Frame::pong(last).to(Role::Server).encode(), t0);
    let events = take_events(&mut conn);
    assert!(
        matches!(
            events.as_slice(),
            [Event::Pong { acknowledged: Some(ack), .. }] if ack.id == *ids.last().unwrap()
        ),
        "{events:?}"
    );
    conn.send_ping(&payload(0), t0).unwrap();
    conn.receive_data(&Frame::pong(payload(5)).to(Role::Server).encode(), t0);
    assert_eq!(acknowledgements(&take_events(&mut conn)), [None]);
}

#[test]
fn rfc6455_5_5_send_ping_and_pong_reject_payloads_over_125_bytes() {
    let t0 = Instant::now();
    let mut conn = open(Role::Client, t0);
    assert!(matches!(
        conn.send_ping(&[0; 126], t0),
        Err(Error::Config(_))
    ));
    assert!(matches!(conn.send_pong(&[0; 126]), Err(Error::Config(_))));
    assert!(conn.take_output().is_empty());
    conn.send_ping(&[0; 125], t0).unwrap();
    conn.send_pong(&[0; 125]).unwrap();
    assert_eq!(take_frames(&mut conn).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// §5.6 / §8.1 UTF-8
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc6455_8_1_invalid_utf8_text_fails_with_1007() {
    let t0 = Instant::now();
    for role in ROLES {
        for payload in [
            &b"\xff"[..],
            b"abc\xc0\xafdef",   // overlong
            b"\xed\xa0\x80",     // UTF-16 surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"valid \x80 continuation",
        ] {
            let mut conn = open(role, t0);
            let bytes = Frame::text(payload).to(role).encode();
            let what = format!("{role:?} {payload:02x?}");
            let error = feed_expect_failure(&mut conn, &bytes, t0, 1007, &what);
            assert_protocol_error(&error, 1007, &what);
            assert_inbox_empty(&conn, &what);
        }
        // Binary data needs not be UTF-8.
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::binary(b"\xff\xfe").to(role).encode(), t0);
        assert_eq!(
            messages(&mut conn),
            [(MessageKind::Binary, b"\xff\xfe".to_vec())]
        );
    }
}

/// Feeds `bytes` one at a time and returns the index of the byte after which a close frame
/// with `code` first appeared in the output.
fn byte_at_which_close_appears(
    conn: &mut Connection,
    bytes: &[u8],
    code: u16,
    t0: Instant,
) -> Option<usize> {
    for (i, byte) in bytes.iter().enumerate() {
        conn.receive_data(std::slice::from_ref(byte), t0);
        let frames = parse_wire(conn.output());
        if let Some(close) = frames.iter().find(|f| f.opcode == CLOSE) {
            assert_eq!(close.close_code(), Some(code));
            return Some(i);
        }
    }
    None
}

#[test]
fn rfc6455_8_1_invalid_byte_fails_as_soon_as_it_is_fed() {
    let t0 = Instant::now();
    for role in ROLES {
        // (payload, index of the first byte at which the text is known to be invalid)
        for (payload, bad_at) in [
            (&b"hello \xff world, and more text after it"[..], 6usize),
            (b"ok \xce then more", 4), // 0xce must be followed by a continuation byte
            (b"\xed\xa0\x80 surrogate", 1),
            (b"\xf4\x90\x80\x80 too high", 1),
            (b"abc\xe2\x82( bad third byte", 5),
        ] {
            let mut conn = open(role, t0);
            let frame = Frame::text(payload).to(role);
            let bytes = frame.encode();
            let header_len = bytes.len() - payload.len();
            let what = format!("{role:?} {payload:02x?}");
            let at = byte_at_which_close_appears(&mut conn, &bytes, 1007, t0);
            assert_eq!(
                at,
                Some(header_len + bad_at),
                "{what}: §8.1 the close frame must appear once the invalid byte is fed \
                 (frame of {} bytes)",
                bytes.len()
            );
            let frames = take_frames(&mut conn);
            assert_failed_with(&mut conn, &frames, 1007, &what);
            assert_inbox_empty(&conn, &what);
        }
        // In the second fragment of a message, before its final fragment arrives.
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::text("good start ").fin(false).to(role).encode(), t0);
        let bytes = Frame::cont(b"then \xc3\x28 bad")
            .fin(false)
            .to(role)
            .encode();
        let at = byte_at_which_close_appears(&mut conn, &bytes, 1007, t0);
        assert_eq!(
            at,
            Some(bytes.len() - b" bad".len() - 1),
            "{role:?} in a fragment"
        );
        // The inbox holds only the first fragment, which arrived before the failure.
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Text, b"good start ".to_vec(), false)],
            "{role:?} in a fragment"
        );
    }
}

#[test]
fn rfc6455_8_1_message_ending_with_an_incomplete_character_fails_with_1007() {
    let t0 = Instant::now();
    for role in ROLES {
        let what = format!("{role:?}");
        // A single frame.
        let mut conn = open(role, t0);
        let bytes = Frame::text(b"euro \xe2\x82").to(role).encode();
        let error = feed_expect_failure(&mut conn, &bytes, t0, 1007, &what);
        assert_protocol_error(&error, 1007, &what);
        assert_inbox_empty(&conn, &what);
        // Fragmented, with an empty final fragment.
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::text(b"\xf0\x9d").fin(false).to(role).encode(), t0);
        conn.receive_data(&Frame::cont(b"\x84").fin(false).to(role).encode(), t0);
        assert!(take_frames(&mut conn).is_empty(), "{what}: not yet invalid");
        // Nothing of the incomplete character is queued.
        assert_inbox_empty(&conn, &format!("{what}: before the final fragment"));
        let bytes = Frame::cont("").to(role).encode();
        let error = feed_expect_failure(&mut conn, &bytes, t0, 1007, &what);
        assert_protocol_error(&error, 1007, &what);
        assert_inbox_empty(&conn, &what);
    }
}

#[test]
fn rfc6455_8_1_valid_multibyte_text_split_across_frames_is_accepted() {
    let t0 = Instant::now();
    let text = "κόσμε € 𝄞";
    let bytes = text.as_bytes();
    for role in ROLES {
        // Every 2-way split, and one byte per frame.
        for split in 0..=bytes.len() {
            let mut conn = open(role, t0);
            conn.receive_data(
                &Frame::text(&bytes[..split]).fin(false).to(role).encode(),
                t0,
            );
            conn.receive_data(&Frame::cont(&bytes[split..]).to(role).encode(), t0);
            assert_eq!(
                messages(&mut conn),
                [(MessageKind::Text, bytes.to_vec())],
                "{role:?} split {split}"
            );
            assert!(take_frames(&mut conn).is_empty());
        }
        let mut conn = open(role, t0);
        let last = bytes.len() - 1;
        for (i, byte) in bytes.iter().enumerate() {
            let opcode = if i == 0 { TEXT } else { CONT };
            let frame = Frame::new(opcode, [*byte]).fin(i == last).to(role);
            conn.receive_data(&frame.encode(), t0);
        }
        assert_eq!(messages(&mut conn), [(MessageKind::Text, bytes.to_vec())]);
        assert_eq!(conn.state(), State::Open);
    }
}

// ---------------------------------------------------------------------------------------------
// §5.5.1 / §7 closing handshake and close codes
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc6455_7_4_1_valid_close_codes_are_echoed() {
    let t0 = Instant::now();
    for role in ROLES {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let what = format!("{role:?} code {code}");
            let mut conn = open(role, t0);
            conn.receive_data(&Frame::close(code, "reason ☃").to(role).encode(), t0);
            let frames = take_frames(&mut conn);
            assert_eq!(frames.len(), 1, "{what}: {frames:?}");
            assert_eq!(frames[0].close_code(), Some(code), "{what}: echoed code");
            let info = conn.close_info().clone();
            let rcvd = info.rcvd.clone().expect("close frame recorded");
            assert_eq!(
                (rcvd.code, rcvd.reason.as_str()),
                (code, "reason ☃"),
                "{what}"
            );
            assert_eq!(info.sent.map(|f| f.code), Some(code), "{what}");
            assert_eq!(info.rcvd_then_sent, Some(true), "{what}");
            let expected_state = match role {
                Role::Server => State::Closed,
                Role::Client => State::Closing,
            };
            assert_eq!(conn.state(), expected_state, "{what}");
        }
    }
}

#[test]
fn rfc6455_7_4_1_invalid_close_codes_fail_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let what = format!("{role:?} received close code {code}");
            let mut conn = open(role, t0);
            let bytes = Frame::close(code, "").to(role).encode();
            let error = feed_expect_failure(&mut conn, &bytes, t0, 1002, &what);
            assert_protocol_error(&error, 1002, &what);
        }
    }
}

#[test]
fn rfc6455_5_5_1_one_byte_close_payload_fails_with_1002() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        let bytes = Frame::new(CLOSE, [0x03]).to(role).encode();
        let what = format!("{role:?}");
        let error = feed_expect_failure(&mut conn, &bytes, t0, 1002, &what);
        assert_protocol_error(&error, 1002, &what);
    }
}

#[test]
fn rfc6455_5_5_1_close_reason_not_utf8_fails_with_1007() {
    let t0 = Instant::now();
    for role in ROLES {
        for reason in [&b"\xff"[..], b"bye \xe2\x82", b"\xed\xa0\x80"] {
            let mut conn = open(role, t0);
            let bytes = Frame::close(1000, reason).to(role).encode();
            let what = format!("{role:?} reason {reason:02x?}");
            let error = feed_expect_failure(&mut conn, &bytes, t0, 1007, &what);
            assert_protocol_error(&error, 1007, &what);
        }
    }
}

#[test]
fn rfc6455_5_5_1_empty_close_is_echoed_as_an_empty_close() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::new(CLOSE, "").to(role).encode(), t0);
        let frames = take_frames(&mut conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].opcode, CLOSE);
        assert!(frames[0].payload.is_empty(), "{role:?}: {frames:?}");
        let info = conn.close_info();
        assert_eq!(info.rcvd.as_ref().map(|f| f.code), Some(1005));
    }
}

#[test]
fn rfc6455_7_1_1_server_is_closed_after_the_close_exchange() {
    let t0 = Instant::now();
    let mut conn = open(Role::Server, t0);
    conn.receive_data(&Frame::text("last words").to(Role::Server).encode(), t0);
    conn.receive_data(&Frame::close(1000, "bye").to(Role::Server).encode(), t0);
    let frames = take_frames(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1000));
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.is_closed());
    // Nothing more happens: further input, EOF and timers emit nothing.
    conn.receive_data(&Frame::text("late").to(Role::Server).encode(), t0);
    conn.receive_eof();
    conn.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(conn.take_output().is_empty());
    assert_eq!(conn.next_deadline(), None);
    // Only the message that arrived before the close is queued.
    assert_eq!(
        messages(&mut conn),
        [(MessageKind::Text, b"last words".to_vec())]
    );
    assert_inbox_empty(&conn, "after Closed");
    let events = take_events(&mut conn);
    assert_eq!(events.len(), 1, "{events:?}");
    let (info, error) = closed_event(&events).expect("a Closed event");
    assert!(error.is_none(), "clean close: {error:?}");
    let rcvd = info.rcvd.as_ref().unwrap();
    assert_eq!((rcvd.code, rcvd.reason.as_str()), (1000, "bye"));
    assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1000));
    assert_eq!(info.rcvd_then_sent, Some(true));
    assert!(info.is_ok());
    assert!(matches!(
        conn.send_message(MessageKind::Text, b"x"),
        Err(Error::ConnectionClosed(_))
    ));
}

#[test]
fn rfc6455_7_1_1_client_waits_for_eof_after_the_close_exchange() {
    let t0 = Instant::now();
    let mut conn = open(Role::Client, t0);
    conn.receive_data(&Frame::close(1001, "going away").encode(), t0);
    let frames = take_frames(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].close_code(), Some(1001));
    assert_eq!(conn.state(), State::Closing);
    assert!(take_events(&mut conn).is_empty(), "no Closed before EOF");
    assert!(conn.next_deadline().is_some(), "the close timeout runs");
    conn.receive_eof();
    assert_eq!(conn.state(), State::Closed);
    let events = take_events(&mut conn);
    assert_eq!(events.len(), 1, "{events:?}");
    let (info, error) = closed_event(&events).unwrap();
    assert!(error.is_none(), "{error:?}");
    assert_eq!(info.rcvd.as_ref().map(|f| f.code), Some(1001));
    assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1001));
    assert!(info.is_ok());
    conn.receive_eof();
    conn.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(take_events(&mut conn).is_empty(), "Closed is emitted once");
}

#[test]
fn rfc6455_7_1_1_client_closes_at_the_close_timeout_without_eof() {
    let t0 = Instant::now();
    let config = ProtocolConfig {
        close_timeout: Some(Duration::from_secs(3)),
        ..quiet()
    };
    let mut conn = Connection::new(Role::Client, config, t0);
    let t1 = t0 + Duration::from_secs(5);
    conn.receive_data(&Frame::close(1000, "").encode(), t1);
    take_frames(&mut conn);
    let deadline = conn.next_deadline().expect("close timeout deadline");
    assert_eq!(deadline, t1 + Duration::from_secs(3));
    conn.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(conn.state(), State::Closing, "not before the deadline");
    conn.handle_timeout(deadline);
    assert_eq!(conn.state(), State::Closed);
    assert_eq!(conn.next_deadline(), None);
    let events = take_events(&mut conn);
    assert_eq!(events.len(), 1, "{events:?}");
    let (info, _) = closed_event(&events).unwrap();
    assert_eq!(info.rcvd.as_ref().map(|f| f.code), Some(1000));
    assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1000));
    conn.receive_eof();
    assert!(take_events(&mut conn).is_empty());
}

#[test]
fn rfc6455_7_1_2_we_start_the_closing_handshake() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.close(1000, "bye", t0).unwrap();
        let frames = take_frames(&mut conn);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].close_code(), Some(1000));
        assert_eq!(frames[0].close_reason(), b"bye");
        assert_eq!(conn.state(), State::Closing);
        assert!(
            conn.next_deadline().is_some(),
            "{role:?}: close timeout armed"
        );
        // A second close() sends nothing more.
        conn.close(1001, "", t0).unwrap();
        assert!(conn.take_output().is_empty());

        // Data received after our close frame is not delivered.
        conn.receive_data(&Frame::text("late").to(role).encode(), t0);
        conn.receive_data(&Frame::binary("late").fin(false).to(role).encode(), t0);
        conn.receive_data(&Frame::cont("r").to(role).encode(), t0);
        assert_inbox_empty(&conn, &format!("{role:?}: data queued after our close"));
        let events = take_events(&mut conn);
        assert!(events.is_empty(), "{role:?}: {events:?}");
        assert_eq!(conn.state(), State::Closing);

        // The peer's close completes the handshake; ours is not sent again.
        conn.receive_data(&Frame::close(1000, "ok").to(role).encode(), t0);
        let frames = take_frames(&mut conn);
        assert!(
            !frames.iter().any(|f| f.opcode == CLOSE),
            "{role:?}: second close frame sent: {frames:?}"
        );
        if role == Role::Client {
            assert_eq!(
                conn.state(),
                State::Closing,
                "the client waits for the TCP close"
            );
            assert!(take_events(&mut conn).is_empty());
            conn.receive_eof();
        }
        assert_eq!(conn.state(), State::Closed, "{role:?}");
        let events = take_events(&mut conn);
        let (info, error) = closed_event(&events).expect("Closed event");
        assert!(error.is_none(), "{role:?}: {error:?}");
        let sent = info.sent.as_ref().unwrap();
        assert_eq!((sent.code, sent.reason.as_str()), (1000, "bye"));
        let rcvd = info.rcvd.as_ref().unwrap();
        assert_eq!((rcvd.code, rcvd.reason.as_str()), (1000, "ok"));
        assert_eq!(info.rcvd_then_sent, Some(false));
        assert!(info.is_ok());
    }
}

#[test]
fn rfc6455_7_1_2_sending_after_close_is_connection_closed() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.close(1000, "", t0).unwrap();
        take_frames(&mut conn);
        assert!(matches!(
            conn.send_message(MessageKind::Text, b"x"),
            Err(Error::ConnectionClosed(_))
        ));
        assert!(matches!(
            conn.send_fragment(MessageKind::Binary, b"x", false),
            Err(Error::ConnectionClosed(_))
        ));
        assert!(matches!(
            conn.send_ping(b"", t0),
            Err(Error::ConnectionClosed(_))
        ));
        assert!(matches!(
            conn.send_pong(b""),
            Err(Error::ConnectionClosed(_))
        ));
        assert!(
            conn.take_output().is_empty(),
            "{role:?}: nothing sent after close"
        );
        // And once Closed.
        conn.receive_data(&Frame::close(1000, "").to(role).encode(), t0);
        conn.receive_eof();
        assert_eq!(conn.state(), State::Closed);
        assert!(matches!(
            conn.send_message(MessageKind::Binary, b"x"),
            Err(Error::ConnectionClosed(info)) if info.sent.is_some() && info.rcvd.is_some()
        ));
        assert!(matches!(
            conn.close(1000, "", t0),
            Err(Error::ConnectionClosed(_))
        ));
    }
}

#[test]
fn rfc6455_7_4_close_with_an_invalid_code_or_a_long_reason_is_a_config_error() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        for code in [0u16, 999, 1004, 1006, 1015, 1016, 2000, 2999, 5000] {
            assert!(
                matches!(conn.close(code, "", t0), Err(Error::Config(_))),
                "{role:?} close({code})"
            );
        }
        let long = "x".repeat(124);
        assert!(matches!(conn.close(1000, &long, t0), Err(Error::Config(_))));
        // 124 bytes in 62 two-byte characters.
        let long = "é".repeat(62);
        assert!(matches!(conn.close(1000, &long, t0), Err(Error::Config(_))));
        assert!(conn.take_output().is_empty());
        assert_eq!(conn.state(), State::Open);
        // 123 bytes is the most that fits a 125-byte control payload.
        let reason = "y".repeat(123);
        conn.close(4999, &reason, t0).unwrap();
        let frames = take_frames(&mut conn);
        assert_eq!(frames[0].payload.len(), 125);
        assert_eq!(frames[0].close_code(), Some(4999));
    }
}

/// A TLS peer may close TCP without `close_notify` once the close frames are exchanged: the
/// transport error that reports it ends the connection cleanly, as end of file would.
#[test]
fn rfc6455_7_1_1_transport_error_after_the_close_exchange_is_a_clean_end() {
    let t0 = Instant::now();
    let mut conn = open(Role::Client, t0);
    conn.close(4000, "bye", t0).unwrap();
    conn.receive_data(&Frame::close(4000, "bye").encode(), t0);
    let eof = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no close_notify");
    conn.receive_transport_error(Error::Io(eof));
    let events = take_events(&mut conn);
    let (info, error) = closed_event(&events).expect("Closed event");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(info.code(), 4000);
    // Before the peer's close frame, the same error is abnormal.
    let mut conn = open(Role::Client, t0);
    conn.close(4000, "bye", t0).unwrap();
    conn.receive_transport_error(Error::Io(std::io::Error::other("reset")));
    let events = take_events(&mut conn);
    assert!(closed_event(&events).expect("Closed event").1.is_some());
}

#[test]
fn rfc6455_7_1_5_eof_without_a_close_frame_is_abnormal_1006() {
    let t0 = Instant::now();
    for role in ROLES {
        for prefix in [
            Vec::new(),
            Frame::text("partial").fin(false).to(role).encode(),
        ] {
            let mut conn = open(role, t0);
            conn.receive_data(&prefix, t0);
            conn.receive_eof();
            assert_eq!(conn.state(), State::Closed);
            let events = take_events(&mut conn);
            let (info, error) = closed_event(&events).expect("Closed event");
            assert_eq!(info.rcvd, None);
            assert!(error.is_some(), "{role:?}: an abnormal closure is an error");
            assert_eq!(info.code(), 1006);
            assert!(!info.is_ok());
            conn.receive_eof();
            assert!(take_events(&mut conn).is_empty());
        }
        // EOF after our close but before the peer's is abnormal too.
        let mut conn = open(role, t0);
        conn.close(1000, "", t0).unwrap();
        conn.receive_eof();
        let events = take_events(&mut conn);
        let (info, error) = closed_event(&events).expect("Closed event");
        assert_eq!(info.rcvd, None);
        assert!(error.is_some(), "{role:?}: no close frame received");
        assert!(!info.is_ok());
    }
}

/// RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
/// response, unless it already received a Close frame". Having *sent* one is no exemption, and
/// §5.5.1 only forbids sending *data* frames after a close frame.
#[test]
fn rfc6455_5_5_2_ping_received_after_our_close_is_still_answered() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.close(1000, "bye", t0).unwrap();
        take_frames(&mut conn);
        conn.receive_data(&Frame::ping("still there?").to(role).encode(), t0);
        let frames = take_frames(&mut conn);
        assert_eq!(
            frames.len(),
            1,
            "{role:?}: after close() (state Closing, no close frame received) a ping must be \
             answered with a pong; output was {frames:?}"
        );
        assert_eq!(frames[0].opcode, PONG);
        assert_eq!(frames[0].payload, b"still there?");
    }
}

/// A control frame in the middle of a fragmented text message does not disturb the UTF-8
/// state of a character split across the fragments around it.
#[test]
fn rfc6455_5_4_ping_between_fragments_splitting_a_character() {
    let t0 = Instant::now();
    for role in ROLES {
        // Chunks taken after every frame, or the whole message at the end.
        for per_frame in [false, true] {
            let what = format!("{role:?} chunks per frame {per_frame}");
            let mut conn = open(role, t0);
            let mut taken = Vec::new();
            for bytes in [
                Frame::text(b"1 \xe2").fin(false).to(role).encode(),
                Frame::ping(b"\xac\xff").to(role).encode(),
                Frame::cont(b"\x82").fin(false).to(role).encode(),
                Frame::pong(b"\x80").to(role).encode(),
                Frame::cont(b"\xac euro").to(role).encode(),
            ] {
                conn.receive_data(&bytes, t0);
                if per_frame {
                    taken.extend(chunks(&mut conn));
                }
            }
            let frames = take_frames(&mut conn);
            assert_eq!(frames.len(), 1, "{what}: only the pong: {frames:?}");
            assert_eq!(frames[0].opcode, PONG);
            assert_eq!(frames[0].payload, b"\xac\xff", "{what}");
            let events = take_events(&mut conn);
            assert_eq!(events.len(), 2, "{what}: the ping and the pong: {events:?}");
            if per_frame {
                check_text_chunks(&taken, "1 € euro", &what);
                assert_eq!(taken.len(), 2, "{what}: {taken:?}");
            } else {
                assert_eq!(
                    messages(&mut conn),
                    [(MessageKind::Text, "1 € euro".as_bytes().to_vec())],
                    "{what}"
                );
            }
            assert_inbox_empty(&conn, &what);
        }
    }
}

/// A protocol error after we sent our close frame still fails the connection at once
/// (RFC 6455 §7.1.7), without a second close frame.
#[test]
fn rfc6455_7_1_7_protocol_error_while_closing_ends_the_connection() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.close(1000, "bye", t0).unwrap();
        take_frames(&mut conn);
        conn.receive_data(&Frame::new(0x3, "").to(role).encode(), t0);
        let frames = take_frames(&mut conn);
        assert!(
            !frames.iter().any(|f| f.opcode == CLOSE),
            "{role:?}: second close frame: {frames:?}"
        );
        assert_eq!(conn.state(), State::Closed, "{role:?}");
        let events = take_events(&mut conn);
        let (info, error) = closed_event(&events).expect("Closed event");
        assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1000));
        assert_eq!(info.rcvd, None);
        assert_protocol_error(error.expect("an error"), 1002, &format!("{role:?}"));
    }
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

fn assert_payload_too_big(error: &Error, what: &str) {
    assert!(
        matches!(error, Error::PayloadTooBig(_)),
        "{what}: expected Error::PayloadTooBig, got {error:?}"
    );
}

#[test]
fn limits_max_message_size_exceeded_by_one_frame_header_closes_with_1009() {
    let t0 = Instant::now();
    for role in ROLES {
        let config = ProtocolConfig {
            max_message_size: Some(1000),
            ..quiet()
        };
        for (len, form) in [
            (1001u64, LenForm::Medium),
            (1 << 20, LenForm::Long),
            (1 << 40, LenForm::Long),
        ] {
            let what = format!("{role:?} len {len}");
            let mut conn = Connection::new(role, config.clone(), t0);
            // The header alone: no payload byte is fed.
            let header = Frame::text("").len_form(form).to(role).header(len);
            let error = feed_expect_failure(&mut conn, &header, t0, 1009, &what);
            assert_payload_too_big(&error, &what);
            assert_inbox_empty(&conn, &what);
        }
        // Exactly at the limit is fine.
        let mut conn = Connection::new(role, config.clone(), t0);
        conn.receive_data(&Frame::binary(vec![0u8; 1000]).to(role).encode(), t0);
        assert_eq!(conn.state(), State::Open);
        assert!(take_frames(&mut conn).is_empty());
        assert_eq!(
            messages(&mut conn),
            [(MessageKind::Binary, vec![0u8; 1000])]
        );
    }
}

#[test]
fn limits_max_message_size_exceeded_across_fragments_closes_with_1009() {
    let t0 = Instant::now();
    for role in ROLES {
        let config = ProtocolConfig {
            max_message_size: Some(100),
            ..quiet()
        };
        let what = format!("{role:?}");
        let mut conn = Connection::new(role, config.clone(), t0);
        for i in 0..3 {
            let opcode = if i == 0 { TEXT } else { CONT };
            let frame = Frame::new(opcode, "a".repeat(30)).fin(false).to(role);
            conn.receive_data(&frame.encode(), t0);
            conn.receive_data(&Frame::ping("").to(role).encode(), t0);
        }
        // 90 bytes so far; 11 more exceed the limit, on the header alone.
        let header = Frame::cont("").to(role).header(11);
        let error = feed_expect_failure(&mut conn, &header, t0, 1009, &what);
        assert_payload_too_big(&error, &what);
        // The inbox holds what arrived before the failure: 90 bytes of an unfinished message.
        assert_eq!(
            chunks(&mut conn),
            [(MessageKind::Text, "a".repeat(90).into_bytes(), false)],
            "{what}"
        );
        // 10 more make exactly 100, which is fine; and the next message starts from 0.
        let mut conn = Connection::new(role, config, t0);
        for i in 0..3 {
            let opcode = if i == 0 { TEXT } else { CONT };
            let frame = Frame::new(opcode, "a".repeat(30)).fin(false).to(role);
            conn.receive_data(&frame.encode(), t0);
        }
        conn.receive_data(&Frame::cont("b".repeat(10)).to(role).encode(), t0);
        conn.receive_data(&Frame::text("c".repeat(100)).to(role).encode(), t0);
        assert_eq!(conn.state(), State::Open, "{what}");
        assert!(take_frames(&mut conn).is_empty(), "{what}");
        let first = "a".repeat(90) + &"b".repeat(10);
        assert_eq!(
            messages(&mut conn),
            [
                (MessageKind::Text, first.into_bytes()),
                (MessageKind::Text, "c".repeat(100).into_bytes())
            ],
            "{what}"
        );
    }
}

#[test]
fn limits_max_frame_size_closes_with_1009() {
    let t0 = Instant::now();
    for role in ROLES {
        let config = ProtocolConfig {
            max_frame_size: Some(64),
            max_message_size: None,
            ..quiet()
        };
        let what = format!("{role:?}");
        // Frames of at most 64 bytes make a message of any size.
        let mut conn = Connection::new(role, config.clone(), t0);
        for _ in 0..10 {
            conn.receive_data(
                &Frame::binary(vec![1u8; 64]).fin(false).to(role).encode(),
                t0,
            );
            conn.receive_data(&Frame::cont(vec![2u8; 64]).fin(false).to(role).encode(), t0);
            conn.receive_data(&Frame::cont("").to(role).encode(), t0);
        }
        let mut expected = vec![1u8; 64];
        expected.extend([2u8; 64]);
        assert_eq!(
            messages(&mut conn),
            vec![(MessageKind::Binary, expected); 10],
            "{what}"
        );
        // One 65-byte frame does not, be it first or a continuation.
        let header = Frame::binary("").to(role).header(65);
        let error = feed_expect_failure(&mut conn, &header, t0, 1009, &what);
        assert_payload_too_big(&error, &what);
        let mut conn = Connection::new(role, config, t0);
        conn.receive_data(&Frame::text("x").fin(false).to(role).encode(), t0);
        let header = Frame::cont("").to(role).header(65);
        let error = feed_expect_failure(&mut conn, &header, t0, 1009, &what);
        assert_payload_too_big(&error, &what);
    }
}

/// The frames of one message of `count` frames (`count` >= 1), payloads from `payload`.
fn message_frames(
    role: Role,
    opcode: u8,
    count: usize,
    payload: impl Fn(usize) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let op = if i == 0 { opcode } else { CONT };
            Frame::new(op, payload(i))
                .fin(i == count - 1)
                .to(role)
                .encode()
        })
        .collect()
}

#[test]
fn limits_max_fragments_exceeded_closes_with_1009() {
    const LIMIT: usize = 50;
    let t0 = Instant::now();
    let config = ProtocolConfig {
        max_fragments: Some(LIMIT),
        ..quiet()
    };
    let byte = |i: usize| vec![b'a' + (i % 26) as u8];
    let whole: Vec<u8> = (0..LIMIT).flat_map(byte).collect();
    for role in ROLES {
        let what = format!("{role:?} limit {LIMIT}");
        // Exactly LIMIT frames arrive whole, twice in a row (the count starts again for each
        // message), with pings between the frames (control frames are not fragments).
        let mut conn = Connection::new(role, config.clone(), t0);
        for _ in 0..2 {
            for frame in message_frames(role, TEXT, LIMIT, byte) {
                conn.receive_data(&frame, t0);
                conn.receive_data(&Frame::ping("").to(role).encode(), t0);
            }
        }
        assert_eq!(conn.state(), State::Open, "{what}");
        assert_eq!(
            messages(&mut conn),
            vec![(MessageKind::Text, whole.clone()); 2],
            "{what}"
        );
        assert!(
            take_frames(&mut conn).iter().all(|f| f.opcode == PONG),
            "{what}"
        );

        // LIMIT + 1 frames fail with 1009 on the header of the extra frame, be they data or
        // empty, the extra one final or not.
        for (empty, extra_fin) in [(false, true), (false, false), (true, true)] {
            let what = format!("{what} empty frames {empty}, extra frame fin {extra_fin}");
            let payload = |i: usize| if empty { Vec::new() } else { byte(i) };
            let mut conn = Connection::new(role, config.clone(), t0);
            let frames = message_frames(role, BINARY, LIMIT + 1, payload);
            for frame in &frames[..LIMIT] {
                conn.receive_data(frame, t0);
            }
            assert_eq!(conn.state(), State::Open, "{what}");
            assert!(!conn.has_output(), "{what}");
            let header = Frame::cont("").fin(extra_fin).to(role).header(1);
            let error = feed_expect_failure(&mut conn, &header, t0, 1009, &what);
            assert_payload_too_big(&error, &what);
            // The inbox holds only what arrived before: the first LIMIT frames, unfinished.
            let expected: Vec<(MessageKind, Vec<u8>, bool)> = if empty {
                Vec::new()
            } else {
                vec![(MessageKind::Binary, whole.clone(), false)]
            };
            assert_eq!(chunks(&mut conn), expected, "{what}");
            // Nothing is queued after the failure.
            conn.receive_data(&Frame::cont("more").to(role).encode(), t0);
            conn.receive_data(&Frame::text("next").to(role).encode(), t0);
            assert_inbox_empty(&conn, &what);
        }

        // A limit of 1 allows unfragmented messages only.
        let one = ProtocolConfig {
            max_fragments: Some(1),
            ..quiet()
        };
        let mut conn = Connection::new(role, one.clone(), t0);
        conn.receive_data(&Frame::binary("single").to(role).encode(), t0);
        assert_eq!(
            messages(&mut conn),
            [(MessageKind::Binary, b"single".to_vec())]
        );
        conn.receive_data(&Frame::binary("one").fin(false).to(role).encode(), t0);
        let bytes = Frame::cont("two").to(role).encode();
        feed_expect_failure(&mut conn, &bytes, t0, 1009, &format!("{role:?} limit 1"));

        // No limit: many frames are fine.
        let unlimited = ProtocolConfig {
            max_fragments: None,
            ..quiet()
        };
        let mut conn = Connection::new(role, unlimited, t0);
        let bytes: Vec<u8> = message_frames(role, BINARY, 3 * LIMIT, byte).concat();
        conn.receive_data(&bytes, t0);
        assert_eq!(conn.state(), State::Open, "{role:?} no limit");
        assert_eq!(messages(&mut conn).len(), 1, "{role:?} no limit");
    }
}

#[test]
fn limits_max_fragments_default_allows_100000_frames_and_refuses_more() {
    assert_eq!(DEFAULT_MAX_FRAGMENTS, 100_000);
    assert_eq!(
        ProtocolConfig::default().max_fragments,
        Some(DEFAULT_MAX_FRAGMENTS)
    );
    let t0 = Instant::now();
    let byte = |i: usize| vec![i as u8];
    for role in ROLES {
        let frames = message_frames(role, BINARY, DEFAULT_MAX_FRAGMENTS + 1, byte);
        // Exactly the default number of frames: the message of the first ones, ended.
        let mut conn = open(role, t0);
        let mut bytes = frames[..DEFAULT_MAX_FRAGMENTS - 1].concat();
        bytes.extend(Frame::cont([0xee]).to(role).encode());
        conn.receive_data(&bytes, t0);
        assert_eq!(conn.state(), State::Open, "{role:?}");
        let (kind, data) = conn.pop_message().expect("the message");
        assert_eq!(
            (kind, data.len(), data[1], data[DEFAULT_MAX_FRAGMENTS - 1]),
            (MessageKind::Binary, DEFAULT_MAX_FRAGMENTS, 1, 0xee),
            "{role:?}"
        );
        // One more frame fails with 1009.
        let mut conn = open(role, t0);
        let error =
            feed_expect_failure(&mut conn, &frames.concat(), t0, 1009, &format!("{role:?}"));
        assert_payload_too_big(&error, &format!("{role:?}"));
    }
}

/// Empty non-final fragments queue nothing, so a message of very many of them costs no
/// memory in the inbox until its final frame.
#[test]
fn limits_empty_continuation_frames_queue_nothing_until_the_final_frame() {
    const EMPTY: usize = 100_000;
    let t0 = Instant::now();
    let config = ProtocolConfig {
        max_fragments: Some(2 * EMPTY),
        ..quiet()
    };
    for role in ROLES {
        for last in [&b"end"[..], b""] {
            let what = format!("{role:?} final fragment {last:?}");
            let mut conn = Connection::new(role, config.clone(), t0);
            conn.receive_data(&Frame::text("").fin(false).to(role).encode(), t0);
            let empty = Frame::cont("").fin(false).to(role).encode();
            for i in 0..EMPTY {
                conn.receive_data(&empty, t0);
                let inbox = conn.inbox();
                assert_eq!(
                    (
                        inbox.len(),
                        inbox.charged_bytes(),
                        inbox.is_empty(),
                        inbox.has_message()
                    ),
                    (0, 0, true, false),
                    "{what}: (len, charged, empty, has message) after empty frame {i}"
                );
            }
            assert_eq!(conn.state(), State::Open, "{what}");
            assert!(!conn.has_output(), "{what}");
            conn.receive_data(&Frame::cont(last).to(role).encode(), t0);
            assert_eq!(conn.inbox().len(), 1, "{what}");
            assert_eq!(
                conn.inbox().charged_bytes(),
                last.len() + CHUNK_OVERHEAD,
                "{what}"
            );
            assert!(conn.inbox().has_message(), "{what}");
            assert_eq!(
                messages(&mut conn),
                [(MessageKind::Text, last.to_vec())],
                "{what}"
            );
            assert_inbox_empty(&conn, &what);
        }
    }
}

/// The fragments of one message join one chunk in the inbox, so that many tiny frames cost
/// one queued item; taken whole or as a chunk, the message comes out entire.
#[test]
fn limits_one_byte_fragments_are_coalesced_into_one_chunk() {
    const FRAMES: usize = 10_000;
    let t0 = Instant::now();
    // 10 bytes of 1- to 4-byte characters, so that most frames end inside a character.
    let text = "aé€𝄞".repeat(FRAMES / 10);
    let binary: Vec<u8> = (0..FRAMES).map(|i| (i % 251) as u8).collect();
    for role in ROLES {
        for (kind, opcode, bytes) in [
            (MessageKind::Binary, BINARY, binary.as_slice()),
            (MessageKind::Text, TEXT, text.as_bytes()),
        ] {
            assert_eq!(bytes.len(), FRAMES);
            // What can be queued before the final frame: text up to its last whole character.
            let before_last = match kind {
                MessageKind::Binary => FRAMES - 1,
                MessageKind::Text => match std::str::from_utf8(&bytes[..FRAMES - 1]) {
                    Ok(_) => FRAMES - 1,
                    Err(e) => e.valid_up_to(),
                },
            };
            for by_chunk in [false, true] {
                let what = format!("{role:?} {kind:?} taken as a chunk {by_chunk}");
                let mut conn = open(role, t0);
                let frames = message_frames(role, opcode, FRAMES, |i| vec![bytes[i]]);
                for (i, frame) in frames.iter().enumerate() {
                    conn.receive_data(frame, t0);
                    assert!(
                        conn.inbox().len() <= 1,
                        "{what}: {} chunks after frame {i}",
                        conn.inbox().len()
                    );
                    assert_eq!(
                        conn.inbox().has_message(),
                        i == FRAMES - 1,
                        "{what}: after frame {i}"
                    );
                    if i == FRAMES - 2 {
                        assert_eq!(
                            conn.inbox().charged_bytes(),
                            before_last + CHUNK_OVERHEAD,
                            "{what}: before the final frame"
                        );
                    }
                }
                assert_eq!(conn.state(), State::Open, "{what}");
                assert_eq!(conn.inbox().len(), 1, "{what}: one chunk");
                assert_eq!(
                    conn.inbox().charged_bytes(),
                    FRAMES + CHUNK_OVERHEAD,
                    "{what}"
                );
                if by_chunk {
                    assert_eq!(chunks(&mut conn), [(kind, bytes.to_vec(), true)], "{what}");
                } else {
                    assert_eq!(messages(&mut conn), [(kind, bytes.to_vec())], "{what}");
                }
                assert_inbox_empty(&conn, &what);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keepalive and the close timeout
// ---------------------------------------------------------------------------------------------

fn keepalive() -> ProtocolConfig {
    ProtocolConfig {
        ping_interval: Some(Duration::from_secs(1)),
        ping_timeout: Some(Duration::from_secs(1)),
        ..ProtocolConfig::default()
    }
}

/// Runs the keepalive timer at t0+1s and returns the ping it sent.
fn keepalive_ping(conn: &mut Connection, t0: Instant) -> Vec<u8> {
    assert_eq!(conn.next_deadline(), Some(t0 + Duration::from_secs(1)));
    conn.handle_timeout(t0 + Duration::from_millis(999));
    assert!(conn.take_output().is_empty(), "no ping before the interval");
    conn.handle_timeout(t0 + Duration::from_secs(1));
    let frames = take_frames(conn);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].opcode, PING);
    frames[0].payload.clone()
}

#[test]
fn keepalive_answered_ping_cancels_the_timeout() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    for role in ROLES {
        let mut conn = Connection::new(role, keepalive(), t0);
        let payload = keepalive_ping(&mut conn, t0);
        assert_eq!(conn.next_deadline(), Some(t0 + s(2)));
        let t1 = t0 + Duration::from_millis(1400);
        conn.receive_data(&Frame::pong(&payload).to(role).encode(), t1);
        let events = take_events(&mut conn);
        assert!(
            matches!(
                events.as_slice(),
                [Event::Pong { acknowledged: Some(PingAck { latency, .. }), .. }]
                    if *latency == Duration::from_millis(400)
            ),
            "{role:?}: {events:?}"
        );
        // At t0+2s the next keepalive ping goes out, and no close.
        assert_eq!(conn.next_deadline(), Some(t0 + s(2)));
        conn.handle_timeout(t0 + s(2));
        let frames = take_frames(&mut conn);
        assert_eq!(conn.state(), State::Open, "{role:?}: {frames:?}");
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0].opcode, PING, "{role:?}: {frames:?}");
        assert!(take_events(&mut conn).is_empty());
    }
}

#[test]
fn keepalive_unanswered_ping_closes_with_1011_at_the_timeout() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    for role in ROLES {
        for answer in [None, Some(b"wrong".to_vec())] {
            let what = format!("{role:?} answer {answer:?}");
            let mut conn = Connection::new(role, keepalive(), t0);
            keepalive_ping(&mut conn, t0);
            if let Some(wrong) = &answer {
                conn.receive_data(&Frame::pong(wrong).to(role).encode(), t0 + s(1));
                take_events(&mut conn);
            }
            let deadline = conn.next_deadline().expect("ping timeout");
            assert_eq!(deadline, t0 + s(2), "{what}");
            conn.handle_timeout(deadline - Duration::from_millis(1));
            assert_eq!(conn.state(), State::Open, "{what}");
            assert!(conn.take_output().is_empty(), "{what}");
            conn.handle_timeout(deadline);
            let frames = take_frames(&mut conn);
            let error = assert_failed_with(&mut conn, &frames, 1011, &what);
            assert!(matches!(error, Error::Timeout(_)), "{what}: {error:?}");
            assert_eq!(conn.next_deadline(), None, "{what}");
        }
    }
}

#[test]
fn keepalive_disabled_has_no_deadline() {
    let t0 = Instant::now();
    for role in ROLES {
        let config = ProtocolConfig {
            ping_interval: None,
            ping_timeout: Some(Duration::from_secs(1)),
            ..ProtocolConfig::default()
        };
        let mut conn = Connection::new(role, config, t0);
        assert_eq!(conn.next_deadline(), None);
        conn.handle_timeout(t0 + Duration::from_secs(3600));
        assert!(conn.take_output().is_empty());
        assert_eq!(conn.state(), State::Open);
        // A user ping is not timed out.
        conn.send_ping(b"u", t0).unwrap();
        assert_eq!(conn.next_deadline(), None);
    }
}

#[test]
fn rfc6455_7_1_1_close_timeout_without_an_answer_ends_the_connection() {
    let t0 = Instant::now();
    for role in ROLES {
        let config = ProtocolConfig {
            close_timeout: Some(Duration::from_secs(5)),
            ..quiet()
        };
        let mut conn = Connection::new(role, config, t0);
        let t1 = t0 + Duration::from_secs(1);
        conn.close(1000, "", t1).unwrap();
        take_frames(&mut conn);
        let deadline = conn.next_deadline().expect("close deadline");
        assert_eq!(deadline, t1 + Duration::from_secs(5));
        conn.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(conn.state(), State::Closing);
        conn.handle_timeout(deadline);
        assert_eq!(conn.state(), State::Closed, "{role:?}");
        assert!(conn.take_output().is_empty(), "our close was already sent");
        let events = take_events(&mut conn);
        let (info, error) = closed_event(&events).expect("Closed event");
        assert_eq!(info.rcvd, None);
        assert_eq!(info.sent.as_ref().map(|f| f.code), Some(1000));
        assert!(
            matches!(error, Some(Error::Timeout(_))),
            "{role:?}: {error:?}"
        );
        assert_eq!(conn.next_deadline(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

/// xorshift64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn random_config(rng: &mut Rng) -> ProtocolConfig {
    ProtocolConfig {
        max_message_size: [None, Some(1 << 20), Some(64)][rng.below(3) as usize],
        max_frame_size: [None, None, Some(100)][rng.below(3) as usize],
        max_fragments: [
            None,
            Some(DEFAULT_MAX_FRAGMENTS),
            Some(DEFAULT_MAX_FRAGMENTS),
            Some(3),
        ][rng.below(4) as usize],
        ..quiet()
    }
}

/// What a receiver took from the inbox, put back together into messages.
#[derive(Default)]
struct Taken {
    /// The message being put together from chunks.
    current: Option<(MessageKind, Vec<u8>)>,
    /// Whole messages.
    messages: Vec<(MessageKind, Vec<u8>)>,
    /// Items taken (chunks and messages).
    count: usize,
}

impl Taken {
    /// Adds a chunk (a whole message is a chunk with fin); an error describes what is wrong.
    fn add(&mut self, kind: MessageKind, data: Vec<u8>, fin: bool) -> Result<(), String> {
        self.count += 1;
        if kind == MessageKind::Text && std::str::from_utf8(&data).is_err() {
            return Err(format!("invalid UTF-8 in a text chunk: {data:02x?}"));
        }
        if !fin && data.is_empty() {
            return Err("empty non-final chunk queued".into());
        }
        let (current_kind, mut whole) = self.current.take().unwrap_or((kind, Vec::new()));
        if current_kind != kind {
            return Err(format!(
                "chunk of {kind:?} continues a {current_kind:?} message"
            ));
        }
        whole.extend_from_slice(&data);
        if fin {
            if kind == MessageKind::Text && std::str::from_utf8(&whole).is_err() {
                return Err(format!("invalid UTF-8 in a text message: {whole:02x?}"));
            }
            self.messages.push((kind, whole));
        } else {
            self.current = Some((kind, whole));
        }
        Ok(())
    }

    /// Takes from the inbox: nothing (0), whole messages (1) or chunks (2).
    fn take(&mut self, conn: &mut Connection, how: u8) -> Result<(), String> {
        match how {
            1 => {
                while let Some((kind, data)) = conn.pop_message() {
                    self.add(kind, data, true)?;
                }
            }
            2 => {
                while let Some(Chunk { kind, data, fin }) = conn.pop_chunk() {
                    self.add(kind, data, fin)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Feeds `input` in random pieces, taking received data in random ways in between, and
/// checks the invariants: no panic; every output frame well formed; at most one Closed event,
/// last; no data events; text taken as valid UTF-8, chunk by chunk and whole; nothing queued
/// once the connection stopped being open; and either Open or a close frame sent. Returns
/// whether any data was taken, or a description of the failure.
fn run_case(
    role: Role,
    config: ProtocolConfig,
    input: &[u8],
    rng: &mut Rng,
) -> Result<bool, String> {
    let t0 = Instant::now();
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let n = (1 + rng.below(rest.len() as u64 + 8) as usize).min(rest.len());
        pieces.push((n, rng.below(3) as u8));
        rest = &rest[n..];
    }
    let describe = |why: &str| {
        format!(
            "{why}\n  role {role:?} config {config:?}\n  input ({} bytes) {input:02x?}\n  \
             pieces (length, how data is taken) {pieces:?}",
            input.len()
        )
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut conn = Connection::new(role, config.clone(), t0);
        let mut output = Vec::new();
        let mut events = Vec::new();
        let mut taken = Taken::default();
        let mut offset = 0;
        for &(n, how) in &pieces {
            let before = (conn.state(), conn.inbox().arrivals());
            conn.receive_data(&input[offset..offset + n], t0);
            offset += n;
            if before.0 != State::Open && conn.inbox().arrivals() != before.1 {
                return Err(format!(
                    "data queued in state {:?}, after piece at {}",
                    before.0,
                    offset - n
                ));
            }
            output.extend(conn.take_output());
            events.extend(take_events(&mut conn));
            taken.take(&mut conn, how)?;
        }
        let state = conn.state();
        conn.receive_eof();
        events.extend(take_events(&mut conn));
        taken.take(&mut conn, 2)?;
        if !conn.inbox().is_empty() {
            return Err("the inbox is not empty after taking every chunk".into());
        }
        Ok((state, output, events, conn.state(), taken.count))
    }));
    let (state, output, events, final_state, taken) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(why)) => return Err(describe(&why)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(describe(&format!("panicked: {msg}")));
        }
    };
    let frames = match catch_unwind(|| parse_wire(&output)) {
        Ok(frames) => frames,
        Err(_) => return Err(describe(&format!("malformed output {output:02x?}"))),
    };
    if catch_unwind(|| check_sent_frames(role, &frames, false)).is_err() {
        return Err(describe(&format!("bad frame sent: {frames:?}")));
    }
    let closes = frames.iter().filter(|f| f.opcode == CLOSE).count();
    if closes > 1 {
        return Err(describe(&format!("{closes} close frames sent: {frames:?}")));
    }
    if state != State::Open && closes == 0 {
        return Err(describe(&format!(
            "state {state:?} without a close frame sent"
        )));
    }
    if state == State::Open && closes != 0 {
        return Err(describe("close frame sent but state Open"));
    }
    if final_state != State::Closed {
        return Err(describe("not Closed after EOF"));
    }
    let closed = events
        .iter()
        .filter(|e| matches!(e, Event::Closed { .. }))
        .count();
    if closed != 1 || !matches!(events.last(), Some(Event::Closed { .. })) {
        return Err(describe(&format!("Closed events: {events:?}")));
    }
    Ok(taken > 0)
}

fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failing cases; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

#[test]
fn robustness_random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    for _ in 0..2000 {
        let len = match rng.below(4) {
            0 => rng.below(4),
            1 => rng.below(16),
            2 => rng.below(200),
            _ => rng.below(2000),
        } as usize;
        let mut input = rng.bytes(len);
        for role in ROLES {
            // Half the time, make the mask bit of the first header right for the role, so
            // that the parser gets past it.
            if input.len() >= 2 && rng.chance(2) {
                match role {
                    Role::Server => input[1] |= 0x80,
                    Role::Client => input[1] &= 0x7f,
                }
            }
            let config = random_config(&mut rng);
            if let Err(failure) = run_case(role, config, &input, &mut rng) {
                failures.push(failure);
            }
        }
    }
    report(&failures);
}

/// Random sequences of mostly well-formed frames, to get deeper into the state machine.
#[test]
fn robustness_random_frame_sequences_never_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut failures = Vec::new();
    let mut delivered = 0;
    for _ in 0..2000 {
        for role in ROLES {
            let mut input = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let opcode = match rng.below(20) {
                    0..=4 => CONT,
                    5..=8 => TEXT,
                    9..=11 => BINARY,
                    12..=13 => PING,
                    14..=15 => PONG,
                    16 => CLOSE,
                    _ => rng.below(16) as u8,
                };
                let len = match rng.below(10) {
                    0 => 0,
                    1 => 126 + rng.below(200),
                    _ => rng.below(40),
                } as usize;
                let payload = if opcode == TEXT || opcode == CONT || rng.chance(3) {
                    let text: String = (0..len)
                        .map(|_| ['a', 'é', '€', '𝄞', ' '][rng.below(5) as usize])
                        .collect();
                    let mut bytes = text.into_bytes();
                    bytes.truncate(len.max(1));
                    if rng.chance(10) && !bytes.is_empty() {
                        let at = rng.below(bytes.len() as u64) as usize;
                        bytes[at] = rng.next() as u8;
                    }
                    bytes
                } else if opcode == CLOSE && len >= 2 {
                    let mut bytes = rng.bytes(len.min(20));
                    let code: u16 =
                        [1000, 1001, 1005, 1015, 3000, 4999, 999, 2000][rng.below(8) as usize];
                    bytes[..2].copy_from_slice(&code.to_be_bytes());
                    bytes
                } else {
                    rng.bytes(len)
                };
                let form = match rng.below(6) {
                    0 => LenForm::Medium,
                    1 => LenForm::Long,
                    _ => LenForm::Auto,
                };
                let mut frame = Frame::new(opcode, payload)
                    .fin(!rng.chance(3))
                    .len_form(form)
                    .to(role);
                if rng.chance(20) {
                    frame = frame.rsv(rng.below(8) as u8);
                }
                if rng.chance(20) {
                    frame.mask = if frame.mask.is_some() {
                        None
                    } else {
                        Some([1, 2, 3, 4])
                    };
                } else if frame.mask.is_some() {
                    let key = rng.next().to_le_bytes();
                    frame = frame.masked([key[0], key[1], key[2], key[3]]);
                }
                input.extend(frame.encode());
            }
            if rng.chance(4) {
                let keep = rng.below(input.len() as u64 + 1) as usize;
                input.truncate(keep);
            }
            let config = random_config(&mut rng);
            match run_case(role, config, &input, &mut rng) {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(failure) => failures.push(failure),
            }
        }
    }
    report(&failures);
    // The generator must get past the framing checks often enough to be worth running.
    assert!(
        delivered > 400,
        "only {delivered} of 4000 cases delivered data"
    );
}

#[test]
fn rfc6455_5_5_2_owed_pongs_go_out_before_what_we_send_next() {
    let t0 = Instant::now();
    for role in ROLES {
        let mut conn = open(role, t0);
        conn.receive_data(&Frame::ping("first").to(role).encode(), t0);
        conn.receive_data(&Frame::ping("second").to(role).encode(), t0);
        // The pings came before the message: their pongs are written before it.
        conn.send_message(MessageKind::Text, b"echo").unwrap();
        let frames = take_frames(&mut conn);
        assert_eq!(
            summary(&frames),
            [
                (PONG, b"first".to_vec()),
                (PONG, b"second".to_vec()),
                (TEXT, b"echo".to_vec())
            ],
            "{role:?}"
        );
    }
}
