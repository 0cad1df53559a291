"""The Python echo servers of the benchmark suite: ``servers.py KIND PORT [CERT KEY]``.

Each listens on 127.0.0.1:PORT (TLS with a PEM certificate and key), prints ``ready`` once
it listens and echoes every message until it is killed. asyncio servers run on uvloop.
Every server gets the same settings: no size limit, no keepalive pings, no compression, a
listen queue of 4,096, room for 20,000 connections (the descriptor limit raised to match)
and 60 s for an opening handshake (a thousand clients connecting at once on one busy core
must not hit a 5 or 10 s default), so that none is measured against a default the others
do not have.
"""

from __future__ import annotations

import resource
import ssl
import sys
from typing import Any, Callable

import uvloop

BACKLOG = 4096
MAX_CONNECTIONS = 20_000
OPEN_TIMEOUT = 60


def ready() -> None:
    print("ready", flush=True)


def tls_context(tls: tuple[str, str] | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls)
    return context


async def echo_each(connection: Any) -> None:
    """The echo handler for ferrows.asyncio and websockets (ferrows follows its API)."""
    async for message in connection:
        await connection.send(message)


async def serve_until_killed(
    serve: Any, handler: Any, port: int, tls: tuple[str, str] | None, **options: Any
) -> None:
    """Runs a server of the websockets API (ferrows.asyncio's included) with the settings
    every server here gets."""
    async with serve(
        handler,
        "127.0.0.1",
        port,
        ssl=tls_context(tls),
        backlog=BACKLOG,
        open_timeout=OPEN_TIMEOUT,
        max_size=None,
        ping_interval=None,
        **options,
    ) as server:
        ready()
        await server.serve_forever()


async def ferrows_handler(port: int, tls: tuple[str, str] | None) -> None:
    from ferrows.asyncio import serve

    await serve_until_killed(serve, echo_each, port, tls, max_connections=MAX_CONNECTIONS)


async def ferrows_callback(port: int, tls: tuple[str, str] | None) -> None:
    from ferrows.asyncio import Listener, serve

    class Echo(Listener):
        def on_message(self, connection: Any, message: Any) -> None:
            connection.send_nowait(message)

    await serve_until_killed(serve, None, port, tls, listener=Echo, max_connections=MAX_CONNECTIONS)


def echo_each_sync(connection: Any) -> None:
    """The echo handler for the threaded servers, ferrows.sync's and websockets.sync's."""
    for message in connection:
        connection.send(message)


def serve_threaded_until_killed(serve: Any, port: int, **options: Any) -> None:
    """Runs a threaded server (ferrows.sync's or websockets.sync's: a thread per connection)
    echoing every message, with the settings every server here gets."""
    with serve(
        echo_each_sync,
        "127.0.0.1",
        port,
        open_timeout=OPEN_TIMEOUT,
        max_size=None,
        ping_interval=None,
        **options,
    ) as server:
        ready()
        server.serve_forever()


def ferrows_sync(port: int, tls: tuple[str, str] | None) -> None:
    from ferrows.sync.server import serve

    certfile, keyfile = tls if tls is not None else (None, None)
    serve_threaded_until_killed(
        serve, port, certfile=certfile, keyfile=keyfile, max_connections=MAX_CONNECTIONS
    )


async def picows_server(port: int, tls: tuple[str, str] | None) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)

    server = await ws_create_server(
        lambda _: Echo(),
        "127.0.0.1",
        port,
        max_frame_size=1 << 30,
        websocket_handshake_timeout=OPEN_TIMEOUT,
        ssl=tls_context(tls),
        backlog=BACKLOG,
    )
    ready()
    await server.serve_forever()


async def aiohttp_server(port: int, tls: tuple[str, str] | None) -> None:
    import asyncio

    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        connection = web.WebSocketResponse(max_msg_size=0, compress=False, autoping=True)
        await connection.prepare(request)
        async for message in connection:
            if message.type == WSMsgType.BINARY:
                await connection.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await connection.send_str(message.data)
        return connection

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls_context(tls), backlog=BACKLOG)
    await site.start()
    ready()
    await asyncio.Event().wait()


def websockets_sync(port: int, tls: tuple[str, str] | None) -> None:
    """websockets' threaded server: the peer of ferrows.sync's."""
    from websockets.sync.server import serve

    serve_threaded_until_killed(
        serve, port, ssl=tls_context(tls), backlog=BACKLOG, compression=None
    )


async def websockets_server(port: int, tls: tuple[str, str] | None) -> None:
    from websockets.asyncio.server import serve

    await serve_until_killed(serve, echo_each, port, tls, compression=None)


def starlette_echo() -> Any:
    """A Starlette application echoing binary messages on its WebSocket route ``/``."""
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_bytes():
            await websocket.send_bytes(message)

    return Starlette(routes=[WebSocketRoute("/", echo)])


def uvicorn_server(ws: str) -> Callable[[int, tuple[str, str] | None], Any]:
    """Starlette's echo under uvicorn (httptools for HTTP) with the WebSocket protocol `ws`
    (a name of uvicorn's or an import string), with the settings of the others: no size
    limit (uvicorn takes a number: 1 GiB), no keepalive, no compression."""

    async def serve(port: int, tls: tuple[str, str] | None) -> None:
        import socket

        import uvicorn

        listening = socket.create_server(("127.0.0.1", port), backlog=BACKLOG)
        certfile, keyfile = tls if tls is not None else (None, None)
        config = uvicorn.Config(
            starlette_echo(),
            ws=ws,
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws_max_size=1 << 30,
            ws_ping_interval=None,
            ws_per_message_deflate=False,
            backlog=BACKLOG,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        ready()  # connections wait in the listen queue until uvicorn serves
        await uvicorn.Server(config).serve(sockets=[listening])

    return serve


ASYNC_SERVERS: dict[str, Callable[[int, tuple[str, str] | None], Any]] = {
    "ferrows-handler": ferrows_handler,
    "ferrows-callback": ferrows_callback,
    "picows": picows_server,
    "aiohttp": aiohttp_server,
    "websockets": websockets_server,
    "uvicorn-ferrows": uvicorn_server("ferrows.asgi:FerrowsProtocol"),
    "uvicorn-websockets": uvicorn_server("websockets-sansio"),
    "uvicorn-wsproto": uvicorn_server("wsproto"),
}
SYNC_SERVERS = {"ferrows-sync": ferrows_sync, "websockets-sync": websockets_sync}
KINDS = [*ASYNC_SERVERS, *SYNC_SERVERS]


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    tls = (sys.argv[3], sys.argv[4]) if len(sys.argv) == 5 else None
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if kind in SYNC_SERVERS:
        SYNC_SERVERS[kind](port, tls)
    else:
        uvloop.run(ASYNC_SERVERS[kind](port, tls))


if __name__ == "__main__":
    main()
