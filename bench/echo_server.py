"""An echo server for the benchmarks: ``echo_server.py ferrows|websockets PORT``."""

from __future__ import annotations

import sys


def ferrows_server(port: int) -> None:
    from ferrows.sync.server import serve

    def echo(connection):
        for message in connection:
            connection.send(message)

    with serve(echo, "127.0.0.1", port, max_size=None, ping_interval=None) as server:
        server.serve_forever()


def websockets_server(port: int) -> None:
    import asyncio

    from websockets.asyncio.server import serve

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    async def run():
        async with serve(
            echo, "127.0.0.1", port, max_size=None, compression=None, ping_interval=None
        ) as server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    {"ferrows": ferrows_server, "websockets": websockets_server}[kind](port)
