"""Backpressure on the event loop: send() waits above the write limit, reading pauses above
the read limit, and nothing is lost."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import zlib

import pytest
from aiosupport import (
    HOST,
    ThreadFlag,
    aiotest,
    bounded,
    read_frame,
    settle,
    still_pending,
    ws_url,
)
from ferrows.asyncio import ServerConnection, connect, serve
from ferrows.exceptions import ConnectionClosed
from wsutil import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawServer,
    RawStream,
    encode_frame,
    handshake_request,
)

MESSAGE = b"x" * 65536
HIGH, LOW = 256 * 1024, 64 * 1024


# Messages sent in one turn of the loop wait in the core for one write, up to this many
# bytes (BATCH_LIMIT in py/src/aio.rs): the write buffer may exceed its limit by that much.
BATCH_LIMIT = 64 * 1024


# A large message goes straight to the transport; small ones are written in batches.
@pytest.mark.parametrize("size", [65536, 100])
@aiotest(timeout=60)
async def test_send_waits_above_the_write_limit_and_resumes_when_the_peer_reads(raw_server, size):
    message = b"x" * size
    bound = HIGH + max(BATCH_LIMIT, size) + size
    start_reading = ThreadFlag()
    drained: list[tuple[bool, int, bytes]] = []

    def stall_then_read(stream: RawStream, server: RawServer) -> None:
        # Read nothing until told to, then read every frame until the close frame.
        start_reading.event.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.stop.is_set():
            try:
                frame = stream.read_frame(timeout=1)
            except socket.timeout:
                continue  # the client was not scheduled for a second (a loaded machine)
            except (EOFError, OSError):
                return
            drained.append(frame)
            if frame[1] == OP_CLOSE:
                stream.send(encode_frame(OP_CLOSE, frame[2], mask=False))
                return

    server = raw_server(after=stall_then_read)
    # Small socket buffers on the peer, so that they fill soon.
    server.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    async with connect(server.url, write_limit=(HIGH, LOW), ping_interval=None) as ws:
        written = 0
        blocked = False
        started = time.monotonic()
        for _ in range(200_000):  # socket buffers absorb a few MiB at most
            try:
                await asyncio.wait_for(ws.send(message), 0.5)
            except asyncio.TimeoutError:
                # The message was written to the transport; only the wait was cancelled.
                written += 1
                blocked = True
                break
            written += 1
            assert ws.write_buffer_size <= bound, ws.write_buffer_size
        assert blocked, f"send never waited after {written} messages"
        assert ws.write_buffer_size <= bound, ws.write_buffer_size
        assert ws.write_buffer_size > LOW
        assert time.monotonic() - started < 30
        # While the peer reads nothing, a new send waits...
        sending = asyncio.ensure_future(ws.send(message))
        assert await still_pending(sending, 0.3), "send returned while the peer read nothing"
        # ... and completes once the peer reads.
        start_reading.set()
        await bounded(sending, 20)
        written += 1
    messages = [frame for frame in drained if frame[1] == OP_BINARY]
    assert len(messages) == written
    assert all(payload == message for _, _, payload in messages)
    assert ws.close_code == 1000


@aiotest(timeout=60)
async def test_reading_pauses_above_the_read_limit_and_nothing_is_lost():
    release = asyncio.Event()
    result: asyncio.Future[tuple[int, int, int]] = asyncio.get_running_loop().create_future()
    connections: list[ServerConnection] = []

    async def slow_reader(connection: ServerConnection) -> None:
        connections.append(connection)
        await release.wait()
        received = count = 0
        try:
            async for message in connection:
                assert message == MESSAGE
                received += len(message)
                count += 1
        except ConnectionClosed:
            pass
        settle(result, (received, count, connection.close_code or 0))

    total = 400  # 25 MiB: more than socket buffers and the 256 KiB inbox hold
    async with serve(
        slow_reader, HOST, 0, read_limit=(HIGH, LOW), max_size=None, ping_interval=None
    ) as server:
        # Uncompressed: the bytes on the wire are the bytes in the inbox.
        async with connect(
            ws_url(server.port), ping_interval=None, max_size=None, compression=None
        ) as ws:

            async def flood() -> None:
                for _ in range(total):
                    await ws.send(MESSAGE)

            sending = asyncio.ensure_future(flood())
            # The handler reads nothing: the server stops reading, the client's send waits.
            assert await still_pending(sending, 2), "25 MiB sent without the server pausing"
            (connection,) = connections
            peak = connection._core.inbox_bytes
            # The inbox stopped at its high mark, give or take one read and one frame.
            assert HIGH < peak <= HIGH + len(MESSAGE) + 65536 + 64, peak
            release.set()
            await bounded(sending, 30)
        received, count, code = await bounded(result, 30)
    assert (received, count) == (total * len(MESSAGE), total)
    assert code == 1000


@aiotest(timeout=60)
async def test_compressed_input_is_held_while_the_inbox_is_full():
    """400 messages of 64 KiB, sent at once in about 40 KiB: the server reads them, yet its
    inbox stops at the read limit plus one message; the rest waits, compressed."""
    release = asyncio.Event()
    result: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    connections: list[ServerConnection] = []

    async def slow_reader(connection: ServerConnection) -> None:
        connections.append(connection)
        await release.wait()
        count = 0
        try:
            async for message in connection:
                assert message == MESSAGE
                count += 1
        except ConnectionClosed:
            pass
        settle(result, count)

    total = 400
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = deflater.compress(MESSAGE) + deflater.flush(zlib.Z_SYNC_FLUSH)
    # Each message compressed on its own: valid with or without context takeover.
    frame = encode_frame(OP_BINARY, compressed[:-4], rsv=4)
    async with serve(
        slow_reader, HOST, 0, read_limit=(HIGH, LOW), max_size=None, ping_interval=None
    ) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(
            handshake_request(server.port, extra=["Sec-WebSocket-Extensions: permessage-deflate"])
        )
        head = await bounded(reader.readuntil(b"\r\n\r\n"))
        assert b"permessage-deflate" in head, head
        writer.write(frame * total + encode_frame(OP_PING, b"after"))
        (connection,) = connections
        # The server stops reading: the pong does not come while the inbox is full.
        pong = asyncio.ensure_future(read_frame(reader))
        assert await still_pending(pong, 1), "the server read on past its read limit"
        assert connection._core.holds_input
        assert connection._core.inbox_bytes <= HIGH + len(MESSAGE) + 64
        release.set()
        assert (await bounded(pong, 30))[1:] == (OP_PONG, b"after")
        writer.write(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
        assert await bounded(result, 30) == total
        writer.close()


@aiotest(timeout=60)
async def test_tiny_buffer_peer_that_never_reads_keeps_memory_bounded(raw_server):
    stop_peer = threading.Event()

    def never_read(stream: RawStream, server: RawServer) -> None:
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stop_peer.wait(30)

    server = raw_server(after=never_read)
    ws = await connect(server.url, write_limit=(64 * 1024, 16 * 1024), ping_interval=None)
    try:
        timeouts = 0
        for _ in range(200):
            try:
                await asyncio.wait_for(ws.send(MESSAGE), 0.05)
            except asyncio.TimeoutError:
                timeouts += 1
            assert ws.write_buffer_size <= 64 * 1024 + len(MESSAGE), ws.write_buffer_size
            if timeouts:
                break
        assert timeouts, "every send succeeded against a peer that reads nothing"
    finally:
        stop_peer.set()
        ws._transport.abort()
        await bounded(ws.wait_closed())
    assert ws.close_code == 1006


@aiotest
async def test_read_limit_and_write_limit_are_checked():
    with pytest.raises(ValueError):
        connect(ws_url(1), read_limit=(10, 20))
    with pytest.raises(ValueError):
        serve(lambda c: None, HOST, 0, write_limit=(10, -1))


@aiotest
async def test_pings_while_writing_is_paused_owe_one_pong(raw_server):
    # The peer reads nothing, then sends many pings and a message: while the transport has
    # paused writing, the pongs stay in the core (a few owed, the latest replacing the
    # newest) instead of growing the transport's buffer.
    send_pings = threading.Event()
    stop_peer = threading.Event()

    def ping_without_reading(stream: RawStream, server: RawServer) -> None:
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert send_pings.wait(10), "the test never filled its write buffer"
        stream.send(b"".join(encode_frame(OP_PING, b"%05d" % i, mask=False) for i in range(10000)))
        stream.send(encode_frame(OP_TEXT, b"after the pings", mask=False))
        stop_peer.wait(30)

    server = raw_server(after=ping_without_reading)
    ws = await connect(server.url, write_limit=(64 * 1024, 16 * 1024), ping_interval=None)
    try:
        for _ in range(200):  # fill the socket buffers, then the transport's past its limit
            if ws._writing_paused:
                break
            ws.send_nowait(MESSAGE)
            await asyncio.sleep(0)  # let the loop try to write
        assert ws._writing_paused, "writing never paused against a peer that reads nothing"
        buffered = ws._transport.get_write_buffer_size()
        send_pings.set()
        assert await bounded(ws.recv()) == "after the pings"
        assert ws._transport.get_write_buffer_size() == buffered, (
            "pongs were written while writing was paused"
        )
        # write_buffer_size counts what waits in the core too: the owed pongs, a few frames.
        assert buffered < ws.write_buffer_size <= buffered + 16 * 16
        assert ws._core.hold_output
    finally:
        stop_peer.set()
        ws._transport.abort()
        await bounded(ws.wait_closed())


@aiotest(timeout=60)
async def test_messages_sent_while_writing_is_paused_reach_the_transport(raw_server):
    """Messages batched in one turn of the loop are written even while the transport has
    paused writing (only owed pongs wait in the core then): the transport's buffer, and
    write_buffer_size, account for them, and they all arrive when the peer reads."""
    start_reading = ThreadFlag()
    received: list[int] = []

    def stall_then_read(stream: RawStream, server: RawServer) -> None:
        start_reading.event.wait(30)
        count = 0
        while True:  # bounded by the deadlines of read_frame and of the test
            _, opcode, payload = stream.read_frame(timeout=10)
            if opcode == OP_CLOSE:
                stream.send(encode_frame(OP_CLOSE, payload, mask=False))
                break
            count += 1
        received.append(count)

    server = raw_server(after=stall_then_read)
    server.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    message = b"m" * 1024
    count = 20_000  # 20 MiB: more than the kernel's socket buffers take
    async with connect(server.url, write_limit=(HIGH, LOW), ping_interval=None) as ws:
        for _ in range(count):
            ws.send_nowait(message)
        assert ws.write_buffer_size > count * len(message) // 2
        for _ in range(100):  # turns of the loop, until the last batch is written
            if ws._core.output_size == 0:
                break
            await asyncio.sleep(0)
        assert ws._core.output_size == 0, "messages stayed in the core while writing paused"
        assert ws._writing_paused
        assert ws._transport.get_write_buffer_size() > count * len(message) // 2
        start_reading.set()
    assert server.handled.wait(30) and not server.errors, server.errors
    assert received == [count]
