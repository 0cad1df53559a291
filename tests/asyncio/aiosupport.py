"""Helpers for the asyncio tests: run a coroutine test on a fresh loop, echo handlers, peers.

Every test runs twice, on the default asyncio loop and on uvloop, each time on a new loop
that is closed afterwards. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop
from ferrows.asyncio import ServerConnection, connect
from wsutil import accept_value, parse_frame

MIB = 1 << 20

HOST = "127.0.0.1"
TEST_TIMEOUT = 30.0

LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

T = TypeVar("T")


def run_on_fresh_loop(
    factory: Callable[[], asyncio.AbstractEventLoop],
    coroutine: Coroutine[Any, Any, T],
    timeout: float = TEST_TIMEOUT,
) -> T:
    """Runs ``coroutine`` on a new loop for at most ``timeout`` seconds, then tears the loop
    down. Errors the loop reports (exceptions in callbacks, unretrieved task errors) fail the
    test: the library must not leak them."""
    loop = factory()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    asyncio.set_event_loop(loop)
    try:
        try:
            result = loop.run_until_complete(asyncio.wait_for(coroutine, timeout))
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(
                    asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10)
                )
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    # Only when the test itself passed: its own failure is the better report.
    assert not reported, f"the event loop reported errors: {reported}"
    return result


def aiotest(
    function: Callable[..., Awaitable[None]] | None = None, *, timeout: float = TEST_TIMEOUT
) -> Any:
    """Turns ``async def test_x(fixtures...)`` into a sync test run on a fresh loop, once per
    loop kind (the ``loop_kind`` fixture of conftest.py). ``@aiotest`` or
    ``@aiotest(timeout=60)``."""

    def decorate(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        signature = inspect.signature(test)

        @functools.wraps(test)
        def wrapper(*args: Any, loop_kind: str, **kwargs: Any) -> None:
            run_on_fresh_loop(LOOP_FACTORIES[loop_kind], test(*args, **kwargs), timeout)

        parameters = [
            *signature.parameters.values(),
            inspect.Parameter("loop_kind", inspect.Parameter.KEYWORD_ONLY),
        ]
        # pytest reads the fixtures a test needs from its signature.
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return wrapper

    return decorate(function) if function is not None else decorate


def ws_url(port: int, path: str = "/", scheme: str = "ws") -> str:
    return f"{scheme}://{HOST}:{port}{path}"


async def echo(connection: ServerConnection) -> None:
    """Sends every message back, keeping its type, until the peer closes."""
    async for message in connection:
        await connection.send(message)


async def bounded(awaitable: Awaitable[T], timeout: float = 5.0) -> T:
    """``asyncio.wait_for`` with a short default: what a test awaits must come soon."""
    return await asyncio.wait_for(awaitable, timeout)


async def still_pending(awaitable: Awaitable[Any], wait: float = 0.2) -> bool:
    """True if ``awaitable`` (a task or future, shielded) has not finished after ``wait``."""
    try:
        await asyncio.wait_for(asyncio.shield(awaitable), wait)
    except asyncio.TimeoutError:
        return True
    return False


class ThreadFlag:
    """A threading.Event that a coroutine can wait on, bounded, without blocking the loop."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def set(self) -> None:
        self.event.set()

    async def wait(self, timeout: float = 5.0) -> None:
        if not await asyncio.to_thread(self.event.wait, timeout):
            raise AssertionError(f"not set within {timeout} s")


def settle(future: asyncio.Future[T], value: T) -> None:
    """Reports ``value`` through ``future`` unless the test stopped waiting (timed out)."""
    if not future.done():
        future.set_result(value)


async def drain(iterator: AsyncIterable[T], timeout: float = 5.0) -> list[T]:
    """Everything an async iterator yields until it ends, within ``timeout`` seconds."""

    async def collect() -> list[T]:
        return [item async for item in iterator]

    return await asyncio.wait_for(collect(), timeout)


class AsyncRawPeer:
    """A hand-made WebSocket server on the test's own loop (asyncio streams): answers the
    handshake with ``answer(key)`` bytes, then runs ``after(reader, writer)``."""

    def __init__(self, after: Callable[..., Awaitable[Any]], answer: Callable[[str], bytes]):
        self.after = after
        self.answer = answer
        self.results: asyncio.Queue[Any] = asyncio.Queue()
        self.server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            key = ""
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.strip().lower() == "sec-websocket-key":
                    key = value.strip()
            writer.write(self.answer(key))
            result = await asyncio.wait_for(self.after(reader, writer), 10)
        except Exception as exc:
            result = exc
        finally:
            writer.close()
        self.results.put_nowait(result)

    async def __aenter__(self) -> AsyncRawPeer:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), 5)

    @property
    def url(self) -> str:
        assert self.server is not None
        return ws_url(self.server.sockets[0].getsockname()[1])

    async def result(self) -> Any:
        """What ``after`` returned (or raised) for the next connection."""
        outcome = await bounded(self.results.get(), 10)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def switching_protocols(key: str, *extra: str) -> bytes:
    """A correct 101 answer for ``key``."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_value(key)}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """The next frame from an asyncio stream, unmasked: (fin, opcode, payload)."""
    buffer = bytearray()
    while True:
        parsed = parse_frame(buffer)
        if parsed is not None:
            frame, used = parsed
            assert used == len(buffer)
            return frame
        # Read only what the next frame needs, so that nothing after it is consumed.
        need = 2
        if len(buffer) >= 2:
            length = buffer[1] & 0x7F
            need = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            need += 4 if buffer[1] & 0x80 else 0
            if len(buffer) >= need:
                if length == 126:
                    length = int.from_bytes(buffer[2:4], "big")
                elif length == 127:
                    length = int.from_bytes(buffer[2:10], "big")
                need += length
        buffer += await asyncio.wait_for(reader.readexactly(need - len(buffer)), 5)


async def read_until_close(reader: asyncio.StreamReader, limit: int = 10_000) -> list:
    """Frames until (and with) the close frame."""
    frames = []
    for _ in range(limit):
        frame = await read_frame(reader)
        frames.append(frame)
        if frame[1] == 0x8:
            return frames
    raise AssertionError(f"no close frame within {limit} frames")


async def send_large_messages_back_to_back(url: str, **options: Any) -> None:
    """Large frames are written from one buffer per thread, reused only once the transport
    has let go of it: messages queued in the transport before any is written (8 MiB at once)
    must each arrive as sent, whatever their sizes."""
    messages = [bytes([i]) * (MIB - 4096 * i) for i in range(8)] + [b"small", b"z" * MIB]
    async with connect(url, max_size=None, **options) as ws:
        for message in messages:
            ws.send_nowait(message)
        for message in messages:
            answer = await bounded(ws.recv())
            assert len(answer) == len(message) and answer == message
        # One after another, the buffer is reused and resized.
        for message in reversed(messages):
            await ws.send(message)
            assert await bounded(ws.recv()) == message
