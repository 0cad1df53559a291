"""The callback API: Listener subclasses on both ends, called on the event-loop thread."""

from __future__ import annotations

import asyncio
import threading
import zlib
from typing import Any

import pytest
import websockets.asyncio.client
from aiosupport import (
    HOST,
    AsyncRawPeer,
    aiotest,
    bounded,
    echo,
    read_until_close,
    settle,
    switching_protocols,
    ws_url,
)
from ferrows.asyncio import Connection, Listener, connect, serve
from ferrows.exceptions import ConnectionClosed, ConnectionClosedError
from wsutil import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
    handshake_request,
    parse_close,
)

COUNT = 1000


class Recording(Listener):
    """Records every callback with the thread and loop it ran on; futures report progress."""

    instances: list[Recording]

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.events: list[tuple[str, Any]] = []
        self.threads: set[int] = set()
        self.loops: set[int] = set()
        self.connection: Connection | None = None
        self.opened = self.loop.create_future()
        self.closed: asyncio.Future[ConnectionClosed] = self.loop.create_future()
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.pings: asyncio.Queue[bytes] = asyncio.Queue()
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()

    def _record(self, name: str, value: Any) -> None:
        self.events.append((name, value))
        self.threads.add(threading.get_ident())
        self.loops.add(id(asyncio.get_running_loop()))

    def on_open(self, connection: Connection) -> None:
        self._record("open", None)
        self.connection = connection
        settle(self.opened, connection)

    def on_message(self, connection: Connection, message: str | bytes) -> None:
        self._record("message", message)
        self.messages.put_nowait(message)

    def on_ping(self, connection: Connection, data: bytes) -> None:
        self._record("ping", data)
        self.pings.put_nowait(data)

    def on_pong(self, connection: Connection, data: bytes) -> None:
        self._record("pong", data)
        self.pongs.put_nowait(data)

    def on_close(self, connection: Connection, exc: ConnectionClosed) -> None:
        self._record("close", exc)
        settle(self.closed, exc)

    def assert_on_loop_thread(self) -> None:
        assert self.threads == {threading.get_ident()}
        assert self.loops == {id(self.loop)}

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def factory() -> tuple[list[Recording], Any]:
    """A listener factory that keeps the listeners it made."""
    made: list[Recording] = []

    def make() -> Recording:
        listener = Recording()
        made.append(listener)
        return listener

    return made, make


class Echo(Listener):
    """Sends every message back from on_message, without awaiting."""

    def on_message(self, connection: Connection, message: str | bytes) -> None:
        connection.send_nowait(message)


@aiotest
async def test_client_listener_against_a_coroutine_server():
    made, make = factory()
    async with serve(echo, HOST, 0) as server:
        ws = await bounded(connect(ws_url(server.port), listener=make))
        (listener,) = made
        assert await bounded(listener.opened) is ws
        ws.send_nowait("text via send_nowait")
        ws.send_nowait(b"bytes via send_nowait")
        await ws.send("text via send")
        assert await bounded(listener.messages.get()) == "text via send_nowait"
        assert await bounded(listener.messages.get()) == b"bytes via send_nowait"
        assert await bounded(listener.messages.get()) == "text via send"
        await bounded(ws.close(4000, "listener done"))
        exc = await bounded(listener.closed)
    assert (exc.code, exc.reason) == (4000, "listener done")
    assert listener.names() == ["open", "message", "message", "message", "close"]
    listener.assert_on_loop_thread()


@aiotest
async def test_server_listener_echoes_a_thousand_messages():
    made: list[Recording] = []

    class RecordingEcho(Recording):
        def on_message(self, connection: Connection, message: str | bytes) -> None:
            super().on_message(connection, message)
            connection.send_nowait(message)

    def make_echo() -> Recording:
        listener = RecordingEcho()
        made.append(listener)
        return listener

    async with serve(None, HOST, 0, listener=make_echo) as server:
        async with connect(ws_url(server.port)) as ws:
            for index in range(COUNT):
                await ws.send(f"message {index}" if index % 2 else f"{index}".encode())
            for index in range(COUNT):
                expected = f"message {index}" if index % 2 else f"{index}".encode()
                assert await bounded(ws.recv()) == expected
        (listener,) = made
        exc = await bounded(listener.closed)
    assert exc.code == 1000
    names = listener.names()
    assert names[0] == "open" and names[-1] == "close"
    assert names.count("message") == COUNT
    listener.assert_on_loop_thread()


