"""Topics (ferrows.topics): in one process, and across server processes sharing a Redis that
goes away and comes back."""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosupport import HOST, aiotest, bounded, ws_url
from ferrows.asyncio import ClientConnection, ServerConnection, connect, serve
from ferrows.exceptions import ConnectionClosed
from ferrows.topics import Topics
from redisserver import RedisServer, free_port
from topics_server import Control, ServerProcess


def subscribing_handler(topics: Topics) -> Callable[[ServerConnection], Any]:
    """A handler that subscribes each connection to the topics of its path (``/a,b``), says
    so, then waits for the client to leave."""

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        await topics.subscribe(connection, *connection.request.path[1:].split(","))
        await connection.send("subscribed")
        await connection.wait_closed()

    return handler


async def subscriber(port: int, path: str) -> ClientConnection:
    """A client subscribed (by the server) to the topics of ``path``."""
    ws = await bounded(connect(ws_url(port, path)))
    assert (await bounded(ws.recv())).startswith("subscribed")
    return ws


async def server_side(topics: Topics, topic: str, count: int) -> list[ServerConnection]:
    """The server's connections subscribed to ``topic``, once there are ``count``."""
    members = list(topics.subscribers(topic))
    assert len(members) == count
    return members  # type: ignore[return-value]


# In one process


@aiotest
async def test_publish_reaches_the_subscribers_of_the_topic_only():
    async with Topics() as topics, serve(subscribing_handler(topics), HOST, 0) as server:
        room_a = await subscriber(server.port, "/room")
        room_b = await subscriber(server.port, "/room,lobby")
        lobby = await subscriber(server.port, "/lobby")
        assert await topics.publish("room", "hello") is True
        await topics.publish("room", b"\x00\x01")
        await topics.publish("lobby", "lobby news")
        assert await bounded(room_a.recv()) == "hello"
        assert await bounded(room_a.recv()) == b"\x00\x01"
        assert [await bounded(room_b.recv()) for _ in range(3)] == [
            "hello",
            b"\x00\x01",
            "lobby news",
        ]
        assert await bounded(lobby.recv()) == "lobby news"
        # Nothing else came: the next message each gets is the one published after.
        await topics.publish("lobby", "end")
        await topics.publish("room", "end")
        for ws in (room_a, room_b, lobby):
            assert await bounded(ws.recv()) == "end"
            await ws.close()
        assert (topics.stats.published, topics.stats.received) == (5, 5)
        assert topics.stats.delivered == 2 + 2 + 1 + 2 + 1 + 2
        assert (topics.stats.skipped, topics.stats.failed, topics.stats.missed) == (0, 0, 0)
        # Publishing to a topic nobody follows delivers nothing, and is no error.
        assert await topics.publish("empty", "nobody") is True


@aiotest
async def test_unsubscribe_stops_delivery():
    async with Topics() as topics, serve(subscribing_handler(topics), HOST, 0) as server:
        ws = await subscriber(server.port, "/room,lobby")
        (connection,) = await server_side(topics, "room", 1)
        assert topics.topics(connection) == {"room", "lobby"}
        await topics.unsubscribe(connection, "room")
        assert topics.topics(connection) == {"lobby"}
        assert topics.subscribers("room") == frozenset()
        await topics.publish("room", "not for you")
        await topics.publish("lobby", "still here")
        assert await bounded(ws.recv()) == "still here"
        # Without topics: all of them.
        await topics.unsubscribe(connection)
        assert topics.topics(connection) == frozenset()
        await topics.publish("lobby", "gone")
        await topics.subscribe(connection, "room")
        await topics.publish("room", "back")
        assert await bounded(ws.recv()) == "back"
        await ws.close()


@aiotest
async def test_a_closed_connection_leaves_its_topics():
    async with Topics() as topics, serve(subscribing_handler(topics), HOST, 0) as server:
        clients = [await subscriber(server.port, "/room,lobby") for _ in range(3)]
        members = await server_side(topics, "room", 3)
        for ws in clients[:2]:
            await ws.close()
        for connection in members:
            if connection.remote_address[1] != clients[2].local_address[1]:
                await bounded(connection.wait_closed())
        # The closed ones are gone from every table; the open one stays.
        (remaining,) = topics.subscribers("room")
        assert topics.subscribers("lobby") == {remaining}
        assert remaining.remote_address[1] == clients[2].local_address[1]
        assert set(topics._topics_of) == set(topics._watchers) == {remaining}
        await clients[2].close()
        await bounded(remaining.wait_closed())
        assert topics._subscribers == topics._topics_of == topics._watchers == {}
        # A closed connection cannot be subscribed.
        with pytest.raises(ConnectionClosed):
            await topics.subscribe(remaining, "room")
        assert topics._topics_of == {}


