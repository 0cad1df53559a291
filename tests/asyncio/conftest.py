"""Fixtures for the asyncio face of ferrows.

Tests are ``async def`` functions decorated with :func:`aiosupport.aiotest`; each runs on a
fresh default asyncio loop and on a fresh uvloop loop (the ``loop_kind`` parameter).
Servers of other kinds (the sync ferrows server, hand-made raw servers) run in threads.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

# The raw-socket helpers of the sync suite (tests/python/wsutil.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

import ferrows.sync
from aiosupport import HOST, LOOP_FACTORIES
from backoff import fast_backoff  # noqa: F401 (the reconnection tests' fixture)
from proxies import (  # noqa: F401 (fixtures of the proxy tests)
    no_proxy_environment,
    silent_proxy,
    start_proxy,
)
from wsutil import RawServer

JOIN_TIMEOUT = 10.0


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_kind(request: pytest.FixtureRequest) -> str:
    """The event loop a test runs on: ``asyncio`` (the default loop) or ``uvloop``."""
    return request.param


def sync_echo(connection: ferrows.sync.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@dataclass
class SyncServer:
    """A ferrows sync server serving in a thread."""

    server: ferrows.sync.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def sync_server() -> Iterator[Callable[..., SyncServer]]:
    """Factory: ``sync_server(handler=echo, **serve_kwargs)`` starts ``ferrows.sync.serve``."""
    started: list[SyncServer] = []

    def start(handler: Callable[..., None] = sync_echo, **kwargs: Any) -> SyncServer:
        server = ferrows.sync.serve(handler, HOST, 0, **kwargs)
        thread = threading.Thread(target=server.serve_forever, name="sync-serve", daemon=True)
        thread.start()
        running = SyncServer(server, thread)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.shutdown()
        running.thread.join(JOIN_TIMEOUT)
        assert not running.thread.is_alive(), "ferrows sync serve_forever did not return"


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    """Factory for hand-made servers (:class:`wsutil.RawServer`), stopped at teardown."""
    started: list[RawServer] = []

    def start(**kwargs: Any) -> RawServer:
        server = RawServer(**kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()


@dataclass
class Tls:
    ca: trustme.CA
    leaf: trustme.LeafCert
    cert_pem: Path
    key_pem: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        return context

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf.configure_cert(context)
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A trustme CA and a certificate it issued for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("asyncio-tls")
    cert_pem = directory / "server.pem"
    key_pem = directory / "server.key"
    cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_pem))
    return Tls(ca, leaf, cert_pem, key_pem)
