"""connect(): awaited, as a context manager, iterated to reconnect; timeouts; Unix sockets."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import ferrows.asyncio.client as client_module
import pytest
from aiosupport import HOST, aiotest, bounded, echo, settle, ws_url
from ferrows.asyncio import (
    ClientConnection,
    ServerConnection,
    connect,
    serve,
    unix_connect,
    unix_serve,
)
from ferrows.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus, InvalidURI
from ferrows.exceptions import TimeoutError as WsTimeoutError
from ferrows.http11 import Request


class FailedAttempts(logging.Handler):
    """Counts the client's "retrying" log records and wakes a waiter on each (loop thread)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.count += 1
            self.changed.set()

    async def wait_for_count(self, count: int, timeout: float = 5.0) -> None:
        async def reached() -> None:
            while self.count < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(reached(), timeout)

    def __enter__(self) -> FailedAttempts:
        logger = client_module.client_logger
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        client_module.client_logger.removeHandler(self)
        client_module.client_logger.setLevel(self._level)


@aiotest
async def test_connect_as_a_context_manager_closes_on_exit():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.send("in context")
            assert await bounded(ws.recv()) == "in context"
            assert ws.close_code is None
        assert ws.close_code == 1000
        await bounded(ws.wait_closed())


@aiotest
async def test_connect_awaited_returns_an_open_connection():
    async with serve(echo, HOST, 0) as server:
        ws = await connect(ws_url(server.port))
        try:
            await ws.send(b"awaited")
            assert await bounded(ws.recv()) == b"awaited"
        finally:
            await bounded(ws.close())
        assert ws.close_code == 1000


@aiotest
async def test_context_manager_closes_with_1011_when_the_body_raises():
    codes = asyncio.get_running_loop().create_future()

    async def report(connection: ServerConnection) -> None:
        try:
            await connection.recv()
        except ConnectionClosed as exc:
            settle(codes, exc.code)

    async with serve(report, HOST, 0) as server:
        with pytest.raises(ZeroDivisionError):
            async with connect(ws_url(server.port)):
                1 / 0  # noqa: B018
        assert await bounded(codes) == 1011


def greeter(name: str):
    """A handler that says its name first, then echoes."""

    async def handler(connection: ServerConnection) -> None:
        await connection.send(name)
        await echo(connection)

    return handler


@aiotest
async def test_reconnecting_iterator_survives_a_server_restart(fast_backoff):
    first = await serve(greeter("first"), HOST, 0)
    port = first.port
    servers = [first]
    greetings: list[str | bytes] = []
    connections: list[ClientConnection] = []
    started = time.monotonic()

    async def restart_after_failures(failures: FailedAttempts) -> None:
        # The client failed twice against the dead port: listen on it again.
        await failures.wait_for_count(2)
        servers.append(await serve(greeter("second"), HOST, port))

    async def iterate(iterator: AsyncIterator[ClientConnection], failures) -> None:
        restarting = None
        async for ws in iterator:
            connections.append(ws)
            greetings.append(await bounded(ws.recv()))
            if len(greetings) == 2:
                await bounded(restarting)
                return
            # Stop the first server: its connection closes with 1001, the iterator
            # reconnects, fails while nothing listens, then reaches the second server.
            first.close()
            await bounded(first.wait_closed())
            with pytest.raises(ConnectionClosedOK):
                await bounded(ws.recv())
            restarting = asyncio.ensure_future(restart_after_failures(failures))

    iterator = connect(ws_url(port), open_timeout=2).__aiter__()
    with FailedAttempts() as failures:
        try:
            await bounded(iterate(iterator, failures), 15)
        finally:
            await bounded(iterator.aclose())  # closes the connection it yielded last
            for server in servers:
                server.close()
                await bounded(server.wait_closed())
    assert greetings == ["first", "second"]
    assert failures.count >= 2
    assert [ws.close_code for ws in connections] == [1001, 1000]
    assert time.monotonic() - started < 10


@aiotest
async def test_reconnecting_iterator_retries_after_5xx(fast_backoff):
    attempts: list[str] = []

    def unavailable_twice(connection: ServerConnection, request: Request):
        attempts.append(request.path)
        if len(attempts) <= 2:
            return connection.respond(503, "come back later\n")
        return None

    async with serve(echo, HOST, 0, process_request=unavailable_twice) as server:
        with FailedAttempts() as failures:

            async def first_connection() -> None:
                async for ws in connect(ws_url(server.port)):
                    await ws.send("made it")
                    assert await bounded(ws.recv()) == "made it"
                    return

            await bounded(first_connection())
    assert len(attempts) == 3
    assert failures.count == 2


