"""Keepalive: automatic pings, their latency, and the ping timeout."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from aiosupport import HOST, aiotest, bounded, echo, settle, ws_url
from ferrows.asyncio import connect, serve
from ferrows.exceptions import ConnectionClosedError
from wsutil import OP_CLOSE, OP_PING, OP_PONG, RawServer, RawStream, encode_frame, raw_upgrade


def answer_pings(stream: RawStream, server: RawServer) -> None:
    """Records frames and answers pings with pongs until the peer closes."""
    deadline = time.monotonic() + 30
    while not server.stop.is_set() and time.monotonic() < deadline:
        try:
            frame = stream.read_frame(timeout=0.1)
        except socket.timeout:
            continue
        except (EOFError, OSError):
            return
        server.frames.append(frame)
        _, opcode, payload = frame
        if opcode == OP_PING:
            stream.send(encode_frame(OP_PONG, payload, mask=False))
        elif opcode == OP_CLOSE:
            stream.send(encode_frame(OP_CLOSE, payload, mask=False))
            return


def ignore_everything(stream: RawStream, server: RawServer) -> None:
    """Records frames, answers nothing (no pong, no close)."""
    deadline = time.monotonic() + 30
    while not server.stop.is_set() and time.monotonic() < deadline:
        try:
            server.frames.append(stream.read_frame(timeout=0.1))
        except socket.timeout:
            continue
        except (EOFError, OSError):
            return


async def closed_within(ws, timeout: float) -> None:
    """Closes ``ws``; fails (and aborts the transport) if close() takes over ``timeout`` s."""
    try:
        await asyncio.wait_for(ws.close(), timeout)
    except asyncio.TimeoutError:
        ws._transport.abort()
        raise AssertionError(f"close() did not return within {timeout} s") from None


def pings(server: RawServer) -> int:
    return sum(1 for _, opcode, _ in list(server.frames) if opcode == OP_PING)


async def until(condition, timeout: float, step: float = 0.01) -> None:
    """Polls ``condition`` (state in another thread) every ``step`` s, at most ``timeout`` s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(step)

    await asyncio.wait_for(poll(), timeout)


@aiotest
async def test_keepalive_pings_keep_coming(raw_server):
    # 0.05 s apart, 10 pings take half a second; each one needs the keepalive timer to be
    # re-armed after the previous one fired.
    server = raw_server(after=answer_pings)
    async with connect(server.url, ping_interval=0.05, ping_timeout=2, close_timeout=1) as ws:
        started = time.monotonic()
        await until(lambda: pings(server) >= 10, 5)
        assert time.monotonic() - started >= 0.4
        assert ws.latency > 0
        assert ws.close_code is None


@aiotest
async def test_automatic_pings_update_latency():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port), ping_interval=0.05, ping_timeout=2) as ws:
            await until(lambda: ws.latency > 0, 5)
            assert 0 < ws.latency < 1


@aiotest
async def test_no_pings_without_ping_interval(raw_server):
    server = raw_server(after=answer_pings)
    async with connect(server.url, ping_interval=None) as ws:
        with pytest.raises(asyncio.TimeoutError):
            await until(lambda: pings(server) > 0, 0.5)
        assert ws.latency == 0.0


@aiotest
async def test_unanswered_pings_close_with_1011(raw_server):
    server = raw_server(after=ignore_everything)
    ws = await connect(server.url, ping_interval=0.2, ping_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionClosedError) as caught:
            await bounded(ws.recv(), 5)
        elapsed = time.monotonic() - started
    finally:
        await closed_within(ws, 5)
    assert caught.value.sent is not None
    assert caught.value.sent.code == 1011
    assert caught.value.rcvd is None
    assert ws.close_code == 1011
    # The first ping after 0.2 s, its deadline 0.3 s later.
    assert 0.4 <= elapsed < 3, elapsed
    assert pings(server) >= 1
    await until(server.handled.is_set, 5)  # the raw peer read everything until EOF
    close_frames = [payload for _, opcode, payload in server.frames if opcode == OP_CLOSE]
    assert close_frames and int.from_bytes(close_frames[0][:2], "big") == 1011


@aiotest
async def test_close_returns_after_close_timeout_when_the_peer_never_answers(raw_server):
    server = raw_server(after=ignore_everything)
    ws = await connect(server.url, ping_interval=None, close_timeout=0.3)
    started = time.monotonic()
    await closed_within(ws, 5)
    assert 0.25 <= time.monotonic() - started < 3
    assert ws.close_code == 1000  # what was sent; nothing was received
    await until(server.handled.is_set, 5)
    assert [opcode for _, opcode, _ in server.frames] == [OP_CLOSE]


@aiotest
async def test_server_keepalive_closes_an_unresponsive_client():
    seen = asyncio.get_running_loop().create_future()

    async def wait_for_close(connection) -> None:
        try:
            await connection.recv()
        except ConnectionClosedError as exc:
            settle(seen, exc)

    async with serve(
        wait_for_close, HOST, 0, ping_interval=0.1, ping_timeout=0.2, close_timeout=0.3
    ) as server:
        stream = await asyncio.to_thread(raw_upgrade, server.port)
        try:
            exc = await bounded(seen, 5)
        finally:
            stream.close()
    assert exc.sent is not None and exc.sent.code == 1011
