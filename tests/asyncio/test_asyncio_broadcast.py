"""broadcast() on the asyncio face: many clients of a ferrows server each receive the exact
message, compressed or not; slow consumers are skipped or closed, counted and reported."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiosupport import HOST, aiotest, bounded, ws_url
from ferrows import Close, ConnectionClosed, Deflate, _ferrows
from ferrows.asyncio import ServerConnection, broadcast, connect, serve

# A message large enough to fill socket buffers quickly (random: compression would shrink
# it), and one that compresses.
LARGE = os.urandom(65536)
TEXT = "broadcast " * 100


class Room:
    """A server handler that keeps every connection open, by path, until it closes."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.connections: dict[str, list[ServerConnection]] = {}
        self.full = asyncio.Event()

    async def handler(self, connection: ServerConnection) -> None:
        self.connections.setdefault(connection.request.path, []).append(connection)
        if sum(map(len, self.connections.values())) == self.expected:
            self.full.set()
        await connection.wait_closed()

    def all(self) -> list[ServerConnection]:
        return [c for group in self.connections.values() for c in group]


async def receive_all(clients: list[Any], count: int) -> list[list[Any]]:
    """The next `count` messages of every client, the clients receiving concurrently."""

    async def receive(client: Any) -> list[Any]:
        return [await client.recv() for _ in range(count)]

    return await bounded(asyncio.gather(*(receive(client) for client in clients)), 30)


@aiotest(timeout=60)
async def test_every_client_receives_the_exact_messages_in_order():
    clients_count = 100
    room = Room(clients_count)
    async with serve(room.handler, HOST, 0, backlog=256) as server:
        clients = await asyncio.gather(
            *(connect(ws_url(server.port), open_timeout=10) for _ in range(clients_count))
        )
        await bounded(room.full.wait(), 10)
        connections = room.all()
        # A message sent this turn of the loop and not yet written goes before the broadcast.
        connections[0].send_nowait("first, on one connection")
        results = [broadcast(connections, message) for message in ("text", b"\x00bytes", "")]
        for result in results:
            assert result.sent == clients_count and result
            assert (result.skipped, result.closed, result.not_open) == ([], [], [])
        # The server's metrics count broadcasts as sent messages, shared frames included.
        metrics = server.metrics.snapshot()
        assert metrics["messages_out"] == 3 * clients_count + 1
        assert metrics["bytes_out"] == (4 + 6) * clients_count + len("first, on one connection")
        received = await receive_all(clients, 3)
        first = next(c for c in clients if c.local_address == connections[0].remote_address)
        for client, messages in zip(clients, received):
            expected = ["text", b"\x00bytes", ""]
            if client is first:
                expected = ["first, on one connection", *expected[:2]]
            assert messages == expected
        for client in clients:
            await client.close()


@aiotest
async def test_clients_broadcast_with_their_own_masks():
    received: asyncio.Queue[Any] = asyncio.Queue()

    async def collect(connection: ServerConnection) -> None:
        async for message in connection:
            await received.put(message)

    async with serve(collect, HOST, 0) as server:
        clients = [await connect(ws_url(server.port)) for _ in range(3)]
        result = broadcast(clients, "from every client")
        assert result.sent == 3
        assert [await bounded(received.get()) for _ in range(3)] == ["from every client"] * 3
        for client in clients:
            await client.close()


@aiotest
async def test_mixed_compression_every_client_decodes():
    # Plain, context takeover (encoded per connection), and two shared compressed sets.
    client_options = [
        None,
        "deflate",
        Deflate(server_no_context_takeover=True),
        Deflate(server_no_context_takeover=True, server_max_window_bits=10),
    ]
    room = Room(2 * len(client_options))
    async with serve(room.handler, HOST, 0) as server:
        clients = [
            await connect(ws_url(server.port), compression=option)
            for option in client_options
            for _ in range(2)
        ]
        await bounded(room.full.wait())
        compressions = [client.compression for client in clients]
        assert compressions[0] is None and compressions[4] != compressions[6]
        assert "server_no_context_takeover" in compressions[4]
        assert "server_no_context_takeover" not in compressions[2]
        messages = [TEXT, TEXT + "again", b"\x01" * 5000, "tiny"]
        for message in messages:
            assert broadcast(room.all(), message).sent == len(clients)
        assert await receive_all(clients, len(messages)) == [messages] * len(clients)
        for client in clients:
            await client.close()


