"""``for websocket in reconnect(uri)``: the sync face reconnects after transient failures
with the core's backoff, and gives up after a 4xx or an invalid URI."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ferrows.sync
import pytest
from ferrows.exceptions import ConnectionClosedOK, InvalidStatus, InvalidURI
from ferrows.http11 import Request, Response
from ferrows.sync import ServerConnection, reconnect
from proxies import ProxyProcess
from wsutil import HOST

WAIT = 10.0


pytestmark = pytest.mark.usefixtures("fast_backoff")


class FailedAttempts(logging.Handler):
    """Counts the client's "retrying" log records; threads wait for a count."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for_count(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, WAIT)


@pytest.fixture
def failures() -> Iterator[FailedAttempts]:
    handler = FailedAttempts()
    logger = logging.getLogger("ferrows.client")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


class Servers:
    """Sync servers serving in threads, all shut down at teardown."""

    def __init__(self) -> None:
        self.running: list[tuple[ferrows.sync.Server, threading.Thread]] = []

    def start(
        self, handler: Callable[[ServerConnection], None], port: int = 0, **kwargs: Any
    ) -> ferrows.sync.Server:
        server = ferrows.sync.serve(handler, HOST, port, **kwargs)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.running.append((server, thread))
        return server

    def stop(self, server: ferrows.sync.Server) -> None:
        for running, thread in self.running:
            if running is server:
                server.shutdown()
                thread.join(WAIT)
                assert not thread.is_alive()


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers()
    yield started
    for server, thread in started.running:
        server.shutdown()
        thread.join(WAIT)


def greeter(name: str) -> Callable[[ServerConnection], None]:
    def handler(connection: ServerConnection) -> None:
        connection.send(name)
        for message in connection:
            connection.send(message)

    return handler


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def test_reconnects_across_a_server_restart(servers: Servers, failures: FailedAttempts) -> None:
    first = servers.start(greeter("first"))
    port = first.port
    greetings: list[str | bytes] = []
    restarted = threading.Event()

    def restart_after_failures() -> None:
        # The client failed twice against the dead port: listen on it again.
        if failures.wait_for_count(2):
            servers.start(greeter("second"), port)
            restarted.set()

    restarter = None
    for ws in reconnect(f"ws://{HOST}:{port}/", open_timeout=2):
        greetings.append(ws.recv(timeout=WAIT))
        if len(greetings) == 2:
            break
        # The server goes away: its connection closes with 1001, the loop reconnects.
        servers.stop(first)
        with pytest.raises(ConnectionClosedOK):
            ws.recv(timeout=WAIT)
        restarter = threading.Thread(target=restart_after_failures)
        restarter.start()
    assert restarter is not None
    restarter.join(WAIT)
    assert restarted.is_set()
    assert greetings == ["first", "second"]
    assert failures.count >= 2


def test_retries_while_nothing_listens(servers: Servers, failures: FailedAttempts) -> None:
    port = free_port()

    def listen_after_refusals() -> None:
        if failures.wait_for_count(3):
            servers.start(greeter("finally"), port)

    thread = threading.Thread(target=listen_after_refusals)
    thread.start()
    try:
        for ws in reconnect(f"ws://{HOST}:{port}/", open_timeout=2):
            assert ws.recv(timeout=WAIT) == "finally"
            break
    finally:
        thread.join(WAIT)
    assert failures.count >= 3


def test_retries_after_503_then_connects(servers: Servers, failures: FailedAttempts) -> None:
    attempts: list[str] = []

    def unavailable_twice(connection: ServerConnection, request: Request) -> Response | None:
        attempts.append(request.path)
        if len(attempts) <= 2:
            return connection.respond(503, "come back later\n")
        return None

    server = servers.start(greeter("up"), process_request=unavailable_twice)
    for ws in reconnect(f"ws://{HOST}:{server.port}/"):
        assert ws.recv(timeout=WAIT) == "up"
        ws.send("made it")
        assert ws.recv(timeout=WAIT) == "made it"
        break
    assert len(attempts) == 3
    assert failures.count == 2


def test_gives_up_at_once_on_403(servers: Servers, failures: FailedAttempts) -> None:
    attempts: list[str] = []

    def forbidden(connection: ServerConnection, request: Request) -> Response:
        attempts.append(request.path)
        return connection.respond(403, "go away\n")

    server = servers.start(greeter("never"), process_request=forbidden)
    with pytest.raises(InvalidStatus) as caught:
        for _ws in reconnect(f"ws://{HOST}:{server.port}/"):
            raise AssertionError("a refused connection was yielded")
    assert caught.value.response.status_code == 403
    assert attempts == ["/"]
    assert failures.count == 0


@pytest.mark.parametrize("uri", ["http://127.0.0.1/", "ws://", "ws://127.0.0.1:99999/"])
def test_gives_up_at_once_on_an_invalid_uri(uri: str, failures: FailedAttempts) -> None:
    with pytest.raises(InvalidURI):
        for _ws in reconnect(uri):
            raise AssertionError("yielded a connection for an invalid URI")
    assert failures.count == 0


def test_each_connection_is_closed_when_the_loop_moves_on(servers: Servers) -> None:
    server = servers.start(greeter("hello"))
    seen: list[ferrows.sync.ClientConnection] = []
    for ws in reconnect(f"ws://{HOST}:{server.port}/"):
        seen.append(ws)
        assert ws.recv(timeout=WAIT) == "hello"
        if len(seen) == 2:
            break
    assert seen[0].close_code == 1000
    assert seen[0] is not seen[1]


def test_retries_while_the_proxy_answers_5xx(
    servers: Servers, failures: FailedAttempts, start_proxy: Callable[[str], ProxyProcess]
) -> None:
    proxy = start_proxy("tinyproxy")
    port = free_port()

    def listen_after_failures() -> None:
        # Until then, the proxy cannot reach the server and answers 5xx.
        if failures.wait_for_count(2):
            servers.start(greeter("behind the proxy"), port)

    thread = threading.Thread(target=listen_after_failures)
    thread.start()
    try:
        for ws in reconnect(f"ws://{HOST}:{port}/", proxy=proxy.url(), open_timeout=2):
            assert ws.recv(timeout=WAIT) == "behind the proxy"
            break
    finally:
        thread.join(WAIT)
    assert failures.count >= 2
