"""Backpressure: memory stays bounded whatever the peer does, both ways."""

from __future__ import annotations

import socket
import threading
import time

import ferrows.sync
import websockets.sync.client
from ferrows.exceptions import ConnectionClosed
from wsutil import RawServer, RawStream

MESSAGE = b"x" * 65536
HIGH, LOW = 256 * 1024, 64 * 1024


def test_send_waits_above_the_write_limit_and_resumes_when_the_peer_reads(raw_server):
    start_reading = threading.Event()
    drained = []

    def stall_then_read(stream: RawStream, server: RawServer) -> None:
        # Read nothing until told to, then drain everything until EOF.
        start_reading.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.stop.is_set():
            try:
                drained.append(stream.read_frame(timeout=1))
            except (EOFError, OSError):
                return

    server = raw_server(after=stall_then_read)
    with ferrows.sync.connect(server.url, write_limit=(HIGH, LOW), ping_interval=None) as ws:
        sent = 0
        started = time.monotonic()
        # Socket buffers absorb some megabytes; then sends must wait. The native send takes
        # a timeout and returns False when it runs out. Bounded by count.
        blocked = False
        for _ in range(2000):
            if not ws._core.send(MESSAGE, 0.2):
                blocked = True
                break
            sent += 1
            assert ws._core.unsent_bytes <= HIGH + len(MESSAGE)
        assert blocked, f"send never waited after {sent} messages"
        assert ws._core.unsent_bytes <= HIGH + len(MESSAGE)
        assert time.monotonic() - started < 30
        # Once the peer reads, a blocked send completes.
        finished = threading.Event()

        def send_one() -> None:
            ws.send(MESSAGE)
            finished.set()

        sender = threading.Thread(target=send_one)
        sender.start()
        assert not finished.wait(0.3), "send returned while the peer read nothing"
        start_reading.set()
        assert finished.wait(20), "send did not resume once the peer read"
        sender.join(5)
    assert len(drained) >= sent


def test_reading_pauses_above_the_read_limit_and_nothing_is_lost(ferrows_server, outbox):
    release = threading.Event()

    def slow_reader(connection: ferrows.sync.ServerConnection) -> None:
        release.wait(30)
        peak = connection._core.inbox_bytes
        received = 0
        try:
            for message in connection:
                received += len(message)
        except ConnectionClosed:
            pass
        outbox.put((peak, received))

    server = ferrows_server(slow_reader, read_limit=(HIGH, LOW), max_size=None)
    total = 400
    with websockets.sync.client.connect(server.url, compression=None, max_size=None) as client:
        done = threading.Event()

        def flood() -> None:
            for _ in range(total):
                client.send(MESSAGE)
            done.set()

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        # 400 x 64 KiB = 25 MiB cannot all fit in socket buffers plus a 256 KiB inbox: the
        # sender must stall while the handler does not read.
        assert not done.wait(2), "the peer sent 25 MiB without the server pausing"
        release.set()
        assert done.wait(30), "sending did not resume once the handler read"
        sender.join(5)
    peak, received = outbox.get(timeout=30)
    # The inbox stopped at its high mark, give or take one socket read (16 KiB) and a frame.
    assert peak <= HIGH + len(MESSAGE) + 16384, peak
    assert received == total * len(MESSAGE)


def test_small_socket_buffer_peer_does_not_grow_memory_without_bound(raw_server):
    # A peer with tiny buffers that never reads: sends time out instead of queueing forever.
    def tiny_buffers(stream: RawStream, server: RawServer) -> None:
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server.stop.wait(30)

    server = raw_server(after=tiny_buffers)
    ws = ferrows.sync.connect(server.url, write_limit=(64 * 1024, 16 * 1024), ping_interval=None)
    try:
        outcomes = [ws._core.send(MESSAGE, 0.05) for _ in range(200)]
        assert False in outcomes, "every send succeeded against a peer that reads nothing"
        assert ws._core.unsent_bytes <= 64 * 1024 + len(MESSAGE)
    finally:
        server.stop.set()
        ws.close()


def test_keepalive_closes_while_writes_wait_on_a_peer_that_stopped_reading(raw_server):
    # The peer neither reads nor answers pings: the keepalive timeout must still fire while
    # a write is stuck, and the end must come within the timeouts, not hang.
    def tiny_buffers(stream: RawStream, server: RawServer) -> None:
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server.stop.wait(30)

    server = raw_server(after=tiny_buffers)
    ws = ferrows.sync.connect(
        server.url, ping_interval=0.2, ping_timeout=0.3, write_limit=(1 << 24, 1 << 22)
    )
    try:
        for _ in range(200):  # fill the socket buffers: writes now wait on the peer
            if not ws._core.send(MESSAGE, 0.05):
                break
        assert ws._core.unsent_bytes > 0, "the peer read everything"
        started = time.monotonic()
        try:
            ws.recv(timeout=10)
        except ConnectionClosed as exc:
            assert exc.sent is not None and exc.sent.code == 1011, exc
        else:
            raise AssertionError("recv returned a message")
        assert time.monotonic() - started < 5
        # What could not be written is still reported.
        assert ws._core.unsent_bytes > 0
    finally:
        server.stop.set()
        ws.close()
