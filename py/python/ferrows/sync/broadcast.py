"""``broadcast()`` for the threaded face: one message to many connections, encoded once."""

from __future__ import annotations

from collections.abc import Iterable

from .. import _ferrows
from .._broadcast import BroadcastResult, SlowPolicy, close_frame
from .._messages import Data
from .connection import Connection

__all__ = ["broadcast"]


def broadcast(
    connections: Iterable[Connection], message: Data, *, on_slow: SlowPolicy = "skip"
) -> BroadcastResult[Connection]:
    """Sends ``message`` (``str``: text, ``bytes``: binary) to every connection without
    waiting: the frame is encoded once (compressed once per set of connections whose
    permessage-deflate settings allow it) and queued on each.

    A connection whose unsent bytes are at its high-water mark, where ``send()`` would
    wait, is slow: ``on_slow="skip"`` leaves it out, ``on_slow=Close(1013, "too slow")``
    (or 1008) closes it. Connections that are not open are left out. Returns what happened
    to each connection.
    """
    close = close_frame(on_slow)
    targets = list(connections)
    for connection in targets:
        if not isinstance(connection, Connection):
            raise TypeError(f"broadcast to a {type(connection).__name__}, not a Connection")
    outcomes = _ferrows.broadcast_engine(
        [connection._core for connection in targets],
        message,
        None if close is None else (close.code, close.reason),
    )
    result: BroadcastResult[Connection] = BroadcastResult()
    for connection, outcome in zip(targets, outcomes):
        result.add(connection, outcome)
    return result
