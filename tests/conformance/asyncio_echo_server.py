"""Echo server on the ferrows asyncio face, for the Autobahn fuzzingclient.

Usage: asyncio_echo_server.py PORT. Limits raised for section 9; keepalive off.
"""

import asyncio
import sys

from ferrows.asyncio import ServerConnection, serve
from ferrows.exceptions import ConnectionClosed


async def echo(connection: ServerConnection) -> None:
    try:
        async for message in connection:
            await connection.send(message)
    except ConnectionClosed:
        pass


async def main() -> None:
    port = int(sys.argv[1])
    async with serve(echo, "127.0.0.1", port, max_size=None, ping_interval=None) as server:
        print(f"listening on {server.port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
