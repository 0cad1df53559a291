"""A ferrows asyncio server process with topics, for the fan-out tests and benchmark.

    python topics_server.py REDIS_URL LOOP [PORT]

Serves 127.0.0.1 (on PORT with SO_REUSEPORT if given, else a free port), prints its port and
serves until its standard input ends. ``/sub/TOPIC`` subscribes the connection to TOPIC and
says ``subscribed PID`` once it is; ``/control`` answers JSON commands, one per message:
``{"op": "publish", "topic": T, "message": M, "count": N}`` (N times, M plus the index when
N is given) answers ``{"published": [bools]}``; ``stats`` the counters and ``connected``;
``wait_connected`` and ``wait_disconnected`` answer once the topics are so; ``unsubscribe``
(``"topic": T``) unsubscribes every connection from T.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import threading

import uvloop
from ferrows.asyncio import ServerConnection, serve
from ferrows.topics import Topics


async def main(url: str, port: int) -> None:
    async with Topics(url, backoff=(0.2, 1.618, 1.0)) as topics:

        async def handler(connection: ServerConnection) -> None:
            assert connection.request is not None
            path = connection.request.path
            if path.startswith("/sub/"):
                await topics.subscribe(connection, path[len("/sub/") :])
                await connection.send(f"subscribed {os.getpid()}")
                await connection.wait_closed()
            elif path == "/control":
                async for command in connection:
                    await connection.send(json.dumps(await run(json.loads(command))))

        async def run(command: dict) -> dict:
            op = command["op"]
            if op == "publish":
                count = command.get("count")
                messages = [command["message"]] if count is None else range(count)
                published = []
                for index in messages:
                    message = (
                        command["message"] if count is None else f"{command['message']}{index}"
                    )
                    published.append(await topics.publish(command["topic"], message))
                return {"published": published}
            if op == "unsubscribe":
                for connection in topics.subscribers(command["topic"]):
                    await topics.unsubscribe(connection, command["topic"])
            elif op == "stats":
                return {**dataclasses.asdict(topics.stats), "connected": topics.connected}
            elif op == "wait_connected":
                await topics.wait_connected()
            elif op == "wait_disconnected":
                await topics.wait_disconnected()
            return {}

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Standard input ends when the test is done (or dies).
        threading.Thread(
            target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
        ).start()
        async with serve(
            handler, "127.0.0.1", port, reuse_port=bool(port), ping_interval=None
        ) as server:
            print(server.port, flush=True)
            await stop.wait()


if __name__ == "__main__":
    url, loop_kind = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    runner(main(url, port))
