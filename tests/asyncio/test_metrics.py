"""Server metrics (``ferrows.metrics``) on real sockets, for the asyncio and the sync server
(the ``face`` parameter): a known workload and the exact counts it must leave, the
``prometheus_client`` collector read back with prometheus_client's parser, and ``/metrics``
answered from ``process_request`` and fetched with an HTTP client.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import ferrows.sync
import pytest
from aiosupport import HOST, aiotest, bounded, ws_url
from ferrows.asyncio import connect, serve
from ferrows.exceptions import InvalidStatus
from ferrows.http11 import Request, Response
from ferrows.metrics import CONTENT_TYPE, PrometheusCollector, prometheus_response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from wsutil import handshake_request, raw_connect, raw_upgrade

ECHOED = 4  # echoed messages per client
SIZE = 100  # bytes in each
WAIT = 5.0


@pytest.fixture(params=["asyncio", "sync"])
def face(request: pytest.FixtureRequest) -> str:
    return request.param


def metrics_endpoint(served: dict[str, Any]) -> Any:
    """A ``process_request`` answering ``/metrics`` with the server's counters."""

    def process_request(connection: Any, request: Request) -> Response | None:
        if request.path == "/metrics":
            return prometheus_response(served["metrics"])
        return None

    return process_request


@asynccontextmanager
async def running(face: str, ended: queue.Queue[Any], **kwargs: Any) -> AsyncIterator[Any]:
    """A server of ``face`` whose handler echoes, answers "ping" by pinging the client
    (then "pinged"), and puts its connection in ``ended`` when it ends. Yields
    ``(port, metrics)``; ``kwargs`` go to ``serve``."""
    served: dict[str, Any] = {}
    kwargs.setdefault("process_request", metrics_endpoint(served))
    if face == "asyncio":

        async def handler(connection: Any) -> None:
            try:
                async for message in connection:
                    if message == "ping":
                        await bounded(await connection.ping())
                        await connection.send("pinged")
                    else:
                        await connection.send(message)
            finally:
                ended.put(connection)

        async with serve(handler, HOST, 0, **kwargs) as server:
            served["metrics"] = server.metrics
            yield server.port, server.metrics
        return

    def sync_handler(connection: Any) -> None:
        try:
            for message in connection:
                if message == "ping":
                    connection.ping().wait(WAIT)
                    connection.send("pinged")
                else:
                    connection.send(message)
        finally:
            ended.put(connection)

    sync_server = ferrows.sync.serve(sync_handler, HOST, 0, **kwargs)
    served["metrics"] = sync_server.metrics
    thread = threading.Thread(target=sync_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sync_server.port, sync_server.metrics
    finally:
        await asyncio.to_thread(sync_server.shutdown)
        await asyncio.to_thread(thread.join, WAIT)
        assert not thread.is_alive()


async def ended_connections(ended: queue.Queue[Any], count: int) -> None:
    for _ in range(count):
        await asyncio.to_thread(ended.get, timeout=WAIT)


def fetch_metrics(port: int) -> tuple[str, str]:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=WAIT) as answer:
        assert answer.status == 200
        return answer.headers["Content-Type"], answer.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@aiotest
