"""A server for the attack tests, on the sync or asyncio face, in its own process so that the
tests can read its memory from /proc.

    usage: attack_server.py sync|asyncio [OPTIONS_JSON]

Prints "listening on PORT", then serves until SIGTERM. A connection that chose the subprotocol
"busy" is never read (its handler waits for the connection to end, as a handler busy elsewhere
would); every other connection is echoed. OPTIONS_JSON holds keyword arguments for serve() (limits).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading

# A busy handler waits at most this long for its connection to end.
BUSY_LIMIT = 120.0


def serve_sync(options: dict) -> None:
    import ferrows.sync

    def handler(connection: ferrows.sync.ServerConnection) -> None:
        if connection.subprotocol == "busy":
            connection.wait_closed(timeout=BUSY_LIMIT)
            return
        for message in connection:
            connection.send(message)

    with ferrows.sync.serve(handler, "127.0.0.1", 0, subprotocols=["busy"], **options) as server:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print(f"listening on {server.port}", flush=True)
        server.serve_forever()


async def serve_asyncio(options: dict) -> None:
    import ferrows.asyncio

    async def handler(connection: ferrows.asyncio.ServerConnection) -> None:
        if connection.subprotocol == "busy":
            await asyncio.wait_for(connection.wait_closed(), BUSY_LIMIT)
            return
        async for message in connection:
            await connection.send(message)

    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with ferrows.asyncio.serve(
        handler, "127.0.0.1", 0, subprotocols=["busy"], **options
    ) as server:
        print(f"listening on {server.port}", flush=True)
        await stop


def main() -> None:
    face = sys.argv[1]
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    if face == "sync":
        serve_sync(options)
    elif face == "asyncio":
        asyncio.run(serve_asyncio(options))
    else:
        sys.exit(f"unknown face {face!r}")


if __name__ == "__main__":
    main()
