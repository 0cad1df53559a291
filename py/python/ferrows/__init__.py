"""ferrows: a fast WebSocket library (RFC 6455) with a Rust engine.

``ferrows.sync`` holds the threaded client and server; ``ferrows.exceptions`` the errors.
"""

from __future__ import annotations

from ._broadcast import BroadcastResult
from ._ferrows import __version__, set_runtime_threads
from .compression import Deflate
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    TimeoutError,
    TLSError,
    WebSocketException,
)
from .frames import Close, CloseCode
from .http11 import Headers, Request, Response

__all__ = [
    "BroadcastResult",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Deflate",
    "Headers",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidStatus",
    "InvalidURI",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "Request",
    "Response",
    "TLSError",
    "TimeoutError",
    "WebSocketException",
    "__version__",
    "set_runtime_threads",
]
