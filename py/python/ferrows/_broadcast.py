"""What both faces' ``broadcast()`` share: the slow-consumer policy and the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, Union

from .frames import Close, CloseCode

C = TypeVar("C")

#: What ``broadcast()`` does with a connection whose write buffer is over its limit:
#: ``"skip"`` leaves it out of this message; a :class:`~ferrows.Close` (code 1008 or 1013)
#: starts its closing handshake with that code and reason.
SlowPolicy = Union[Literal["skip"], Close]

#: Outcome codes of the native broadcast, by position in :class:`BroadcastResult`.
SENT, SKIPPED, CLOSED, NOT_OPEN = range(4)


@dataclass
class BroadcastResult(Generic[C]):
    """What one ``broadcast()`` did. Every connection given is counted in exactly one of:

    - ``sent``: how many connections the message was queued on;
    - ``skipped``: connections left out because their write buffer was over its limit (or,
      rarely, they were in the middle of sending a fragmented message);
    - ``closed``: slow connections whose closing handshake was started (``on_slow=Close(...)``);
    - ``not_open``: connections closing or closed already.

    Skipped and closed connections also count in their ``broadcast_skips``.
    """

    sent: int = 0
    skipped: list[C] = field(default_factory=list)
    closed: list[C] = field(default_factory=list)
    not_open: list[C] = field(default_factory=list)

    def add(self, connection: C, outcome: int) -> None:
        if outcome == SENT:
            self.sent += 1
        else:
            (self.skipped, self.closed, self.not_open)[outcome - 1].append(connection)

    def __bool__(self) -> bool:
        """True when every connection got the message."""
        return not (self.skipped or self.closed or self.not_open)


def close_frame(on_slow: Any) -> Close | None:
    """Checks ``on_slow``; returns the close frame for slow connections, None to skip them."""
    if on_slow == "skip":
        return None
    if isinstance(on_slow, Close):
        if on_slow.code not in (CloseCode.POLICY_VIOLATION, CloseCode.TRY_AGAIN_LATER):
            raise ValueError(f"a slow consumer is closed with 1008 or 1013, not {on_slow.code}")
        if len(on_slow.reason.encode()) > 123:
            raise ValueError("close reason longer than 123 bytes")
        return on_slow
    raise ValueError(f'on_slow is "skip" or a Close(1008 or 1013, reason), not {on_slow!r}')
