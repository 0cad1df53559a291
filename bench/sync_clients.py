"""Echo round trips per second for sync clients against one server, side by side.

Starts one echo server in its own process (ferrows sync by default, or websockets'
asyncio server with --server websockets), then runs each client in turn in this process:
ferrows.sync, websockets.sync and websocket-client. Each client does ROUNDS sequential
round trips of SIZE bytes; runs are interleaved and repeated, and medians are printed
with ratios to ferrows.

    python bench/sync_clients.py [--size 256] [--rounds 5000] [--runs 5] [--server ferrows]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent

SERVERS = {
    "ferrows": [sys.executable, str(HERE / "echo_server.py"), "ferrows"],
    "websockets": [sys.executable, str(HERE / "echo_server.py"), "websockets"],
}


def pin(server_cpu: int = 0, client_cpu: int = 1) -> Callable[[], None]:
    """Pins this process (the clients) to one core and returns a ``preexec_fn`` pinning the
    server to another: each round trip then crosses cores the same way for every client, the
    setup of the published peer measurements. Unpinned runs flip between sharing a core and
    not, and their figures swing by 5x on a 2-core machine."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[client_cpu]})
        server = cpus[server_cpu]
        return lambda: os.sched_setaffinity(0, {server})
    return lambda: None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("echo server did not start")


def round_trips_per_second(
    send: Callable[[bytes], object], recv: Callable[[], object], payload: bytes, rounds: int
) -> float:
    """Times `rounds` sequential echo round trips."""
    started = time.perf_counter()
    for _ in range(rounds):
        send(payload)
        recv()
    return rounds / (time.perf_counter() - started)


def ferrows_client(url: str, payload: bytes, rounds: int) -> float:
    from ferrows.sync.client import connect

    with connect(url, max_size=None, ping_interval=None) as ws:
        return round_trips_per_second(ws.send, ws.recv, payload, rounds)


def websockets_client(url: str, payload: bytes, rounds: int) -> float:
    from websockets.sync.client import connect

    with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        return round_trips_per_second(ws.send, ws.recv, payload, rounds)


def websocket_client_client(url: str, payload: bytes, rounds: int) -> float:
    import websocket

    ws = websocket.create_connection(url, enable_multithread=False)
    try:
        return round_trips_per_second(ws.send_binary, ws.recv, payload, rounds)
    finally:
        ws.close()


CLIENTS: dict[str, Callable[[str, bytes, int], float]] = {
    "ferrows.sync": ferrows_client,
    "websockets.sync": websockets_client,
    "websocket-client": websocket_client_client,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", choices=sorted(SERVERS), default="ferrows")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([*SERVERS[args.server], str(port)], preexec_fn=pin())
    try:
        wait_listening(port)
        url = f"ws://127.0.0.1:{port}"
        payload = os.urandom(args.size)
        results: dict[str, list[float]] = {name: [] for name in CLIENTS}
        for _ in range(args.runs):
            for name, client in CLIENTS.items():
                results[name].append(client(url, payload, args.rounds))
    finally:
        server.terminate()
        server.wait(10)
    base = statistics.median(results["ferrows.sync"])
    print(
        f"{args.size}-byte echo round trips/s, {args.server} server (CPU 0, clients CPU 1), "
        f"median of {args.runs} x {args.rounds}"
    )
    for name, values in results.items():
        median = statistics.median(values)
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        print(f"  {name:18} {median:>10,.0f}  ({spread})  ferrows/this = {base / median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