async def test_a_known_workload_leaves_exact_counts(face: str) -> None:
    ended: queue.Queue[Any] = queue.Queue()
    async with running(face, ended, max_connections=3, ping_interval=None) as (port, metrics):
        url = ws_url(port)
        clients = [await bounded(connect(url, ping_interval=None)) for _ in range(2)]
        aborted = await asyncio.to_thread(raw_upgrade, port)
        # The fourth is over max_connections.
        with pytest.raises(InvalidStatus) as refused:
            await bounded(connect(url))
        assert refused.value.response.status_code == 503
        for client in clients:
            for _ in range(ECHOED):
                await client.send("x" * SIZE)
                assert await bounded(client.recv()) == "x" * SIZE
            await client.send("ping")
            assert await bounded(client.recv()) == "pinged"
        assert metrics.snapshot()["open"] == 3
        await bounded(clients[0].close())
        await bounded(clients[1].close(4000, "application code"))
        aborted.close()  # no close frame either way: 1006
        await ended_connections(ended, 3)

        snapshot = metrics.snapshot()
        assert snapshot["open"] == 0
        assert snapshot["accepted"] == snapshot["closed"] == 3
        assert snapshot["refused"] == {
            "bad_request": 0,
            "origin": 0,
            "subprotocol": 0,
            "limit": 1,
            "tls": 0,
        }
        assert snapshot["messages_in"] == snapshot["messages_out"] == 2 * (ECHOED + 1)
        assert snapshot["bytes_in"] == 2 * (ECHOED * SIZE + len("ping"))
        assert snapshot["bytes_out"] == 2 * (ECHOED * SIZE + len("pinged"))
        assert snapshot["close_codes"] == {1000: 1, 1006: 1, "other": 1}
        assert snapshot["ping_count"] == 2
        assert sum(count for _, count in snapshot["ping_latency_buckets"]) == 2
        assert 0 < snapshot["ping_seconds"] < 2 * WAIT
        assert snapshot["broadcast_skips"] == 0
        assert (snapshot["read_pauses"], snapshot["write_pauses"]) == (0, 0)

        # /metrics, over HTTP: answered by process_request, neither accepted nor refused.
        content_type, text = await asyncio.to_thread(fetch_metrics, port)
        assert content_type == CONTENT_TYPE
        exposed = samples(text)
        assert exposed[("ferrows_connections_open", ())] == 0
        assert exposed[("ferrows_handshakes_accepted_total", ())] == 3
        assert exposed[("ferrows_handshakes_refused_total", (("reason", "limit"),))] == 1
        assert exposed[("ferrows_messages_received_total", ())] == 2 * (ECHOED + 1)
        assert exposed[("ferrows_bytes_sent_total", ())] == snapshot["bytes_out"]
        assert exposed[("ferrows_connections_closed_total", (("code", "1006"),))] == 1
        assert exposed[("ferrows_connections_closed_total", (("code", "other"),))] == 1
        assert exposed[("ferrows_ping_latency_seconds_count", ())] == 2
        assert exposed[("ferrows_ping_latency_seconds_bucket", (("le", "+Inf"),))] == 2
        assert metrics.snapshot() == snapshot


@aiotest
async def test_refused_handshakes_count_by_reason(face: str) -> None:
    ended: queue.Queue[Any] = queue.Queue()
    good = "Origin: https://good.example"

    def exchange(request: bytes) -> int:
        stream = raw_connect(port)
        try:
            stream.send(request)
            status = stream.read_head().status
            stream.read_until_eof()
            return status
        finally:
            stream.close()

    async with running(
        face,
        ended,
        origins=["https://good.example"],
        select_subprotocol=lambda connection, offered: "not-offered",
    ) as (port, metrics):
        # Malformed, then well-formed but no upgrade: both bad requests.
        assert await asyncio.to_thread(exchange, b"NOT HTTP AT ALL\r\n\r\n") == 400
        no_upgrade = f"GET / HTTP/1.1\r\nHost: {HOST}\r\n{good}\r\n\r\n".encode()
        assert await asyncio.to_thread(exchange, no_upgrade) == 426
        evil = handshake_request(port, extra=["Origin: https://evil.example"])
        assert await asyncio.to_thread(exchange, evil) == 403
        chat = handshake_request(port, extra=[good, "Sec-WebSocket-Protocol: chat"])
        assert await asyncio.to_thread(exchange, chat) == 500
        snapshot = metrics.snapshot()
    assert snapshot["refused"] == {
        "bad_request": 2,
        "origin": 1,
        "subprotocol": 1,
        "limit": 0,
        "tls": 0,
    }
    assert (snapshot["accepted"], snapshot["open"], snapshot["messages_in"]) == (0, 0, 0)