@aiotest
async def test_bad_names_sizes_and_counts_are_refused():
    async with Topics(max_topics_per_connection=2, max_message_size=10) as topics:
        async with serve(subscribing_handler(topics), HOST, 0) as server:
            ws = await subscriber(server.port, "/a,b")
            (connection,) = await server_side(topics, "a", 1)
            with pytest.raises(ValueError, match="2 topics"):
                await topics.subscribe(connection, "c")
            await topics.subscribe(connection, "a", "b")  # already: no more of them
            with pytest.raises(ValueError, match="1 to 256 bytes"):
                await topics.subscribe(connection, "")
            with pytest.raises(ValueError, match="1 to 256 bytes"):
                await topics.publish("é" * 129, "x")
            with pytest.raises(TypeError):
                await topics.subscribe(connection, b"a")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"ferrows\.asyncio connections"):
                await topics.subscribe(object(), "a")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="11 bytes over max_message_size"):
                await topics.publish("a", "x" * 11)
            with pytest.raises(ValueError, match="over max_message_size"):
                await topics.publish("a", "é" * 6)
            with pytest.raises(TypeError):
                await topics.publish("a", 1)  # type: ignore[arg-type]
            assert topics.topics(connection) == {"a", "b"}
            assert topics.stats.published == 0
            await ws.close()
    with pytest.raises(ValueError, match="unsupported topics URL"):
        Topics("http://127.0.0.1/")
    with pytest.raises(ValueError, match="max_topics_per_connection"):
        Topics(max_topics_per_connection=0)


@aiotest
async def test_a_slow_subscriber_misses_messages_and_the_others_do_not():
    message = os.urandom(16384)  # compression would not shrink it
    async with Topics(max_buffered=256 << 10) as topics:
        async with serve(subscribing_handler(topics), HOST, 0) as server:
            fast = await subscriber(server.port, "/room")
            # Stops reading once 16 KiB wait in its inbox, and never receives.
            slow = await bounded(connect(ws_url(server.port, "/room"), read_limit=16384))
            await server_side(topics, "room", 2)
            slow_side = next(
                c for c in topics.subscribers("room") if c.remote_address == slow.local_address
            )
            # Until the kernel's buffers are full and the slow one's buffer is over the limit.
            sent = 0
            while not topics.stats.skipped and sent < 5000:
                sent += 1
                await topics.publish("room", message)
                assert await bounded(fast.recv()) == message
            assert topics.stats.skipped == 1, f"no skip after {sent} messages"
            assert slow_side.write_buffer_size > 256 << 10
            for _ in range(100):
                await topics.publish("room", message)
                assert await bounded(fast.recv()) == message
                # What the slow one holds stays bounded (100 messages are 1.6 MiB).
                assert slow_side.write_buffer_size < (256 << 10) + 2 * len(message)
            # Each message reached the fast one; the slow one got it or missed it, counted.
            to_slow = topics.stats.delivered - (sent + 100)
            assert to_slow + topics.stats.skipped == sent + 100
            assert topics.stats.failed == 0
            await fast.close()
            slow._transport.abort()  # type: ignore[union-attr]


# Across processes, through Redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def server_processes(
    redis_server: RedisServer, loop_kind: str
) -> Iterator[Callable[..., list[ServerProcess]]]:
    """Factory: ``server_processes(count, port=None)`` starts topics_server.py processes on
    the test's Redis and loop kind."""
    started: list[ServerProcess] = []

    def start(count: int, port: int | None = None) -> list[ServerProcess]:
        for _ in range(count):
            started.append(ServerProcess(redis_server.url, loop_kind, port))
        return started[-count:]

    yield start
    for process in started:
        process.stop()


