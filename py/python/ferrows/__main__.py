"""Command line: ``python -m ferrows serve|connect|demo``, and ``--version``.

- ``serve`` runs an echo server until Ctrl-C.
- ``connect URL`` is an interactive client: it prints what arrives and sends the lines
  you type (end with Ctrl-D).
- ``demo`` starts an echo server, exchanges text, binary and fragmented messages and a ping
  with it from the sync and asyncio clients (and a C client given with ``--c-client``),
  prints what happened and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time

from . import __version__
from .exceptions import ConnectionClosed
from .sync.client import connect
from .sync.server import ServerConnection, serve


def echo(connection: ServerConnection) -> None:
    """Sends every message back."""
    for message in connection:
        connection.send(message)


def run_serve(host: str, port: int) -> int:
    with serve(echo, host, port, max_size=None) as server:
        print(f"ferrows echo server on ws://{host}:{server.port} (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopping", flush=True)
    return 0


def run_connect(url: str) -> int:
    with connect(url) as connection:
        print(f"connected to {url}; type lines to send, Ctrl-D to quit", flush=True)

        def printer() -> None:
            try:
                for message in connection:
                    shown = (
                        message
                        if isinstance(message, str)
                        else f"<{len(message)} bytes> {message[:32]!r}"
                    )
                    print(f"< {shown}", flush=True)
            except ConnectionClosed as exc:
                print(f"connection closed: {exc}", flush=True)

        thread = threading.Thread(target=printer, daemon=True)
        thread.start()
        try:
            for line in sys.stdin:
                connection.send(line.rstrip("\n"))
        except (KeyboardInterrupt, ConnectionClosed):
            pass
    thread.join(5)
    return 0


async def asyncio_exchange(url: str) -> None:
    """The asyncio client's part of the demo."""
    from .asyncio import connect as async_connect

    async with async_connect(url) as websocket:
        await websocket.send("Hello from asyncio")
        echoed = await asyncio.wait_for(websocket.recv(), 5)
        print(f"asyncio client: sent 'Hello from asyncio' -> echoed {echoed!r}")


def run_demo(c_client: str | None) -> int:
    thread = None
    try:
        with serve(echo, "127.0.0.1", 0) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            url = f"ws://127.0.0.1:{server.port}"
            print(f"echo server (ferrows.sync) listening on {url}")
            with connect(url) as connection:
                print(f"sync client connected (id {connection.id})")
                connection.send("Hello, ferrows!")
                print(f"text   sent 'Hello, ferrows!' -> echoed {connection.recv(timeout=5)!r}")
                payload = bytes(range(256)) * 4
                connection.send(payload)
                echoed = connection.recv(timeout=5)
                print(
                    f"binary sent {len(payload)} bytes -> echoed {len(echoed)} bytes, "
                    f"identical: {echoed == payload}"
                )
                connection.send(["frag", "mented ", "message"])
                print(f"fragmented message echoed as {connection.recv(timeout=5)!r}")
                latency = connection.ping().wait(timeout=5)
                print(f"ping latency {latency * 1e6:.0f} µs")
                started = time.perf_counter()
                rounds = 2000
                for _ in range(rounds):
                    connection.send(b"x" * 256)
                    connection.recv(timeout=5)
                elapsed = time.perf_counter() - started
                print(f"{rounds} round trips of 256 bytes: {rounds / elapsed:,.0f} per second")
            print(f"sync client closed with code {connection.close_code}")
            asyncio.run(asyncio_exchange(url))
            if c_client is not None:
                result = subprocess.run(
                    [c_client, url, "Hello from C", "second message"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                for line in result.stdout.splitlines():
                    print(f"C client: {line}")
                if result.returncode != 0:
                    print(f"C client failed ({result.returncode}): {result.stderr.strip()}")
                    return 1
    finally:
        # serve_forever returns once the server is closed: wait for it to leave ferrows'
        # native code. A daemon thread still inside a native call when the interpreter
        # finalizes is killed there (pthread_exit, Python before 3.14).
        if thread is not None:
            thread.join(5)
    print("server stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferrows", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ferrows {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run an echo server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8765)
    connect_parser = commands.add_parser("connect", help="interactive client")
    connect_parser.add_argument("url")
    demo_parser = commands.add_parser("demo", help="echo server and clients, a short exchange")
    demo_parser.add_argument("--c-client", help="also run this C echo client (examples/c)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(args.host, args.port)
    if args.command == "connect":
        return run_connect(args.url)
    return run_demo(args.c_client)


if __name__ == "__main__":
    sys.exit(main())
