"""The sync server's handler threads: a thread whose connection ended serves the next one,
at most MAX_IDLE_THREADS wait idle, and shutdown ends the idle ones."""

from __future__ import annotations

import threading
from collections.abc import Callable

import ferrows.sync.server
import pytest
from ferrows.sync import ServerConnection, connect
from wsutil import HOST, Running

WAIT = 10.0


def recording_echo(threads: list[int]) -> Callable[[ServerConnection], None]:
    """An echo handler that records the thread it runs in."""

    def handler(connection: ServerConnection) -> None:
        threads.append(threading.get_ident())
        for message in connection:
            connection.send(message)

    return handler


def wait_for_threads(running: Running, idle: int, alive: int) -> None:
    """Waits until the server has `idle` idle handler threads of `alive` in all."""
    server = running.server
    with server._threads_changed:
        settled = server._threads_changed.wait_for(
            lambda: server._idle == idle and len(server._threads) == alive, WAIT
        )
    assert settled, f"idle {server._idle}, alive {len(server._threads)}"


def echo_once(running: Running, text: str) -> None:
    with connect(f"ws://{HOST}:{running.port}", open_timeout=WAIT) as client:
        client.send(text)
        assert client.recv(WAIT) == text


def test_an_idle_thread_serves_the_next_connection(
    ferrows_server: Callable[..., Running],
) -> None:
    threads: list[int] = []
    running = ferrows_server(recording_echo(threads))
    for round_number in range(3):
        echo_once(running, f"round {round_number}")
        wait_for_threads(running, idle=1, alive=1)
    assert len(threads) == 3
    assert len(set(threads)) == 1, "each connection started a thread of its own"


def test_threads_beyond_the_idle_limit_exit(
    ferrows_server: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ferrows.sync.server, "MAX_IDLE_THREADS", 1)
    release = threading.Event()
    entered = threading.Semaphore(0)

    def blocking_echo(connection: ServerConnection) -> None:
        entered.release()
        assert release.wait(WAIT)
        for message in connection:
            connection.send(message)

    running = ferrows_server(blocking_echo)
    clients = [connect(f"ws://{HOST}:{running.port}", open_timeout=WAIT) for _ in range(3)]
    try:
        for _ in clients:
            assert entered.acquire(timeout=WAIT)
        wait_for_threads(running, idle=0, alive=3)
        release.set()
        for number, client in enumerate(clients):
            client.send(f"message {number}")
            assert client.recv(WAIT) == f"message {number}"
    finally:
        release.set()
        for client in clients:
            client.close()
    wait_for_threads(running, idle=1, alive=1)


def test_shutdown_ends_idle_threads(ferrows_server: Callable[..., Running]) -> None:
    threads: list[int] = []
    running = ferrows_server(recording_echo(threads))
    echo_once(running, "hello")
    wait_for_threads(running, idle=1, alive=1)
    (worker,) = running.server._threads
    running.server.shutdown()
    worker.join(WAIT)
    assert not worker.is_alive()
    assert running.server._idle == 0
    assert not running.server._threads
