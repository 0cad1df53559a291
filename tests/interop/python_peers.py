"""The Python peers of the interop matrix: websockets (asyncio and sync), aiohttp, picows and
websocket-client, following the peer rules of conversation.py, over ws or wss.

picows hands over frames, not messages: its peer joins the fragments itself and records how
many frames each message had. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import picows
import pytest
import websocket
import websockets.asyncio.client
import websockets.asyncio.server
import websockets.exceptions
import websockets.sync.client
import websockets.sync.server
from aiohttp import web
from conversation import (
    HOST,
    MAX_SIZE,
    PEER_CLOSE,
    WAIT,
    Link,
    Message,
    Peer,
    PeerRecord,
    Setting,
)
from interop_support import JOIN_TIMEOUT


async def until_done(record: PeerRecord) -> None:
    """Waits (bounded) for an in-process peer to be through, before its server stops."""
    if not await asyncio.to_thread(record.done.wait, WAIT):
        pytest.fail(f"the peer was not through within {WAIT} s")


@asynccontextmanager
async def serving_in_thread(server: Any, url: str) -> AsyncIterator[str]:
    """Runs a sync server's ``serve_forever`` in a thread; yields its URL, then shuts it down."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.shutdown()
        await asyncio.to_thread(thread.join, JOIN_TIMEOUT)
        assert not thread.is_alive(), f"{type(server).__name__}.serve_forever did not return"


# websockets (asyncio and sync): messages and close frames, no frames


async def websockets_asyncio_echo(
    ws: websockets.asyncio.connection.Connection, record: PeerRecord
) -> None:
    try:
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), WAIT)
            except websockets.exceptions.ConnectionClosed as closed:
                record_websockets_close(closed, record)
                return
            reply = record.answer(message)
            if reply is None:
                await ws.close(*PEER_CLOSE)
                return
            await ws.send(reply)
    finally:
        record.done.set()


def record_websockets_close(
    closed: websockets.exceptions.ConnectionClosed, record: PeerRecord
) -> None:
    if closed.rcvd is not None:
        record.close = (closed.rcvd.code, closed.rcvd.reason)


@asynccontextmanager
async def websockets_asyncio_server(record: PeerRecord, setting: Setting) -> AsyncIterator[str]:
    async with websockets.asyncio.server.serve(
        lambda ws: websockets_asyncio_echo(ws, record),
        HOST,
        0,
        ssl=setting.server_ssl(),
        max_size=MAX_SIZE,
    ) as server:
        yield setting.url(server.sockets[0].getsockname()[1])
        await until_done(record)


async def websockets_asyncio_client(link: Link, record: PeerRecord) -> None:
    async with websockets.asyncio.client.connect(
        link.url, ssl=link.setting.client_ssl(), max_size=MAX_SIZE, open_timeout=WAIT
    ) as ws:
        await websockets_asyncio_echo(ws, record)


def websockets_sync_echo(ws: websockets.sync.connection.Connection, record: PeerRecord) -> None:
    try:
        while True:
            try:
                message = ws.recv(timeout=WAIT)
            except websockets.exceptions.ConnectionClosed as closed:
                record_websockets_close(closed, record)
                return
            reply = record.answer(message)
            if reply is None:
                ws.close(*PEER_CLOSE)
                return
            ws.send(reply)
    finally:
        record.done.set()


@asynccontextmanager
async def websockets_sync_server(record: PeerRecord, setting: Setting) -> AsyncIterator[str]:
    server = websockets.sync.server.serve(
        lambda ws: websockets_sync_echo(ws, record),
        HOST,
        0,
        ssl=setting.server_ssl(),
        max_size=MAX_SIZE,
    )
    async with serving_in_thread(server, setting.url(server.socket.getsockname()[1])) as url:
        yield url
        await until_done(record)


def websockets_sync_connect(link: Link, record: PeerRecord) -> None:
    with websockets.sync.client.connect(
        link.url, ssl=link.setting.client_ssl(), max_size=MAX_SIZE, open_timeout=WAIT
    ) as ws:
        websockets_sync_echo(ws, record)


async def websockets_sync_client(link: Link, record: PeerRecord) -> None:
    await asyncio.to_thread(websockets_sync_connect, link, record)


# aiohttp: messages and close frames; its API sends no fragments


async def aiohttp_echo(
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, record: PeerRecord
) -> None:
    """Echoes until a close; aiohttp answers a received close frame itself."""
    try:
        while True:
            message = await ws.receive(timeout=WAIT)
            if message.type == aiohttp.WSMsgType.CLOSE:
                record.close = (message.data, message.extra)
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                return
            reply = record.answer(message.data)
            if reply is None:
                code, reason = PEER_CLOSE
                await ws.close(code=code, message=reason.encode())
                return
            assert not isinstance(reply, list), "aiohttp sends no fragments"
            if isinstance(reply, str):
                await ws.send_str(reply)
            else:
                await ws.send_bytes(reply)
    finally:
        record.done.set()


