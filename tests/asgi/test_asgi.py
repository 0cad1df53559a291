"""ferrows.asgi under uvicorn: the example of docs/asgi.md through uvicorn's command line, and
what an ASGI application sees, in process. uvicorn's own WebSocket tests are in
test_uvicorn_suite.py."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from ferrows.asgi import FerrowsProtocol
from ferrows.asyncio import connect
from ferrows.exceptions import ConnectionClosedError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "asgi"
TIMEOUT = 20.0


def listening_socket() -> socket.socket:
    """A socket listening on a free loopback port: clients can connect at once, and wait in
    its queue until the server serves."""
    return socket.create_server(("127.0.0.1", 0))


def run(coroutine: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coroutine, TIMEOUT)

    return asyncio.run(bounded())


async def echo_round(port: int, path: str) -> None:
    # The first handshake waits in the listen queue while uvicorn starts (imports FastAPI).
    async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=TIMEOUT) as websocket:
        await websocket.send("text: ü")
        assert await websocket.recv() == "text: ü"
        await websocket.send(b"\x00\xff" * 5000)
        assert await websocket.recv() == b"\x00\xff" * 5000


@pytest.mark.parametrize("app", ["echo:app", "echo:starlette_app"])
def test_the_example_under_the_uvicorn_command_line(app: str) -> None:
    """``--ws ferrows.asgi:FerrowsProtocol`` serves the example; a message over
    ``--ws-max-size`` is refused by ferrows' core (its close reason, 1009)."""
    listening = listening_socket()
    port = listening.getsockname()[1]
    command = [
        *(sys.executable, "-m", "uvicorn", app, "--app-dir", str(EXAMPLES)),
        *("--ws", "ferrows.asgi:FerrowsProtocol", "--ws-max-size", "20000"),
        *("--fd", str(listening.fileno()), "--log-level", "warning"),
    ]
    server = subprocess.Popen(command, pass_fds=[listening.fileno()])
    listening.close()
    try:

        async def session() -> None:
            await echo_round(port, "/echo")
            async with connect(f"ws://127.0.0.1:{port}/echo") as websocket:
                await websocket.send(b"x" * 20001)
                with pytest.raises(ConnectionClosedError) as closed:
                    await websocket.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1009, "message too big")

        run(session())
    finally:
        server.terminate()
        # uvicorn shuts down, then dies of the signal it caught, as it would have without.
        assert server.wait(TIMEOUT) in (0, -signal.SIGTERM)


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[int]:
    """uvicorn serving `app` with FerrowsProtocol in this loop; yields the port."""
    listening = listening_socket()
    config = uvicorn.Config(app, ws=FerrowsProtocol, lifespan="off", log_level="warning", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield listening.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        listening.close()


def test_the_example_in_process() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import echo
    finally:
        sys.path.remove(str(EXAMPLES))

    async def session() -> None:
        for app in (echo.app, echo.starlette_app):
            async with serving(app) as port:
                await echo_round(port, "/echo")

    run(session())


def test_what_the_application_sees() -> None:
    """The scope, the offered subprotocols, the chosen one, extra response headers, messages
    of both kinds, compression, and the client's close code and reason."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]):
        seen["protocol"] = type(getattr(receive, "__self__", None))
        seen["scope"] = {key: scope[key] for key in ("path", "raw_path", "query_string")}
        seen["subprotocols"] = scope["subprotocols"]
        seen["headers"] = dict(scope["headers"])
        assert await receive() == {"type": "websocket.connect"}
        await send(
            {"type": "websocket.accept", "subprotocol": "two", "headers": [(b"x-app", b"1")]}
        )
        while (message := await receive())["type"] == "websocket.receive":
            await send({**message, "type": "websocket.send"})
        seen["disconnect"] = message
        seen["then"] = await receive()

    async def session() -> None:
        async with serving(app, root_path="/root") as port:
            async with connect(
                f"ws://127.0.0.1:{port}/a%2Fb?q=1",
                subprotocols=["one", "two"],
                additional_headers=[("X-Client", "yes")],
            ) as websocket:
                assert websocket.subprotocol == "two"
                assert websocket.response.headers["x-app"] == "1"
                assert websocket.compression is not None  # permessage-deflate, by the core
                await websocket.send("é" * 3000)
                assert await websocket.recv() == "é" * 3000
                await websocket.send(b"\x01" * 3000)
                assert await websocket.recv() == b"\x01" * 3000
                await websocket.close(4000, "done here")

    run(session())
    assert seen["protocol"] is FerrowsProtocol
    assert seen["scope"] == {
        "path": "/root/a/b",
        "raw_path": b"/root/a%2Fb",
        "query_string": b"q=1",
    }
    assert seen["subprotocols"] == ["one", "two"]
    assert seen["headers"][b"x-client"] == b"yes"
    assert seen["disconnect"] == {
        "type": "websocket.disconnect",
        "code": 4000,
        "reason": "done here",
    }
    assert seen["then"] == seen["disconnect"]


REQUEST = (
    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def raw_request(
    port: int, extra_headers: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Sends an upgrade request from a plain socket; returns it and the response head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST.encode() + extra_headers + b"\r\n")
    return reader, writer, await reader.readuntil(b"\r\n\r\n")


def test_a_connection_ending_without_a_close_frame_gives_1006() -> None:
    disconnected: asyncio.Future[Any] | None = None

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]):
        await receive()
        await send({"type": "websocket.accept"})
        assert disconnected is not None
        disconnected.set_result(await receive())

    async def session() -> Any:
        nonlocal disconnected
        disconnected = asyncio.get_running_loop().create_future()
        async with serving(app) as port:
            _, writer, head = await raw_request(port)
            assert head.startswith(b"HTTP/1.1 101 ")
            writer.close()
            return await disconnected

    assert run(session()) == {"type": "websocket.disconnect", "code": 1006}


def test_request_header_values_must_be_utf8() -> None:
    """ferrows' handshake parser refuses a header value that is not UTF-8, with 400, before
    the application runs."""
    started = False

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]):
        nonlocal started
        started = True

    async def session() -> bytes:
        async with serving(app) as port:
            reader, writer, head = await raw_request(port, b"X-Name: caf\xe9\r\n")
            response = head + await reader.read()
            writer.close()
            return response

    response = run(session())
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nserver: uvicorn\r\n" in response  # uvicorn's default headers
    assert response.endswith(b"x-name header value is not valid UTF-8.\n")
    assert not started
