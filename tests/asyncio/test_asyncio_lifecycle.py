"""Connection objects outlive their loop safely: they may be freed on any thread."""

from __future__ import annotations

import gc
import sys
import threading
from typing import Any

from aiosupport import HOST, LOOP_FACTORIES, bounded, echo, run_on_fresh_loop, ws_url
from ferrows.asyncio import Connection, connect, serve


def free_on_another_thread(objects: list[Any]) -> list[str]:
    """Drops the last references to ``objects`` and collects garbage in a new thread;
    returns the errors reported as unraisable meanwhile."""
    errors: list[str] = []

    def free() -> None:
        objects.clear()
        gc.collect()

    previous = sys.unraisablehook
    sys.unraisablehook = lambda args: errors.append(f"{args.exc_type.__name__}: {args.exc_value}")
    try:
        thread = threading.Thread(target=free, name="free-elsewhere")
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        sys.unraisablehook = previous
    return errors


def test_closed_connections_can_be_freed_on_another_thread(loop_kind):
    # A thread pool, a sync client in a thread or any thread that triggers the cyclic GC may
    # be the one that frees a connection opened on the event loop.
    kept: list[Any] = []

    async def main() -> None:
        async with serve(echo, HOST, 0) as server:
            async with connect(ws_url(server.port)) as ws:
                await ws.send("x")
                assert await bounded(ws.recv()) == "x"
            kept.append(ws)
            kept.extend(server.connections)

    gc.collect()
    run_on_fresh_loop(LOOP_FACTORIES[loop_kind], main())
    assert kept and all(isinstance(c, Connection) for c in kept)
    errors = free_on_another_thread(kept)
    assert not errors, errors


def test_failed_handshake_objects_can_be_freed_on_another_thread(loop_kind):
    kept: list[Any] = []

    async def main() -> None:
        def refuse(connection, request):
            return connection.respond(403, "no\n")

        async with serve(echo, HOST, 0, process_request=refuse) as server:
            opening = connect(ws_url(server.port))
            try:
                await bounded(opening)
            except Exception as exc:
                kept.append(exc)
            kept.append(opening)

    gc.collect()
    run_on_fresh_loop(LOOP_FACTORIES[loop_kind], main())
    errors = free_on_another_thread(kept)
    assert not errors, errors
