"""broadcast() on the sync face: many clients of a ferrows server each receive the exact
message, compressed or not; slow consumers are skipped or closed, counted and reported."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import ferrows.sync
import pytest
from ferrows import Close, ConnectionClosed, Deflate
from ferrows.sync import ServerConnection, broadcast
from wsutil import Running

# Large enough to fill socket buffers quickly; random, so that compression cannot shrink it.
LARGE = os.urandom(65536)
TEXT = "broadcast " * 100


class Room:
    """A server handler that keeps every connection open, by path, until it closes."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.connections: dict[str, list[ServerConnection]] = {}
        self.full = threading.Event()

    def handler(self, connection: ServerConnection) -> None:
        with self.lock:
            self.connections.setdefault(connection.request.path, []).append(connection)
            if sum(map(len, self.connections.values())) == self.expected:
                self.full.set()
        connection.wait_closed(30)

    def all(self) -> list[ServerConnection]:
        assert self.full.wait(10), "the clients did not all connect"
        with self.lock:
            return [c for group in self.connections.values() for c in group]


def test_every_client_receives_the_exact_messages(ferrows_server: Callable[..., Running]):
    room = Room(50)
    server = ferrows_server(room.handler)
    clients = [ferrows.sync.connect(server.url) for _ in range(room.expected)]
    connections = room.all()
    messages = ["text", b"\x00bytes", ""]
    for message in messages:
        result = broadcast(connections, message)
        assert result.sent == room.expected and result
    # The server's metrics count broadcasts as sent messages, shared frames included.
    metrics = server.server.metrics.snapshot()
    assert (metrics["messages_out"], metrics["bytes_out"]) == (3 * 50, (4 + 6) * 50)
    for client in clients:
        assert [client.recv(timeout=10) for _ in messages] == messages
        client.close()


def test_clients_broadcast_with_their_own_masks(ferrows_server: Callable[..., Running]):
    received: list[Any] = []
    got_three = threading.Event()

    def collect(connection: ServerConnection) -> None:
        for message in connection:
            received.append(message)
            if len(received) == 3:
                got_three.set()

    server = ferrows_server(collect)
    clients = [ferrows.sync.connect(server.url) for _ in range(3)]
    assert broadcast(clients, "from every client").sent == 3
    assert got_three.wait(10)
    assert received == ["from every client"] * 3
    for client in clients:
        client.close()


def test_mixed_compression_every_client_decodes(ferrows_server: Callable[..., Running]):
    # Plain, context takeover (encoded per connection), and two shared compressed sets.
    client_options = [
        None,
        "deflate",
        Deflate(server_no_context_takeover=True),
        Deflate(server_no_context_takeover=True, server_max_window_bits=10),
    ]
    room = Room(2 * len(client_options))
    server = ferrows_server(room.handler)
    clients = [
        ferrows.sync.connect(server.url, compression=option)
        for option in client_options
        for _ in range(2)
    ]
    connections = room.all()
    compressions = [client.compression for client in clients]
    assert compressions[0] is None and compressions[4] != compressions[6]
    assert "server_no_context_takeover" in compressions[4]
    assert "server_no_context_takeover" not in compressions[2]
    messages = [TEXT, TEXT + "again", b"\x01" * 5000, "tiny"]
    for message in messages:
        assert broadcast(connections, message).sent == len(clients)
    for client in clients:
        assert [client.recv(timeout=10) for _ in messages] == messages
        client.close()


def broadcast_until_slow(server: Running, room: Room, on_slow: Any) -> tuple[Any, ...]:
    """Broadcasts LARGE to a client that reads and one that never does (its read limit
    stops it reading), each round once the reader got the last one, until the other is
    slow. Returns the result, the rounds both got, the idle client and its server side."""
    reader = ferrows.sync.connect(server.url + "reader", max_size=None)
    idle = ferrows.sync.connect(server.url + "idle", max_size=None, read_limit=65536)
    room.all()
    (reader_side,) = room.connections["/reader"]
    (idle_side,) = room.connections["/idle"]
    rounds = 0  # messages both clients were sent
    while True:
        result = broadcast([reader_side, idle_side], LARGE, on_slow=on_slow)
        if result.sent < 2:
            break
        rounds += 1
        assert rounds < 2000, "the idle client was never slow"
        assert reader.recv(timeout=10) == LARGE
    assert result.sent == 1
    assert reader.recv(timeout=10) == LARGE
    reader.close()
    return result, rounds, idle, idle_side


def test_a_slow_consumer_is_skipped_and_counted(ferrows_server: Callable[..., Running]):
    room = Room(2)
    server = ferrows_server(room.handler, write_limit=65536)
    result, rounds, idle, idle_side = broadcast_until_slow(server, room, "skip")
    assert result.skipped == [idle_side] and not result and idle_side.broadcast_skips == 1
    again = broadcast([idle_side], "again")
    assert (again.sent, again.skipped) == (0, [idle_side])
    assert idle_side.broadcast_skips == 2
    assert server.server.metrics.snapshot()["broadcast_skips"] == 2
    # Skipped, not closed: it still gets every message it was sent.
    for _ in range(rounds):
        assert idle.recv(timeout=10) == LARGE
    idle.close()


def test_a_slow_consumer_is_closed_with_the_code_and_reason(
    ferrows_server: Callable[..., Running],
):
    room = Room(2)
    server = ferrows_server(room.handler, write_limit=65536)
    policy = Close(1008, "too slow")
    result, rounds, idle, idle_side = broadcast_until_slow(server, room, policy)
    assert result.closed == [idle_side] and result.skipped == []
    assert idle_side.broadcast_skips == 1
    after = broadcast([idle_side], "after")
    assert after.not_open == [idle_side] and after.sent == 0
    for _ in range(rounds):
        assert idle.recv(timeout=10) == LARGE
    with pytest.raises(ConnectionClosed):
        idle.recv(timeout=10)
    assert (idle.close_code, idle.close_reason) == (1008, "too slow")


def test_bad_arguments_are_refused_before_anything_is_sent(
    ferrows_server: Callable[..., Running],
):
    room = Room(1)
    server = ferrows_server(room.handler)
    with ferrows.sync.connect(server.url) as client:
        connections = room.all()
        with pytest.raises(ValueError, match="1008 or 1013"):
            broadcast(connections, "x", on_slow=Close(1011, ""))
        with pytest.raises(ValueError, match="123 bytes"):
            broadcast(connections, "x", on_slow=Close(1013, "r" * 124))
        with pytest.raises(TypeError):
            broadcast(connections, 42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            broadcast([object()], "x")  # type: ignore[list-item]
        assert broadcast(connections, "valid").sent == 1
        assert client.recv(timeout=10) == "valid"
