"""Topics: named groups of asyncio connections, and publishing to every member of a topic on
every server process.

``Topics()`` delivers within this process. ``Topics("redis://host:6379/0")`` goes through
Redis pub/sub (the ``redis`` package): each process subscribes Redis to the topics its
connections are subscribed to, every publish goes to Redis, and every process delivers what
Redis sends it to its own subscribers. Redis pub/sub keeps nothing: a message published while a
process is not connected to Redis is lost for that process, and counted (:class:`TopicStats`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import struct
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from . import _ferrows
from ._messages import Data
from .asyncio.broadcast import broadcast
from .asyncio.connection import Connection

__all__ = ["TopicStats", "Topics"]

logger = logging.getLogger("ferrows.topics")

#: Reconnection to Redis: the first delay is random up to 0.5 s, then delays grow by the
#: golden ratio up to 10 s (the core's backoff policy, as the clients' reconnection).
REDIS_BACKOFF = (0.5, 1.618, 10.0)

# What travels through Redis: a kind (text or binary), the publishing Topics' id and its
# sequence number on that topic, then the payload. Gaps in the sequence are messages lost.
_HEADER = struct.Struct(">B16sQ")
_TEXT, _BINARY = 1, 2
# Publishers whose sequence is followed, per topic; and topics whose sequence a publisher
# keeps. Past these the oldest is forgotten (its next message starts afresh, no gap counted).
_MAX_PUBLISHERS_PER_TOPIC = 1024
_MAX_SEQUENCES = 10_000
# Messages sent to Redis in one pipelined write, at most.
_BATCH = 512


@dataclasses.dataclass
class TopicStats:
    """Counters of a :class:`Topics`, since it was created."""

    #: Messages this process published that the backend took.
    published: int = 0
    #: Messages this process published that were lost for every process: Redis was
    #: unreachable, or the write to it failed (Redis may have taken part of that write).
    publish_lost: int = 0
    #: Messages that arrived from the backend (published here or elsewhere).
    received: int = 0
    #: Messages published (here or elsewhere) on a subscribed topic that never arrived here,
    #: whatever the cause: gaps in their publisher's sequence, seen when its next message
    #: arrives.
    missed: int = 0
    #: Messages from Redis refused: malformed, or over ``max_message_size``.
    rejected: int = 0
    #: Messages handed to connections.
    delivered: int = 0
    #: Deliveries skipped because the connection had more than ``max_buffered`` bytes unsent
    #: (a slow subscriber): that connection misses the message.
    skipped: int = 0
    #: Deliveries to connections that were closing.
    failed: int = 0
    #: Times the connection to Redis was lost, and re-established.
    disconnects: int = 0
    reconnects: int = 0


def _deliver(
    connections: Iterable[Connection], message: Data, max_buffered: int
) -> tuple[int, int, int]:
    """Sends ``message`` to each connection without waiting, encoded once
    (:func:`ferrows.asyncio.broadcast`); returns how many were sent, skipped (over
    ``max_buffered`` unsent bytes, or over their own write limit) and failed (not open).
    Every local delivery, of messages published here or arriving from Redis, goes through
    here."""
    targets: list[Connection] = []
    skipped = 0
    for connection in connections:
        if connection.write_buffer_size > max_buffered:
            skipped += 1
        else:
            targets.append(connection)
    result = broadcast(targets, message)
    return result.sent, skipped + len(result.skipped), len(result.not_open)


class Topics:
    """Connections subscribed to named topics, and publishing to them.

    ``url`` None keeps everything in this process; ``redis://`` or ``rediss://`` URLs (as
    the ``redis`` package reads them) share topics between every process using that Redis.
    Use it as ``async with Topics(url) as topics`` (or ``await topics.start()`` and
    ``await topics.close()``). A connection leaves its topics when it closes.

    ``max_message_size`` bounds what is published and what is accepted from Redis (bytes,
    UTF-8 for text), ``max_topics_per_connection`` and ``max_topic_length`` (bytes) what a
    connection can be subscribed to, ``max_buffered`` the unsent bytes past which a
    connection misses messages (``stats.skipped``), ``backoff`` the reconnection delays to
    Redis (first at most, factor, maximum, in seconds), ``max_pending`` the messages and
    bytes waiting to be sent to Redis (past either, ``publish()`` waits for room).
    Redis channels are named ``channel_prefix`` + the topic.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        max_message_size: int = 2**20,
        max_topics_per_connection: int = 1000,
        max_topic_length: int = 256,
        max_buffered: int = 2**20,
        backoff: tuple[float, float, float] = REDIS_BACKOFF,
        channel_prefix: str = "ferrows:",
        max_pending: tuple[int, int] = (1000, 16 * 2**20),
    ) -> None:
        for name, value in (
            ("max_message_size", max_message_size),
            ("max_topics_per_connection", max_topics_per_connection),
            ("max_topic_length", max_topic_length),
            ("max_pending messages", max_pending[0]),
            ("max_pending bytes", max_pending[1]),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if max_buffered < 0:
            raise ValueError("max_buffered must be >= 0")
        self.max_message_size = max_message_size
        self.max_topics_per_connection = max_topics_per_connection
        self.max_topic_length = max_topic_length
        self.max_buffered = max_buffered
        self.stats = TopicStats()
        self._subscribers: dict[str, set[Connection]] = {}
        # Every connection ever subscribed, until it closes (its set may be empty), and the
        # task that waits for it to close, made once.
        self._topics_of: dict[Connection, set[str]] = {}
        self._watchers: dict[Connection, asyncio.Task[None]] = {}
        self._backend: _LocalBackend | _RedisBackend
        if url is None:
            self._backend = _LocalBackend(self)
        elif url.startswith(("redis://", "rediss://")):
            self._backend = _RedisBackend(self, url, backoff, channel_prefix, max_pending)
        else:
            raise ValueError(f"unsupported topics URL: {url!r} (None or redis://...)")

    async def start(self) -> None:
        """Starts the backend: for Redis, connecting in the background (see
        :meth:`wait_connected`)."""
        await self._backend.start()

    async def close(self) -> None:
        """Stops the backend; subscriptions are forgotten, connections stay open."""
        await self._backend.close()
        for watcher in self._watchers.values():
            watcher.cancel()
        self._watchers.clear()
        self._topics_of.clear()
        self._subscribers.clear()

    async def __aenter__(self) -> Topics:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """Whether published messages can reach the other processes now (always, in-process)."""
        return self._backend.connected

    async def wait_connected(self) -> None:
        """Returns once connected to the backend (at once in-process)."""
        await self._backend.wait_connected()

    async def wait_disconnected(self) -> None:
        """Returns once the connection to the backend is lost (never in-process): messages
        published from then on are lost until it is back."""
        await self._backend.wait_disconnected()

    def topics(self, connection: Connection) -> frozenset[str]:
        """The topics ``connection`` is subscribed to."""
        return frozenset(self._topics_of.get(connection, ()))

    def subscribers(self, topic: str) -> frozenset[Connection]:
        """The connections of this process subscribed to ``topic``."""
        return frozenset(self._subscribers.get(topic, ()))

    async def subscribe(self, connection: Connection, *topics: str) -> None:
        """Subscribes ``connection`` to ``topics``. Once this returns, while connected,
        messages published to them on any process reach it. Raises
        :class:`~ferrows.exceptions.ConnectionClosed` if it is closed, ``ValueError`` past
        ``max_topics_per_connection`` or for a bad topic name, ``TypeError`` for another
        kind of connection."""
        if not isinstance(connection, Connection):
            raise TypeError(f"topics hold ferrows.asyncio connections, not {connection!r}")
        for topic in topics:
            self._check_topic(topic)
        if connection.close_code is not None:
            connection._raise_closed()
        current = self._topics_of.get(connection)
        new = [topic for topic in dict.fromkeys(topics) if current is None or topic not in current]
        if len(current or ()) + len(new) > self.max_topics_per_connection:
            raise ValueError(
                f"a connection may be subscribed to {self.max_topics_per_connection} topics"
            )
        if current is None:
            current = self._topics_of[connection] = set()
            watcher = self._watchers[connection] = asyncio.get_running_loop().create_task(
                connection.wait_closed()
            )
            watcher.add_done_callback(functools.partial(self._closed, connection))
        first = []
        for topic in new:
            current.add(topic)
            subscribers = self._subscribers.get(topic)
            if subscribers is None:
                subscribers = self._subscribers[topic] = set()
                first.append(topic)
            subscribers.add(connection)
        await self._backend.listen(first)

    async def unsubscribe(self, connection: Connection, *topics: str) -> None:
        """Unsubscribes ``connection`` from ``topics`` (all of its topics if none given).
        Once this returns, while connected, this process no longer receives the messages of
        the topics none of its connections follows."""
        await self._backend.unlisten(self._remove(connection, topics))

    def _remove(self, connection: Connection, topics: Iterable[str]) -> list[str]:
        """Takes ``connection`` out of ``topics`` (all if empty); returns the topics that no
        connection of this process is subscribed to any more."""
        current = self._topics_of.get(connection)
        if current is None:
            return []
        last = []
        for topic in list(topics or current):
            if topic not in current:
                continue
            current.discard(topic)
            subscribers = self._subscribers[topic]
            subscribers.discard(connection)
            if not subscribers:
                del self._subscribers[topic]
                last.append(topic)
        return last

    def _closed(self, connection: Connection, watcher: asyncio.Task[None]) -> None:
        """A subscribed connection closed: it leaves every topic."""
        if watcher.cancelled():
            return  # the topics closed first
        last = self._remove(connection, ())
        # Gone already when the topics closed after the watcher ended, before this ran.
        self._topics_of.pop(connection, None)
        self._watchers.pop(connection, None)
        self._backend.unlisten_soon(last)

    def _check_topic(self, topic: str) -> None:
        if not isinstance(topic, str):
            raise TypeError(f"a topic is a str, not {type(topic).__name__}")
        if not topic or len(topic.encode()) > self.max_topic_length:
            raise ValueError(f"a topic has 1 to {self.max_topic_length} bytes (UTF-8)")

    async def publish(self, topic: str, message: Data) -> bool:
        """Sends ``message`` (``str`` as text, ``bytes`` as binary) to the subscribers of
        ``topic`` on every process. Returns False if it was lost because Redis was
        unreachable (``stats.publish_lost``). ``ValueError`` over ``max_message_size``."""
        self._check_topic(topic)
        if not isinstance(message, (str, bytes)):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        size = len(message.encode() if isinstance(message, str) else message)
        if size > self.max_message_size:
            raise ValueError(f"message of {size} bytes over max_message_size")
        return await self._backend.publish(topic, message)

    def _arrived(self, topic: str, message: Data) -> None:
        """A message for ``topic`` arrived from the backend: to this process' subscribers."""
        self.stats.received += 1
        subscribers = self._subscribers.get(topic)
        if not subscribers:
            return
        sent, skipped, failed = _deliver(tuple(subscribers), message, self.max_buffered)
        self.stats.delivered += sent
        self.stats.skipped += skipped
        self.stats.failed += failed


class _LocalBackend:
    """Topics within one process: publishing is delivering."""

    connected = True

    def __init__(self, topics: Topics) -> None:
        self._topics = topics

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def wait_connected(self) -> None:
        pass

    async def wait_disconnected(self) -> None:
        await asyncio.get_running_loop().create_future()

    async def listen(self, topics: list[str]) -> None:
        pass

    async def unlisten(self, topics: list[str]) -> None:
        pass

    def unlisten_soon(self, topics: list[str]) -> None:
        pass

    async def publish(self, topic: str, message: Data) -> bool:
        self._topics.stats.published += 1
        self._topics._arrived(topic, message)
        return True


class _RedisBackend:
    """Topics through Redis pub/sub: one channel per topic, one subscribing connection (read
    by a task that delivers what arrives) and one publishing connection (written by a task
    that sends what waits in the outbox, in order, pipelined). Connection errors are handled
    here, not retried by the ``redis`` package: the reading task reconnects with backoff and
    subscribes again to the topics of the moment."""

    def __init__(
        self,
        topics: Topics,
        url: str,
        backoff: tuple[float, float, float],
        prefix: str,
        max_pending: tuple[int, int],
    ) -> None:
        try:
            import redis.asyncio
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Redis topics need the redis package: pip install redis") from exc
        self._topics = topics
        self._backoff = backoff
        self._prefix = prefix.encode()
        # The subscribing connection and the publishing one. Commands time out after 10 s
        # (not reading the subscription, which waits as long as Redis is silent).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=2,
            timeout=5,
            retry=Retry(NoBackoff(), 0),
            socket_keepalive=True,
            socket_connect_timeout=5,
            socket_timeout=10,
        )
        self._client = redis.asyncio.Redis(connection_pool=pool)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._id = uuid.uuid4().bytes
        # Our next sequence number per topic, and the last seen per topic and publisher.
        self._sent: dict[str, int] = {}
        self._seen: dict[str, dict[bytes, int]] = {}
        self._pubsub: Any = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._disconnected.set()
        # Subscribing and unsubscribing, one at a time, to what the topics need.
        self._sync_lock = asyncio.Lock()
        self._subscribed: set[str] = set()
        # Subscriptions and unsubscriptions sent and not yet confirmed by Redis, by kind
        # ("subscribe" or "unsubscribe") and channel.
        self._confirmations: dict[tuple[str, bytes], asyncio.Future[None]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._ever_connected = False
        self._background: set[asyncio.Task[None]] = set()
        # What publish() gave and the writing task has not taken yet, with its size in bytes
        # and the future of each message (whether Redis took it).
        self._outbox: collections.deque[tuple[bytes, bytes, asyncio.Future[bool]]] = (
            collections.deque()
        )
        self._outbox_bytes = 0
        self._max_outbox, self._max_outbox_bytes = max_pending
        self._outbox_filled = asyncio.Event()
        self._outbox_room = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        if self._runner is None:
            loop = asyncio.get_running_loop()
            self._runner = loop.create_task(self._run())
            self._writer = loop.create_task(self._write())

    async def close(self) -> None:
        # The writer sends what waits (or fails it) and stops.
        self._closing = True
        self._outbox_filled.set()
        self._outbox_room.set()
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        # Confirmations will not come any more: whoever waits for them is released.
        await self._disconnect()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._client.aclose(close_connection_pool=True)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        await self._disconnected.wait()

    def _channel(self, topic: str) -> bytes:
        return self._prefix + topic.encode()

    async def _run(self) -> None:
        delays = _ferrows.Backoff(*self._backoff)
        while True:
            try:
                await self._connect()
                delays = _ferrows.Backoff(*self._backoff)
                await self._read(None)
            except self._errors as exc:
                if self._connected.is_set():
                    self._topics.stats.disconnects += 1
                await self._disconnect()
                delay = next(delays)
                logger.warning("Redis unreachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def _connect(self) -> None:
        """Connects, subscribes to the topics of the moment and reads until Redis confirmed
        them: from then on, the topics are connected."""
        async with self._sync_lock:
            # Publishing connections opened before a disconnection are dead.
            await self._client.connection_pool.disconnect()
            self._pubsub = self._client.pubsub()
            await self._pubsub.connect()
            self._subscribed = set()
            # Sequences are followed across the disconnection, for the topics still wanted.
            wanted = self._topics._subscribers
            self._seen = {topic: seen for topic, seen in self._seen.items() if topic in wanted}
        await self._read(await self._send_changes())
        if self._ever_connected:
            self._topics.stats.reconnects += 1
            logger.info("reconnected to Redis")
        self._ever_connected = True
        self._connected.set()
        self._disconnected.clear()

    async def _disconnect(self) -> None:
        self._connected.clear()
        self._disconnected.set()
        # Publishers waiting for room in the outbox: their messages are lost.
        self._outbox_room.set()
        for waiter in self._confirmations.values():
            if not waiter.done():
                waiter.set_result(None)
        self._confirmations.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except self._errors:
                pass

    async def _read(self, until: list[asyncio.Future[None]] | None) -> None:
        """Reads what Redis sends: forever, or until the futures ``until`` are done."""
        pubsub = self._pubsub
        while until is None or not all(waiter.done() for waiter in until):
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._received(message["channel"], message["data"])
            elif kind in ("subscribe", "unsubscribe"):
                waiter = self._confirmations.pop((kind, message["channel"]), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    def _received(self, channel: bytes, data: bytes) -> None:
        stats = self._topics.stats
        topic = channel[len(self._prefix) :].decode()
        if len(data) < _HEADER.size or len(data) - _HEADER.size > self._topics.max_message_size:
            stats.rejected += 1
            return
        kind, publisher, sequence = _HEADER.unpack_from(data)
        payload = data[_HEADER.size :]
        try:
            message: Data = payload.decode() if kind == _TEXT else payload
        except UnicodeDecodeError:
            kind = 0
        if kind not in (_TEXT, _BINARY):
            stats.rejected += 1
            return
        if topic in self._subscribed:
            self._count_gap(self._seen.setdefault(topic, {}), publisher, sequence)
        self._topics._arrived(topic, message)

    def _count_gap(self, seen: dict[bytes, int], publisher: bytes, sequence: int) -> None:
        """Counts the messages of ``publisher`` missed before ``sequence`` (none at its
        first message, or when its sequence started again)."""
        last = seen.pop(publisher, None)
        if last is not None and sequence > last:
            self._topics.stats.missed += sequence - last - 1
        elif len(seen) >= _MAX_PUBLISHERS_PER_TOPIC:
            del seen[next(iter(seen))]
        seen[publisher] = sequence

    async def _sync(self) -> None:
        """Subscribes and unsubscribes Redis to what the topics need now; waits until Redis
        confirmed (or the connection was lost)."""
        waiters = await self._send_changes()
        if waiters:
            await asyncio.gather(*waiters)

    async def _send_changes(self) -> list[asyncio.Future[None]]:
        """Sends Redis the subscriptions and unsubscriptions the topics need now; returns the
        futures of those Redis has not confirmed yet."""
        async with self._sync_lock:
            pubsub = self._pubsub
            if pubsub is None:
                return []
            wanted = set(self._topics._subscribers)
            new = wanted - self._subscribed
            old = self._subscribed - wanted
            self._subscribed = wanted
            loop = asyncio.get_running_loop()
            for kind, topics in (("subscribe", new), ("unsubscribe", old)):
                for topic in topics:
                    self._confirmations.setdefault(
                        (kind, self._channel(topic)), loop.create_future()
                    )
            try:
                if old:
                    await pubsub.unsubscribe(*(self._channel(topic) for topic in old))
                    for topic in old:
                        self._seen.pop(topic, None)
                if new:
                    await pubsub.subscribe(*(self._channel(topic) for topic in new))
            except self._errors:
                return []  # the reading task reconnects, and subscribes again
            return list(self._confirmations.values())

    async def listen(self, topics: list[str]) -> None:
        await self._sync()

    async def unlisten(self, topics: list[str]) -> None:
        if topics:
            await self._sync()

    def unlisten_soon(self, topics: list[str]) -> None:
        if topics and self._pubsub is not None:
            task = asyncio.get_running_loop().create_task(self._sync())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def publish(self, topic: str, message: Data) -> bool:
        sequence = self._sent.pop(topic, 0) + 1
        if len(self._sent) >= _MAX_SEQUENCES:
            del self._sent[next(iter(self._sent))]
        self._sent[topic] = sequence
        if isinstance(message, str):
            header, payload = _HEADER.pack(_TEXT, self._id, sequence), message.encode()
        else:
            header, payload = _HEADER.pack(_BINARY, self._id, sequence), message
        data = header + payload
        while self._connected.is_set() and not self._closing and self._outbox_full(len(data)):
            self._outbox_room.clear()
            await self._outbox_room.wait()
        if not self._connected.is_set() or self._closing:
            self._topics.stats.publish_lost += 1
            return False
        published = asyncio.get_running_loop().create_future()
        self._outbox.append((self._channel(topic), data, published))
        self._outbox_bytes += len(data)
        self._outbox_filled.set()
        return await published

    def _outbox_full(self, size: int) -> bool:
        if not self._outbox:
            return False
        return (
            len(self._outbox) >= self._max_outbox
            or self._outbox_bytes + size > self._max_outbox_bytes
        )

    async def _write(self) -> None:
        """Sends what waits in the outbox, in order, in pipelined batches on one connection;
        a batch that fails is lost (Redis may have taken some of it)."""
        stats = self._topics.stats
        outbox = self._outbox
        while not (self._closing and not outbox):
            await self._outbox_filled.wait()
            self._outbox_filled.clear()
            while outbox:
                batch = [outbox.popleft() for _ in range(min(len(outbox), _BATCH))]
                self._outbox_bytes -= sum(len(data) for _, data, _ in batch)
                self._outbox_room.set()
                pipeline = self._client.pipeline(transaction=False)
                for channel, data, _ in batch:
                    pipeline.publish(channel, data)
                try:
                    await pipeline.execute()
                    taken = True
                except self._errors as exc:
                    logger.debug("%d messages lost: %s", len(batch), exc)
                    taken = False
                if taken:
                    stats.published += len(batch)
                else:
                    stats.publish_lost += len(batch)
                for _, _, published in batch:
                    if not published.done():
                        published.set_result(taken)
