"""A ferrows asyncio server process with topics, for the fan-out tests and benchmark.

    python topics_server.py REDIS_URL|- LOOP [PORT]

Serves 127.0.0.1 (on PORT with SO_REUSEPORT if given, else a free port), prints its port and
serves until its standard input ends; ``-`` keeps the topics in the process (no Redis).
``/sub/TOPIC`` subscribes the connection to TOPIC and says ``subscribed PID`` once it is;
``/control`` answers JSON commands, one per message:

- ``{"op": "publish", "topic": T, "message": M, "count": N, "window": W}``: publishes M (N
  times, M plus the index, W at a time when N is given), answers ``{"published": [bools]}``;
- ``stats``: the counters and ``connected``;
- ``wait_connected``, ``wait_disconnected``: answer once the topics are so;
- ``unsubscribe`` (``"topic": T``): unsubscribes every connection from T.

:class:`ServerProcess` starts it, :class:`Control` commands it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import uvloop
from ferrows.asyncio import ClientConnection, ServerConnection, connect, serve
from ferrows.topics import Topics

# The suites' child-process helper (tests/python/child.py), also when the benchmark imports
# this module.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from child import start_reporting_port

START_TIMEOUT = 20.0
# What a control command may take.
TIMEOUT = 5.0


async def main(url: str | None, port: int) -> None:
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
                count, window = command.get("count"), command.get("window", 1)
                if count is None:
                    messages = [command["message"]]
                else:
                    messages = [f"{command['message']}{index}" for index in range(count)]
                published = []
                for start in range(0, len(messages), window):
                    batch = messages[start : start + window]
                    sent = [topics.publish(command["topic"], message) for message in batch]
                    published += await asyncio.gather(*sent)
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


class ServerProcess:
    """This script in a process of its own: its port; stopped by closing its standard input."""

    def __init__(self, url: str | None, loop_kind: str, port: int | None = None) -> None:
        argv = [sys.executable, __file__, url or "-", loop_kind, *([str(port)] if port else [])]
        self.process, port = start_reporting_port(argv, START_TIMEOUT)
        if port is None:
            self.stop()
            raise AssertionError("the topics server did not start")
        self.port = port

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            assert self.process.wait(START_TIMEOUT) == 0
        finally:
            self.process.kill()


class Control:
    """The ``/control`` connection of a topics server process."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, port: int) -> Control:
        return cls(await asyncio.wait_for(connect(f"ws://127.0.0.1:{port}/control"), TIMEOUT))

    async def __call__(self, op: str, timeout: float = TIMEOUT, **arguments: Any) -> dict[str, Any]:
        await self.ws.send(json.dumps({"op": op, **arguments}))
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def publish(self, topic: str, message: str) -> bool:
        (published,) = (await self("publish", topic=topic, message=message))["published"]
        return published


if __name__ == "__main__":
    url, loop_kind = (None if sys.argv[1] == "-" else sys.argv[1]), sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    runner = uvloop.run if loop_kind == "uvloop" else asyncio.run
    runner(main(url, port))
