"""ASGI on ferrows: a WebSocket protocol for uvicorn.

``uvicorn.run(app, ws=FerrowsProtocol)``, or ``uvicorn app:app --ws ferrows.asgi:FerrowsProtocol``
on the command line, serves an ASGI application's WebSocket routes (FastAPI, Starlette) with
ferrows in place of the ``websockets``- or ``wsproto``-based protocols uvicorn ships.

uvicorn parses the HTTP request and hands the connection over with the request's bytes. From
there ferrows' sans-IO core does the work: it checks the upgrade request and negotiates
permessage-deflate, then parses and builds frames, enforces ``ws_max_size``, answers pings,
runs the keepalive (``ws_ping_interval``, ``ws_ping_timeout``) and the closing handshake, on
the event-loop thread like the asyncio face. This module translates between the core and the
ASGI messages (``websocket.connect``, ``.accept``, ``.receive``, ``.send``, ``.close``,
``.disconnect``, and ``websocket.http.response.*`` to refuse with an HTTP response), with the
behaviour of uvicorn's own protocols where ASGI leaves a choice (see docs/asgi.md).

It needs uvicorn; the rest of ferrows does not.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from . import _ferrows
from .asyncio.connection import _CLOSED, _OUTPUT, _TIMER, _send_buffer
from .asyncio.options import core_options
from .exceptions import ConnectionClosed, InvalidHandshake

__all__ = ["FerrowsProtocol"]


#: uvicorn's protocols take a close timeout of 0 as "give up at once", the core as "never":
#: 0 reaches the core as the shortest delay it can wait.
_AT_ONCE = 1e-9

_INTERNAL_ERROR_BODY = b"Internal Server Error"


def _status_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _text_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """ASGI's byte headers as the core takes them (latin-1, as HTTP/1.1 carries them)."""
    return [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers]