@aiotest
async def test_one_bytes_object_per_encoding():
    # Plain and compressed without context takeover: shared; context takeover: its own.
    client_options = [None, None, "deflate", Deflate(server_no_context_takeover=True)] * 2
    room = Room(len(client_options))
    async with serve(room.handler, HOST, 0) as server:
        clients = [await connect(ws_url(server.port), compression=o) for o in client_options]
        await bounded(room.full.wait())
        by_client = {c.remote_address: c for c in room.all()}
        connections = [by_client[client.local_address] for client in clients]
        writes = _ferrows.broadcast_frames([c._core for c in connections], TEXT)
        assert writes[0] is writes[1] is writes[4] is writes[5]
        assert writes[3] is writes[7] and writes[3] is not writes[0]
        assert writes[2] is not writes[6] and writes[2] is not writes[0]
        for connection, data in zip(connections, writes):
            connection._transport.write(data)
        assert await receive_all(clients, 1) == [[TEXT]] * len(clients)
        for client in clients:
            await client.close()


async def broadcast_until_slow(server_port: int, room: Room, on_slow: Any) -> tuple[Any, ...]:
    """Broadcasts LARGE to a client that reads and one that never does (its read limit
    stops it reading), each round once the reader got the last one, until the other is
    slow. Returns the result, the rounds both got, the idle client and its server side."""
    reader = await connect(ws_url(server_port, "/reader"), max_size=None)
    idle = await connect(ws_url(server_port, "/idle"), max_size=None, read_limit=65536)
    await bounded(room.full.wait())
    (reader_side,) = room.connections["/reader"]
    (idle_side,) = room.connections["/idle"]
    rounds = 0  # messages both clients were sent
    while True:
        result = broadcast([reader_side, idle_side], LARGE, on_slow=on_slow)
        if result.sent < 2:
            break
        rounds += 1
        assert rounds < 2000, "the idle client was never slow"
        assert await bounded(reader.recv()) == LARGE
    assert idle_side.write_buffer_size > idle_side._write_high
    assert result.sent == 1
    assert await bounded(reader.recv()) == LARGE
    return result, rounds, idle, idle_side


@aiotest(timeout=60)
async def test_a_slow_consumer_is_skipped_and_counted():
    room = Room(2)
    async with serve(room.handler, HOST, 0, write_limit=65536) as server:
        result, rounds, idle, idle_side = await broadcast_until_slow(server.port, room, "skip")
        assert result.skipped == [idle_side] and not result and idle_side.broadcast_skips == 1
        again = broadcast([idle_side], "again")
        assert (again.sent, again.skipped) == (0, [idle_side])
        assert idle_side.broadcast_skips == 2
        assert server.metrics.snapshot()["broadcast_skips"] == 2
        # Skipped, not closed: it still gets every message it was sent, then nothing else.
        for _ in range(rounds):
            assert await bounded(idle.recv()) == LARGE
        await idle.close()


@aiotest(timeout=60)
async def test_a_slow_consumer_is_closed_with_the_code_and_reason():
    room = Room(2)
    async with serve(room.handler, HOST, 0, write_limit=65536) as server:
        policy = Close(1013, "too slow")
        result, rounds, idle, idle_side = await broadcast_until_slow(server.port, room, policy)
        assert result.closed == [idle_side] and result.skipped == []
        assert idle_side.broadcast_skips == 1
        after = broadcast([idle_side], "after")
        assert after.not_open == [idle_side] and after.sent == 0
        for _ in range(rounds):
            assert await bounded(idle.recv()) == LARGE
        with pytest.raises(ConnectionClosed):
            await bounded(idle.recv())
        assert (idle.close_code, idle.close_reason) == (1013, "too slow")


@aiotest
async def test_bad_arguments_are_refused_before_anything_is_sent():
    room = Room(1)
    async with serve(room.handler, HOST, 0) as server:
        async with connect(ws_url(server.port)) as client:
            await bounded(room.full.wait())
            connections = room.all()
            with pytest.raises(ValueError, match="1008 or 1013"):
                broadcast(connections, "x", on_slow=Close(1000, ""))
            with pytest.raises(ValueError, match="on_slow"):
                broadcast(connections, "x", on_slow="drop")
            with pytest.raises(TypeError):
                broadcast(connections, 42)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                broadcast([object()], "x")  # type: ignore[list-item]
            assert broadcast(connections, "valid").sent == 1
            assert await bounded(client.recv()) == "valid"


def test_the_documented_example_runs():
    doc = Path(__file__).resolve().parents[2] / "docs" / "broadcast.md"
    example = doc.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["3 [] [] []"] + ["hello, everyone"] * 3
