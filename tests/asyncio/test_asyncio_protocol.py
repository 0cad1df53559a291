"""Protocol errors and limits seen from the asyncio face: the right close codes, and no
hang when the peer misbehaves."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiosupport import (
    HOST,
    AsyncRawPeer,
    aiotest,
    bounded,
    drain,
    echo,
    read_until_close,
    settle,
    still_pending,
    switching_protocols,
    ws_url,
)
from ferrows.asyncio import ServerConnection, connect, serve
from ferrows.exceptions import ConnectionClosed, ConnectionClosedError, InvalidHeader, InvalidStatus
from wsutil import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    RawServer,
    RawStream,
    close_payload,
    encode_frame,
    handshake_request,
    parse_close,
    raw_upgrade,
)


def record_close(stream: RawStream, server: RawServer) -> None:
    """Records frames until the close frame, which it answers."""
    payload = stream.read_until_close_frame(timeout=5)
    server.frames.append((True, OP_CLOSE, payload))
    stream.send(encode_frame(OP_CLOSE, payload, mask=False))


@aiotest
async def test_message_over_max_size_closes_with_1009():
    seen = asyncio.get_running_loop().create_future()

    async def report(connection: ServerConnection) -> None:
        try:
            await connection.recv()
        except ConnectionClosed as exc:
            settle(seen, exc)

    async with serve(report, HOST, 0, max_size=1000) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.send(b"b" * 1001)
            with pytest.raises(ConnectionClosedError) as caught:
                await bounded(ws.recv())
            assert caught.value.code == 1009
        exc = await bounded(seen)
    assert exc.sent is not None and exc.sent.code == 1009


@aiotest
async def test_client_max_size_applies_to_received_messages():
    async def send_big(connection: ServerConnection) -> None:
        await connection.send("t" * 5000)
        await connection.wait_closed()

    async with serve(send_big, HOST, 0) as server:
        async with connect(ws_url(server.port), max_size=4096) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await bounded(ws.recv())
    assert caught.value.sent is not None and caught.value.sent.code == 1009


@aiotest
async def test_invalid_utf8_text_closes_with_1007(raw_server):
    def send_bad_text(stream: RawStream, server: RawServer) -> None:
        stream.send(encode_frame(OP_TEXT, b"\xff\xfe bad", mask=False))
        record_close(stream, server)

    server = raw_server(after=send_bad_text)
    async with connect(server.url, ping_interval=None) as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            await bounded(ws.recv())
    assert caught.value.sent is not None and caught.value.sent.code == 1007
    await bounded(asyncio.to_thread(server.handled.wait, 5))
    assert parse_close(server.frames[-1][2])[0] == 1007


@aiotest
async def test_masked_frame_from_server_closes_with_1002(raw_server):
    def send_masked(stream: RawStream, server: RawServer) -> None:
        stream.send(encode_frame(OP_BINARY, b"masked by a server", mask=True))
        record_close(stream, server)

    server = raw_server(after=send_masked)
    async with connect(server.url, ping_interval=None) as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            await bounded(ws.recv())
    assert caught.value.sent is not None and caught.value.sent.code == 1002


@aiotest
async def test_unmasked_frame_from_client_closes_with_1002():
    seen = asyncio.get_running_loop().create_future()

    async def report(connection: ServerConnection) -> None:
        try:
            await connection.recv()
        except ConnectionClosed as exc:
            settle(seen, exc)

    async with serve(report, HOST, 0) as server:
        stream = await asyncio.to_thread(raw_upgrade, server.port)
        try:
            await asyncio.to_thread(stream.send, encode_frame(OP_TEXT, b"unmasked", mask=False))
            exc = await bounded(seen)
            payload = await asyncio.to_thread(stream.read_until_close_frame, 5)
        finally:
            stream.close()
    assert exc.sent is not None and exc.sent.code == 1002
    assert parse_close(payload)[0] == 1002


@aiotest
async def test_close_frame_from_raw_client_is_answered():
    async with serve(echo, HOST, 0) as server:
        stream = await asyncio.to_thread(raw_upgrade, server.port)
        try:
            await asyncio.to_thread(
                stream.send, encode_frame(OP_CLOSE, close_payload(4444, "raw bye"))
            )
            payload = await asyncio.to_thread(stream.read_until_close_frame, 5)
            rest = await asyncio.to_thread(stream.read_until_eof, 5)
        finally:
            stream.close()
    assert parse_close(payload) == (4444, "raw bye")
    assert rest == b""


@aiotest
async def test_close_does_not_hang_when_the_peer_stops_reading(raw_server):
    def never_read(stream: RawStream, server: RawServer) -> None:
        server.stop.wait(30)

    server = raw_server(after=never_read)
    server.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ws = await connect(
        server.url, ping_interval=None, close_timeout=0.5, write_limit=(64 * 1024, 16 * 1024)
    )
    message = b"y" * 65536
    sending = None
    for _ in range(500):
        sending = asyncio.ensure_future(ws.send(message))
        if await still_pending(sending, 0.1):
            break
    assert sending is not None and not sending.done(), "send never waited"
    started = time.monotonic()
    await bounded(ws.close(), 5)
    assert time.monotonic() - started < 4
    # The send that was waiting fails instead of hanging.
    with pytest.raises(ConnectionClosed):
        await bounded(sending, 5)
    assert ws.close_code is not None
    server.stop.set()


@aiotest
async def test_everything_raises_once_closed():
    async with serve(echo, HOST, 0) as server:
        ws = await connect(ws_url(server.port))
        await bounded(ws.close())
    for operation in (ws.recv(), ws.send("x"), ws.ping(), ws.pong()):
        with pytest.raises(ConnectionClosed):
            await bounded(operation)
    with pytest.raises(ConnectionClosed):
        await drain(ws.recv_streaming())
    assert await drain(ws) == []
    # Closing again is harmless.
    await bounded(ws.close())
    assert ws.close_code == 1000


@aiotest
async def test_frames_in_the_same_write_as_the_101_answer():
    frames = encode_frame(OP_TEXT, b"right after 101", mask=False)
    frames += encode_frame(OP_BINARY, b"\x01\x02", mask=False)

    async def answer_close(reader, writer) -> list:
        received = await read_until_close(reader)
        writer.write(encode_frame(OP_CLOSE, received[-1][2], mask=False))
        return received

    async with AsyncRawPeer(answer_close, lambda key: switching_protocols(key) + frames) as peer:
        async with connect(peer.url, ping_interval=None) as ws:
            assert await bounded(ws.recv()) == "right after 101"
            assert await bounded(ws.recv()) == b"\x01\x02"
        received = await peer.result()
    assert parse_close(received[-1][2]) == (1000, "")
    assert ws.close_code == 1000


@aiotest
async def test_a_burst_of_frames_then_close_in_one_write():
    burst = b"".join(encode_frame(OP_TEXT, f"{i}".encode(), mask=False) for i in range(1000))
    burst += encode_frame(OP_TEXT, b"frag", fin=False, mask=False)
    burst += encode_frame(0x0, b"mented", mask=False)
    burst += encode_frame(OP_CLOSE, close_payload(1000, "burst over"), mask=False)

    async def burst_then_close(reader, writer) -> list:
        writer.write(burst)
        return await read_until_close(reader)

    async with AsyncRawPeer(burst_then_close, switching_protocols) as peer:
        async with connect(peer.url, ping_interval=None) as ws:
            messages = await drain(ws)
        replies = await peer.result()
    assert messages == [f"{i}" for i in range(1000)] + ["fragmented"]
    assert (ws.close_code, ws.close_reason) == (1000, "burst over")
    assert parse_close(replies[-1][2]) == (1000, "burst over")


@aiotest
async def test_close_frame_without_a_code_is_1005():
    async def empty_close(reader, writer) -> list:
        writer.write(encode_frame(OP_CLOSE, b"", mask=False))
        return await read_until_close(reader)

    async with AsyncRawPeer(empty_close, switching_protocols) as peer:
        async with connect(peer.url, ping_interval=None) as ws:
            with pytest.raises(ConnectionClosed) as caught:
                await bounded(ws.recv())
        replies = await peer.result()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1005
    assert ws.close_code == 1005
    # The answer to a close frame without a code carries no code either (RFC 6455 5.5.1).
    assert parse_close(replies[-1][2])[0] in (None, 1000)


@aiotest
async def test_wrong_accept_value_fails_and_is_not_retried():
    async def nothing(reader, writer) -> None:
        return None

    def wrong_accept(key: str) -> bytes:
        return switching_protocols("not the key")

    async with AsyncRawPeer(nothing, wrong_accept) as peer:
        with pytest.raises(InvalidHeader):
            await bounded(connect(peer.url))
        await peer.result()

        async def iterate() -> None:
            async for _ws in connect(peer.url):
                raise AssertionError("yielded a connection after a wrong accept value")

        with pytest.raises(InvalidHeader):
            await bounded(iterate())
        await peer.result()
        assert peer.results.empty()


@aiotest
async def test_refusal_body_reaches_invalid_status():
    body = b"x" * 3000

    def refuse(key: str) -> bytes:
        head = f"HTTP/1.1 503 Service Unavailable\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    async def nothing(reader, writer) -> None:
        return None

    async with AsyncRawPeer(nothing, refuse) as peer:
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(peer.url))
        await peer.result()
    assert caught.value.response.status_code == 503
    assert caught.value.response.body == body


@aiotest
async def test_frame_pipelined_with_the_handshake_request_is_received():
    seen = asyncio.get_running_loop().create_future()

    async def first_message(connection: ServerConnection) -> None:
        settle(seen, await connection.recv())

    async with serve(first_message, HOST, 0) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            writer.write(
                handshake_request(server.port) + encode_frame(OP_TEXT, b"pipelined", mask=True)
            )
            head = await bounded(reader.readuntil(b"\r\n\r\n"))
            assert head.startswith(b"HTTP/1.1 101 ")
            assert await bounded(seen) == "pipelined"
        finally:
            writer.close()


@aiotest
async def test_text_fragments_split_inside_a_character():
    # "aéb€" with frame boundaries in the middle of é (2 bytes) and € (3 bytes).
    text = "aéb€"
    data = text.encode()
    pieces = [data[:2], data[2:5], data[5:6], data[6:]]
    frames = encode_frame(OP_TEXT, pieces[0], fin=False, mask=False)
    frames += b"".join(encode_frame(0x0, piece, fin=False, mask=False) for piece in pieces[1:-1])
    frames += encode_frame(0x0, pieces[-1], mask=False)

    async def send_twice(reader, writer) -> list:
        writer.write(frames + frames)
        return await read_until_close(reader)

    async with AsyncRawPeer(send_twice, switching_protocols) as peer:
        async with connect(peer.url, ping_interval=None) as ws:
            chunks = await drain(ws.recv_streaming())
            assert all(isinstance(chunk, str) for chunk in chunks)
            assert "".join(chunks) == text
            assert await bounded(ws.recv()) == text
        await peer.result()


@aiotest
async def test_large_multibyte_text_round_trip():
    text = "é€😀" * 100_000  # 900 KB of UTF-8 across many reads
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.send(text)
            assert await bounded(ws.recv()) == text
            await ws.send(text.encode(), text=True)
            assert await bounded(ws.recv(decode=False)) == text.encode()