@aiotest(timeout=60)
async def test_a_message_published_on_one_process_reaches_every_process(server_processes):
    processes = server_processes(3)
    controls = [await Control.open(p.port) for p in processes]
    rooms = [await subscriber(p.port, "/sub/room") for p in processes]
    lobby = await subscriber(processes[1].port, "/sub/lobby")
    assert await controls[0].publish("room", "from 0") is True
    assert await controls[2].publish("room", "from 2") is True
    assert await controls[2].publish("lobby", "lobby news") is True
    for ws in rooms:
        assert [await bounded(ws.recv()) for _ in range(2)] == ["from 0", "from 2"]
    assert await bounded(lobby.recv()) == "lobby news"
    stats = [await control("stats") for control in controls]
    assert [s["published"] for s in stats] == [1, 0, 2]
    # Each process gets what it subscribed to: the room's messages, and the lobby's on 1.
    assert [s["received"] for s in stats] == [2, 3, 2]
    assert [s["delivered"] for s in stats] == [2, 3, 2]
    assert all(s["missed"] == s["publish_lost"] == s["disconnects"] == 0 for s in stats)
    # Once none of its connections follows the room, a process no longer receives it.
    await controls[2]("unsubscribe", topic="room")
    await controls[0].publish("room", "after")
    for ws in rooms[:2]:
        assert await bounded(ws.recv()) == "after"
    await controls[0].publish("lobby", "marker")
    assert await bounded(lobby.recv()) == "marker"
    assert (await controls[2]("stats"))["received"] == 2
    for ws in [*rooms, lobby, *(control.ws for control in controls)]:
        await ws.close()


@aiotest(timeout=60)
async def test_redis_going_away_and_coming_back(server_processes, redis_server):
    processes = server_processes(3)
    controls = [await Control.open(p.port) for p in processes]
    rooms = [await subscriber(p.port, "/sub/room") for p in processes]
    await controls[0].publish("room", "before")
    for ws in rooms:
        assert await bounded(ws.recv()) == "before"

    redis_server.stop()
    for control in controls:
        await control("wait_disconnected")
    # Published while Redis is away: lost, and counted where it was published.
    assert await controls[0].publish("room", "during") is False
    assert (await controls[0]("stats"))["publish_lost"] == 1

    redis_server.start()
    for control in controls:
        await control("wait_connected", timeout=15)
    # Once back, every process subscribed again and receives.
    assert await controls[0].publish("room", "after") is True
    for ws in rooms:
        assert await bounded(ws.recv()) == "after"
    for control in controls:
        stats = await control("stats")
        assert (stats["disconnects"], stats["reconnects"], stats["connected"]) == (1, 1, True)
        # Every process saw the gap in the publisher's sequence: one message missed.
        assert (stats["received"], stats["missed"]) == (2, 1)
    for ws in [*rooms, *(control.ws for control in controls)]:
        await ws.close()


@aiotest(timeout=60)
async def test_processes_sharing_a_port_with_reuse_port(server_processes):
    port = free_port()
    processes = server_processes(2, port)
    assert {p.port for p in processes} == {port}
    # The kernel spreads connections over the processes: open them until both have some.
    clients, pids = [], set()
    for _ in range(200):
        ws = await bounded(connect(ws_url(port, "/sub/room")))
        pids.add((await bounded(ws.recv())).split()[1])
        clients.append(ws)
        if len(pids) == 2:
            break
    assert len(pids) == 2, "one process got every connection"
    control = await Control.open(port)
    await control.publish("room", "everyone")
    for ws in clients:
        assert await bounded(ws.recv()) == "everyone"
        await ws.close()
    await control.ws.close()


# Through Redis, in the test's process


@aiotest
async def test_what_redis_brings_that_is_not_ours_is_refused(redis_server):
    import redis.asyncio

    async with Topics(redis_server.url, max_message_size=100) as topics:
        await bounded(topics.wait_connected())
        async with serve(subscribing_handler(topics), HOST, 0) as server:
            ws = await subscriber(server.port, "/room")
            other = redis.asyncio.from_url(redis_server.url)
            header = b"\x01" + bytes(16) + (1).to_bytes(8, "big")
            for data in (
                b"short",  # no header
                b"\x03" + header[1:] + b"kind?",  # neither text nor binary
                header + b"\xff\xfe",  # text, not UTF-8
                header + b"x" * 101,  # over max_message_size
            ):
                assert await other.publish("ferrows:room", data) == 1
            assert await other.publish("ferrows:room", header + b"ours") == 1
            await other.aclose()
            # Only the well-formed message arrives; the others are counted.
            assert await bounded(ws.recv()) == "ours"
            assert (topics.stats.rejected, topics.stats.received) == (4, 1)
            await topics.publish("room", b"binary")
            assert await bounded(ws.recv()) == b"binary"
            await ws.close()


