"""The sync server under bursts of connections: the handshake backlog, the connection cap,
and sockets released as soon as their connection ends.

The server runs in a process of its own (``server_process.py``), so that its open file
descriptors can be counted in /proc and the test's own sockets do not blur the count.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from child import start_reporting_port
from ferrows.sync import serve
from ferrows.sync.client import connect
from wsutil import HOST, RawStream, handshake_request, raw_connect, raw_upgrade

CHILD_TIMEOUT = 30
BURST = 2000


class ServerProcess:
    """A ferrows sync echo server in a child process; it serves once told to."""

    def __init__(self, **options: Any) -> None:
        script = Path(__file__).resolve().parent / "server_process.py"
        argv = [sys.executable, str(script), json.dumps(options)]
        self.process, port = start_reporting_port(argv, CHILD_TIMEOUT)
        if port is None:
            self.stop()
            raise AssertionError("the server process did not start")
        self.port = port

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    def start_serving(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("serve\n")
        self.process.stdin.flush()

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def stop(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(CHILD_TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(CHILD_TIMEOUT)
            self.process.stdout.close()


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(**options: Any) -> ServerProcess:
        server = ServerProcess(**options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def streams() -> Iterator[list[RawStream]]:
    """Client sockets, closed at teardown."""
    opened: list[RawStream] = []
    yield opened
    for stream in opened:
        stream.close()


def burst(port: int, count: int, into: list[RawStream]) -> list[RawStream]:
    """Opens `count` connections, each sending its opening handshake at once."""
    opened = []
    for _ in range(count):
        stream = raw_connect(port, timeout=CHILD_TIMEOUT)
        into.append(stream)
        stream.send(handshake_request(port))
        opened.append(stream)
    return opened


def answers(streams: list[RawStream], count: int, timeout: float) -> dict[RawStream, int]:
    """Reads responses as they arrive until `count` did: the status of each, by stream."""
    statuses: dict[RawStream, int] = {}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for stream in streams:
            selector.register(stream.sock, selectors.EVENT_READ, stream)
        while len(statuses) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{len(statuses)} of {count} answers within {timeout} s")
            for key, _ in selector.select(left):
                stream = key.data
                statuses[stream] = stream.read_head(timeout=max(left, 0.001)).status
                selector.unregister(stream.sock)
    return statuses


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.01)  # a count held by another process: polled, nothing to await


def test_a_burst_below_max_connections_is_all_accepted(
    server_process: Callable[..., ServerProcess], streams: list[RawStream]
) -> None:
    # max_connections is 10,000 by default; the whole burst arrives before the server
    # hands out the first handshake, so every one of them waits in the backlog.
    server = server_process()
    burst(server.port, BURST, streams)
    server.start_serving()
    assert Counter(answers(streams, BURST, 90).values()) == {101: BURST}


def test_connections_beyond_max_connections_get_503(
    server_process: Callable[..., ServerProcess], streams: list[RawStream]
) -> None:
    server = server_process(max_connections=400)
    burst(server.port, 1000, streams)
    server.start_serving()
    assert Counter(answers(streams, 1000, 90).values()) == {101: 400, 503: 600}


def test_handshakes_beyond_the_backlog_get_503(
    server_process: Callable[..., ServerProcess], streams: list[RawStream]
) -> None:
    server = server_process(backlog=10)
    burst(server.port, 50, streams)
    # Nothing takes handshakes from the backlog yet: all but 10 are refused at once.
    refused = answers(streams, 40, CHILD_TIMEOUT)
    assert set(refused.values()) == {503}
    server.start_serving()
    waiting = [stream for stream in streams if stream not in refused]
    assert set(answers(waiting, 10, CHILD_TIMEOUT).values()) == {101}


def test_handshakes_that_timed_out_leave_the_backlog(
    server_process: Callable[..., ServerProcess], streams: list[RawStream]
) -> None:
    server = server_process(backlog=1, open_timeout=1)
    (expired,) = burst(server.port, 1, streams)
    # Unanswered within open_timeout, the server drops the connection...
    assert expired.read_until_eof(timeout=CHILD_TIMEOUT) == b""
    # ... and its place in the backlog goes to the next handshake.
    (waiting,) = burst(server.port, 1, streams)
    server.start_serving()
    assert answers([waiting], 1, CHILD_TIMEOUT) == {waiting: 101}


def test_the_backlog_must_be_positive() -> None:
    with pytest.raises(ValueError, match="backlog"):
        serve(lambda connection: None, HOST, 0, backlog=0)


def test_ended_connections_release_their_sockets_at_once(
    server_process: Callable[..., ServerProcess], streams: list[RawStream]
) -> None:
    server = server_process()
    server.start_serving()
    baseline = server.open_fds()
    clients = [connect(server.url, open_timeout=10) for _ in range(50)]
    streams.extend(raw_upgrade(server.port) for _ in range(50))
    wait_for(lambda: server.open_fds() >= baseline + 100, CHILD_TIMEOUT, "a socket per connection")
    for client in clients:
        client.close()  # with the closing handshake
    for stream in streams:
        stream.close()  # without it
    # No further connection arrives: nothing else can make the server let go of them.
    wait_for(
        lambda: server.open_fds() <= baseline,
        CHILD_TIMEOUT,
        f"the server back to its {baseline} open files",
    )
