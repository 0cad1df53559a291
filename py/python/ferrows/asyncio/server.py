"""The asyncio server: ``serve()`` listens and runs a coroutine per connection."""

from __future__ import annotations

import asyncio
import http
import inspect
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Generator, Sequence
from types import TracebackType
from typing import Any, Callable, Optional, Union

from .. import _ferrows
from ..compression import Compression
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..frames import CloseCode
from ..http11 import (
    Request,
    Response,
    _request_from_core,
    _response_from_core,
    plain_response,
)
from .connection import Connection, Listener
from .options import Limit, connection_options

__all__ = ["Server", "ServerConnection", "serve", "unix_serve"]

server_logger = logging.getLogger("ferrows.server")

SERVER_HEADER = f"ferrows/{_ferrows.__version__}"

#: Connections served at once when ``max_connections`` is None, as in the sync server.
MAX_CONNECTIONS = 10_000

MaybeAwaitable = Union[Optional[Response], Awaitable[Optional[Response]]]
ProcessRequest = Callable[["ServerConnection", Request], MaybeAwaitable]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], Optional[str]]
Handler = Callable[["ServerConnection"], Awaitable[None]]


class ServerConnection(Connection):
    """A connection accepted by a :class:`Server`, handed to the handler."""

    __slots__ = ("_handshake_timer", "_has_slot", "_head", "_server", "_task")

    def __init__(self, server: Server, **kwargs: Any) -> None:
        super().__init__(is_client=False, **kwargs)
        self._server = server
        self._metrics = server.metrics
        self._head: bytearray | None = bytearray()
        self._has_slot = False
        # The handshake's task, then the handler's (the loop keeps only weak references).
        self._task: asyncio.Task[None] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._has_slot = self._server._admit(self)
        timeout = self._server._open_timeout
        if timeout:
            self._handshake_timer = self._loop.call_later(timeout, self._handshake_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        # The timer refers to this connection: cancelled, it leaves no cycle behind.
        self._cancel_handshake_timer()
        self._server._release(self)

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        if self._core is None and self._transport is not None:
            self.logger.info("opening handshake from %s timed out", self.remote_address)
            self._transport.abort()

    def _handshake_data(self, data: bytes) -> None:
        if self._head is None:
            return  # the request is in: what follows waits for our answer
        self._head += data
        try:
            parsed = _ferrows.server_parse_request(bytes(self._head))
        except InvalidHandshake as exc:
            self._metrics.record_refused("bad_request")
            self._refuse(400, f"Failed to open a WebSocket connection: {exc}.\n")
            return
        if parsed is None:
            return
        raw_request, used = parsed
        rest = bytes(self._head[used:])
        self._head = None
        if not self._has_slot:
            self.logger.debug("refused %s: too many connections", self.remote_address)
            self._metrics.record_refused("limit")
            self._refuse(503, "too many connections\n")
            return
        self.request = _request_from_core(raw_request)
        if self._server._process_request is None:
            # Nothing to await: the upgrade completes here, without a task of its own.
            self._upgrade(raw_request, rest)
            return
        self._transport.pause_reading()  # type: ignore[union-attr]
        self._task = self._loop.create_task(self._handshake(raw_request, rest))

    def respond(self, status: int | http.HTTPStatus, text: str) -> Response:
        """Builds a plain-text HTTP response, for ``process_request`` to return."""
        return plain_response(status, text)

    def _send_response(self, response: Response) -> None:
        headers = response.headers.items()
        if self._server._server_header and "Server" not in response.headers:
            headers.append(("Server", self._server._server_header))
        self.response = response
        self._transport.write(  # type: ignore[union-attr]
            _ferrows.response_bytes(
                response.status_code, response.reason_phrase, headers, response.body
            )
        )

    def _refuse(self, status: int, text: str) -> None:
        self._head = None
        self._send_response(self.respond(status, text))
        self._transport.close()  # type: ignore[union-attr]

    async def _handshake(self, raw_request: Any, rest: bytes) -> None:
        """Runs ``process_request`` (reading paused meanwhile), then upgrades unless it
        answered."""
        server = self._server
        assert self.request is not None
        try:
            response = server._process_request(self, self.request)  # type: ignore[misc]
            if inspect.isawaitable(response):
                response = await response
        except Exception:
            self.logger.exception("opening handshake failed")
            self._refuse(500, "Failed to open a WebSocket connection.\n")
            return
        if self._transport.is_closing():  # type: ignore[union-attr]
            return  # the client left or the server closed meanwhile
        if response is not None:
            self._send_response(response)
            self._transport.close()  # type: ignore[union-attr]
            return
        if self._upgrade(raw_request, rest):
            self._transport.resume_reading()  # type: ignore[union-attr]

    def _upgrade(self, raw_request: Any, rest: bytes) -> bool:
        """Validates the request and answers it: 101 and the connection starts, with the
        handler's task, or the error response. Returns whether it upgraded."""
        server = self._server
        try:
            method, path, headers = raw_request
            try:
                key, offered, self._deflate = _ferrows.server_validate_request(
                    method,
                    path,
                    headers,
                    server._subprotocols,
                    server._origins,
                    self._core_options,
                    self._metrics,
                )
            except InvalidHandshake as exc:
                self.logger.info("refused handshake from %s: %s", self.remote_address, exc)
                self._send_response(_response_from_core(exc.http_response))  # type: ignore[attr-defined]
                self._transport.close()  # type: ignore[union-attr]
                return False
            if server._select_subprotocol is not None and offered:
                self.subprotocol = server._select_subprotocol(self, offered)
                if self.subprotocol is not None and self.subprotocol not in offered:
                    self.logger.info(
                        "refused handshake from %s: subprotocol %r was not offered",
                        self.remote_address,
                        self.subprotocol,
                    )
                    self._metrics.record_refused("subprotocol")
                    self._refuse(500, "Failed to open a WebSocket connection.\n")
                    return False
            else:
                self.subprotocol = next((p for p in server._subprotocols if p in offered), None)
            extra = [("Server", server._server_header)] if server._server_header else []
            data, raw_response = _ferrows.server_accept_response(
                key, self.subprotocol, self._deflate, extra
            )
        except Exception:
            self.logger.exception("opening handshake failed")
            self._refuse(500, "Failed to open a WebSocket connection.\n")
            return False
        if self._transport is None or self._transport.is_closing():
            return False
        self.response = _response_from_core(raw_response)
        self._transport.write(data)
        self._cancel_handshake_timer()
        self._start(rest)
        if server._handler is not None:
            # In a task of its own, so that the handshake's frame (the request as parsed, the
            # response's bytes) is not kept for as long as the handler runs.
            self._task = self._loop.create_task(self._run_handler(server._handler))
        return True

    async def _run_handler(self, handler: Handler) -> None:
        try:
            await handler(self)
        except ConnectionClosed:
            pass  # the connection ended under the handler: nothing to report
        except Exception:
            self.logger.exception("connection handler failed")
            await self.close(CloseCode.INTERNAL_ERROR)
            return
        await self.close()


class Server:
    """A running WebSocket server, returned by :func:`serve`.

    :attr:`metrics` counts its handshakes, messages, close codes, pings and pauses
    (:mod:`ferrows.metrics`).
    """

    def __init__(
        self,
        handler: Handler | None,
        *,
        process_request: ProcessRequest | None,
        origins: Sequence[str | None] | None,
        subprotocols: Sequence[str] | None,
        select_subprotocol: SelectSubprotocol | None,
        server_header: str | None,
        max_connections: int,
        open_timeout: float | None,
        connection_options: dict[str, Any],
        listener: Callable[[], Listener] | None,
    ) -> None:
        self._handler = handler
        self._process_request = process_request
        self._origins = list(origins) if origins is not None else None
        self._subprotocols = list(subprotocols or [])
        self._select_subprotocol = select_subprotocol
        self._server_header = server_header
        self._max_connections = max_connections
        self._open_timeout = open_timeout
        self._connection_options = connection_options
        self._listener = listener
        # Handshaking and open connections, at most max_connections of them ...
        self._connections: set[ServerConnection] = set()
        # ... and those beyond, reading their request only to be answered 503.
        self._overflow: set[ServerConnection] = set()
        self.server: asyncio.base_events.Server | None = None
        self.metrics = _ferrows.ServerMetrics()

    def _new_connection(self) -> ServerConnection:
        listener = self._listener() if self._listener else None
        return ServerConnection(self, listener=listener, **self._connection_options)

    def _admit(self, connection: ServerConnection) -> bool:
        """Tracks a new connection; returns whether it is within ``max_connections``."""
        admitted = len(self._connections) < self._max_connections
        (self._connections if admitted else self._overflow).add(connection)
        return admitted

    def _release(self, connection: ServerConnection) -> None:
        (self._connections if connection._has_slot else self._overflow).discard(connection)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self.server.sockets) if self.server else ()

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful after binding port 0)."""
        return self.sockets[0].getsockname()[1]

    @property
    def connections(self) -> set[ServerConnection]:
        """The handshaking and open connections (at most ``max_connections``)."""
        return set(self._connections)

    def close(self, close_connections: bool = True) -> None:
        """Stops listening and, by default, closes every connection with 1001 (going away).
        Await :meth:`wait_closed` for the connections to finish."""
        if self.server is not None:
            self.server.close()
        if close_connections:
            for connection in [*self._connections, *self._overflow]:
                if connection._core is not None:
                    connection._loop.create_task(connection.close(CloseCode.GOING_AWAY))
                elif connection._transport is not None:
                    connection._transport.close()

    async def wait_closed(self) -> None:
        """Waits until the server and every connection are closed."""
        if self.server is not None:
            await self.server.wait_closed()
        waiters = [c.wait_closed() for c in [*self._connections, *self._overflow]]
        if waiters:
            await asyncio.gather(*waiters)

    async def serve_forever(self) -> None:
        """Serves until cancelled or closed."""
        assert self.server is not None
        try:
            await self.server.serve_forever()
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class serve:
    """Starts a WebSocket server on ``host:port``: ``async with serve(...) as server`` or
    ``server = await serve(...)``.

    ``handler(connection)`` runs as a task per connection; the connection closes when it
    returns (1011 if it raised). ``process_request(connection, request)`` (a function or a
    coroutine) may return a :class:`~ferrows.http11.Response` to answer with plain HTTP
    (health checks, authentication) while other requests upgrade. ``origins``,
    ``subprotocols``, ``select_subprotocol``, ``max_connections`` (handshaking and open
    connections; beyond it clients get HTTP 503) and limits as in the sync server; ``ssl`` is
    an :class:`ssl.SSLContext`; ``reuse_port`` and ``sock`` go to ``loop.create_server``.
    ``listener`` (a factory of :class:`~ferrows.asyncio.Listener`) selects the callback API,
    with ``handler`` None.
    """

    def __init__(
        self,
        handler: Handler | None,
        host: str | None = None,
        port: int | None = None,
        *,
        process_request: ProcessRequest | None = None,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        server_header: str | None = SERVER_HEADER,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        reuse_port: bool | None = None,
        backlog: int = 100,
        max_connections: int | None = None,
        open_timeout: float | None = 10,
        close_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        max_size: int | None = 2**20,
        max_frame_size: int | None = None,
        max_fragments: int | None = 100_000,
        read_limit: Limit = None,
        write_limit: Limit = None,
        compression: Compression = "deflate",
        listener: Callable[[], Listener] | None = None,
        logger: logging.Logger | None = None,
        unix_path: str | None = None,
    ) -> None:
        if (handler is None) == (listener is None):
            raise ValueError("give a handler coroutine or a listener factory, not both")
        if max_connections is None:
            max_connections = MAX_CONNECTIONS
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._server = Server(
            handler,
            process_request=process_request,
            origins=origins,
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            server_header=server_header,
            max_connections=max_connections,
            open_timeout=open_timeout,
            connection_options=connection_options(
                max_size=max_size,
                max_frame_size=max_frame_size,
                max_fragments=max_fragments,
                close_timeout=close_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                read_limit=read_limit,
                write_limit=write_limit,
                compression=compression,
                logger=logger or server_logger,
            ),
            listener=listener,
        )
        self._create: dict[str, Any] = {"ssl": ssl, "sock": sock, "backlog": backlog}
        self._host, self._port = host, port
        self._unix_path, self._reuse_port = unix_path, reuse_port

    async def _start(self) -> Server:
        loop = asyncio.get_running_loop()
        factory = self._server._new_connection
        if self._unix_path is not None:
            server = await loop.create_unix_server(factory, self._unix_path, **self._create)
        else:
            server = await loop.create_server(
                factory, self._host, self._port, reuse_port=self._reuse_port, **self._create
            )
        self._server.server = server
        server_logger.info("server listening on %s", [s.getsockname() for s in server.sockets])
        return self._server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._server.__aexit__(exc_type, exc_value, traceback)


def unix_serve(handler: Handler | None, path: str, **kwargs: Any) -> serve:
    """Like :func:`serve`, on the Unix socket at ``path``."""
    return serve(handler, unix_path=path, **kwargs)
