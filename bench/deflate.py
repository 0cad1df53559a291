"""permessage-deflate side by side: 64 KiB JSON-like text messages per second, CPU per
message, and server memory per compressed connection.

Clients: ferrows sync, ferrows asyncio, websockets (asyncio) and aiohttp each send MESSAGES
64 KiB JSON-like text messages, WINDOW in flight, through one aiohttp echo server (a server
that is not ferrows), with context takeover. ferrows runs its defaults (zlib-rs level 2), the
peers C zlib at level 1 (aiohttp's fixed level), which compress this text about as much
(`cargo run --release -p ferrows-core --example deflate_levels` prints zlib-rs' ratios). The
client runs on core 0, the server on core 1. Reported: messages/s and the client's CPU time
per message (all its threads), medians of RUNS runs after a warm-up.

Servers: ferrows sync, ferrows asyncio, websockets and aiohttp each accept CONNECTIONS
connections from one aiohttp client process; every connection exchanges one 4 KiB compressed
message each way and stays open. Reported: the server's RSS growth per connection, which
includes what each side keeps for context takeover; and ferrows asyncio asking for
``server_no_context_takeover``, which keeps no compressor per connection.

    python bench/deflate.py [--messages 2000] [--window 8] [--runs 5] [--connections 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
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


# Servers, each run in its own process: `deflate.py serve NAME PORT`

#: ferrows' server defaults: 12-bit windows both ways, memLevel 5, context takeover, as the
#: peers below are set to.
FERROWS_SERVER = {"max_size": None, "ping_interval": None, "max_connections": 100_000}


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
    elif name == "aiohttp":
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
    else:
        raise SystemExit(f"unknown server {name}")


def start_server(name: str, core: int) -> tuple[subprocess.Popen, int]:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, __file__, "serve", name, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"server {name} did not start")
    return process, port


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


async def hold_connections(
    url: str, count: int, text: str, ready: threading.Event, release: threading.Event
) -> None:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = []
        for _ in range(count):
            ws = await session.ws_connect(url, compress=15, max_msg_size=0)
            await ws.send_str(text)
            assert (await ws.receive()).data == text
            sockets.append(ws)
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 120)
        for ws in sockets:
            await ws.close()


def memory_per_connection(name: str, connections: int) -> float:
    """KiB of server RSS per open connection that exchanged one compressed message."""
    process, port = start_server(name, 1)
    try:
        url = f"ws://{HOST}:{port}/"
        text = document(4096, seed=2)
        # Warm the server up (imports, first allocations) before the baseline.
        asyncio.run(hold_n(url, 4, text))
        baseline = rss_kib(process.pid)
        ready, release = threading.Event(), threading.Event()
        holder = threading.Thread(
            target=asyncio.run, args=(hold_connections(url, connections, text, ready, release),)
        )
        holder.start()
        if not ready.wait(120):
            raise RuntimeError("connections did not open in time")
        grown = rss_kib(process.pid) - baseline
        release.set()
        holder.join(120)
        return grown / connections
    finally:
        process.kill()
        process.wait(10)


async def hold_n(url: str, count: int, text: str) -> None:
    ready, release = threading.Event(), threading.Event()
    release.set()
    await hold_connections(url, count, text, ready, release)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--connections", type=int, default=500)
    args = parser.parse_args()
    text = document(64 * 1024)
    compressed = len(zlib.compress(text.encode(), LEVEL))
    print(
        f"64 KiB JSON-like text ({len(text)} bytes, {compressed} at zlib level {LEVEL}); "
        f"{args.messages} messages, {args.window} in flight, medians of {args.runs} runs"
    )
    os.sched_setaffinity(0, {0})
    server, port = start_server("aiohttp", 1)
    rows = {}
    try:
        url = f"ws://{HOST}:{port}/"
        for name in CLIENTS:
            run_client(name, url, text, max(args.messages // 10, args.window), args.window)
            runs = [
                run_client(name, url, text, args.messages, args.window) for _ in range(args.runs)
            ]
            rows[name] = (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
                max(r[0] for r in runs) - min(r[0] for r in runs),
            )
    finally:
        server.kill()
        server.wait(10)
    best = max(rate for rate, _, _ in rows.values())
    print("\nclient (aiohttp echo server)   msg/s   spread   CPU µs/msg   msg/s vs best")
    for name, (rate, cpu, spread) in rows.items():
        print(f"  {name:<26} {rate:>7.0f} {spread:>8.0f} {cpu:>12.1f} {rate / best:>14.2f}")
    os.sched_setaffinity(0, {0})
    print(
        f"\nserver RSS per compressed connection ({args.connections} connections, "
        "one 4 KiB message each way, context takeover)"
    )
    servers = ["ferrows-sync", "ferrows-asyncio", "ferrows-asyncio-no-takeover"]
    for name in [*servers, "websockets", "aiohttp"]:
        print(f"  {name:<26} {memory_per_connection(name, args.connections):>7.1f} KiB")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