@asynccontextmanager
async def aiohttp_server(record: PeerRecord, setting: Setting) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_SIZE)
        await ws.prepare(request)
        await aiohttp_echo(ws, record)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, 0, ssl_context=setting.server_ssl()).start()
        yield setting.url(runner.addresses[0][1])
        await until_done(record)
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT)


async def aiohttp_client(link: Link, record: PeerRecord) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            link.url,
            max_msg_size=MAX_SIZE,
            ssl=link.setting.client_ssl() or True,
            compress=15,  # permessage-deflate both ways (aiohttp's server offers it too)
        ) as ws:
            await aiohttp_echo(ws, record)


# picows: frames


class PicowsEcho(picows.WSListener):
    """Joins fragments into messages and answers each; answers a close frame and hangs up."""

    def __init__(self, record: PeerRecord) -> None:
        self.record = record
        self.kind = picows.WSMsgType.TEXT
        self.fragments: list[bytes] = []

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type == picows.WSMsgType.CLOSE:
            self.record.close = (int(frame.get_close_code()), frame.get_close_reason())
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if frame.msg_type in (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY):
            self.kind = frame.msg_type
            self.fragments = []
        elif frame.msg_type != picows.WSMsgType.CONTINUATION:
            return  # pings are answered by picows itself (enable_auto_pong)
        self.fragments.append(frame.get_payload_as_bytes())
        if frame.fin:
            self.message_received(transport, b"".join(self.fragments))

    def message_received(self, transport: picows.WSTransport, payload: bytes) -> None:
        is_text = self.kind == picows.WSMsgType.TEXT
        message: Message = payload.decode() if is_text else payload
        reply = self.record.answer(message, frames=len(self.fragments))
        if reply is None:
            code, reason = PEER_CLOSE
            transport.send_close(picows.WSCloseCode(code), reason.encode())
        elif isinstance(reply, list):
            kinds = [picows.WSMsgType.TEXT] + [picows.WSMsgType.CONTINUATION] * (len(reply) - 1)
            for index, (kind, fragment) in enumerate(zip(kinds, reply)):
                transport.send(kind, fragment.encode(), fin=index == len(reply) - 1)
        else:
            transport.send(self.kind, payload)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.record.done.set()


@asynccontextmanager
async def picows_server(record: PeerRecord, setting: Setting) -> AsyncIterator[str]:
    server = await picows.ws_create_server(
        lambda _request: PicowsEcho(record),
        HOST,
        0,
        max_frame_size=MAX_SIZE,
        ssl=setting.server_ssl(),
    )
    try:
        yield setting.url(server.sockets[0].getsockname()[1])
        await until_done(record)
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


async def picows_client(link: Link, record: PeerRecord) -> None:
    transport, _ = await picows.ws_connect(
        lambda: PicowsEcho(record),
        link.url,
        max_frame_size=MAX_SIZE,
        ssl_context=link.setting.client_ssl(),
    )
    await transport.wait_disconnected()


# websocket-client: a client only; messages and close frames


def websocket_client_connect(link: Link, record: PeerRecord) -> None:
    sslopt = {"ca_certs": str(link.setting.tls.ca_pem)} if link.setting.tls else None
    ws = websocket.create_connection(link.url, timeout=WAIT, sslopt=sslopt)
    try:
        while True:
            opcode, data = ws.recv_data()  # answers pings itself
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                record.close = (int.from_bytes(data[:2], "big"), data[2:].decode())
                return
            message: Message = data.decode() if opcode == websocket.ABNF.OPCODE_TEXT else data
            reply = record.answer(message)
            if reply is None:
                ws.close(*PEER_CLOSE, timeout=WAIT)
                return
            if isinstance(reply, list):
                last = len(reply) - 1
                for index, fragment in enumerate(reply):
                    opcode = websocket.ABNF.OPCODE_CONT if index else websocket.ABNF.OPCODE_TEXT
                    ws.send_frame(websocket.ABNF.create_frame(fragment, opcode, int(index == last)))
            elif isinstance(reply, str):
                ws.send(reply)
            else:
                ws.send_binary(reply)
    finally:
        ws.shutdown()  # after the close handshake, or on an error
        record.done.set()


async def websocket_client_client(link: Link, record: PeerRecord) -> None:
    await asyncio.to_thread(websocket_client_connect, link, record)


PYTHON_PEERS = {
    "websockets-asyncio": Peer(serve=websockets_asyncio_server, connect=websockets_asyncio_client),
    "websockets-sync": Peer(serve=websockets_sync_server, connect=websockets_sync_client),
    "aiohttp": Peer(serve=aiohttp_server, connect=aiohttp_client, sends_fragments=False),
    "websocket-client": Peer(connect=websocket_client_client),
    "picows": Peer(serve=picows_server, connect=picows_client),
}
