"""The asyncio face talks to itself, to the sync face and to websockets, both ways."""

from __future__ import annotations

import asyncio

import ferrows.sync
import pytest
import websockets.asyncio.client
import websockets.asyncio.server
from aiosupport import HOST, aiotest, bounded, echo, ws_url
from ferrows.asyncio import ClientConnection, ServerConnection, connect, serve
from ferrows.exceptions import ConnectionClosedOK

MESSAGES: list[str | bytes] = ["hello", b"\x00\x01\xfe\xff", "", b"", "é" * 1000, b"z" * 70000]


async def exchange(ws: ClientConnection | websockets.asyncio.client.ClientConnection) -> None:
    """Sends every message of MESSAGES and checks the echo, type included."""
    for message in MESSAGES:
        await ws.send(message)
        answer = await bounded(ws.recv())
        assert answer == message
        assert type(answer) is type(message)


@aiotest
async def test_asyncio_client_to_asyncio_server():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            await exchange(ws)
            assert ws.remote_address == (HOST, server.port)
            assert ws.local_address[0] == HOST
        assert ws.close_code == 1000


@aiotest
async def test_asyncio_client_to_sync_server(sync_server):
    running = sync_server()
    async with connect(ws_url(running.port)) as ws:
        await exchange(ws)
        assert ws.response.headers["Server"].startswith("ferrows/")
    assert ws.close_code == 1000


@aiotest
async def test_sync_server_closing_reaches_asyncio_client(sync_server):
    def close_with_reason(connection: ferrows.sync.ServerConnection) -> None:
        connection.send(connection.recv())
        connection.close(1001, "sync says bye")

    running = sync_server(close_with_reason)
    async with connect(ws_url(running.port)) as ws:
        await ws.send("ping me back")
        assert await bounded(ws.recv()) == "ping me back"
        with pytest.raises(ConnectionClosedOK) as caught:
            await bounded(ws.recv())
    assert (caught.value.code, caught.value.reason) == (1001, "sync says bye")
    assert (ws.close_code, ws.close_reason) == (1001, "sync says bye")


@aiotest
async def test_sync_client_to_asyncio_server():
    seen: list[str] = []

    async def record_then_echo(connection: ServerConnection) -> None:
        assert connection.request is not None
        seen.append(connection.request.path)
        await echo(connection)

    def sync_client(port: int) -> list[str | bytes]:
        with ferrows.sync.connect(ws_url(port, "/from-sync")) as ws:
            answers = []
            for message in MESSAGES:
                ws.send(message)
                answers.append(ws.recv(timeout=5))
            return answers

    async with serve(record_then_echo, HOST, 0) as server:
        answers = await bounded(asyncio.to_thread(sync_client, server.port), 20)
    assert answers == MESSAGES
    assert [type(a) for a in answers] == [type(m) for m in MESSAGES]
    assert seen == ["/from-sync"]


@aiotest
async def test_many_sync_clients_in_threads_to_asyncio_server():
    def sync_client(port: int, index: int) -> str:
        with ferrows.sync.connect(ws_url(port)) as ws:
            ws.send(f"client {index}")
            return ws.recv(timeout=5)

    async with serve(echo, HOST, 0) as server:
        answers = await bounded(
            asyncio.gather(*(asyncio.to_thread(sync_client, server.port, i) for i in range(8))),
            20,
        )
    assert answers == [f"client {i}" for i in range(8)]


@aiotest
async def test_asyncio_client_to_websockets_server():
    async def websockets_echo(connection: websockets.asyncio.server.ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with websockets.asyncio.server.serve(websockets_echo, HOST, 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(ws_url(port), subprotocols=["chat"]) as ws:
            await exchange(ws)
            assert ws.subprotocol is None
    assert ws.close_code == 1000


@aiotest
async def test_websockets_client_to_asyncio_server():
    async with serve(echo, HOST, 0, subprotocols=["chat"]) as server:
        async with websockets.asyncio.client.connect(
            ws_url(server.port), subprotocols=["chat"], compression=None
        ) as ws:
            assert ws.subprotocol == "chat"
            await exchange(ws)
            pong = await ws.ping(b"websockets ping")
            assert await bounded(pong) >= 0
        assert ws.close_code == 1000


@aiotest
async def test_websockets_client_sees_asyncio_server_close_code():
    async def close_custom(connection: ServerConnection) -> None:
        await connection.close(4321, "custom")

    async with serve(close_custom, HOST, 0) as server:
        async with websockets.asyncio.client.connect(ws_url(server.port)) as ws:
            await bounded(ws.wait_closed())
            assert (ws.close_code, ws.close_reason) == (4321, "custom")


@aiotest
async def test_handshake_headers_reach_the_peer():
    headers_seen = []

    async def record(connection: ServerConnection) -> None:
        assert connection.request is not None
        headers_seen.append(connection.request.headers)
        await echo(connection)

    async with serve(record, HOST, 0, server_header="unit-test/1") as server:
        async with connect(
            ws_url(server.port, "/path?q=1"),
            additional_headers={"X-Token": "secret"},
            user_agent_header="agent/2",
            origin="https://origin.example",
        ) as ws:
            await ws.send("x")
            assert await bounded(ws.recv()) == "x"
            assert ws.request.path == "/path?q=1"
            assert ws.response.status_code == 101
            assert ws.response.headers["Server"] == "unit-test/1"
    (headers,) = headers_seen
    assert headers["X-Token"] == "secret"
    assert headers["User-Agent"] == "agent/2"
    assert headers["Origin"] == "https://origin.example"
