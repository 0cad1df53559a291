"""The connection object shared by the sync client and server."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from .. import _ferrows
from .._messages import Data, decoded, fragment, payload, typed
from ..exceptions import ConcurrencyError, ConnectionClosedOK
from ..exceptions import TimeoutError as WsTimeoutError
from ..frames import CloseCode
from ..http11 import Request, Response, _request_from_core, _response_from_core

__all__ = ["Connection", "Data", "PongWaiter"]


PongWaiter = _ferrows.PongWaiter
"""What :meth:`Connection.ping` returns: ``wait(timeout=None)`` gives the latency in seconds."""

_SENDABLE = (str, bytes, bytearray, memoryview)


class Connection:
    """A WebSocket connection, used from threads.

    One thread may send while another receives. Iterating yields messages until the
    connection closes: cleanly ends the loop, otherwise raises
    :class:`~ferrows.exceptions.ConnectionClosedError`.
    """

    def __init__(self, core: _ferrows.Connection, logger: logging.Logger) -> None:
        self._core = core
        self._recv_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.logger = logger
        self.request: Request | None = _request_from_core(core.request())
        self.response: Response | None = _response_from_core(core.response())

    # Properties

    @property
    def id(self) -> str:
        """A unique identifier (a UUID 4 string), for logs."""
        return self._core.id

    @property
    def compression(self) -> str | None:
        """The permessage-deflate parameters agreed, as the server answered them, if any."""
        return self._core.compression

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol negotiated in the opening handshake, if any."""
        return self._core.subprotocol

    @property
    def local_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of this end of the connection."""
        return self._core.local_address

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the peer."""
        return self._core.remote_address

    @property
    def latency(self) -> float:
        """Round-trip time of the last answered ping, in seconds (0.0 before any)."""
        return self._core.latency

    @property
    def broadcast_skips(self) -> int:
        """Broadcasts this connection missed for being slow: skipped, or closed for it."""
        return self._core.broadcast_skips

    @property
    def close_code(self) -> int | None:
        """The close code once the connection has closed (1006 without a close frame)."""
        frames = self._core.close_frames()
        if frames is None:
            return None
        frame = frames[0] or frames[1]
        return frame[0] if frame else CloseCode.ABNORMAL_CLOSURE

    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection has closed."""
        frames = self._core.close_frames()
        if frames is None:
            return None
        frame = frames[0] or frames[1]
        return frame[1] if frame else ""

    # Receiving

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Receives the next message: ``str`` for text, ``bytes`` for binary.

        Waits up to ``timeout`` seconds (forever with None) and raises
        :class:`~ferrows.exceptions.TimeoutError` then. ``decode=False`` returns text as
        ``bytes``, ``decode=True`` returns binary as ``str``. Raises
        :class:`~ferrows.exceptions.ConnectionClosed` once the connection is closed and
        :class:`~ferrows.exceptions.ConcurrencyError` if another thread is receiving.
        """
        if not self._recv_lock.acquire(blocking=False):
            raise ConcurrencyError("cannot call recv while another thread is receiving")
        try:
            message = self._core.recv(timeout)
        finally:
            self._recv_lock.release()
        if message is None:
            raise WsTimeoutError("timed out while waiting for a message")
        return decoded(message, decode)

    def recv_streaming(
        self, decode: bool | None = None, timeout: float | None = None
    ) -> Iterator[Data]:
        """Yields the next message in chunks, as they arrive.

        Text arrives as ``str`` chunks that never split a character; fragments that arrived
        together come as one chunk. The iterator ends with the message; a message with no
        data yields one empty chunk. Waits up to ``timeout`` seconds for each chunk and
        raises :class:`~ferrows.exceptions.TimeoutError` then: the rest of the message stays
        for the next ``recv_streaming()`` (``recv()`` refuses it with
        :class:`~ferrows.exceptions.ConcurrencyError` until it is taken).
        """
        if not self._recv_lock.acquire(blocking=False):
            raise ConcurrencyError("cannot call recv_streaming while another thread is receiving")
        try:
            while True:
                chunk = self._core.recv_chunk(timeout)
                if chunk is None:
                    raise WsTimeoutError("timed out while waiting for the next chunk")
                _, data, fin = chunk
                yield decoded(data, decode)
                if fin:
                    return
        finally:
            self._recv_lock.release()

    def __iter__(self) -> Iterator[Data]:
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # Sending

    def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Data | bytearray | memoryview],
        text: bool | None = None,
        timeout: float | None = None,
        compress: bool = True,
    ) -> None:
        """Sends a message.

        ``str`` is sent as text, bytes-like objects as binary; ``text=True`` sends bytes
        as a text frame (they must be UTF-8), ``text=False`` sends str as binary. An
        iterable of those is sent as one fragmented message, each item a frame. Waits
        while the outgoing buffer is above its high-water mark, up to ``timeout`` seconds
        (forever with None), then raises :class:`~ferrows.exceptions.TimeoutError`: nothing
        of a whole message was sent then, while a fragmented message cut short fails the
        connection (1011). With permessage-deflate, ``compress=False`` sends this message
        uncompressed (data that is compressed already, say).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._send_lock:
            if isinstance(message, _SENDABLE):
                data = typed(payload(message), text)
                self._send(deadline, compress, self._core.send, data)
            else:
                self._send_fragments(message, text, deadline, compress)

    @staticmethod
    def _send(
        deadline: float | None, compress: bool, send: Callable[..., bool], *args: Any
    ) -> None:
        """Calls a native send with the time left before ``deadline``."""
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not send(*args, left, compress):
            raise WsTimeoutError("timed out while the outgoing buffer was full")

    def _send_fragments(
        self,
        fragments: Iterable[Data | bytearray | memoryview],
        text: bool | None,
        deadline: float | None,
        compress: bool,
    ) -> None:
        iterator = iter(fragments)
        try:
            current = next(iterator)
        except StopIteration:
            return
        first = fragment(current, text, None)
        kind = type(first)
        started = False
        try:
            data = first
            for following in iterator:
                self._send(deadline, compress, self._core.send_fragment, data, False)
                started = True
                data = fragment(following, text, kind)
            self._send(deadline, compress, self._core.send_fragment, data, True)
        except BaseException:
            # A message cut in the middle cannot be finished: fail the connection (1011).
            if started:
                self._core.start_close(CloseCode.INTERNAL_ERROR, "error in fragmented message")
            raise

    def ping(self, data: Data | None = None) -> PongWaiter:
        """Sends a ping; returns a waiter whose ``wait(timeout)`` gives the latency.

        Without ``data``, a random 4-byte payload identifies the ping.
        """
        if data is None:
            payload = os.urandom(4)
        elif isinstance(data, str):
            payload = data.encode()
        else:
            payload = bytes(data)
        return self._core.ping(payload)

    def pong(self, data: Data = b"") -> None:
        """Sends an unsolicited pong (a one-way heartbeat)."""
        self._core.pong(data.encode() if isinstance(data, str) else bytes(data))

    # Closing

    def close(
        self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "", timeout: float | None = None
    ) -> None:
        """Performs the closing handshake and waits for it to end.

        Messages sent before are delivered first. Returns at once if already closed. The
        close timeout bounds the wait; ``timeout`` (seconds) bounds it further and raises
        :class:`~ferrows.exceptions.TimeoutError` when it passes first (the connection goes
        on closing in the background).
        """
        if timeout is None:
            self._core.close(int(code), reason)
            return
        self._core.start_close(int(code), reason)
        if not self._core.wait_closed(timeout):
            raise WsTimeoutError("timed out during the closing handshake")

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Waits up to ``timeout`` seconds for the connection to close; True if it has."""
        return self._core.wait_closed(timeout)

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close(CloseCode.INTERNAL_ERROR)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} to {self.remote_address}>"
