"""The two processes of the server-limit tests, each run by ``sys.executable``:

- ``floodpeers.py serve LOOP [MAX_CONNECTIONS]`` runs an asyncio echo server on the LOOP
  (``asyncio`` or ``uvloop``) and prints ``PORT <port>``; ``/refused`` is answered 403 and
  ``/stats`` 200 with the number of other connections; it stops when its stdin closes.
- ``floodpeers.py flood KIND PORT COUNT SECONDS CONCURRENCY [FILL]`` opens at most COUNT
  connections within SECONDS, CONCURRENCY at a time, and prints a JSON summary. KIND is
  ``refused`` (a handshake to ``/refused``), ``bare`` (TCP connect and close) or ``overflow``
  (FILL handshakes held open, then handshakes that the full server must refuse).

The server lives in its own process so that the test can read its memory in
``/proc/PID/status``; the flood too, so that it does not slow down the test's own client.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from typing import Any

HOST = "127.0.0.1"
MAX_RESPONSE = 4096


def request(port: int, path: str) -> bytes:
    """A valid upgrade request for ``path``."""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def serve(loop_kind: str, max_connections: int | None) -> None:
    from ferrows.asyncio import ServerConnection, serve
    from ferrows.http11 import Request, Response

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/refused":
            return connection.respond(403, "refused\n")
        if request.path == "/stats":
            return connection.respond(200, f"{len(server.connections - {connection})}\n")
        return None

    limits: dict[str, Any] = {}
    if max_connections is not None:
        limits["max_connections"] = max_connections
    async with serve(
        echo, HOST, 0, process_request=process_request, ping_interval=None, backlog=1024, **limits
    ) as server:
        print(f"PORT {server.port}", flush=True)
        # The test stops the server by closing stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def exchange(port: int, path: str) -> bytes:
    """Sends a handshake request and returns the answer's status line ('' if none)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request(port, path))
        answer = await reader.read(MAX_RESPONSE)
        return answer.split(b"\r\n", 1)[0]
    finally:
        writer.close()


async def bare(port: int) -> bytes:
    _, writer = await asyncio.open_connection(HOST, port)
    writer.close()
    await writer.wait_closed()
    return b"closed"


async def flood(
    kind: str, port: int, count: int, seconds: float, concurrency: int, fill: int
) -> dict[str, Any]:
    held = []
    for _ in range(fill):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request(port, "/"))
        status = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).split(b"\r\n")[0]
        if not status.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"filler refused: {status!r}")
        held.append(writer)
    path = "/refused" if kind == "refused" else "/"
    attempt = (lambda: bare(port)) if kind == "bare" else (lambda: exchange(port, path))
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + seconds
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            try:
                outcome = (await asyncio.wait_for(attempt(), 10)).decode("latin-1")
            except (OSError, asyncio.TimeoutError) as exc:
                outcome = type(exc).__name__
            outcomes[outcome] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    for writer in held:
        writer.close()
    return {"outcomes": dict(outcomes), "elapsed": elapsed}


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> None:
    raise_file_limit()
    if argv[0] == "serve":
        loop_kind = argv[1]
        max_connections = int(argv[2]) if len(argv) > 2 else None
        if loop_kind == "uvloop":
            import uvloop

            uvloop.run(serve(loop_kind, max_connections))
        else:
            asyncio.run(serve(loop_kind, max_connections))
    elif argv[0] == "flood":
        kind, port, count, seconds, concurrency = argv[1], *map(int, argv[2:4]), *argv[4:6]
        fill = int(argv[6]) if len(argv) > 6 else 0
        summary = asyncio.run(flood(kind, port, count, float(seconds), int(concurrency), fill))
        print(json.dumps(summary), flush=True)
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