def test_sync_server_counts_failed_tls_handshakes(tls: Any) -> None:
    server = ferrows.sync.serve(
        lambda connection: None, HOST, 0, certfile=tls.cert_pem, keyfile=tls.key_pem
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # Plain HTTP to a TLS server: its TLS handshake fails and it hangs up.
        stream = raw_connect(server.port)
        stream.send(handshake_request(server.port))
        stream.read_until_eof()
        stream.close()
        assert server.metrics.snapshot()["refused"]["tls"] == 1
        assert server.metrics.snapshot()["accepted"] == 0
    finally:
        server.shutdown()
        thread.join(WAIT)


@aiotest
async def test_a_full_inbox_pauses_reading_once(face: str) -> None:
    release = threading.Event()
    ended: queue.Queue[Any] = queue.Queue()
    half = 48 * 1024

    if face == "asyncio":

        async def handler(connection: Any) -> None:
            await asyncio.to_thread(release.wait, WAIT)
            for _ in range(2):
                await connection.recv()
            await connection.send("done")
            ended.put(connection)

        context: Any = serve(handler, HOST, 0, read_limit=64 * 1024, ping_interval=None)
    else:

        def sync_handler(connection: Any) -> None:
            release.wait(WAIT)
            for _ in range(2):
                connection.recv()
            connection.send("done")
            ended.put(connection)

        context = None
        sync_server = ferrows.sync.serve(
            sync_handler, HOST, 0, read_limit=64 * 1024, ping_interval=None
        )
        thread = threading.Thread(target=sync_server.serve_forever, daemon=True)
        thread.start()

    async def workload(port: int, metrics: Any) -> None:
        async with connect(ws_url(port), ping_interval=None) as client:
            # Two messages of 48 KiB: the second takes the inbox over 64 KiB.
            await client.send(b"a" * half)
            await client.send(b"b" * half)
            deadline = time.monotonic() + WAIT
            # The server pauses on its own; the counter is what the test can see of it.
            while metrics.snapshot()["read_pauses"] == 0:
                assert time.monotonic() < deadline, "the server never paused reading"
                await asyncio.sleep(0.01)
            release.set()
            assert await bounded(client.recv()) == "done"
        await asyncio.to_thread(ended.get, timeout=WAIT)
        assert metrics.snapshot()["read_pauses"] == 1

    if context is not None:
        async with context as server:
            await workload(server.port, server.metrics)
    else:
        try:
            await workload(sync_server.port, sync_server.metrics)
        finally:
            release.set()
            await asyncio.to_thread(sync_server.shutdown)
            await asyncio.to_thread(thread.join, WAIT)


@aiotest
async def test_a_peer_that_does_not_read_pauses_writing_once(face: str) -> None:
    # Far more than the kernel's socket buffers hold: the first send leaves most of it
    # unwritten, so the second one (the asyncio transport: the first) must wait for room.
    big = b"x" * (16 << 20)
    ended: queue.Queue[Any] = queue.Queue()
    options: dict[str, Any] = {"write_limit": 64 * 1024, "ping_interval": None}

    def read_everything(stream: Any) -> list[bytes]:
        return [stream.read_frame(timeout=WAIT)[2] for _ in range(2)]

    async def workload(port: int, metrics: Any) -> None:
        stream = await asyncio.to_thread(raw_upgrade, port)
        try:
            deadline = time.monotonic() + WAIT
            # The server pauses on its own; the counter is what the test can see of it.
            while metrics.snapshot()["write_pauses"] == 0:
                assert time.monotonic() < deadline, "the server never paused writing"
                await asyncio.sleep(0.01)
            assert await asyncio.to_thread(read_everything, stream) == [big, b"end"]
        finally:
            stream.close()
        await asyncio.to_thread(ended.get, timeout=WAIT)
        snapshot = metrics.snapshot()
        assert (snapshot["write_pauses"], snapshot["read_pauses"]) == (1, 0)

    if face == "asyncio":

        async def handler(connection: Any) -> None:
            await connection.send(big)
            await connection.send("end")
            ended.put(connection)

        async with serve(handler, HOST, 0, **options) as server:
            await workload(server.port, server.metrics)
        return

    def sync_handler(connection: Any) -> None:
        connection.send(big)
        connection.send("end")
        ended.put(connection)

    sync_server = ferrows.sync.serve(sync_handler, HOST, 0, **options)
    thread = threading.Thread(target=sync_server.serve_forever, daemon=True)
    thread.start()
    try:
        await workload(sync_server.port, sync_server.metrics)
    finally:
        await asyncio.to_thread(sync_server.shutdown)
        await asyncio.to_thread(thread.join, WAIT)


def test_the_collector_exposes_the_same_samples_as_the_text() -> None:
    metrics = ferrows.sync.serve(lambda connection: None, HOST, 0)
    try:
        server_metrics = metrics.metrics
        server_metrics.record_broadcast_skips(7)
        registry = CollectorRegistry()
        registry.register(PrometheusCollector(server_metrics, {"server": "chat"}))
        collected = samples(generate_latest(registry).decode())
        exposed = samples(server_metrics.prometheus_text())
        assert collected[("ferrows_broadcast_skips_total", (("server", "chat"),))] == 7
        # The same samples, with the collector's extra label.
        assert {
            (name, tuple(label for label in labels if label[0] != "server")): value
            for (name, labels), value in collected.items()
        } == exposed
        assert len(exposed) == len(collected) > 20
        with pytest.raises(ValueError, match="unknown refusal reason"):
            server_metrics.record_refused("bored")
    finally:
        metrics.shutdown()
