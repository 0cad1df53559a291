"""Many concurrent connections on one event loop."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest
from aiosupport import HOST, aiotest, echo, ws_url
from ferrows.asyncio import connect, serve

CLIENTS = 1000
MESSAGES = 10
# Both ends of every connection live in this process, plus some slack.
FILES_NEEDED = 2 * CLIENTS + 200


@pytest.fixture
def enough_files():
    """Raises the soft limit on open files if needed (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        wanted = FILES_NEEDED if hard == resource.RLIM_INFINITY else min(FILES_NEEDED, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    current = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert current == resource.RLIM_INFINITY or current >= FILES_NEEDED, (
        f"RLIMIT_NOFILE is {current} (hard {hard}): {FILES_NEEDED} files are needed"
    )
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@aiotest(timeout=90)
async def test_thousand_concurrent_connections_each_echoing_ten_messages(enough_files):
    all_open = asyncio.Event()
    opened = 0
    peak_server_connections = 0

    async with serve(echo, HOST, 0, backlog=2048) as server:
        url = ws_url(server.port)

        async def client(index: int) -> int:
            nonlocal opened, peak_server_connections
            async with connect(url, open_timeout=30) as ws:
                opened += 1
                if opened == CLIENTS:
                    peak_server_connections = len(server.connections)
                    all_open.set()
                # Every connection is open at the same time before any echoes.
                await asyncio.wait_for(all_open.wait(), 60)
                for number in range(MESSAGES):
                    message = f"client {index} message {number}"
                    await ws.send(message)
                    assert await asyncio.wait_for(ws.recv(), 30) == message
            assert ws.close_code == 1000
            return index

        started = time.monotonic()
        done = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(CLIENTS))), 60)
        elapsed = time.monotonic() - started
    assert done == list(range(CLIENTS))
    assert peak_server_connections == CLIENTS
    assert elapsed < 60, elapsed
    print(f"{CLIENTS} connections x {MESSAGES} echoes in {elapsed:.2f} s")
