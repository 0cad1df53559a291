"""serve(): process_request, origins, versions, subprotocols, closing and serve_forever."""

from __future__ import annotations

import asyncio
import http.client
import socket

import pytest
from aiosupport import HOST, aiotest, bounded, echo, settle, ws_url
from ferrows.asyncio import Listener, ServerConnection, connect, serve
from ferrows.exceptions import ConnectionClosedOK, InvalidHandshake, InvalidStatus
from ferrows.http11 import Headers, Request, Response
from wsutil import handshake_request


def http_get(port: int, path: str, headers: dict[str, str] | None = None):
    """A plain HTTP/1.1 GET with http.client: (status, headers, body)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends raw bytes, reads until the server closes: (status, headers, body)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        data = await bounded(reader.read())
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def health_check(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/healthz":
        return connection.respond(200, "OK\n")
    return None


@aiotest
async def test_process_request_answers_http_while_ws_upgrades():
    async with serve(echo, HOST, 0, process_request=health_check) as server:
        status, headers, body = await bounded(asyncio.to_thread(http_get, server.port, "/healthz"))
        assert (status, body) == (200, b"OK\n")
        assert headers["Content-Type"].startswith("text/plain")
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(ws_url(server.port, "/healthz")))
        assert caught.value.response.status_code == 200
        assert caught.value.response.body == b"OK\n"
        async with connect(ws_url(server.port, "/ws")) as ws:
            await ws.send("upgraded")
            assert await bounded(ws.recv()) == "upgraded"
        # Plain HTTP on the WebSocket path is refused: an upgrade is required.
        status, headers, _ = await bounded(asyncio.to_thread(http_get, server.port, "/ws"))
        assert status == 426
        assert headers["Upgrade"].lower() == "websocket"


@aiotest
async def test_async_process_request():
    async def authenticate(connection: ServerConnection, request: Request) -> Response | None:
        await asyncio.sleep(0.01)  # as if asking an authentication service
        if request.headers.get("Authorization") != "Bearer good":
            return connection.respond(401, "who are you?\n")
        return None

    async with serve(echo, HOST, 0, process_request=authenticate) as server:
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(ws_url(server.port)))
        assert caught.value.response.status_code == 401
        assert caught.value.response.body == b"who are you?\n"
        async with connect(
            ws_url(server.port), additional_headers={"Authorization": "Bearer good"}
        ) as ws:
            await ws.send("authenticated")
            assert await bounded(ws.recv()) == "authenticated"


@aiotest
async def test_process_request_with_custom_response_headers():
    def teapot(connection: ServerConnection, request: Request) -> Response:
        headers = Headers([("X-Reason", "short and stout"), ("Content-Length", "6")])
        return Response(418, "I'm a teapot", headers, b"teapot")

    async with serve(echo, HOST, 0, process_request=teapot) as server:
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(ws_url(server.port)))
    response = caught.value.response
    assert (response.status_code, response.body) == (418, b"teapot")
    assert response.headers["X-Reason"] == "short and stout"
    assert response.headers["Server"].startswith("ferrows/")


@aiotest
async def test_process_request_raising_answers_500_and_the_server_goes_on():
    def broken(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/broken":
            raise RuntimeError("process_request failure (expected by the test)")
        return None

    async with serve(echo, HOST, 0, process_request=broken) as server:
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(ws_url(server.port, "/broken")))
        assert caught.value.response.status_code == 500
        async with connect(ws_url(server.port, "/fine")) as ws:
            await ws.send("fine")
            assert await bounded(ws.recv()) == "fine"


@aiotest
async def test_origins_allow_list():
    async with serve(echo, HOST, 0, origins=["https://good.example"]) as server:
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(ws_url(server.port), origin="https://evil.example"))
        assert caught.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as caught:
            await bounded(connect(ws_url(server.port)))
        assert caught.value.response.status_code == 403
        async with connect(ws_url(server.port), origin="https://good.example") as ws:
            await ws.send("good origin")
            assert await bounded(ws.recv()) == "good origin"
    async with serve(echo, HOST, 0, origins=[None, "https://good.example"]) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.send("no origin allowed")
            assert await bounded(ws.recv()) == "no origin allowed"


@aiotest
async def test_wrong_version_gets_426():
    async with serve(echo, HOST, 0) as server:
        status, headers, _ = await raw_exchange(
            server.port, handshake_request(server.port, version="12")
        )
        assert status == 426
        assert headers["sec-websocket-version"] == "13"
        # The right version upgrades, by hand too.
        reader, writer = await asyncio.open_connection(HOST, server.port)
        try:
            writer.write(handshake_request(server.port))
            head = await bounded(reader.readuntil(b"\r\n\r\n"))
            assert head.startswith(b"HTTP/1.1 101 ")
        finally:
            writer.close()


@aiotest
async def test_garbage_request_gets_400():
    async with serve(echo, HOST, 0) as server:
        status, _, _ = await raw_exchange(server.port, b"NONSENSE\r\n\r\n")
        assert status == 400


@aiotest
async def test_select_subprotocol():
    offered_seen: list[list[str]] = []
    chosen_server_side: list[str | None] = []

    def select(connection: ServerConnection, offered):
        offered_seen.append(list(offered))
        return "b" if "b" in offered else None

    async def record(connection: ServerConnection) -> None:
        chosen_server_side.append(connection.subprotocol)
        await echo(connection)

    async with serve(record, HOST, 0, select_subprotocol=select) as server:
        async with connect(ws_url(server.port), subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"
            await ws.send("x")
            await bounded(ws.recv())
        async with connect(ws_url(server.port), subprotocols=["c"]) as ws:
            assert ws.subprotocol is None
            await ws.send("x")
            await bounded(ws.recv())
    assert offered_seen == [["a", "b"], ["c"]]
    assert chosen_server_side == ["b", None]


@aiotest
async def test_subprotocols_in_server_preference_order():
    async with serve(echo, HOST, 0, subprotocols=["chat", "superchat"]) as server:
        async with connect(ws_url(server.port), subprotocols=["superchat", "chat"]) as ws:
            assert ws.subprotocol == "chat"
        async with connect(ws_url(server.port), subprotocols=["superchat"]) as ws:
            assert ws.subprotocol == "superchat"
        async with connect(ws_url(server.port)) as ws:
            assert ws.subprotocol is None


@aiotest
async def test_server_close_sends_1001_and_wait_closed_returns():
    handlers_done: list[int] = []

    async def hold(connection: ServerConnection) -> None:
        try:
            await connection.recv()
        except ConnectionClosedOK as exc:
            handlers_done.append(exc.code)

    server = await serve(hold, HOST, 0)
    port = server.port
    clients = [await bounded(connect(ws_url(port))) for _ in range(3)]

    async def connections_open() -> None:
        while len(server.connections) < 3:
            await asyncio.sleep(0.01)

    await bounded(connections_open())
    server.close()
    await bounded(server.wait_closed())
    assert not server.connections
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as caught:
            await bounded(ws.recv())
        assert caught.value.code == 1001
        assert ws.close_code == 1001
    assert handlers_done == [1001, 1001, 1001]
    with pytest.raises(OSError):
        await bounded(connect(ws_url(port)))


@aiotest
async def test_server_close_without_closing_connections():
    async with serve(echo, HOST, 0) as server:
        port = server.port
        async with connect(ws_url(port)) as ws:
            server.close(close_connections=False)
            with pytest.raises(OSError):
                await bounded(connect(ws_url(port)))
            await ws.send("still served")
            assert await bounded(ws.recv()) == "still served"
        assert ws.close_code == 1000


@aiotest
async def test_serve_forever_cancelled_stops_the_server():
    server = await serve(echo, HOST, 0)
    port = server.port
    serving = asyncio.ensure_future(server.serve_forever())
    ws = await bounded(connect(ws_url(port)))
    await ws.send("while serving forever")
    assert await bounded(ws.recv()) == "while serving forever"
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bounded(serving)
    with pytest.raises(ConnectionClosedOK) as caught:
        await bounded(ws.recv())
    assert caught.value.code == 1001
    with pytest.raises(OSError):
        await bounded(connect(ws_url(port)))


@aiotest
async def test_async_with_serve_frees_the_port():
    async with serve(echo, HOST, 0) as server:
        port = server.port
        assert server.sockets[0].getsockname() == (HOST, port)
    with pytest.raises(OSError):
        await bounded(connect(ws_url(port)))
    # The port can be bound again at once.
    async with serve(echo, HOST, port) as again:
        async with connect(ws_url(again.port)) as ws:
            await ws.send("again")
            assert await bounded(ws.recv()) == "again"


@aiotest
async def test_handler_returning_closes_with_1000():
    async def greet(connection: ServerConnection) -> None:
        await connection.send("hello and goodbye")

    async with serve(greet, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            assert await bounded(ws.recv()) == "hello and goodbye"
            with pytest.raises(ConnectionClosedOK):
                await bounded(ws.recv())
            assert ws.close_code == 1000


@aiotest
async def test_serve_needs_exactly_one_of_handler_and_listener():
    with pytest.raises(ValueError):
        serve(None, HOST, 0)
    with pytest.raises(ValueError):
        serve(echo, HOST, 0, listener=Listener)


@aiotest
async def test_server_with_a_given_socket():
    sock = socket.socket()
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    async with serve(echo, sock=sock):
        async with connect(ws_url(port)) as ws:
            await ws.send("own socket")
            assert await bounded(ws.recv()) == "own socket"


@aiotest
async def test_client_with_a_given_socket():
    async with serve(echo, HOST, 0) as server:
        sock = socket.create_connection((HOST, server.port), timeout=5)
        sock.setblocking(False)
        async with connect(ws_url(server.port), sock=sock) as ws:
            await ws.send("client socket")
            assert await bounded(ws.recv()) == "client socket"


@aiotest
async def test_request_and_response_are_visible_to_the_handler():
    seen = asyncio.get_running_loop().create_future()

    async def record(connection: ServerConnection) -> None:
        settle(seen, (connection.request, connection.response, connection.remote_address))
        await echo(connection)

    async with serve(record, HOST, 0) as server:
        async with connect(ws_url(server.port, "/chat?room=1")) as ws:
            request, response, remote = await bounded(seen)
            assert request.path == "/chat?room=1"
            assert request.headers["Upgrade"].lower() == "websocket"
            assert response.status_code == 101
            assert remote == ws.local_address


@aiotest
async def test_server_close_during_a_slow_handshake():
    entered = asyncio.Event()
    never = asyncio.Event()

    async def stall(connection: ServerConnection, request: Request) -> Response | None:
        entered.set()
        await never.wait()
        return None

    server = await serve(echo, HOST, 0, process_request=stall)
    opening = asyncio.ensure_future(connect(ws_url(server.port)))
    await bounded(entered.wait())
    server.close()
    await bounded(server.wait_closed())
    # The client learns that the handshake failed; nothing hangs.
    with pytest.raises(InvalidHandshake):
        await bounded(opening)
    assert not server.connections


@aiotest
async def test_the_upgrade_needs_a_task_only_to_await_process_request():
    loop = asyncio.get_running_loop()
    started: list[str] = []
    default_factory = loop.get_task_factory()

    def recording_factory(loop: asyncio.AbstractEventLoop, coro, **kwargs):
        started.append(getattr(coro, "__qualname__", ""))
        if default_factory is not None:
            return default_factory(loop, coro, **kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(recording_factory)
    try:
        for process_request in (None, health_check):
            started.clear()
            async with serve(echo, HOST, 0, process_request=process_request) as server:
                async with connect(ws_url(server.port)) as ws:
                    await ws.send("tasks")
                    assert await bounded(ws.recv()) == "tasks"
            server_tasks = [name for name in started if name.startswith("ServerConnection.")]
            expected = ["ServerConnection._run_handler"]
            if process_request is not None:
                expected.insert(0, "ServerConnection._handshake")
            assert server_tasks == expected
    finally:
        loop.set_task_factory(default_factory)