class FerrowsProtocol(asyncio.Protocol):
    """A uvicorn WebSocket protocol (``Config(ws=FerrowsProtocol)``) on ferrows' core.

    uvicorn creates one per upgrade request, with the attributes its protocols have; the
    ones uvicorn's tests look at (``transport``, ``close_timeout``, ``close_timer``,
    ``ping_timer``, ``ping_sent_at``) mean what they mean there.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        #: Seconds to wait for the peer's close frame after the application's (uvicorn's 10).
        self.close_timeout = 10.0

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "ws"
        self.scope: dict[str, Any] = {}
        #: The loop time of the last keepalive ping (0.0 before any).
        self.ping_sent_at = 0.0

        # The request head until it is complete, then what followed it until the core runs.
        self._head = bytearray()
        self._request_done = False
        self._key = ""
        self._deflate: Any = None
        self._core: Any = None
        self._core_closed = False
        self._timer: asyncio.TimerHandle | None = None
        # The ASGI state, as uvicorn's protocols keep it.
        self._connect_pending = True
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        # A refusal the application started with websocket.http.response.start:
        # (status, headers, body so far).
        self._response: tuple[int, list[tuple[bytes, bytes]], bytearray] | None = None
        self._disconnect: dict[str, Any] | None = None
        self._receiver: asyncio.Future[None] | None = None
        self._read_paused = False
        self._writable = asyncio.Event()
        self._writable.set()

    # Timers, in uvicorn's protocols' terms

    @property
    def close_timer(self) -> asyncio.TimerHandle | None:
        """The timer that ends the wait for the peer's close frame, while it runs."""
        return self._timer if self.close_sent and self._core is not None else None

    @property
    def ping_timer(self) -> asyncio.TimerHandle | None:
        """The timer of the next keepalive ping: while the connection is open, the core's
        only timer is the keepalive's."""
        core = self._core
        return self._timer if core is not None and not core.is_closing else None

    # The transport's events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"
        self._trace("WebSocket connection made")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        core = self._core
        if core is not None and not self._core_closed:
            self._process(core.receive_error(str(exc)) if exc else core.receive_eof())
        self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        self.handshake_complete = True
        self.disconnected = True
        self._cancel_timer()
        # A send waiting for the buffer to drain would wait forever: asyncio does not call
        # resume_writing on a transport lost while paused.
        self._writable.set()
        self._trace("WebSocket connection lost")
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        """The transport closes itself; connection_lost tells the core."""

    def pause_writing(self) -> None:
        self._writable.clear()
        if self._core is not None:
            # What the peer alone makes us send (pongs) waits in the core, bounded.
            self._core.hold_output = True

    def resume_writing(self) -> None:
        self._writable.set()
        if self._core is not None:
            self._core.hold_output = False
            self._process(self._core.poll())

    def data_received(self, data: bytes) -> None:
        core = self._core
        if core is not None:
            self._process(core.receive(data))
        elif self._request_done:
            self._head += data  # what follows the request waits for the application's answer
        else:
            self._head += data
            self._request_received()

    def shutdown(self) -> None:
        """The server is shutting down: close with 1012 (service restart), as uvicorn does."""
        core = self._core
        if self.close_sent:
            self._cancel_timer()
        elif core is not None:
            self._set_disconnect({"type": "websocket.disconnect", "code": 1012})
            if not core.is_closing:
                self._write(core.close(1012, ""))
            self._cancel_timer()
        else:
            self._send_500_response()
        self.transport.close()

    # The opening handshake

    def _request_received(self) -> None:
        try:
            parsed = _ferrows.server_parse_request(bytes(self._head))
        except InvalidHandshake as exc:
            self._refuse_request(exc)
            return
        if parsed is None:
            return
        (method, target, headers), used = parsed
        self._request_done = True
        del self._head[:used]
        raw_path, _, query_string = target.partition("?")
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": self.root_path + unquote(raw_path),
            "raw_path": (self.root_path + raw_path).encode(),
            "query_string": query_string.encode(),
            "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
            "subprotocols": [],
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        compression = "deflate" if self.config.ws_per_message_deflate else None
        try:
            self._key, self.scope["subprotocols"], self._deflate = _ferrows.server_validate_request(
                method, target, headers, [], None, {"compression": compression}
            )
        except InvalidHandshake as exc:
            self._refuse_request(exc)
            return
        # Nothing more is read until the application answers (bounded memory meanwhile).
        self._pause_reading()
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _refuse_request(self, exc: InvalidHandshake) -> None:
        """Answers a request that is no valid upgrade with the core's response (400, 426)."""
        status, reason, headers, body = getattr(exc, "http_response", None) or (
            400,
            "Bad Request",
            [],
            f"Failed to open a WebSocket connection: {exc}.\n".encode(),
        )
        self.logger.info("refused WebSocket handshake from %s: %s", self.client, exc)
        self._respond(status, list(headers), bytes(body), reason)

    def _respond(
        self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None = None
    ) -> None:
        """Writes an HTTP response refusing the upgrade and closes the connection, with the
        server's default headers (date, server) and a length the application did not set."""
        names = {name.lower() for name, _ in headers}
        defaults = _text_headers(self.default_headers)
        headers = [(n, v) for n, v in defaults if n.lower() not in names] + headers
        if "connection" not in names:
            headers.append(("Connection", "close"))
        if "content-length" not in names:
            headers.append(("Content-Length", str(len(body))))
        self.handshake_complete = True
        self.close_sent = True
        self._write(
            _ferrows.response_bytes(status, reason or _status_phrase(status), headers, body)
        )
        self.transport.close()

    def _send_500_response(self) -> None:
        """The application failed before answering the upgrade: a response it started goes
        out as it stands, else 500."""
        if self._response is not None:
            self._finish_response()
        elif not self.handshake_complete:
            self._respond(
                500,
                [("Content-Type", "text/plain; charset=utf-8")],
                _INTERNAL_ERROR_BODY,
            )

    def _finish_response(self) -> None:
        assert self._response is not None
        status, headers, body = self._response
        self._response = None
        self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        self._respond(status, _text_headers(headers), bytes(body))

    def _accept(self, message: Any) -> None:
        self.logger.info(
            '%s - "WebSocket %s" [accepted]',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
        )
        headers = _text_headers(self.default_headers + list(message.get("headers", [])))
        data, _ = _ferrows.server_accept_response(
            self._key, message.get("subprotocol"), self._deflate, headers
        )
        if self.transport.is_closing():
            return
        self.handshake_complete = True
        self.transport.write(data)
        close_timeout = self.close_timeout
        options = core_options(
            max_size=self.config.ws_max_size,
            max_frame_size=None,
            max_fragments=100_000,
            close_timeout=_AT_ONCE if close_timeout == 0 else close_timeout,
            ping_interval=self.config.ws_ping_interval,
            ping_timeout=self.config.ws_ping_timeout,
            compression="deflate" if self.config.ws_per_message_deflate else None,
        )
        # Whatever received data the application has not taken stops reading (see
        # _data_arrived), which bounds the inbox: the core needs no read limit of its own.
        self._core = core = _ferrows.ProtocolCore(
            False, options, False, self._deflate, None, _send_buffer()
        )
        self._process(core.poll())
        rest = bytes(self._head)
        self._head = bytearray()
        if rest:
            self._process(core.receive(rest))
        self._resume_reading()

    def _reject(self) -> None:
        """websocket.close before websocket.accept: HTTP 403."""
        self.logger.info(
            '%s - "WebSocket %s" 403',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
        )
        self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        self._respond(403, [], b"")

    def _start_response(self, message: Any) -> None:
        status = message["status"]
        if not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status:d}' in response.")
        self.logger.info(
            '%s - "WebSocket %s" %d',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            status,
        )
        self._response = (status, list(message.get("headers", [])), bytearray())

    # The core's events

    def _process(self, events: list[tuple[Any, ...]]) -> None:
        for event in events:
            tag = event[0]
            if tag == _OUTPUT:
                self._write(event[1])
            elif tag == _TIMER:
                self._set_timer(event[1])
            elif tag == _CLOSED:
                self._closed(event[1], event[2])
            # PING: the core has answered it. PONG: the core's keepalive took it.
        self._data_arrived()

    def _data_arrived(self) -> None:
        """Wakes the application's receive() for a whole message, or stops reading while one
        waits for it, as uvicorn's protocols do."""
        core = self._core
        if self.close_sent:
            # The application is past websocket.close: what arrives meanwhile is dropped, so
            # reading goes on until the peer's close frame.
            while core.next_message() is not None:
                pass
            return
        if not core.has_message:
            return
        receiver = self._receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)
        else:
            self._pause_reading()

    def _closed(self, received: tuple[int, str] | None, sent: tuple[int, str] | None) -> None:
        """The core ended the connection: the peer's close frame, or ours on a failure
        (1009 over ws_max_size, 1002, 1007, 1011 keepalive timeout), or none (1006)."""
        self._core_closed = True
        close = received or sent
        if close is None:
            self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        else:
            code, reason = close
            self._set_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
        if not self.transport.is_closing():
            self.transport.close()

    def _set_timer(self, delay: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if delay is None else self.loop.call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        core = self._core
        pings = core.pings_sent
        self._process(core.handle_timeout())
        if core.pings_sent != pings:
            self.ping_sent_at = self.loop.time()

    # Reading and writing

    def _write(self, data: Any) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)

    def _pause_reading(self) -> None:
        if not self._read_paused and not self.transport.is_closing():
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def _set_disconnect(self, event: dict[str, Any]) -> None:
        """Records the websocket.disconnect the application gets (the first cause counts)."""
        if self._disconnect is None:
            self._disconnect = event
        receiver = self._receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)

    # ASGI

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self._send_500_response()
        else:
            if self._response is not None:
                self.logger.error("ASGI callable returned without finishing its HTTP response.")
                self._finish_response()
            elif not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self._send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            # Without the application's websocket.close the connection just ends (1006 for
            # the client), as uvicorn's protocols end it.
            self.transport.close()

    async def receive(self) -> dict[str, Any]:
        """The ASGI receive callable: websocket.connect, then the messages as they arrive,
        then websocket.disconnect (again on every later call)."""
        if self._connect_pending:
            self._connect_pending = False
            return {"type": "websocket.connect"}
        while True:
            core = self._core
            if core is not None and not self.close_sent:
                message = core.next_message()
                if message is not None:
                    if self._read_paused and not core.has_message:
                        self._resume_reading()
                    if type(message) is str:
                        return {"type": "websocket.receive", "text": message}
                    return {"type": "websocket.receive", "bytes": message}
            if self._disconnect is not None:
                return self._disconnect
            receiver = self.loop.create_future()
            self._receiver = receiver
            try:
                await receiver
            finally:
                self._receiver = None

    async def send(self, message: Any) -> None:
        """The ASGI send callable."""
        if not self._writable.is_set():
            await self._writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if self._response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            self._response[2].extend(message.get("body", b""))
            if not message.get("more_body", False):
                self._finish_response()
        elif not self.handshake_complete:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._reject()
            elif kind == "websocket.http.response.start":
                self._start_response(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start' but got '{kind}'."
                )
        elif not self.close_sent:
            if kind == "websocket.send":
                self._send_message(message)
            elif kind == "websocket.close":
                self._close(message.get("code", 1000), message.get("reason") or "")
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got '{kind}'."
                )
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    def _send_message(self, message: Any) -> None:
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
            if data is None:
                raise RuntimeError("websocket.send needs 'bytes' or 'text'")
        elif type(data) is not bytes:
            data = bytes(data)
        try:
            frame = self._core.send(data)
        except ConnectionClosed as exc:
            # The peer closed first, or the connection failed: as for a lost transport.
            raise ClientDisconnected() from exc
        self._write(frame)

    def _close(self, code: int, reason: str) -> None:
        core = self._core
        self.close_sent = True
        self._set_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.transport.is_closing() or core.is_closing:
            return
        self._write(core.close(code, reason))
        self._process(core.poll())
        # The peer's close frame must be read, whatever the application left unread.
        self._resume_reading()

    def _trace(self, what: str) -> None:
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = "{}:{} - ".format(*self.client) if self.client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%s%s", prefix, what)
