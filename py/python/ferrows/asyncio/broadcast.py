"""``broadcast()`` for the asyncio face: one message to many connections, encoded once."""

from __future__ import annotations

from collections.abc import Iterable

from .. import _ferrows
from .._broadcast import (
    CLOSED,
    NOT_OPEN,
    SENT,
    SKIPPED,
    BroadcastResult,
    SlowPolicy,
    close_frame,
)
from .._messages import Data
from .connection import Connection

__all__ = ["broadcast"]


def broadcast(
    connections: Iterable[Connection], message: Data, *, on_slow: SlowPolicy = "skip"
) -> BroadcastResult[Connection]:
    """Sends ``message`` (``str``: text, ``bytes``: binary) to every connection without
    waiting, from the event loop's thread: the frame is encoded once (compressed once per
    set of connections whose permessage-deflate settings allow it) and the same ``bytes``
    object is written to each transport.

    A connection whose :attr:`~Connection.write_buffer_size` is over its write limit, where
    ``send()`` would wait, is slow: ``on_slow="skip"`` leaves it out,
    ``on_slow=Close(1013, "too slow")`` (or 1008) closes it. Connections that are not open,
    or are in the middle of sending a fragmented message, are left out. Returns what
    happened to each connection.
    """
    close = close_frame(on_slow)
    if not isinstance(message, (str, bytes)):
        raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
    result: BroadcastResult[Connection] = BroadcastResult()
    targets: list[Connection] = []
    for connection in connections:
        if not isinstance(connection, Connection):
            raise TypeError(f"broadcast to a {type(connection).__name__}, not a Connection")
        core = connection._core
        transport = connection._transport
        if core is None or connection._closed is not None or core.is_closing:
            result.add(connection, NOT_OPEN)
        elif transport is None or transport.is_closing():
            result.add(connection, NOT_OPEN)
        elif connection._fragmenting is not None:
            result.add(connection, SKIPPED)
        elif connection.write_buffer_size > connection._write_high:
            core.count_broadcast_skip()
            if close is None:
                result.add(connection, SKIPPED)
            else:
                transport.write(core.close(close.code, close.reason))
                connection._process(core.poll())
                result.add(connection, CLOSED)
        else:
            targets.append(connection)
    writes = _ferrows.broadcast_frames([connection._core for connection in targets], message)
    for connection, data in zip(targets, writes):
        if data is None:
            result.add(connection, NOT_OPEN)
        else:
            connection._transport.write(data)  # type: ignore[union-attr]
            result.add(connection, SENT)
    return result
