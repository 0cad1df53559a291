"""Fixtures for the sync face of ferrows: real servers on 127.0.0.1, ephemeral ports."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import ferrows.sync
import pytest
import trustme
import websockets.asyncio.server
import websockets.sync.server
from backoff import fast_backoff  # noqa: F401 (the reconnection tests' fixture)
from proxies import (  # noqa: F401 (fixtures of the proxy tests)
    no_proxy_environment,
    silent_proxy,
    start_proxy,
)
from wsutil import HOST, Outbox, RawServer, Running, TlsFiles

JOIN_TIMEOUT = 10.0


def ferrows_echo(connection: ferrows.sync.ServerConnection) -> None:
    """Sends every message back, keeping its type."""
    for message in connection:
        connection.send(message)


def websockets_echo(connection: websockets.sync.server.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def ferrows_server() -> Iterator[Callable[..., Running]]:
    """Factory: ``ferrows_server(handler=echo, **serve_kwargs)`` starts a ferrows server."""
    started: list[Running] = []

    def start(handler: Callable[..., None] = ferrows_echo, **kwargs: Any) -> Running:
        server = ferrows.sync.serve(handler, HOST, 0, **kwargs)
        thread = threading.Thread(target=server.serve_forever, name="ferrows-serve", daemon=True)
        thread.start()
        scheme = "wss" if kwargs.get("certfile") else "ws"
        running = Running(server, thread, server.port, scheme)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.shutdown()
        running.thread.join(JOIN_TIMEOUT)
        assert not running.thread.is_alive(), "ferrows serve_forever did not return"


@pytest.fixture
def echo_server(ferrows_server: Callable[..., Running]) -> Running:
    """A ferrows echo server with default options."""
    return ferrows_server()


@pytest.fixture
def websockets_server() -> Iterator[Callable[..., Running]]:
    """Factory: ``websockets_server(handler=echo, **serve_kwargs)``, websockets' sync server."""
    started: list[Running] = []

    def start(handler: Callable[..., None] = websockets_echo, **kwargs: Any) -> Running:
        server = websockets.sync.server.serve(handler, HOST, 0, **kwargs)
        thread = threading.Thread(target=server.serve_forever, name="ws-serve", daemon=True)
        thread.start()
        scheme = "wss" if kwargs.get("ssl") else "ws"
        running = Running(server, thread, server.socket.getsockname()[1], scheme)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.shutdown()
        running.thread.join(JOIN_TIMEOUT)
        assert not running.thread.is_alive(), "websockets serve_forever did not return"


@pytest.fixture
def websockets_echo_server(websockets_server: Callable[..., Running]) -> Running:
    return websockets_server()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Factory for hand-made servers (see :class:`wsutil.RawServer`), stopped at teardown."""
    started: list[RawServer] = []

    def start(**kwargs: Any) -> RawServer:
        server = RawServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A trustme CA and a certificate it issued for 127.0.0.1 and localhost, as PEM files."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem = directory / "ca.pem"
    cert_pem = directory / "server.pem"
    key_pem = directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_pem))
    return TlsFiles(ca, ca_pem, cert_pem, key_pem, leaf)
