"""Concurrent use of one connection, as websockets.asyncio defines it: any number of
coroutines may send (a fragmented message is never interleaved with another), one receives,
and a fragmented send that fails half-way fails the connection (1011)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import websockets.asyncio.server
from aiosupport import HOST, aiotest, bounded, drain, echo, still_pending, ws_url
from ferrows.asyncio import connect, serve
from ferrows.exceptions import ConcurrencyError, ConnectionClosedError


class Recorder:
    """A websockets handler recording each message's frames (recv_streaming)."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[list[str | bytes]] = asyncio.Queue()

    async def __call__(self, connection: websockets.asyncio.server.ServerConnection) -> None:
        try:
            while True:
                await self.messages.put([frame async for frame in connection.recv_streaming()])
        except websockets.exceptions.ConnectionClosed:
            pass

    async def next(self) -> list[str | bytes]:
        return await bounded(self.messages.get())


@aiotest
async def test_send_waits_while_another_coroutine_sends_a_fragmented_message():
    recorder = Recorder()
    first_written = asyncio.Event()
    finish = asyncio.Event()

    async def fragments():
        yield "f0"
        yield "f1"  # f0 goes out once f1 is known
        first_written.set()
        await finish.wait()
        yield "f2"

    async with websockets.asyncio.server.serve(recorder, HOST, 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(ws_url(port)) as ws:
            fragmented = asyncio.ensure_future(ws.send(fragments()))
            await bounded(first_written.wait())
            # Another coroutine sends meanwhile: it waits for the fragmented message to end
            # (websockets' behaviour; "any number may send"), it does not fail.
            other = asyncio.ensure_future(ws.send("whole"))
            assert await still_pending(other, 0.05)
            finish.set()
            await bounded(fragmented)
            await bounded(other)
            assert await recorder.next() == ["f0", "f1", "f2"]
            assert await recorder.next() == ["whole"]


@aiotest
async def test_recv_while_recv_streaming_is_mid_message_raises_concurrency_error():
    first_taken = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "a"
        # Fragments arriving together join one chunk: hold the rest until "a" is taken.
        await first_taken.wait()
        yield "b"
        yield "c"

    async def send_fragments(connection: websockets.asyncio.server.ServerConnection) -> None:
        await connection.send(fragments())
        await connection.send("next")
        await connection.wait_closed()

    async with websockets.asyncio.server.serve(send_fragments, HOST, 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(ws_url(port)) as ws:
            chunks = ws.recv_streaming()
            assert await bounded(chunks.__anext__()) == "a"
            # The message is half consumed: recv() must not return its remainder as a
            # message of its own.
            with pytest.raises(ConcurrencyError):
                await bounded(ws.recv())
            first_taken.set()
            assert "a" + "".join(await drain(chunks)) == "abc"
            assert await bounded(ws.recv()) == "next"


@aiotest
@pytest.mark.parametrize("failure", ["mixed types", "generator raises"])
async def test_fragmented_send_failing_half_way_fails_the_connection(failure):
    async def raising():
        yield "a"
        yield "b"
        raise RuntimeError("fragment source failed (expected by the test)")

    message = ["text", b"bytes"] if failure == "mixed types" else raising()
    expected = TypeError if failure == "mixed types" else RuntimeError
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            with pytest.raises(expected):
                await ws.send(message)
            # Half a message went out and cannot be completed: the connection is failed
            # with 1011, like websockets does, instead of refusing every later send.
            with pytest.raises(ConnectionClosedError):
                await bounded(ws.send("after"))
            await bounded(ws.wait_closed())
            assert ws.close_code == 1011
