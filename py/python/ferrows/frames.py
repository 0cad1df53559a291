"""Close frames and close codes (RFC 6455 section 7.4)."""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["Close", "CloseCode"]


class CloseCode(enum.IntEnum):
    """Close codes defined by RFC 6455 and registered with IANA."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


@dataclasses.dataclass(frozen=True)
class Close:
    """A close frame: its code and its reason."""

    code: int
    reason: str

    def __str__(self) -> str:
        try:
            name = CloseCode(self.code).name.lower().replace("_", " ")
        except ValueError:
            name = "private use" if 4000 <= self.code < 5000 else "registered"
        text = f"{self.code} ({name})"
        return f"{text} {self.reason}" if self.reason else text