@aiotest
async def test_listeners_on_both_ends_echo_a_thousand_messages():
    client_made: list[Recording] = []
    done = asyncio.get_running_loop().create_future()
    received: list[str | bytes] = []

    class Counting(Recording):
        def on_open(self, connection: Connection) -> None:
            super().on_open(connection)
            for index in range(COUNT):
                connection.send_nowait(f"{index}")

        def on_message(self, connection: Connection, message: str | bytes) -> None:
            self._record("message", message)
            received.append(message)
            if len(received) == COUNT:
                settle(done, None)

    def make_counting() -> Recording:
        listener = Counting()
        client_made.append(listener)
        return listener

    async with serve(None, HOST, 0, listener=Echo) as server:
        ws = await bounded(connect(ws_url(server.port), listener=make_counting))
        await bounded(done, 20)
        await bounded(ws.close())
    assert received == [f"{index}" for index in range(COUNT)]
    (listener,) = client_made
    listener.assert_on_loop_thread()
    assert (await bounded(listener.closed)).code == 1000


@aiotest
async def test_listener_factory_is_called_once_per_connection():
    made, make = factory()
    async with serve(None, HOST, 0, listener=make) as server:
        for index in range(3):
            async with connect(ws_url(server.port)) as ws:
                await ws.send(f"hello {index}")
        await bounded(asyncio.gather(*(listener.closed for listener in made)))
    assert len(made) == 3
    for index, listener in enumerate(made):
        assert listener.names() == ["open", "message", "close"]
        assert listener.events[1] == ("message", f"hello {index}")


@aiotest
async def test_on_ping_and_on_pong_both_ways():
    server_made, server_factory = factory()
    client_made, client_factory = factory()
    async with serve(None, HOST, 0, listener=server_factory, ping_interval=None) as server:
        ws = await bounded(
            connect(ws_url(server.port), listener=client_factory, ping_interval=None)
        )
        (server_listener,) = server_made
        (client_listener,) = client_made
        server_side = await bounded(server_listener.opened)
        # Client pings: the server's on_ping, then the client's on_pong.
        waiter = await ws.ping(b"from client")
        assert await bounded(server_listener.pings.get()) == b"from client"
        assert await bounded(client_listener.pongs.get()) == b"from client"
        assert await bounded(waiter) > 0
        # Server pings: the client's on_ping, then the server's on_pong.
        waiter = await server_side.ping("from server")
        assert await bounded(client_listener.pings.get()) == b"from server"
        assert await bounded(server_listener.pongs.get()) == b"from server"
        assert await bounded(waiter) > 0
        # An unsolicited pong reaches on_pong only.
        await ws.pong(b"heartbeat")
        assert await bounded(server_listener.pongs.get()) == b"heartbeat"
        await bounded(ws.close())
        await bounded(server_listener.closed)
    server_listener.assert_on_loop_thread()
    client_listener.assert_on_loop_thread()
    assert server_listener.pings.empty() and client_listener.pongs.empty()


@aiotest
async def test_on_close_reports_codes_and_reasons_both_ways():
    server_made, server_factory = factory()
    client_made, client_factory = factory()
    async with serve(None, HOST, 0, listener=server_factory) as server:
        # The client closes.
        ws = await bounded(connect(ws_url(server.port), listener=client_factory))
        await bounded(ws.close(4001, "client says bye"))
        for listener in (*server_made, *client_made):
            exc = await bounded(listener.closed)
            assert (exc.code, exc.reason) == (4001, "client says bye")
            assert isinstance(exc, ConnectionClosedError)
        # The server closes.
        ws = await bounded(connect(ws_url(server.port), listener=client_factory))
        server_side = await bounded(server_made[1].opened)
        await bounded(server_side.close(1001, "server says bye"))
        exc = await bounded(client_made[1].closed)
        assert (exc.code, exc.reason) == (1001, "server says bye")
        assert (ws.close_code, ws.close_reason) == (1001, "server says bye")


@aiotest
async def test_on_close_after_an_abrupt_drop():
    server_made, server_factory = factory()
    async with serve(None, HOST, 0, listener=server_factory) as server:
        ws = await bounded(connect(ws_url(server.port)))
        await bounded(server_made[0].opened)
        ws._transport.abort()
        exc = await bounded(server_made[0].closed)
    assert exc.code == 1006
    assert server_made[0].names() == ["open", "close"]


