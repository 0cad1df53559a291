"""The processes of the suite's deflate part (bench/suite.py): permessage-deflate servers,
clients and a memory probe, each run as its own process.

    python bench/deflate.py serve NAME PORT                 an echo server; prints "ready"
    python bench/deflate.py client NAME PORT MESSAGES WINDOW
    python bench/deflate.py memory PORT PID CONNECTIONS

``client`` echoes MESSAGES 64 KiB JSON-like text messages (WINDOW in flight) through the
server on PORT, after a warm-up of a tenth of them, and prints ``{"rate", "cpu_us"}``:
messages per second and its process's CPU time per message (all threads). ferrows runs its
defaults (zlib-rs level 2), the peers C zlib at level 1 (aiohttp's fixed level), which
compress this text about as much (`cargo run --release -p ferrows-core --example
deflate_levels` prints zlib-rs' ratios); everyone keeps context takeover.

``memory`` opens CONNECTIONS connections to the server (process PID) from aiohttp, each
exchanging one 4 KiB compressed message, and prints ``{"kib_per_connection"}``: the growth
of the server's resident memory per open connection, which includes what each side keeps
for context takeover (``ferrows-asyncio-no-takeover`` asks for
``server_no_context_takeover``, which keeps not even the server's window per connection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any, Callable

HOST = "127.0.0.1"
LEVEL = 1


def document(size: int, seed: int = 1) -> str:
    """JSON-like text of about ``size`` bytes: records with repeated keys, varied values."""
    rng = random.Random(seed)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    records, length = [], 2
    while length < size:
        record = {
            "id": rng.randrange(10**9),
            "user": f"{rng.choice(words)}{rng.randrange(1000)}",
            "score": round(rng.random() * 1000, 3),
            "active": rng.random() < 0.5,
            "tags": rng.sample(words, 3),
        }
        text = json.dumps(record)
        records.append(text)
        length += len(text) + 1
    return "[" + ",".join(records) + "]"


# Servers: `deflate.py serve NAME PORT`

#: ferrows' server defaults: 12-bit windows both ways, memLevel 5, context takeover, as the
#: peers below are set to.
FERROWS_SERVER = {"max_size": None, "ping_interval": None, "max_connections": 100_000}
SERVERS = (
    "ferrows-sync",
    "ferrows-asyncio",
    "ferrows-asyncio-no-takeover",
    "websockets",
    "aiohttp",
)


async def echo_async(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


def serve(name: str, port: int) -> None:
    """Runs echo server ``name`` on ``port`` until killed; prints "ready" once listening."""
    if name == "ferrows-sync":
        import ferrows.sync

        def echo(ws: Any) -> None:
            for message in ws:
                ws.send(message)

        server = ferrows.sync.serve(echo, HOST, port, **FERROWS_SERVER)
        print("ready", flush=True)
        server.serve_forever()
        return
    asyncio.run(serve_async(name, port))


async def serve_async(name: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    if name.startswith("ferrows-asyncio"):
        import ferrows
        import ferrows.asyncio

        options: dict[str, Any] = dict(FERROWS_SERVER)
        if name == "ferrows-asyncio-no-takeover":
            options["compression"] = ferrows.Deflate(
                server_max_window_bits=12,
                client_max_window_bits=12,
                server_no_context_takeover=True,
            )
        async with ferrows.asyncio.serve(echo_async, HOST, port, **options):
            print("ready", flush=True)
            await stop
    elif name == "websockets":
        import websockets.asyncio.server
        from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

        factory = ServerPerMessageDeflateFactory(
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"level": LEVEL, "memLevel": 5},
        )
        async with websockets.asyncio.server.serve(
            echo_async,
            HOST,
            port,
            max_size=None,
            ping_interval=None,
            compression=None,
            extensions=[factory],
        ):
            print("ready", flush=True)
            await stop
    else:
        from aiohttp import web

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=15, max_msg_size=0)
            await ws.prepare(request)
            async for message in ws:
                await ws.send_str(message.data)
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, port, backlog=4096).start()
        print("ready", flush=True)
        await stop


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# Clients: each returns the seconds taken to echo `count` messages, `window` in flight


def ferrows_sync_client(url: str, text: str, count: int, window: int) -> float:
    import ferrows.sync

    with ferrows.sync.connect(url, max_size=None, ping_interval=None) as ws:
        assert ws.compression, "no compression agreed"
        started = time.perf_counter()
        for _ in range(window):
            ws.send(text)
        for sent in range(window, count + window):
            ws.recv(timeout=30)
            if sent < count:
                ws.send(text)
        return time.perf_counter() - started


async def ferrows_asyncio_client(url: str, text: str, count: int, window: int) -> float:
    import ferrows.asyncio

    async with ferrows.asyncio.connect(url, max_size=None, ping_interval=None) as ws:
        assert ws.compression, "no compression agreed"
        return await pipelined(ws.send, ws.recv, text, count, window)


async def websockets_client(url: str, text: str, count: int, window: int) -> float:
    import websockets.asyncio.client
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    factory = ClientPerMessageDeflateFactory(
        client_max_window_bits=True, compress_settings={"level": LEVEL, "memLevel": 5}
    )
    async with websockets.asyncio.client.connect(
        url, max_size=None, ping_interval=None, compression=None, extensions=[factory]
    ) as ws:
        return await pipelined(ws.send, ws.recv, text, count, window)


async def aiohttp_client(url: str, text: str, count: int, window: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, compress=15, max_msg_size=0) as ws:

            async def recv() -> Any:
                return (await ws.receive()).data

            return await pipelined(ws.send_str, recv, text, count, window)


async def pipelined(send: Callable, recv: Callable, text: str, count: int, window: int) -> float:
    started = time.perf_counter()
    for _ in range(window):
        await send(text)
    for sent in range(window, count + window):
        assert len(await recv()) == len(text)
        if sent < count:
            await send(text)
    return time.perf_counter() - started


CLIENTS: dict[str, Callable[..., Any]] = {
    "ferrows-sync": ferrows_sync_client,
    "ferrows-asyncio": ferrows_asyncio_client,
    "websockets": websockets_client,
    "aiohttp": aiohttp_client,
}


def run_client(name: str, url: str, text: str, count: int, window: int) -> tuple[float, float]:
    """(messages/s, client CPU µs per message) for one run."""
    client = CLIENTS[name]
    cpu = time.process_time()
    if asyncio.iscoroutinefunction(client):
        import uvloop

        seconds = uvloop.run(client(url, text, count, window))
    else:
        seconds = client(url, text, count, window)
    cpu = time.process_time() - cpu
    return count / seconds, cpu / count * 1e6


# Memory per compressed connection


async def hold_connections(url: str, count: int, text: str, while_open: Callable[[], Any]) -> Any:
    """Opens ``count`` connections, each echoing ``text`` once, and returns ``while_open()``
    called while they all are open."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = []
        try:
            for _ in range(count):
                ws = await session.ws_connect(url, compress=15, max_msg_size=0)
                sockets.append(ws)
                await ws.send_str(text)
                assert (await ws.receive(timeout=30)).data == text
            return while_open()
        finally:
            for ws in sockets:
                await ws.close()


