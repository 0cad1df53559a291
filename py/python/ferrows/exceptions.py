"""The exceptions of ferrows, modelled on ``websockets.exceptions``.

.. code-block:: text

    WebSocketException
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK
    │   └── ConnectionClosedError
    ├── InvalidURI
    ├── InvalidProxy
    ├── InvalidHandshake
    │   ├── ProxyError
    │   │   ├── InvalidProxyMessage
    │   │   └── InvalidProxyStatus
    │   ├── InvalidMessage
    │   ├── InvalidStatus
    │   ├── InvalidHeader
    │   │   └── InvalidOrigin
    │   └── NegotiationError
    ├── ProtocolError
    │   └── PayloadTooBig
    ├── ConcurrencyError        (also a RuntimeError)
    ├── TimeoutError            (also the built-in TimeoutError)
    └── TLSError                (also a ConnectionError)
"""

from __future__ import annotations

import builtins

from .frames import Close, CloseCode
from .http11 import Response, _response_from_core

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
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
    "TLSError",
    "TimeoutError",
    "WebSocketException",
]


class WebSocketException(Exception):
    """Base class of every ferrows exception."""


class ConnectionClosed(WebSocketException):
    """The connection is closed; ``rcvd`` and ``sent`` are the close frames exchanged."""

    def __init__(
        self, rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None = None
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        super().__init__(rcvd, sent, rcvd_then_sent)

    @property
    def code(self) -> int:
        """The close code seen by the application: received, else sent, else 1006."""
        frame = self.rcvd or self.sent
        return frame.code if frame else CloseCode.ABNORMAL_CLOSURE

    @property
    def reason(self) -> str:
        """The reason matching :attr:`code`."""
        frame = self.rcvd or self.sent
        return frame.reason if frame else ""

    def __str__(self) -> str:
        if self.rcvd is None and self.sent is None:
            return "no close frame received or sent"
        if self.sent is None:
            return f"received {self.rcvd}; then no close frame sent"
        if self.rcvd is None:
            return f"sent {self.sent}; no close frame received"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed cleanly: close frames with 1000 or 1001 both ways."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error, or without a closing handshake (1006)."""


class InvalidURI(WebSocketException):
    """The URI is not a valid ws:// or wss:// URI."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(uri, msg)

    def __str__(self) -> str:
        return f"{self.uri} isn't a valid URI: {self.msg}"


class InvalidProxy(WebSocketException):
    """The proxy URL is not a valid http, https, socks5 or socks5h URL."""

    def __init__(self, proxy: str, msg: str) -> None:
        self.proxy = proxy
        self.msg = msg
        super().__init__(proxy, msg)

    def __str__(self) -> str:
        return f"{self.proxy} isn't a valid proxy: {self.msg}"


class InvalidHandshake(WebSocketException):
    """The opening handshake failed."""


class ProxyError(InvalidHandshake):
    """The tunnel through the proxy could not be opened."""


class InvalidProxyMessage(ProxyError):
    """The proxy broke its protocol, rejected the SOCKS credentials or refused the SOCKS
    connection (the message gives its reply)."""


class InvalidProxyStatus(ProxyError):
    """The HTTP proxy answered CONNECT with a status other than 2xx."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(response)

    def __str__(self) -> str:
        return f"proxy rejected connection: HTTP {self.response.status_code:d}"


class InvalidMessage(InvalidHandshake):
    """The handshake's HTTP message is malformed or too large."""


class InvalidStatus(InvalidHandshake):
    """The server answered the handshake with a status other than 101."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(response)

    def __str__(self) -> str:
        return f"server rejected WebSocket connection: HTTP {self.response.status_code:d}"


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing or wrong."""

    def __init__(self, name: str, value: str | None = None) -> None:
        self.name = name
        self.value = value
        super().__init__(name, value)

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        return f"invalid {self.name} header: {self.value}"


class InvalidOrigin(InvalidHeader):
    """The Origin header is missing or not allowed."""

    def __init__(self, origin: str | None) -> None:
        super().__init__("Origin", origin)


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class ProtocolError(WebSocketException):
    """The peer broke the WebSocket protocol."""


class PayloadTooBig(ProtocolError):
    """A message or frame was larger than the limit (close code 1009)."""


class ConcurrencyError(WebSocketException, RuntimeError):
    """Two threads called a method that must not run concurrently (such as ``recv``)."""


class TimeoutError(WebSocketException, builtins.TimeoutError):
    """A wait ran past its timeout: open, recv, pong or close."""


class TLSError(WebSocketException, ConnectionError):
    """The TLS configuration is invalid or the TLS handshake failed."""


def _close(raw: tuple[int, str] | None) -> Close | None:
    return None if raw is None else Close(*raw)


def _from_core(kind: str, args: tuple) -> Exception:
    """Builds the exception the native module reports as ``kind`` with ``args``."""
    if kind == "closed":
        rcvd, sent, rcvd_then_sent = _close(args[0]), _close(args[1]), args[2]
        ok = all(f is not None and f.code in (1000, 1001) for f in (rcvd, sent))
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        return cls(rcvd, sent, rcvd_then_sent)
    if kind == "invalid_status":
        return InvalidStatus(_response_from_core(args[0]))
    if kind == "proxy_status":
        return InvalidProxyStatus(_response_from_core(args[0]))
    simple: dict[str, type[Exception]] = {
        "invalid_uri": InvalidURI,
        "invalid_proxy": InvalidProxy,
        "proxy": InvalidProxyMessage,
        "invalid_header": InvalidHeader,
        "invalid_origin": InvalidOrigin,
        "invalid_message": InvalidMessage,
        "negotiation": NegotiationError,
        "protocol": ProtocolError,
        "payload_too_big": PayloadTooBig,
        "timeout": TimeoutError,
        "concurrency": ConcurrencyError,
        "tls": TLSError,
    }
    return simple[kind](*args)
