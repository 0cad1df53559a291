"""The asyncio client: ``connect()``, awaited, used as a context manager, or iterated to
reconnect."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Generator, Sequence
from types import TracebackType
from typing import Any, Callable

from .. import _ferrows
from .._proxy import ProxyOption, proxy_url
from .._reconnect import backoff, is_transient
from ..compression import Compression
from ..exceptions import InvalidMessage, InvalidProxyMessage, TLSError
from ..exceptions import TimeoutError as WsTimeoutError
from ..http11 import Headers, HeadersLike, _request_from_core, _response_from_core
from .connection import Connection, Listener, _read_buffer
from .options import Limit, connection_options

__all__ = ["ClientConnection", "connect", "unix_connect"]

client_logger = logging.getLogger("ferrows.client")

_MAX_ERROR_BODY = 65536


class ClientConnection(Connection):
    """A connection opened by :func:`connect`."""

    __slots__ = ("_handshake", "_head", "_head_size", "_opened")

    def __init__(self, handshake: Any, **kwargs: Any) -> None:
        super().__init__(is_client=True, **kwargs)
        self._handshake = handshake
        self._head: bytearray | None = bytearray()
        self._head_size: int | None = None
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self.request = _request_from_core(handshake.request())
        # Through a proxy, start_tls asks for a buffer (to read a TLS session ticket) before
        # connection_made.
        self._buffer, self._view = _read_buffer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._transport.write(self._handshake.request_bytes())  # type: ignore[union-attr]

    def _handshake_data(self, data: bytes) -> None:
        if self._head is None:
            return  # the handshake failed: what follows does not matter
        self._head += data
        try:
            if self._head_size is None:
                self._head_size = self._handshake.parse_response(bytes(self._head))
                if self._head_size is None:
                    return
            body_length = self._handshake.body_length()
            rest = bytes(self._head[self._head_size :])
            response = self._handshake.response()
            if response[0] != 101 and len(rest) < min(body_length or 0, _MAX_ERROR_BODY):
                return  # the body of a refusal is still coming
            refusal = response[0] != 101
            body = rest[: min(body_length or 0, _MAX_ERROR_BODY)] if refusal else b""
            self.subprotocol, self._deflate = self._handshake.validate(body)
        except Exception as exc:
            self._fail_handshake(exc)
            return
        self.response = _response_from_core(self._handshake.response())
        self._head = None
        self._start(rest)
        self._opened.set_result(None)

    def _handshake_lost(self, exc: Exception | None) -> None:
        if self._opened.done():
            return
        if self._head_size is not None:
            # A refusal whose body ended with the connection: report what arrived.
            self._handshake_data(b"")
            if self._opened.done():
                return
        error = InvalidMessage("connection closed during the opening handshake")
        error.__cause__ = exc
        self._opened.set_exception(error)

    def _fail_handshake(self, exc: Exception) -> None:
        self._head = None
        if not self._opened.done():
            # Its traceback holds this connection's frames, and the connection holds the
            # future: dropped, so that a refused connection is freed without the collector.
            self._opened.set_exception(exc.with_traceback(None))
        if self._transport is not None:
            self._transport.close()


class connect:
    """Opens a WebSocket connection to ``uri``; use it one of three ways:

    - ``async with connect(uri) as websocket: ...`` (closes on exit);
    - ``websocket = await connect(uri)``;
    - ``async for websocket in connect(uri): ...`` reconnects with exponential backoff and
      jitter after transient failures (refused, reset, timeouts, 5xx responses), never after a
      4xx or an invalid URI.

    ``ssl``: True or an :class:`ssl.SSLContext` (wss:// URIs get a default context);
    ``server_hostname`` overrides the name checked; ``sock`` is a connected socket to use.
    ``listener`` (a factory of :class:`~ferrows.asyncio.Listener`) selects the callback API.
    ``proxy``: as :func:`ferrows.sync.client.connect` (True: from the environment; not used
    with ``sock`` or ``unix_path``); TLS to an ``https://`` proxy uses ``proxy_ssl`` (an
    :class:`ssl.SSLContext`), else ``ssl`` if it is a context, else the default context.
    Limits and timeouts as in :func:`ferrows.sync.client.connect`; ``read_limit`` pauses
    reading above it (bytes), ``write_limit`` makes ``send()`` wait above it.
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = None,
        ssl: bool | ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
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
        proxy: ProxyOption = True,
        proxy_ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.uri = uri
        self._proxy = proxy
        self._proxy_ssl = proxy_ssl
        self._handshake_options = {
            "origin": origin,
            "subprotocols": list(subprotocols) if subprotocols else None,
            "additional_headers": (
                Headers(additional_headers).items() if additional_headers else None
            ),
            "user_agent": user_agent_header,
        }
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._sock = sock
        self._unix_path = unix_path
        self._open_timeout = open_timeout
        self._connection_options = options = connection_options(
            max_size=max_size,
            max_frame_size=max_frame_size,
            max_fragments=max_fragments,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            read_limit=read_limit,
            write_limit=write_limit,
            compression=compression,
            logger=logger or client_logger,
        )
        self._handshake_options["compression"] = options["core_options"]["compression"]
        self._listener = listener
        self._connection: ClientConnection | None = None

    async def _open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        handshake = _ferrows.client_handshake(self.uri, self._handshake_options)
        secure, host, port = handshake.address()
        context: ssl_module.SSLContext | None = None
        if isinstance(self._ssl, ssl_module.SSLContext):
            context = self._ssl
        elif self._ssl or (self._ssl is None and secure):
            context = ssl_module.create_default_context()
        if self._ssl is False and secure:
            raise ValueError("wss:// needs TLS; ssl=False contradicts the URI")
        listener = self._listener() if self._listener else None

        def factory() -> ClientConnection:
            return ClientConnection(handshake, listener=listener, **self._connection_options)

        kwargs: dict[str, Any] = {"ssl": context}
        if context is not None:
            kwargs["server_hostname"] = self._server_hostname or host
        direct = self._unix_path is not None or self._sock is not None
        proxy = None if direct else proxy_url(self._proxy, self.uri)
        try:
            if proxy is not None:
                connection = await self._open_tunnel(proxy, factory, host, port, **kwargs)
            elif self._unix_path is not None:
                _, connection = await loop.create_unix_connection(
                    factory, self._unix_path, sock=self._sock, **kwargs
                )
            elif self._sock is not None:
                _, connection = await loop.create_connection(factory, sock=self._sock, **kwargs)
            else:
                _, connection = await loop.create_connection(factory, host, port, **kwargs)
        except ssl_module.SSLError as exc:
            # Certificate not trusted, or another TLS handshake failure: as the sync face.
            raise TLSError(f"TLS handshake failed: {exc}") from exc
        try:
            await connection._opened
        except BaseException:
            if connection._transport is not None:
                connection._transport.abort()
            # The traceback keeps this frame, and the connection keeps the exception: without
            # this, they would wait in a cycle for the garbage collector.
            del connection
            raise
        return connection

    async def _open_tunnel(
        self,
        proxy: str,
        factory: Callable[[], ClientConnection],
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None,
        server_hostname: str | None = None,
    ) -> ClientConnection:
        """Opens a tunnel to ``host:port`` through ``proxy`` (the core's handshake), then
        TLS inside it for wss://, and hands the transport to a new connection."""
        loop = asyncio.get_running_loop()
        handshake = _ferrows.ProxyHandshake(proxy)
        if handshake.resolves_locally():
            addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            host = addresses[0][4][0]
        handshake.start(host, port, self._handshake_options["user_agent"])
        proxy_host, proxy_port = handshake.address()
        proxy_kwargs: dict[str, Any] = {}
        if handshake.is_tls():
            proxy_context = self._proxy_ssl
            if proxy_context is None and isinstance(self._ssl, ssl_module.SSLContext):
                proxy_context = self._ssl
            proxy_kwargs["ssl"] = proxy_context or ssl_module.create_default_context()
            proxy_kwargs["server_hostname"] = proxy_host
        transport, tunnel = await loop.create_connection(
            lambda: _Tunnel(handshake), proxy_host, proxy_port, **proxy_kwargs
        )
        try:
            await tunnel.opened
            connection = factory()
            if ssl is not None:
                # start_tls leaves connection_made to the caller.
                transport = await loop.start_tls(
                    transport, connection, ssl, server_hostname=server_hostname
                )
            else:
                transport.set_protocol(connection)
            connection.connection_made(transport)
        except BaseException:
            transport.abort()
            raise
        return connection

    async def _open_with_timeout(self) -> ClientConnection:
        try:
            return await asyncio.wait_for(self._open(), self._open_timeout)
        except asyncio.TimeoutError as exc:
            raise WsTimeoutError("timed out during the opening handshake") from exc

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._open_with_timeout().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._connection = await self._open_with_timeout()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        await self._connection.__aexit__(exc_type, exc_value, traceback)

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        delays = backoff()
        while True:
            try:
                connection = await self._open_with_timeout()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                delay = next(delays)
                client_logger.info(
                    "connect to %s failed (%s); retrying in %.1f s", self.uri, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            delays = backoff()
            try:
                yield connection
            finally:
                await connection.close()


class _Tunnel(asyncio.Protocol):
    """Moves the bytes of a proxy handshake until the tunnel opens."""

    def __init__(self, handshake: Any) -> None:
        self._handshake = handshake
        self._transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._transport.write(self._handshake.output())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.opened.done():
            return
        try:
            if self._handshake.receive(data):
                self.opened.set_result(None)
                return
        except Exception as exc:
            self.opened.set_exception(exc.with_traceback(None))
            return
        output = self._handshake.output()
        if output:
            self._transport.write(output)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            error = InvalidProxyMessage("the proxy closed the connection before the tunnel opened")
            error.__cause__ = exc
            self.opened.set_exception(error)


def unix_connect(path: str, uri: str = "ws://localhost/", **kwargs: Any) -> connect:
    """Like :func:`connect`, over the Unix socket at ``path``."""
    return connect(uri, unix_path=path, **kwargs)