async def memory_per_connection(port: int, pid: int, connections: int) -> float:
    """KiB of server RSS per open connection that exchanged one compressed message."""
    url = f"ws://{HOST}:{port}/"
    text = document(4096, seed=2)
    # Warm the server up (imports, first allocations) before the baseline.
    await hold_connections(url, 4, text, lambda: None)
    baseline = rss_kib(pid)
    grown = await hold_connections(url, connections, text, lambda: rss_kib(pid) - baseline)
    return grown / connections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve")
    serve_command.add_argument("name", choices=SERVERS)
    serve_command.add_argument("port", type=int)
    client_command = commands.add_parser("client")
    client_command.add_argument("name", choices=CLIENTS)
    client_command.add_argument("port", type=int)
    client_command.add_argument("messages", type=int)
    client_command.add_argument("window", type=int)
    memory_command = commands.add_parser("memory")
    for argument in ("port", "pid", "connections"):
        memory_command.add_argument(argument, type=int)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.name, args.port)
    elif args.command == "client":
        url = f"ws://{HOST}:{args.port}/"
        text = document(64 * 1024)
        run_client(args.name, url, text, max(args.messages // 10, args.window), args.window)
        rate, cpu_us = run_client(args.name, url, text, args.messages, args.window)
        print(json.dumps({"rate": rate, "cpu_us": cpu_us}))
    else:
        kib = asyncio.run(memory_per_connection(args.port, args.pid, args.connections))
        print(json.dumps({"kib_per_connection": kib}))


if __name__ == "__main__":
    main()
