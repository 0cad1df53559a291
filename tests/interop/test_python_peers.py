"""ferrows' sync and asyncio faces, as client and as server, against aiohttp and picows.

One scripted conversation, written once per face and played against every peer: text,
binary, empty and 1 MiB messages echoed back, a fragmented message the peer gets whole, a
ping answered, then a close with a code and reason, started by ferrows or by the peer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import ferrows.asyncio
import ferrows.sync
import pytest
from ferrows.exceptions import ConnectionClosed
from python_peers import (
    CLOSE_ME,
    HOST,
    MAX_SIZE,
    PEER_CLIENTS,
    PEER_CLOSE,
    PEER_SERVERS,
    WAIT,
    Message,
    PeerRecord,
)

ONE_MIB = 2**20
MESSAGES: list[Message] = [
    "hello",
    b"\x00\x01\xfe\xff",
    "",
    b"",
    "é" * (ONE_MIB // 2),  # 1 MiB of UTF-8
    bytes(range(256)) * (ONE_MIB // 256),
]
FRAGMENTS = ["frag", "men", "ted"]
FERROWS_CLOSE = (4001, "bye")
TEST_TIMEOUT = 15.0

T = TypeVar("T")

MATRIX = pytest.mark.parametrize(
    "face, peer, peer_closes",
    [
        pytest.param(face, peer, peer_closes, id=f"{face}-{peer}-{ending}")
        for face in ("sync", "asyncio")
        for peer in ("aiohttp", "picows")
        for peer_closes, ending in ((False, "ferrows-closes"), (True, "peer-closes"))
    ],
)


def assert_same(received: Message, sent: Message) -> None:
    assert type(received) is type(sent)
    assert received == sent


def sync_conversation(ws: ferrows.sync.connection.Connection, peer_closes: bool) -> None:
    for message in MESSAGES:
        ws.send(message)
        assert_same(ws.recv(timeout=WAIT), message)
    ws.send(FRAGMENTS)
    assert_same(ws.recv(timeout=WAIT), "".join(FRAGMENTS))
    assert 0 <= ws.ping().wait(WAIT) < WAIT
    if peer_closes:
        ws.send(CLOSE_ME)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=WAIT)
        assert (caught.value.code, caught.value.reason) == PEER_CLOSE
        assert (ws.close_code, ws.close_reason) == PEER_CLOSE
    else:
        ws.close(*FERROWS_CLOSE, timeout=WAIT)


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT)


async def asyncio_conversation(
    ws: ferrows.asyncio.connection.Connection, peer_closes: bool
) -> None:
    for message in MESSAGES:
        await bounded(ws.send(message))
        assert_same(await bounded(ws.recv()), message)
    await bounded(ws.send(FRAGMENTS))
    assert_same(await bounded(ws.recv()), "".join(FRAGMENTS))
    assert 0 <= await bounded(await ws.ping()) < WAIT
    if peer_closes:
        await bounded(ws.send(CLOSE_ME))
        with pytest.raises(ConnectionClosed) as caught:
            await bounded(ws.recv())
        assert (caught.value.code, caught.value.reason) == PEER_CLOSE
        assert (ws.close_code, ws.close_reason) == PEER_CLOSE
    else:
        await bounded(ws.close(*FERROWS_CLOSE))


def check_peer_record(record: PeerRecord, peer: str, peer_closes: bool) -> None:
    """The peer got every message whole and, when ferrows closed, its code and reason."""
    expected = [*MESSAGES, "".join(FRAGMENTS), *([CLOSE_ME] if peer_closes else [])]
    assert record.messages == expected
    if peer == "picows":  # the only peer that shows frames: the fragments went as such
        frame_counts = [1] * len(expected)
        frame_counts[len(MESSAGES)] = len(FRAGMENTS)
        assert record.frame_counts == frame_counts
    if not peer_closes:
        assert record.close == FERROWS_CLOSE


def run(coroutine: Any) -> None:
    asyncio.run(asyncio.wait_for(coroutine, TEST_TIMEOUT))


# ferrows as the client


def sync_client(url: str, peer_closes: bool) -> None:
    with ferrows.sync.connect(url, max_size=MAX_SIZE, open_timeout=WAIT) as ws:
        sync_conversation(ws, peer_closes)


async def client_conversation(face: str, peer: str, peer_closes: bool) -> None:
    record = PeerRecord()
    async with PEER_SERVERS[peer](record) as url:
        if face == "sync":
            await asyncio.wait_for(asyncio.to_thread(sync_client, url, peer_closes), TEST_TIMEOUT)
        else:
            async with ferrows.asyncio.connect(url, max_size=MAX_SIZE, open_timeout=WAIT) as ws:
                await asyncio_conversation(ws, peer_closes)
        await bounded(record.done.wait())
    check_peer_record(record, peer, peer_closes)


@MATRIX
def test_ferrows_client(face: str, peer: str, peer_closes: bool) -> None:
    run(client_conversation(face, peer, peer_closes))


# ferrows as the server

Outcome = concurrent.futures.Future[None]


@asynccontextmanager
async def sync_server(peer_closes: bool) -> AsyncIterator[tuple[str, Outcome]]:
    """A ferrows.sync server whose handler plays the conversation and reports its outcome."""
    outcome: Outcome = concurrent.futures.Future()

    def handler(ws: ferrows.sync.ServerConnection) -> None:
        try:
            sync_conversation(ws, peer_closes)
        except (Exception, pytest.fail.Exception) as exc:
            outcome.set_exception(exc)
        else:
            outcome.set_result(None)

    server = ferrows.sync.serve(handler, HOST, 0, max_size=MAX_SIZE)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://{HOST}:{server.port}/", outcome
    finally:
        server.shutdown()
        await asyncio.wait_for(asyncio.to_thread(thread.join, WAIT), WAIT)
        assert not thread.is_alive(), "serve_forever did not return"


@asynccontextmanager
async def asyncio_server(peer_closes: bool) -> AsyncIterator[tuple[str, Outcome]]:
    """A ferrows.asyncio server whose handler plays the conversation and reports its outcome."""
    outcome: Outcome = concurrent.futures.Future()

    async def handler(ws: ferrows.asyncio.ServerConnection) -> None:
        try:
            await asyncio_conversation(ws, peer_closes)
        except (Exception, pytest.fail.Exception) as exc:
            outcome.set_exception(exc)
        else:
            outcome.set_result(None)

    async with ferrows.asyncio.serve(handler, HOST, 0, max_size=MAX_SIZE) as server:
        yield f"ws://{HOST}:{server.port}/", outcome


FERROWS_SERVERS = {"sync": sync_server, "asyncio": asyncio_server}


async def server_conversation(face: str, peer: str, peer_closes: bool) -> None:
    record = PeerRecord()
    async with FERROWS_SERVERS[face](peer_closes) as (url, outcome):
        await asyncio.wait_for(PEER_CLIENTS[peer](url, record), TEST_TIMEOUT)
        await bounded(asyncio.wrap_future(outcome))
    assert record.done.is_set()
    check_peer_record(record, peer, peer_closes)


@MATRIX
def test_ferrows_server(face: str, peer: str, peer_closes: bool) -> None:
    run(server_conversation(face, peer, peer_closes))