@aiotest
async def test_reconnecting_iterator_gives_up_on_4xx(fast_backoff):
    attempts: list[str] = []

    def forbidden(connection: ServerConnection, request: Request):
        attempts.append(request.path)
        return connection.respond(403, "go away\n")

    async with serve(echo, HOST, 0, process_request=forbidden) as server:
        with FailedAttempts() as failures:

            async def iterate() -> None:
                async for _ws in connect(ws_url(server.port)):
                    raise AssertionError("a refused connection was yielded")

            with pytest.raises(InvalidStatus) as caught:
                await bounded(iterate())
    assert caught.value.response.status_code == 403
    assert caught.value.response.body == b"go away\n"
    assert attempts == ["/"]
    assert failures.count == 0


@aiotest
@pytest.mark.parametrize("uri", ["http://127.0.0.1/", "ws://", "ws://127.0.0.1:99999/"])
async def test_reconnecting_iterator_gives_up_on_an_invalid_uri(fast_backoff, uri):
    async def iterate() -> None:
        async for _ws in connect(uri):
            raise AssertionError("yielded a connection for an invalid URI")

    with FailedAttempts() as failures:
        with pytest.raises(InvalidURI):
            await bounded(iterate())
    assert failures.count == 0


def test_backoff_constants_come_from_the_environment():
    code = (
        "import ferrows._reconnect as c;"
        "print(c.BACKOFF_INITIAL_DELAY, c.BACKOFF_FACTOR, c.BACKOFF_MAX_DELAY);"
        "import itertools; d = list(itertools.islice(c.backoff(), 6));"
        "assert 0 <= d[0] <= 0.05 and all(x <= 0.2 for x in d), d"
    )
    env = dict(
        os.environ,
        FERROWS_BACKOFF_INITIAL_DELAY="0.05",
        FERROWS_BACKOFF_FACTOR="2",
        FERROWS_BACKOFF_MAX_DELAY="0.2",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0.05", "2.0", "0.2"]


@aiotest
async def test_open_timeout_against_a_listener_that_never_answers():
    # Listening but never accepting: the TCP handshake completes in the kernel, the
    # WebSocket handshake never does.
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(WsTimeoutError):
            await bounded(connect(ws_url(silent.getsockname()[1]), open_timeout=0.3))
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 3
    # Also the built-in TimeoutError, like websockets'.
    assert issubclass(WsTimeoutError, TimeoutError)


@aiotest
async def test_server_open_timeout_drops_a_silent_client():
    async with serve(echo, HOST, 0, open_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            started = time.monotonic()
            assert await bounded(reader.read()) == b""
            assert time.monotonic() - started < 3
            assert not server.connections
        finally:
            writer.close()


@aiotest
async def test_refused_connection_raises_oserror():
    with socket.socket() as unused:
        unused.bind((HOST, 0))
        port = unused.getsockname()[1]
    with pytest.raises(OSError):
        await bounded(connect(ws_url(port)))


@aiotest
async def test_unix_socket_serve_and_connect(tmp_path):
    path = str(tmp_path / "ws.sock")
    paths: list[str] = []

    async def record_then_echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        paths.append(connection.request.path)
        await echo(connection)

    async with unix_serve(record_then_echo, path) as server:
        assert server.sockets[0].family == socket.AF_UNIX
        async with unix_connect(path, "ws://localhost/over-unix") as ws:
            for message in ["unix text", b"unix bytes", b"u" * 300_000]:
                await ws.send(message)
                assert await bounded(ws.recv()) == message
        assert ws.close_code == 1000
    assert paths == ["/over-unix"]


@aiotest
async def test_unix_connect_with_default_uri(tmp_path):
    path = str(tmp_path / "default.sock")
    async with unix_serve(echo, path):
        async with unix_connect(path) as ws:
            await ws.send("default uri")
            assert await bounded(ws.recv()) == "default uri"


@aiotest
async def test_a_refused_client_connection_is_freed_without_the_collector():
    def forbidden(connection: ServerConnection, request: Request):
        return connection.respond(403, "go away\n")

    def client_connections() -> int:
        return sum(isinstance(o, ClientConnection) for o in gc.get_objects())

    async with serve(echo, HOST, 0, process_request=forbidden) as server:
        gc.collect()
        gc.disable()
        try:
            before = client_connections()
            for _ in range(5):
                with pytest.raises(InvalidStatus) as caught:
                    await bounded(connect(ws_url(server.port)))
                del caught  # the test's own reference to the traceback
            # Only reference counting ran: a cycle would keep them all.
            assert client_connections() == before
        finally:
            gc.enable()
