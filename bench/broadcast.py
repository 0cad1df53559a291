"""Broadcast: one 256-byte message to 10,000 connections of one server process.

Servers (uncompressed: the load generator offers no extension): in asyncio, ferrows'
``broadcast()``, a loop of ferrows' ``await send()``, websockets' ``broadcast()`` and a
loop of websockets' ``await send()``; in C (bench/c/ferrows_broadcast.c, with ``--bin-dir``),
``ferrows_broadcast`` and a loop of ``ferrows_conn_send``. The load generator
(bench/loadgen, ``receive`` mode) holds the connections and reports when every one of them
has received each message.

Per round, the server times its call (the broadcast, or the whole loop of sends) and its
process's CPU time (all threads, user and system) from just before the call until the load
generator saw the message on every connection; "delivered" is that span in wall time. The
server runs on core 0, the load generator on core 1. Medians of ROUNDS rounds after WARMUP.
The sync face is not measured here: its server holds a thread per connection.

    python bench/broadcast.py --loadgen target/loadgen/release/ferrows-loadgen
        [--bin-dir target/bench] [--connections 10000] [--rounds 20] [--size 256]
        [--kinds ferrows-broadcast ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
SERVER_CPU, CLIENT_CPU = 0, 1
WARMUP = 2
PYTHON_KINDS = (
    "ferrows-broadcast",
    "ferrows-send-loop",
    "websockets-broadcast",
    "websockets-send-loop",
)
C_KINDS = ("c-broadcast", "c-send-loop")
KINDS = PYTHON_KINDS + C_KINDS


def raise_file_limit(needed: int) -> None:
    """Takes the hard limit on open files when the soft one is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {soft}: {needed} descriptors are needed")


# ---- the server process ------------------------------------------------------------------


async def serve(kind: str, connections: int, size: int) -> None:
    """Serves until stdin closes; on each "round" line sends one message to every connection
    and prints the call's time, then on "done" prints the CPU time since just before it."""
    opened: set[Any] = set()
    library, how = kind.split("-", 1)
    if library == "ferrows":
        import ferrows.asyncio as face

        def listen(handler: Any) -> Any:
            return face.serve(handler, HOST, 0, max_connections=connections + 100, backlog=1024)

        def port_of(server: Any) -> int:
            return server.port
    else:
        import websockets.asyncio.server as face  # type: ignore[no-redef]

        def listen(handler: Any) -> Any:
            return face.serve(handler, HOST, 0, compression=None, backlog=1024)

        def port_of(server: Any) -> int:
            return server.sockets[0].getsockname()[1]

    async def handler(connection: Any) -> None:
        opened.add(connection)
        try:
            await connection.wait_closed()
        finally:
            opened.discard(connection)

    message = b"b" * size
    loop = asyncio.get_running_loop()
    async with listen(handler) as server:
        print(json.dumps({"port": port_of(server)}), flush=True)
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line != "round":
                return
            if len(opened) != connections:
                raise SystemExit(f"{len(opened)} of {connections} connections on the server")
            targets = list(opened)
            cpu = time.process_time()
            started = time.monotonic()
            if how == "broadcast":
                face.broadcast(targets, message)
            else:
                for connection in targets:
                    await connection.send(message)
            call = time.monotonic() - started
            print(json.dumps({"started": started, "call_s": call}), flush=True)
            if (await loop.run_in_executor(None, sys.stdin.readline)).strip() != "done":
                return
            print(json.dumps({"cpu_s": time.process_time() - cpu}), flush=True)


# ---- the driver ----------------------------------------------------------------------------


def pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *command]


def read_json(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        raise RuntimeError(f"{what} ended early (exit status {process.poll()})")
    return json.loads(line)


def server_command(kind: str, bin_dir: Path | None, connections: int, size: int) -> list[str]:
    if kind in C_KINDS:
        if bin_dir is None:
            raise SystemExit(f"{kind} needs --bin-dir (where bench/run.sh builds bench/c)")
        mode = kind.split("-", 1)[1]
        return [str(bin_dir / "ferrows_broadcast"), mode, str(connections), str(size)]
    return [sys.executable, __file__, "--serve", kind,
            "--connections", str(connections), "--size", str(size)]  # fmt: skip


def measure(kind: str, args: argparse.Namespace) -> dict:
    loadgen, connections, rounds, size = args.loadgen, args.connections, args.rounds, args.size
    server = subprocess.Popen(
        pinned(SERVER_CPU, server_command(kind, args.bin_dir, connections, size)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = None
    try:
        port = read_json(server, "the server")["port"]
        client = subprocess.Popen(
            pinned(CLIENT_CPU, [str(loadgen), "receive", "--port", str(port),
                                "--connections", str(connections), "--size", str(size),
                                "--rounds", str(WARMUP + rounds), "--deadline", "300"]),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        read_json(client, "the load generator")  # {"opened": N}
        samples = []
        for number in range(1, WARMUP + rounds + 1):
            server.stdin.write("round\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            call = read_json(server, "the server")
            received = read_json(client, "the load generator")
            assert received["round"] == number, received
            server.stdin.write("done\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]
            cpu = read_json(server, "the server")["cpu_s"]
            if number > WARMUP:
                delivered = received["monotonic_s"] - call["started"]
                samples.append((call["call_s"], delivered, cpu))
    finally:
        for process in (client, server):
            if process is not None:
                process.kill()
                process.wait()
    calls, delivered, cpus = zip(*samples)
    return {
        "kind": kind,
        "connections": connections,
        "size": size,
        "rounds": rounds,
        "call_ms": statistics.median(calls) * 1e3,
        "delivered_ms": statistics.median(delivered) * 1e3,
        "server_cpu_ms": statistics.median(cpus) * 1e3,
        "call_ms_max": max(calls) * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", choices=PYTHON_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", type=Path)
    parser.add_argument("--bin-dir", type=Path, help="where bench/c/ferrows_broadcast.c is built")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--kinds", nargs="+", choices=KINDS)
    args = parser.parse_args()
    raise_file_limit(args.connections + 200)
    if args.serve:
        asyncio.run(serve(args.serve, args.connections, args.size))
        return 0
    if args.loadgen is None:
        parser.error("--loadgen is required")
    kinds = args.kinds or [*PYTHON_KINDS, *(C_KINDS if args.bin_dir else ())]
    print(f"{args.connections} connections, {args.size} B, median of {args.rounds} rounds")
    print(f"{'server':<24}{'call ms':>10}{'delivered ms':>14}{'server CPU ms':>15}")
    for kind in kinds:
        result = measure(kind, args)
        print(
            f"{kind:<24}{result['call_ms']:>10.2f}{result['delivered_ms']:>14.2f}"
            f"{result['server_cpu_ms']:>15.2f}",
            flush=True,
        )
        print(json.dumps(result), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
