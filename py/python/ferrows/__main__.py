"""Command line: ``python -m ferrows serve|connect|demo``.

- ``serve`` runs an echo server until Ctrl-C.
- ``connect URL`` is an interactive client: it prints what arrives and sends the lines
  you type (end with Ctrl-D).
- ``demo`` starts an echo server, exchanges text and binary messages with it, prints what
  happened and stops.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

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


def run_demo() -> int:
    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{server.port}"
        print(f"echo server listening on {url}")
        with connect(url) as connection:
            print(f"client connected (id {connection.id})")
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
        print(f"client closed with code {connection.close_code}")
    print("server stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferrows", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run an echo server")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8765)
    connect_parser = commands.add_parser("connect", help="interactive client")
    connect_parser.add_argument("url")
    commands.add_parser("demo", help="echo server and client, a short exchange")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return run_serve(args.host, args.port)
    if args.command == "connect":
        return run_connect(args.url)
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
