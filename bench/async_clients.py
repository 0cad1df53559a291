"""Echo round trips per second for asyncio clients against one server, side by side.

Starts one echo server in its own process (ferrows asyncio on uvloop by default, or picows
with --server picows), then runs each client in this process on uvloop, in turn, RUNS times:
ferrows.asyncio with ``await recv()``, ferrows.asyncio's callback Listener, picows (its
callback listener) and websockets.asyncio. Each does ROUNDS sequential round trips of SIZE
bytes. Prints medians and ratios to picows.

    python bench/async_clients.py [--size 256] [--rounds 10000] [--runs 5] [--server ferrows]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

import uvloop
from sync_clients import free_port, pin, wait_listening

HERE = Path(__file__).resolve().parent


async def ferrows_await(url: str, payload: bytes, rounds: int) -> float:
    from ferrows.asyncio import connect

    async with connect(url, max_size=None, ping_interval=None) as ws:
        started = time.perf_counter()
        for _ in range(rounds):
            await ws.send(payload)
            await ws.recv()
        return rounds / (time.perf_counter() - started)


async def ferrows_callback(url: str, payload: bytes, rounds: int) -> float:
    from ferrows.asyncio import Listener, connect

    done = asyncio.get_running_loop().create_future()

    class Echo(Listener):
        count = 0

        def on_message(self, connection: Any, message: Any) -> None:
            self.count += 1
            if self.count == rounds:
                done.set_result(time.perf_counter())
            else:
                connection.send_nowait(payload)

    async with connect(url, max_size=None, ping_interval=None, listener=Echo) as ws:
        started = time.perf_counter()
        ws.send_nowait(payload)
        finished = await done
        return rounds / (finished - started)


async def picows_client(url: str, payload: bytes, rounds: int) -> float:
    from picows import WSListener, WSMsgType, ws_connect

    done = asyncio.get_running_loop().create_future()

    class Echo(WSListener):
        count = 0

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type != WSMsgType.BINARY:
                return
            self.count += 1
            if self.count == rounds:
                done.set_result(time.perf_counter())
            else:
                transport.send(WSMsgType.BINARY, payload)

    transport, _ = await ws_connect(Echo, url, max_frame_size=1 << 30)
    started = time.perf_counter()
    transport.send(WSMsgType.BINARY, payload)
    finished = await done
    transport.send_close()
    transport.disconnect()
    await transport.wait_disconnected()
    return rounds / (finished - started)


async def websockets_client(url: str, payload: bytes, rounds: int) -> float:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        started = time.perf_counter()
        for _ in range(rounds):
            await ws.send(payload)
            await ws.recv()
        return rounds / (time.perf_counter() - started)


CLIENTS: dict[str, Callable[[str, bytes, int], Awaitable[float]]] = {
    "ferrows await": ferrows_await,
    "ferrows callback": ferrows_callback,
    "picows": picows_client,
    "websockets": websockets_client,
}

SERVERS = {
    "ferrows": [sys.executable, str(HERE / "async_echo_server.py"), "ferrows"],
    "picows": [sys.executable, str(HERE / "async_echo_server.py"), "picows"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", choices=sorted(SERVERS), default="ferrows")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([*SERVERS[args.server], str(port)], preexec_fn=pin())
    payload = os.urandom(args.size)
    results: dict[str, list[float]] = {name: [] for name in CLIENTS}
    try:
        wait_listening(port)
        url = f"ws://127.0.0.1:{port}/"
        for _ in range(args.runs):
            for name, client in CLIENTS.items():
                results[name].append(uvloop.run(client(url, payload, args.rounds)))
    finally:
        server.terminate()
        server.wait(10)
    base = statistics.median(results["picows"])
    print(
        f"{args.size}-byte echo round trips/s, {args.server} server on uvloop (CPU 0), clients on "
        f"uvloop (CPU 1), median of {args.runs} x {args.rounds}"
    )
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"  {name:18} {median:>10,.0f}  ({min(values):,.0f}-{max(values):,.0f})"
            f"  this/picows = {median / base:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
