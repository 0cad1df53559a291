"""The sync server: ``serve()`` listens, and runs a handler in a thread per connection."""

from __future__ import annotations

import http
import logging
import os
import queue
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Callable, Optional

from .. import _ferrows
from ..compression import Compression
from ..exceptions import ConnectionClosed, InvalidHandshake
from ..frames import CloseCode
from ..http11 import Request, Response, _request_from_core, plain_response
from .connection import Connection
from .options import Limits, protocol_options, read_pem

__all__ = ["Server", "ServerConnection", "serve"]

logger = logging.getLogger("ferrows.server")

SERVER_HEADER = f"ferrows/{_ferrows.__version__}"

#: Handler threads kept waiting for the next connection once theirs ended. Starting a thread
#: per connection made the accepting thread wait for each one to start, which halved the
#: handshake rate; beyond this many idle threads, a finished one exits.
MAX_IDLE_THREADS = 64

ProcessRequest = Callable[["ServerConnection", Request], Optional[Response]]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], Optional[str]]


class ServerConnection(Connection):
    """A connection accepted by a :class:`Server`, handed to the handler.

    Before the upgrade, ``process_request`` and ``select_subprotocol`` receive it too: then
    only :attr:`request`, :attr:`remote_address` and :meth:`respond` are meaningful.
    """

    def __init__(self, pending: _ferrows.PendingHandshake) -> None:
        self.logger = logger
        self.request = _request_from_core(pending.request())
        self.response = None
        self._pending_remote = pending.remote_address()

    def _opened(self, core: _ferrows.Connection) -> None:
        Connection.__init__(self, core, logger)

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the client."""
        if not hasattr(self, "_core"):
            return self._pending_remote
        return self._core.remote_address

    def respond(self, status: int | http.HTTPStatus, text: str) -> Response:
        """Builds a plain-text HTTP response, for ``process_request`` to return."""
        return plain_response(status, text)


class Server:
    """A running WebSocket server, returned by :func:`serve`.

    Use it as a context manager, or call :meth:`shutdown` from another thread to stop
    :meth:`serve_forever`.
    """

    def __init__(
        self,
        core: _ferrows.Server,
        handler: Callable[[ServerConnection], None],
        process_request: ProcessRequest | None,
        select_subprotocol: SelectSubprotocol | None,
        shutdown_timeout: float | None,
    ) -> None:
        self._core = core
        self._handler = handler
        self._process_request = process_request
        self._select_subprotocol = select_subprotocol
        self._shutdown_timeout = shutdown_timeout
        self._stopping = threading.Event()
        self._threads: set[threading.Thread] = set()
        # Guards _threads and _idle, and is notified when they change; each idle thread
        # waits for one item of _handoff.
        self._threads_changed = threading.Condition()
        self._idle = 0
        self._handoff: queue.SimpleQueue[_ferrows.PendingHandshake | None] = queue.SimpleQueue()

    @property
    def local_address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        return self._core.local_address

    @property
    def metrics(self) -> _ferrows.ServerMetrics:
        """The server's counters: handshakes, messages, close codes, pings, pauses
        (:mod:`ferrows.metrics`)."""
        return self._core.metrics

    @property
    def port(self) -> int:
        """The port the server listens on (useful after binding port 0)."""
        return self._core.local_address[1]

    def serve_forever(self) -> None:
        """Accepts connections until :meth:`shutdown`; each handler runs in a thread of its
        own while its connection lasts (an idle thread takes the next one)."""
        while not self._stopping.is_set():
            try:
                pending = self._core.accept(None)
            except ConnectionClosed:
                return
            if pending is None:
                continue
            with self._threads_changed:
                if self._idle:
                    self._idle -= 1
                    self._handoff.put(pending)
                    continue
                thread = threading.Thread(
                    target=self._work, args=(pending,), name="ferrows-handler", daemon=True
                )
                self._threads.add(thread)
            thread.start()

    def _work(self, pending: _ferrows.PendingHandshake | None) -> None:
        """Serves `pending`, then the connections handed over while idle, until told to stop
        (None) or enough threads are idle already."""
        try:
            while pending is not None:
                self._handle(pending)
                with self._threads_changed:
                    if self._stopping.is_set() or self._idle >= MAX_IDLE_THREADS:
                        return
                    self._idle += 1
                    self._threads_changed.notify_all()
                pending = self._handoff.get()
        finally:
            with self._threads_changed:
                self._threads.discard(threading.current_thread())
                self._threads_changed.notify_all()

    def _handle(self, pending: _ferrows.PendingHandshake) -> None:
        connection = self._open(pending)
        if connection is not None:
            self._run_handler(connection)

    def _open(self, pending: _ferrows.PendingHandshake) -> ServerConnection | None:
        connection = ServerConnection(pending)
        try:
            response = None
            if self._process_request is not None:
                response = self._process_request(connection, connection.request)
            if response is not None:
                pending.respond(
                    response.status_code,
                    response.reason_phrase,
                    response.headers.items(),
                    response.body,
                )
                return None
            if self._select_subprotocol is not None:
                offered = pending.offered_subprotocols()
                subprotocol = self._select_subprotocol(connection, offered) if offered else None
            else:
                subprotocol = pending.default_subprotocol()
            connection._opened(pending.accept(subprotocol))
        except InvalidHandshake as exc:
            # Not a valid upgrade: the engine answered with the matching HTTP error.
            logger.info("refused opening handshake from %s: %s", connection.remote_address, exc)
            return None
        except Exception:
            logger.exception("opening handshake failed")
            try:
                pending.respond(
                    500, "Internal Server Error", [], b"Failed to open a WebSocket connection.\n"
                )
            except RuntimeError:
                pass  # already answered
            return None
        return connection

    def _run_handler(self, connection: ServerConnection) -> None:
        try:
            self._handler(connection)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("connection handler failed")
            connection.close(CloseCode.INTERNAL_ERROR)
            return
        connection.close()

    def shutdown(self) -> None:
        """Stops accepting, closes every connection with 1001 (going away), waits for them."""
        self._stopping.set()
        self._core.shutdown(self._shutdown_timeout)
        with self._threads_changed:
            threads = list(self._threads)
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._handoff.put(None)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(self._shutdown_timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(
    handler: Callable[[ServerConnection], None],
    host: str | None = None,
    port: int | None = None,
    *,
    process_request: ProcessRequest | None = None,
    origins: Sequence[str | None] | None = None,
    subprotocols: Sequence[str] | None = None,
    select_subprotocol: SelectSubprotocol | None = None,
    server_header: str | None = SERVER_HEADER,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    max_connections: int | None = None,
    backlog: int | None = None,
    open_timeout: float | None = 10,
    close_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    max_size: int | None = 2**20,
    max_frame_size: int | None = None,
    max_fragments: int | None = 100_000,
    read_limit: Limits = None,
    write_limit: Limits = None,
    compression: Compression = "deflate",
) -> Server:
    """Listens on ``host:port`` and returns a :class:`Server`; call its ``serve_forever()``.

    ``handler(connection)`` runs in its own thread for each connection; the connection is
    closed when it returns (with 1011 if it raised). ``process_request(connection, request)``
    may return a :class:`~ferrows.http11.Response` to answer instead of upgrading (health
    checks, authentication); ``origins`` is an allow-list of Origin values (None in it
    allows requests without one); ``subprotocols`` are chosen in server preference order
    unless ``select_subprotocol`` decides. ``certfile``/``keyfile`` (PEM) enable TLS.
    ``max_connections`` caps connections, open or handshaking: beyond it, clients get HTTP
    503. ``backlog`` caps the handshakes waiting for :meth:`Server.serve_forever` to hand
    them to a thread (beyond it, HTTP 503) and sets the listen queue; None: as many as
    ``max_connections``. ``open_timeout`` bounds each opening handshake. Other options as in
    :func:`ferrows.sync.client.connect`.
    """
    if backlog is not None and backlog < 1:
        raise ValueError("backlog must be at least 1 or None")
    cert = read_pem(certfile, "certfile")
    key = read_pem(keyfile, "keyfile") if keyfile is not None else cert
    options = protocol_options(
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=max_size,
        max_frame_size=max_frame_size,
        max_fragments=max_fragments,
        read_limit=read_limit,
        write_limit=write_limit,
        compression=compression,
    )
    options.update(
        origins=list(origins) if origins is not None else None,
        subprotocols=list(subprotocols) if subprotocols else None,
        cert_data=cert,
        key_data=key,
        max_connections=max_connections,
        backlog=backlog,
        response_headers=[("Server", server_header)] if server_header else [],
    )
    core = _ferrows.Server(host or "0.0.0.0", port or 0, options)
    logger.info("server listening on %s:%d", *core.local_address)
    return Server(core, handler, process_request, select_subprotocol, close_timeout)
