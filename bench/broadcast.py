"""The asyncio servers of the suite's broadcast part (bench/suite.py): one process holds
CONNECTIONS connections, then sends each round's SIZE-byte message to all of them.

    python bench/broadcast.py KIND CONNECTIONS SIZE        (prints {"port": P} first)

KIND is ``ferrows-broadcast`` (ferrows' ``broadcast()``), ``ferrows-send-loop`` (a loop of
ferrows' ``await send()``), ``websockets-broadcast`` or ``websockets-send-loop``;
bench/c/ferrows_broadcast.c is the C server, with the same protocol. On each "round" line of
stdin the server sends the message and prints ``{"started", "call_s"}`` (the monotonic time
just before the call and how long the broadcast, or the whole loop of sends, took); on
"done" it prints ``{"cpu_s"}``, its process's CPU time (all threads) since just before the
call. Servers run uncompressed: the load generator offers no extension.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

HOST = "127.0.0.1"
KINDS = (
    "ferrows-broadcast",
    "ferrows-send-loop",
    "websockets-broadcast",
    "websockets-send-loop",
)


def raise_file_limit(needed: int) -> None:
    """Takes the hard limit on open files when the soft one is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {soft}: {needed} descriptors are needed")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("connections", type=int)
    parser.add_argument("size", type=int)
    args = parser.parse_args()
    raise_file_limit(args.connections + 200)
    asyncio.run(serve(args.kind, args.connections, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
