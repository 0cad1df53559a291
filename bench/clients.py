"""The Python clients of the benchmark suite, one process per client: ``clients.py KIND``.

The process reads requests as JSON lines on stdin, ``{"port", "size", "inflight", "warmup",
"seconds", "compression"}``, and answers each with a JSON line ``{"count", "seconds",
"cpu_s"}``: it connects to the echo server on 127.0.0.1:PORT, keeps INFLIGHT echoes of SIZE
bytes outstanding and measures with a :class:`Meter`. CPU time is the whole process's
(every thread: the sync clients' reader threads and ferrows' runtime count). asyncio
clients run on uvloop, a new loop per request.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable
from typing import Any, Callable

import uvloop


class Meter:
    """Counts echoes. The first echo starts the warm-up; the first after it opens the
    measured window, the first after ``seconds`` closes it. Each echo costs the same
    clock read whatever the library, so the clients stay comparable."""

    def __init__(self, warmup: float, seconds: float) -> None:
        self.warmup = warmup
        self.seconds = seconds
        self.count = 0
        self.warm_until: float | None = None
        self.started: tuple[float, float, int] | None = None
        self.result: dict[str, float] | None = None

    def echoed(self) -> bool:
        """Counts one echo; returns whether to send another."""
        self.count += 1
        now = time.perf_counter()
        if self.warm_until is None:
            self.warm_until = now + self.warmup
        elif self.started is None:
            if now >= self.warm_until:
                self.started = (now, time.process_time(), self.count)
        elif self.result is None and now - self.started[0] >= self.seconds:
            self.result = {
                "count": self.count - self.started[2],
                "seconds": now - self.started[0],
                "cpu_s": time.process_time() - self.started[1],
            }
        return self.result is None


# Options that turn permessage-deflate on, per library (picows and websocket-client have
# none): the hook for deflate rows, unused until bench/suite.py lists "deflate" among its
# COMPRESSIONS. Without it every client runs uncompressed.
DEFLATE_OPTIONS: dict[str, dict[str, Any]] = {
    "ferrows": {"compression": "deflate"},
    "websockets": {"compression": "deflate"},
    "aiohttp": {"compress": 15},
}
PLAIN_OPTIONS: dict[str, dict[str, Any]] = {
    "websockets": {"compression": None},
    "aiohttp": {"compress": 0},
}


def options(library: str, compression: str | None) -> dict[str, Any]:
    if compression is None:
        return PLAIN_OPTIONS.get(library, {})
    if compression == "deflate" and library in DEFLATE_OPTIONS:
        return DEFLATE_OPTIONS[library]
    raise ValueError(f"{library} has no {compression} compression")


async def pump_async(
    send: Callable[[bytes], Awaitable[Any]],
    recv: Callable[[], Awaitable[Any]],
    payload: bytes,
    inflight: int,
    meter: Meter,
) -> None:
    """Sends `inflight` messages, then one more per echo until the meter stops; drains."""
    for _ in range(inflight):
        await send(payload)
    outstanding = inflight
    while outstanding:
        await recv()
        outstanding -= 1
        if meter.echoed():
            await send(payload)
            outstanding += 1


def pump_sync(
    send: Callable[[bytes], Any],
    recv: Callable[[], Any],
    payload: bytes,
    inflight: int,
    meter: Meter,
) -> None:
    """:func:`pump_async` for blocking clients."""
    for _ in range(inflight):
        send(payload)
    outstanding = inflight
    while outstanding:
        recv()
        outstanding -= 1
        if meter.echoed():
            send(payload)
            outstanding += 1


class Relay:
    """The callback clients' side of the pump: each echo sends the next message until the
    meter stops, then `done` resolves once nothing is in flight."""

    def __init__(self, send: Callable[[bytes], Any], payload: bytes, inflight: int, meter: Meter):
        self.send, self.payload, self.meter = send, payload, meter
        self.outstanding = inflight
        self.done = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        for _ in range(self.outstanding):
            self.send(self.payload)

    def echoed(self) -> None:
        if self.meter.echoed():
            self.send(self.payload)
        else:
            self.outstanding -= 1
            if self.outstanding == 0 and not self.done.done():
                self.done.set_result(None)


async def ferrows_await(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any):
    from ferrows.asyncio import connect

    async with connect(url, max_size=None, ping_interval=None, **extra) as ws:
        await pump_async(ws.send, ws.recv, payload, inflight, meter)


async def ferrows_callback(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any):
    from ferrows.asyncio import Listener, connect

    relay: Relay | None = None

    class Echo(Listener):
        def on_message(self, connection: Any, message: Any) -> None:
            relay.echoed()  # type: ignore[union-attr]

    async with connect(url, max_size=None, ping_interval=None, listener=Echo, **extra) as ws:
        relay = Relay(ws.send_nowait, payload, inflight, meter)
        relay.start()
        await relay.done


async def picows_client(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any):
    from picows import WSListener, WSMsgType, ws_connect

    relay: Relay | None = None

    class Echo(WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.BINARY:
                relay.echoed()  # type: ignore[union-attr]

    transport, _ = await ws_connect(Echo, url, max_frame_size=1 << 30, **extra)
    relay = Relay(lambda data: transport.send(WSMsgType.BINARY, data), payload, inflight, meter)
    relay.start()
    await relay.done
    transport.send_close()
    transport.disconnect()
    await transport.wait_disconnected()


async def aiohttp_client(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any):
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, max_msg_size=0, autoping=True, **extra) as ws:
            await pump_async(ws.send_bytes, ws.receive_bytes, payload, inflight, meter)


async def websockets_client(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any):
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, ping_interval=None, **extra) as ws:
        await pump_async(ws.send, ws.recv, payload, inflight, meter)


def ferrows_sync(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any) -> None:
    from ferrows.sync.client import connect

    with connect(url, max_size=None, ping_interval=None, **extra) as ws:
        pump_sync(ws.send, ws.recv, payload, inflight, meter)


def websockets_sync(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any) -> None:
    from websockets.sync.client import connect

    with connect(url, max_size=None, ping_interval=None, **extra) as ws:
        pump_sync(ws.send, ws.recv, payload, inflight, meter)


def websocket_client(url: str, payload: bytes, inflight: int, meter: Meter, **extra: Any) -> None:
    import websocket

    ws = websocket.create_connection(url, enable_multithread=False, **extra)
    try:
        pump_sync(ws.send_binary, ws.recv, payload, inflight, meter)
    finally:
        ws.close()


# kind: (library, client, asyncio or not)
CLIENTS: dict[str, tuple[str, Callable[..., Any], bool]] = {
    "ferrows-await": ("ferrows", ferrows_await, True),
    "ferrows-callback": ("ferrows", ferrows_callback, True),
    "picows": ("picows", picows_client, True),
    "aiohttp": ("aiohttp", aiohttp_client, True),
    "websockets": ("websockets", websockets_client, True),
    "ferrows-sync": ("ferrows", ferrows_sync, False),
    "websockets-sync": ("websockets", websockets_sync, False),
    "websocket-client": ("websocket-client", websocket_client, False),
}


def measure(kind: str, request: dict[str, Any]) -> dict[str, float]:
    library, client, is_async = CLIENTS[kind]
    meter = Meter(request["warmup"], request["seconds"])
    payload = b"x" * request["size"]
    args = (f"ws://127.0.0.1:{request['port']}/", payload, request["inflight"], meter)
    extra = options(library, request.get("compression"))
    if is_async:
        uvloop.run(client(*args, **extra))
    else:
        client(*args, **extra)
    if meter.result is None:
        raise RuntimeError(f"the measured window did not complete ({meter.count} echoes)")
    return meter.result


def main() -> None:
    kind = sys.argv[1]
    for line in sys.stdin:
        try:
            answer: dict[str, Any] = measure(kind, json.loads(line))
        except Exception as error:  # reported to the suite, which records the failure
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