@aiotest
async def test_listener_gets_fragmented_messages_whole():
    server_made, server_factory = factory()
    async with serve(None, HOST, 0, listener=server_factory) as server:
        async with websockets.asyncio.client.connect(ws_url(server.port)) as ws:
            await ws.send(["frag", "mented"])
            await ws.send([b"by", b"tes"])
            await ws.send("whole")
            listener = server_made[0]
            assert await bounded(listener.messages.get()) == "fragmented"
            assert await bounded(listener.messages.get()) == b"bytes"
            assert await bounded(listener.messages.get()) == "whole"


@aiotest
async def test_send_nowait_after_close_raises():
    async with serve(echo, HOST, 0) as server:
        ws = await bounded(connect(ws_url(server.port)))
        await bounded(ws.close())
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("too late")


@aiotest(timeout=60)
async def test_server_listener_gets_every_message_of_input_that_inflates_past_the_read_limit():
    """400 messages of 64 KiB in about 40 KiB, in one write: each read inflates past the
    read limit, the core holds the rest, and the listener still gets every message, in
    order."""
    made: list[Recording] = []

    def make() -> Recording:
        made.append(Recording())
        return made[-1]

    total, size = 400, 65536
    frames = b""
    for i in range(total):
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        data = deflater.compress(bytes([i % 256]) * size) + deflater.flush(zlib.Z_SYNC_FLUSH)
        frames += encode_frame(OP_BINARY, data[:-4], rsv=4)
    offer = ["Sec-WebSocket-Extensions: permessage-deflate"]
    async with serve(None, HOST, 0, listener=make, read_limit=256 * 1024, max_size=None) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(handshake_request(server.port, extra=offer))
        assert b"permessage-deflate" in await bounded(reader.readuntil(b"\r\n\r\n"))
        writer.write(frames)
        (listener,) = made
        for i in range(total):
            assert await bounded(listener.messages.get()) == bytes([i % 256]) * size
        writer.close()


class Exploding(Recording):
    """Raises on the message "boom"."""

    def on_message(self, connection: Connection, message: str | bytes) -> None:
        super().on_message(connection, message)
        if message == "boom":
            raise RuntimeError("boom")


@pytest.mark.parametrize(
    "sent, delivered",
    [(["boom"], ["boom"]), (["ok", "boom", "after"], ["ok", "boom"])],
    ids=["alone", "mid-batch"],
)
@aiotest
async def test_a_listener_that_raises_is_logged_and_closes_with_1011(sent, delivered, caplog):
    made: list[Exploding] = []

    def make() -> Exploding:
        made.append(Exploding())
        return made[-1]

    async with serve(None, HOST, 0, listener=make) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(handshake_request(server.port))
        await bounded(reader.readuntil(b"\r\n\r\n"))
        # One write: several messages arrive in one read and are delivered in a loop.
        writer.write(b"".join(encode_frame(OP_TEXT, text.encode()) for text in sent))
        frames = await bounded(read_until_close(reader))
        writer.write(encode_frame(OP_CLOSE, frames[-1][2]))
        await bounded(reader.read())  # the server closes the connection
        writer.close()
    assert parse_close(frames[-1][2]) == (1011, "listener failed")
    (listener,) = made
    assert [value for name, value in listener.events if name == "message"] == delivered
    assert any("listener on_message raised" in r.getMessage() for r in caplog.records)
    assert isinstance(await bounded(listener.closed), ConnectionClosed)


@pytest.mark.parametrize("opcode", [OP_PING, OP_BINARY])
@aiotest
async def test_a_large_reply_from_a_callback_goes_after_messages_sent_before_it(opcode):
    """A message sent earlier in the turn of the loop waits in the core; when a read (a ping,
    or a message) is handled before that message's write, the listener's large reply,
    which is written at once, must still follow it. The loop runs the two callbacks in either
    order; the read is delivered by hand, after the send, to take the order that matters."""
    large = b"L" * (1 << 20)

    class Reply(Listener):
        def on_ping(self, connection: Connection, data: bytes) -> None:
            connection.send_nowait(large)

        def on_message(self, connection: Connection, message: Any) -> None:
            connection.send_nowait(large)

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list:
        return await read_until_close(reader)

    async with AsyncRawPeer(record, switching_protocols) as peer:
        async with connect(peer.url, listener=Reply, max_size=None) as ws:
            ws.send_nowait(b"A")
            frame = encode_frame(opcode, b"p", mask=False)
            ws._view[: len(frame)] = frame
            ws.buffer_updated(len(frame))
        frames = await peer.result()
    sent = [(op, payload) for _, op, payload in frames if op != OP_CLOSE]
    pong = [(OP_PONG, b"p")] if opcode == OP_PING else []
    assert sent == [(OP_BINARY, b"A"), *pong, (OP_BINARY, large)]
