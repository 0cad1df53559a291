"""The connection object of the asyncio face, shared by clients and servers.

A ``Connection`` is the asyncio protocol of its transport: bytes arrive in ``buffer_updated``
and go straight into the native protocol core on the event-loop thread; no other thread is
involved. Messages wait in the core's inbox (bounded in bytes and items, reassembled there)
until ``recv()`` takes them, or go to a listener's ``on_message`` in the callback API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import Any

from .. import _ferrows
from .._messages import Data, decoded, fragment, payload, typed
from ..exceptions import ConcurrencyError, ConnectionClosed, ConnectionClosedOK, _from_core
from ..frames import CloseCode
from ..http11 import Request, Response

__all__ = ["Connection", "Data", "Listener"]


_PING, _PONG, _CLOSED, _OUTPUT, _TIMER = 1, 2, 3, 4, 5
# Receiving 64 KiB messages, a 16 KiB buffer takes 4 reads each and 1.2 to 1.5 times the CPU
# of a 64 KiB one; 256 KiB gains nothing steady over 64 KiB. Shared, it costs memory once per
# thread.
_READ_BUFFER_SIZE = 65536

_thread_state = threading.local()


def _send_buffer() -> Any:
    """The buffer the connections of the calling thread's event loop reuse for large frames
    (``_ferrows.SendBuffer``), reused only once no transport refers to it."""
    shared = getattr(_thread_state, "send_buffer", None)
    if shared is None:
        shared = _thread_state.send_buffer = _ferrows.SendBuffer()
    return shared


def _read_buffer() -> tuple[bytearray, memoryview]:
    """The read buffer shared by every connection of the calling thread's event loop.

    A transport reads into it and calls ``buffer_updated``, which copies or consumes every
    byte before returning (the protocol core keeps none of it), and a thread runs one loop
    at a time: one buffer per thread is never used by two reads at once. Connections then
    cost no read buffer of their own, however many there are.
    """
    shared = getattr(_thread_state, "read_buffer", None)
    if shared is None:
        buffer = bytearray(_READ_BUFFER_SIZE)
        shared = _thread_state.read_buffer = (buffer, memoryview(buffer))
    return shared


class Listener:
    """The callback API: subclass it and override what you need.

    Every method runs on the event-loop thread, with no ``await`` on the data path; send
    with :meth:`Connection.send_nowait`. A listener is given to
    :func:`ferrows.asyncio.client.connect` or :func:`ferrows.asyncio.server.serve` as
    ``listener=`` (a factory called once per connection).
    """

    def on_open(self, connection: Connection) -> None:
        """The opening handshake completed."""

    def on_message(self, connection: Connection, message: Data) -> None:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_ping(self, connection: Connection, data: bytes) -> None:
        """A ping arrived; the pong is already sent."""

    def on_pong(self, connection: Connection, data: bytes) -> None:
        """A pong arrived."""

    def on_close(self, connection: Connection, exc: ConnectionClosed) -> None:
        """The connection closed; ``exc`` tells how (``exc.code``, ``exc.reason``)."""


class Connection(asyncio.BufferedProtocol):
    """A WebSocket connection on asyncio.

    ``await recv()`` / ``async for message in connection`` receive, ``await send()`` sends,
    ``await ping()`` returns a future of the latency, ``await close()`` closes. Use one
    coroutine to receive; any number may send.
    """

    # Slots, not a __dict__: past 30 attributes an instance dict stops sharing its keys and
    # costs about 1.6 KiB on every connection (subclasses without __slots__ get one back).
    __slots__ = (
        "__weakref__",
        "_abort_handle",
        "_batched",
        "_batching",
        "_buffer",
        "_close_timeout",
        "_closed",
        "_closed_args",
        "_closed_cause",
        "_connection_lost",
        "_core",
        "_core_options",
        "_deflate",
        "_drain_waiters",
        "_fragmenting",
        "_id",
        "_inbox_full",
        "_is_client",
        "_listener_broken",
        "_loop",
        "_lost",
        "_metrics",
        "_pongs",
        "_read_high",
        "_read_low",
        "_receiving",
        "_recv_waiter",
        "_streaming",
        "_timer",
        "_transport",
        "_view",
        "_write_high",
        "_write_low",
        "_writing_paused",
        "listener",
        "logger",
        "request",
        "response",
        "subprotocol",
    )

    def __init__(
        self,
        *,
        is_client: bool,
        core_options: dict[str, Any],
        read_limit: tuple[int, int],
        write_limit: tuple[int, int],
        close_timeout: float | None,
        logger: logging.Logger,
        listener: Listener | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._is_client = is_client
        self._core_options = core_options
        self._read_high, self._read_low = read_limit
        self._write_high, self._write_low = write_limit
        self._close_timeout = close_timeout
        self.logger = logger
        self.listener = listener
        # Set once a listener callback raised: nothing more is delivered to it.
        self._listener_broken = False
        self._id: uuid.UUID | None = None
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        # What the handshake agreed on for permessage-deflate, for the core.
        self._deflate: Any = None
        self._transport: asyncio.Transport | None = None
        self._core: Any = None
        # The server's counters (ServerMetrics), for a connection a server accepted.
        self._metrics: Any = None
        # The loop's shared read buffer, from connection_made on.
        self._buffer: bytearray | None = None
        self._view: memoryview | None = None
        # Reading stops while the core's inbox is over the read limit.
        self._inbox_full = False
        # While the transport has paused writing, what the peer alone makes us send (pongs,
        # the close frame) stays in the core, where owed pongs stay bounded.
        self._writing_paused = False
        # Messages sent in one turn of the loop wait in the core for one write (a system
        # call) instead of one each: _batched is set while some wait, _batching while a
        # read's messages go to the listener (the read then ends with the write; otherwise
        # it is scheduled for later in this turn).
        self._batching = False
        self._batched = False
        self._recv_waiter: asyncio.Future[None] | None = None
        self._receiving = False
        self._streaming = False
        # Set while a fragmented message is being sent: other sends wait for it.
        self._fragmenting: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Waiters of our pings, by the core's ping id (increasing). A list, not a deque: an
        # empty deque costs 600 bytes on every connection, and few connections ping.
        self._pongs: list[tuple[int, asyncio.Future[float]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._closed: ConnectionClosed | None = None
        self._closed_args: tuple[Any, Any, Any] = (None, None, None)
        self._closed_cause: BaseException | None = None
        # Made when someone waits for the end (most connections never do); _lost once it came.
        self._connection_lost: asyncio.Future[None] | None = None
        self._lost = False
        self._abort_handle: asyncio.TimerHandle | None = None

    # Properties

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier of the connection, for logs (made when first asked for)."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def compression(self) -> str | None:
        """The permessage-deflate parameters agreed, as the server answered them, if any."""
        return None if self._deflate is None else str(self._deflate)

    @property
    def local_address(self) -> Any:
        """The local socket address (``(host, port)`` for TCP)."""
        return self._transport.get_extra_info("sockname") if self._transport else None

    @property
    def remote_address(self) -> Any:
        """The peer's socket address."""
        return self._transport.get_extra_info("peername") if self._transport else None

    @property
    def latency(self) -> float:
        """Round-trip time of the last answered ping, in seconds (0.0 before any)."""
        return self._core.latency if self._core is not None else 0.0

    @property
    def broadcast_skips(self) -> int:
        """Broadcasts this connection missed for being slow: skipped, or closed for it."""
        return self._core.broadcast_skips if self._core is not None else 0

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1006 without a close frame), else None."""
        return self._closed.code if self._closed is not None else None

    @property
    def close_reason(self) -> str | None:
        """The close reason once closed, else None."""
        return self._closed.reason if self._closed is not None else None

    # asyncio protocol: transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any transport with the asyncio interface (uvloop's are not asyncio.Transport).
        self._transport = transport  # type: ignore[assignment]
        self._transport.set_write_buffer_limits(high=self._write_high, low=self._write_low)
        self._buffer, self._view = _read_buffer()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view  # type: ignore[return-value]

    def buffer_updated(self, nbytes: int) -> None:
        core = self._core
        if core is None:
            self._handshake_data(bytes(self._view[:nbytes]))
            return
        received = core.receive_into(self._buffer, nbytes)
        kind = type(received)
        # What the listener sends while this read's messages are delivered goes out in one
        # write once they all are (see _send_message).
        self._batching = True
        try:
            if kind is int:
                # The common case: only data arrived; `received` is the inbox's charged size.
                self._data_arrived(received)
            elif kind is list:
                self._process(received)
            else:
                # A listener's common case: one whole message and nothing else.
                try:
                    self.listener.on_message(self, received)  # type: ignore[union-attr]
                except Exception:
                    self._listener_failed("on_message")
        finally:
            self._batching = False
            if self._batched:
                self._write_batch()

    def eof_received(self) -> bool | None:
        if self._core is not None:
            self._process(self._core.receive_eof())
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._core is not None and self._closed is None:
            self._process(self._core.receive_error(str(exc)) if exc else self._core.receive_eof())
        self._handshake_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
        if self._abort_handle is not None:
            self._abort_handle.cancel()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._lost = True
        if self._connection_lost is not None and not self._connection_lost.done():
            self._connection_lost.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self._core is not None:
            self._core.hold_output = True
            self._core.record_pause(False)

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._core is not None:
            self._core.hold_output = False
            self._process(self._core.poll())
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # Handshake hooks, for the client and server subclasses

    def _handshake_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _handshake_lost(self, exc: Exception | None) -> None:
        """The transport closed; a handshake still in progress fails."""

    def _start(self, rest: bytes) -> None:
        """The handshake succeeded: run the protocol, fed with what followed the handshake."""
        self._core = _ferrows.ProtocolCore(
            self._is_client,
            self._core_options,
            self.listener is not None,
            self._deflate,
            self._read_high,
            _send_buffer(),
            self._metrics,
        )
        self._process(self._core.poll())
        if self.listener is not None:
            self._notify("on_open")
        if rest:
            self._process(self._core.receive(rest))

    # The data path

    def _data_arrived(self, inbox_bytes: int) -> None:
        """Data arrived in the core's inbox: to the listener, or woken recv()."""
        listener = self.listener
        if listener is not None:
            core = self._core
            while self._closed is None and not self._listener_broken:
                try:
                    while self._closed is None and (message := core.next_message()) is not None:
                        listener.on_message(self, message)
                except Exception:
                    self._listener_failed("on_message")
                    return
                if self._closed is not None or not core.holds_input:
                    return
                # Input held while the inbox was full (it inflated to many messages).
                self._handle_events(core.receive(b""))
            return
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if inbox_bytes > self._read_high and not self._inbox_full:
            self._inbox_full = True
            self._core.record_pause(True)
            if not self._transport.is_closing():
                self._transport.pause_reading()

    def _process(self, events: list[tuple[Any, ...]]) -> None:
        if events and events[0][0] == _OUTPUT:
            # What the core had to send (messages sent earlier in this turn among it) goes
            # out before a callback can send something that must follow it.
            self._transport.write(events[0][1])  # type: ignore[union-attr]
            events = events[1:]
        # Data that came with these events arrived before them (a close frame is last).
        self._data_arrived(self._core.inbox_bytes)
        self._handle_events(events)

    def _handle_events(self, events: list[tuple[Any, ...]]) -> None:
        listener = self.listener
        for event in events:
            tag = event[0]
            if tag == _OUTPUT:
                self._transport.write(event[1])
            elif tag == _TIMER:
                self._set_timer(event[1])
            elif tag == _PONG:
                self._pong_received(event[2], event[3])
                if listener is not None:
                    self._notify("on_pong", event[1])
            elif tag == _PING:
                if listener is not None:
                    self._notify("on_ping", event[1])
            else:
                self._closed_event(*event[1:])
        if self._closed is not None:
            self._close_transport()

    def _pong_received(self, acknowledged: int | None, latency: float | None) -> None:
        # The core matched the pong to our ping `acknowledged` and every earlier one.
        pongs = self._pongs
        while acknowledged is not None and pongs and pongs[0][0] <= acknowledged:
            waiter = pongs.pop(0)[1]
            if not waiter.done():
                waiter.set_result(latency)

    def _closed_event(self, rcvd: Any, sent: Any, rcvd_then_sent: Any, cause: Any) -> None:
        self._closed_args = (rcvd, sent, rcvd_then_sent)
        self._closed_cause = cause
        exc = self._closed = self._closed_error()
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        for _, pong in self._pongs:
            if not pong.done():
                pong.set_exception(exc)
                pong.exception()  # retrieved: nobody may be waiting
        self._pongs.clear()
        if self.listener is not None:
            self._notify("on_close", exc)
        if isinstance(cause, Exception) and not isinstance(exc, ConnectionClosedOK):
            self.logger.debug("connection %s failed: %s", self.id, cause)

    def _notify(self, callback: str, *args: Any) -> None:
        """Calls a listener's ``callback`` (not ``on_message``, the hot path handles it); once
        the listener raised, only ``on_close``, so that it can release what it holds."""
        if self._listener_broken and callback != "on_close":
            return
        try:
            getattr(self.listener, callback)(self, *args)
        except Exception:
            self._listener_failed(callback)

    def _listener_failed(self, callback: str) -> None:
        """A listener callback raised: logged, and the connection fails with 1011 so that the
        peer sees why (as picows does); nothing more is delivered to that listener."""
        self.logger.exception("listener %s raised", callback)
        self._listener_broken = True
        core = self._core
        if core is not None and self._closed is None and not core.is_closing:
            self._write(core.close(CloseCode.INTERNAL_ERROR, "listener failed"))
            self._handle_events(core.poll())

    def _close_transport(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        # A peer that stops reading would keep the transport open while data is buffered.
        self._abort_handle = self._loop.call_later(self._close_timeout or 10, transport.abort)

    def _set_timer(self, delay: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if delay is None else self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._process(self._core.handle_timeout())

    def _consumed(self) -> None:
        """Resumes reading once ``recv()`` drained the full inbox to the low mark, after the
        input the core held for room (which may fill the inbox again)."""
        core = self._core
        if core.inbox_bytes > self._read_low:
            return
        if core.holds_input:
            self._process(core.receive(b""))
            if core.inbox_bytes > self._read_high:
                return
        self._inbox_full = False
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def _closed_error(self) -> ConnectionClosed:
        """A fresh ConnectionClosed for this connection, with its cause."""
        exc = _from_core("closed", self._closed_args)
        exc.__cause__ = self._closed_cause
        return exc  # type: ignore[return-value]

    def _raise_closed(self) -> None:
        raise self._closed_error()

    # Receiving

    async def recv(self, decode: bool | None = None) -> Data:
        """Receives the next message: ``str`` for text, ``bytes`` for binary.

        Returns at once when a message is buffered. Cancelling it loses no message. Raises
        :class:`~ferrows.exceptions.ConnectionClosed` once closed and
        :class:`~ferrows.exceptions.ConcurrencyError` if another coroutine is receiving.
        """
        if self._receiving or self._streaming:
            raise ConcurrencyError("cannot call recv while another coroutine is receiving")
        core = self._core
        message = core.next_message() if core is not None else None
        if message is None:
            message = await self._wait_for(lambda: self._core.next_message())
        if self._inbox_full:
            self._consumed()
        return decoded(message, decode) if decode is not None else message

    async def _wait_for(self, take: Any) -> Any:
        """Waits until ``take()`` finds something in the core's inbox; returns it."""
        self._receiving = True
        try:
            while True:
                if self._core is not None:
                    taken = take()
                    if taken is not None:
                        return taken
                if self._closed is not None:
                    self._raise_closed()
                waiter = self._loop.create_future()
                self._recv_waiter = waiter
                try:
                    await waiter
                finally:
                    self._recv_waiter = None
        finally:
            self._receiving = False

    async def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[Data]:
        """Yields the next message's chunks as they arrive (text never split in a character)."""
        if self._receiving or self._streaming:
            raise ConcurrencyError("cannot receive while another coroutine is receiving")
        # Until the message ends, recv() would take its remainder as a message of its own.
        self._streaming = True
        try:
            while True:
                data, fin = await self._wait_for(lambda: self._core.next_chunk())
                if self._inbox_full:
                    self._consumed()
                yield decoded(data, decode)
                if fin:
                    return
        finally:
            self._streaming = False

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Data]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    # Sending

    async def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Any] | AsyncIterable[Any],
        text: bool | None = None,
        compress: bool = True,
    ) -> None:
        """Sends a message: ``str`` as text, bytes-like as binary, an (async) iterable as one
        fragmented message. Returns at once while the write buffer is under its high-water
        mark, otherwise waits until it drains. While another coroutine sends a fragmented
        message, waits for it to end. With permessage-deflate, ``compress=False`` sends this
        message uncompressed.
        """
        while self._fragmenting is not None:
            await asyncio.shield(self._fragmenting)
        if isinstance(message, (str, bytes)) and text is None:
            self._send_message(self._sender(), message, compress)
        elif isinstance(message, (str, bytes, bytearray, memoryview)):
            self._send_message(self._sender(), typed(payload(message), text), compress)
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(message.__aiter__(), text, compress)
        elif isinstance(message, Iterable):
            await self._send_fragments(_as_async(message), text, compress)
        else:
            raise TypeError(f"cannot send {type(message).__name__}")
        if self._writing_paused:
            await self._drain()

    def send_nowait(self, message: Data, compress: bool = True) -> None:
        """Sends a message without waiting (the callback API's data path). The write buffer
        grows past its high-water mark if you never yield to the loop: check
        :attr:`write_buffer_size` or use ``await send()`` for bounded memory.
        """
        core = self._core
        if core is None or self._closed is not None:
            core = self._sender()  # raises the right exception
        if self._fragmenting is not None:
            raise ConcurrencyError("a fragmented message is being sent; use await send()")
        self._send_message(core, message, compress)

    def _send_message(self, core: Any, message: Data, compress: bool) -> None:
        """Encodes a whole message, to be written with the others sent in this turn of the
        loop: before the loop next waits for events, and at once past 64 KiB."""
        data = core.queue(message, compress)
        if data is not None:
            self._transport.write(data)  # type: ignore[union-attr]
        elif not self._batched:
            self._batched = True
            if not self._batching:
                self._loop.call_soon(self._write_batch)

    def _write_batch(self) -> None:
        """Writes the messages waiting in the core since the last write, if any."""
        self._batched = False
        data = self._core.take_output()
        if data is not None and not self._transport.is_closing():  # type: ignore[union-attr]
            self._transport.write(data)  # type: ignore[union-attr]

    @property
    def write_buffer_size(self) -> int:
        """Bytes sent and not yet written to the socket: in the transport's buffer, and
        messages of this turn of the loop still waiting for their write."""
        if self._transport is None:
            return 0
        waiting = self._core.output_size if self._core is not None else 0
        return self._transport.get_write_buffer_size() + waiting

    async def _send_fragments(
        self, fragments: AsyncIterator[Any], text: bool | None, compress: bool
    ) -> None:
        sender = self._sender()
        done: asyncio.Future[None] = self._loop.create_future()
        self._fragmenting = done
        started = False
        try:
            try:
                current = fragment(await fragments.__anext__(), text, None)
            except StopAsyncIteration:
                return
            kind = type(current)
            async for following in fragments:
                self._write(sender.send_fragment(current, False, compress))
                started = True
                if self._writing_paused:
                    await self._drain()
                current = fragment(following, text, kind)
            self._write(sender.send_fragment(current, True, compress))
        except BaseException:
            # A message cut in the middle cannot be finished: fail the connection, as
            # websockets does.
            if started and self._closed is None and not sender.is_closing:
                self._write(sender.close(CloseCode.INTERNAL_ERROR, "error in fragmented message"))
                self._process(sender.poll())
            raise
        finally:
            self._fragmenting = None
            done.set_result(None)

    def _sender(self) -> Any:
        if self._closed is not None:
            self._raise_closed()
        if self._core is None:
            raise ConcurrencyError("the opening handshake is not complete")
        return self._core

    def _write(self, data: bytes) -> None:
        self._transport.write(data)  # type: ignore[union-attr]

    async def _drain(self) -> None:
        if self._closed is not None:
            self._raise_closed()
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter
        if self._closed is not None and self._transport.is_closing():  # type: ignore[union-attr]
            self._raise_closed()

    async def ping(self, data: Data | None = None) -> asyncio.Future[float]:
        """Sends a ping; returns a future that resolves to the latency in seconds when the
        pong arrives: ``latency = await (await connection.ping())``.
        """
        if data is None:
            payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        ping_id, frame = self._sender().ping(payload)
        self._write(frame)
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pongs.append((ping_id, waiter))
        self._process(self._core.poll())
        return waiter

    async def pong(self, data: Data = b"") -> None:
        """Sends an unsolicited pong (a one-way heartbeat)."""
        self._write(self._sender().pong(data.encode() if isinstance(data, str) else bytes(data)))

    # Closing

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Performs the closing handshake and waits for the connection to end (at most the
        close timeout). What was sent before is delivered first."""
        if self._core is not None and not self._core.is_closing:
            self._write(self._core.close(int(code), reason))
            self._process(self._core.poll())
        elif self._core is None and self._transport is not None:
            self._transport.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Waits until the connection is closed."""
        if self._lost:
            return
        if self._connection_lost is None:
            self._connection_lost = self._loop.create_future()
        await asyncio.shield(self._connection_lost)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.close(CloseCode.INTERNAL_ERROR)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.remote_address}>"


async def _as_async(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
