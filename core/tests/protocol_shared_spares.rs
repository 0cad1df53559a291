//! The process-wide pool of spare message buffers (`recycle_shared_message_buffer`), alone in
//! this test binary: the pool belongs to the process, and another test assembling a large
//! message meanwhile could take its spares.

use std::time::Instant;

use ferrows_core::protocol::message::{
    recycle_shared_message_buffer, INITIAL_MESSAGE_BUFFER, MAX_SPARE_BYTES,
};
use ferrows_core::protocol::{Connection, Role};

mod support;
use support::*;

/// Receives `count` messages of `size` bytes on a server connection of a thread of its own
/// (which keeps no spares of its own), returning their buffers.
fn receive_on_another_thread(size: usize, count: usize) -> Vec<Vec<u8>> {
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut conn = Connection::new(Role::Server, unlimited(), t0);
        let payload = vec![7u8; size];
        (0..count)
            .map(|_| {
                conn.receive_data(&Frame::binary(&payload).to(Role::Server).encode(), t0);
                let (_, data) = conn.pop_message().expect("a whole message");
                assert_eq!(data, payload);
                data
            })
            .collect()
    })
    .join()
    .unwrap()
}

fn recycle_on_another_thread(buffers: Vec<Vec<u8>>) {
    std::thread::spawn(move || buffers.into_iter().for_each(recycle_shared_message_buffer))
        .join()
        .unwrap()
}

#[test]
fn shared_spares_go_to_whichever_thread_assembles_next_and_are_bounded() {
    let size = 3 * INITIAL_MESSAGE_BUFFER + 4096;
    let first = receive_on_another_thread(size, 1);
    let address = first[0].as_ptr();
    let capacity = first[0].capacity();
    recycle_on_another_thread(first);
    let taken = receive_on_another_thread(size, 1);
    assert_eq!(
        taken[0].as_ptr(),
        address,
        "the spare went to another thread"
    );
    // More than the pool holds: it keeps the first that fit its bytes and drops the rest.
    let room = MAX_SPARE_BYTES / capacity;
    let recycled = receive_on_another_thread(size, room + 2);
    let kept: Vec<_> = recycled[..room].iter().map(|b| b.as_ptr()).collect();
    recycle_on_another_thread(recycled);
    let from_spares = receive_on_another_thread(size, room + 2)
        .iter()
        .filter(|buffer| kept.contains(&buffer.as_ptr()))
        .count();
    assert_eq!(from_spares, room, "spares kept beyond or below the bound");
}
