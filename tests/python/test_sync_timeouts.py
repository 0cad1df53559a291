"""Every blocking call of the sync face honours its deadline, and a message that has begun
to arrive when the time is up (or when Ctrl-C interrupts) is kept for the next call."""

from __future__ import annotations

import socket
import threading
import time

import ferrows.sync
import pytest
from ferrows.exceptions import ConcurrencyError, ConnectionClosedError, TimeoutError
from wsutil import RawServer, RawStream, split_message_peer

# How late a timeout may fire: scheduling on a loaded 2-core machine.
SLACK = 0.5


def test_recv_timeout_mid_message_fires_on_time_and_keeps_the_part(raw_server):
    release = threading.Event()
    server = raw_server(after=split_message_peer(release))
    with ferrows.sync.connect(server.url, ping_interval=None, close_timeout=1) as ws:
        for _ in range(3):  # each timeout keeps what arrived
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.3)
            assert 0.3 <= time.monotonic() - started < 0.3 + SLACK
        release.set()
        assert ws.recv(timeout=5) == "héllo, world!"
        assert ws.recv(timeout=5) == "next"


def test_recv_streaming_times_out_per_chunk_and_resumes(raw_server):
    release = threading.Event()
    server = raw_server(after=split_message_peer(release))
    with ferrows.sync.connect(server.url, ping_interval=None, close_timeout=1) as ws:
        chunks = ws.recv_streaming(timeout=0.3)
        assert next(chunks) == "héllo, "
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            next(chunks)
        assert time.monotonic() - started < 0.3 + SLACK
        # The rest of the message is no message of its own.
        with pytest.raises(ConcurrencyError):
            ws.recv(timeout=0.1)
        release.set()
        assert "".join(ws.recv_streaming(timeout=5)) == "world!"
        assert ws.recv(timeout=5) == "next"


def never_read(stream: RawStream, server: RawServer) -> None:
    stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    assert server.stop.wait(30), "the test never stopped the peer"


def test_send_timeout_raises_when_the_buffer_stays_full(raw_server):
    server = raw_server(after=never_read)
    ws = ferrows.sync.connect(server.url, ping_interval=None, write_limit=(65536, 16384))
    try:
        message = b"x" * 65536
        with pytest.raises(TimeoutError):
            for _ in range(1000):  # socket buffers absorb some; then a send must time out
                started = time.monotonic()
                ws.send(message, timeout=0.2)
        assert time.monotonic() - started < 0.2 + SLACK
    finally:
        server.stop.set()
        ws.close(timeout=5)


def test_fragmented_send_timing_out_half_way_fails_the_connection(raw_server):
    server = raw_server(after=never_read)
    ws = ferrows.sync.connect(server.url, ping_interval=None, write_limit=(65536, 16384))
    try:
        with pytest.raises(TimeoutError):
            ws.send((b"x" * 65536 for _ in range(1000)), timeout=0.5)
        with pytest.raises(ConnectionClosedError):
            ws.send("after")
    finally:
        server.stop.set()
        ws.close(timeout=5)


def test_close_timeout_bounds_the_closing_handshake(raw_server):
    server = raw_server(after=never_read)  # never answers the close frame
    ws = ferrows.sync.connect(server.url, ping_interval=None, close_timeout=30)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.close(timeout=0.3)
        assert time.monotonic() - started < 0.3 + SLACK
    finally:
        server.stop.set()
    assert ws.wait_closed(timeout=10)