@aiotest
async def test_redis_absent_at_start_then_there(tmp_path):
    redis_server = RedisServer(tmp_path)  # not started: its port refuses connections
    async with Topics(redis_server.url, backoff=(0.1, 1.618, 0.5)) as topics:
        assert not topics.connected
        async with serve(subscribing_handler(topics), HOST, 0) as server:
            # Subscribing does not wait for Redis; publishing is lost, and counted.
            ws = await subscriber(server.port, "/room")
            assert await topics.publish("room", "lost") is False
            assert topics.stats.publish_lost == 1
            redis_server.start()
            try:
                await bounded(topics.wait_connected())
                # Connected means subscribed: what is published now arrives.
                assert await topics.publish("room", "arrives") is True
                assert await bounded(ws.recv()) == "arrives"
                # A first connection is no reconnection; no gap was seen (a first message).
                assert (topics.stats.disconnects, topics.stats.reconnects) == (0, 0)
                assert topics.stats.missed == 0
                await ws.close()
            finally:
                redis_server.stop()
        await bounded(topics.wait_disconnected())
        assert topics.stats.disconnects == 1


def record_batches(topics: Topics) -> list[int]:
    """The number of messages of each pipelined write to Redis, as they are sent."""
    sizes: list[int] = []
    client = topics._backend._client  # type: ignore[union-attr]
    original = client.pipeline

    def recording_pipeline(**kwargs: Any) -> Any:
        pipeline = original(**kwargs)
        execute = pipeline.execute

        async def recorded(*args: Any, **kwargs: Any) -> Any:
            sizes.append(len(pipeline.command_stack))
            return await execute(*args, **kwargs)

        pipeline.execute = recorded
        return pipeline

    client.pipeline = recording_pipeline
    return sizes


@aiotest
async def test_publishes_wait_for_room_and_arrive_in_order(redis_server):
    async with Topics(redis_server.url, max_pending=(4, 1 << 20)) as topics:
        await bounded(topics.wait_connected())
        batches = record_batches(topics)
        async with serve(subscribing_handler(topics), HOST, 0) as server:
            ws = await subscriber(server.port, "/room")
            publishes = [topics.publish("room", f"m{i}") for i in range(200)]
            assert all(await bounded(asyncio.gather(*publishes)))
            # At most 4 messages waited at once: the other publishers waited for room.
            assert sum(batches) == 200 and max(batches) <= 4
            # One connection, in order: no gap seen, nothing out of order.
            assert [await bounded(ws.recv()) for _ in range(200)] == [f"m{i}" for i in range(200)]
            assert (topics.stats.published, topics.stats.missed) == (200, 0)
            await ws.close()


@aiotest
async def test_the_chat_example_of_docs_scaling(redis_server):
    text = (Path(__file__).resolve().parents[2] / "docs" / "scaling.md").read_text()
    code = re.search(r"```python\n(.*?async def chat.*?)```", text, re.DOTALL)
    assert code, "no chat example in docs/scaling.md"
    example: dict[str, Any] = {"__name__": "chat"}
    exec(code.group(1), example)
    async with Topics(redis_server.url) as first, Topics(redis_server.url) as second:
        await bounded(asyncio.gather(first.wait_connected(), second.wait_connected()))
        chat = example["chat"]
        async with (
            serve(functools.partial(chat, first), HOST, 0) as one,
            serve(functools.partial(chat, second), HOST, 0) as two,
        ):
            clients = []
            # What one sends comes back once its server subscribed it: then it follows.
            for port, room, name in ((one.port, "/room", "alice"), (two.port, "/room", "bob")):
                ws = await bounded(connect(ws_url(port, room)))
                await ws.send(f"{name} here")
                assert await bounded(ws.recv()) == f"{name} here"
                clients.append(ws)
            carol = await bounded(connect(ws_url(two.port, "/other")))
            await carol.send("carol here")
            assert await bounded(carol.recv()) == "carol here"
            alice, bob = clients
            assert await bounded(alice.recv()) == "bob here"
            await alice.send("hello room")
            assert await bounded(bob.recv()) == "hello room"
            assert await bounded(alice.recv()) == "hello room"
            await carol.send("elsewhere")
            assert await bounded(carol.recv()) == "elsewhere"
            await bob.send("bye")
            # Alice's next message is bob's: carol's room is not hers.
            assert await bounded(alice.recv()) == "bye"
            for ws in (alice, bob, carol):
                await ws.close()
