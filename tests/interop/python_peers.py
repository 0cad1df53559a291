"""aiohttp and picows as echo peers for ferrows, as servers and as clients.

Every peer echoes each whole message it receives and records it, closes with
``PEER_CLOSE`` when it receives ``CLOSE_ME``, and records the close frame it receives.
picows hands over frames, not messages: its peer joins the fragments itself and records how
many frames each message had. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import picows
from aiohttp import web

HOST = "127.0.0.1"
MAX_SIZE = 2**21  # room for the 1 MiB messages on every side
WAIT = 5.0  # seconds, for any one step of a conversation
CLOSE_ME = "close me"
PEER_CLOSE = (4002, "peer bye")

Message = str | bytes


@dataclass
class PeerRecord:
    """What a peer saw: whole messages, frames per message (picows), the close received."""

    messages: list[Message] = field(default_factory=list)
    frame_counts: list[int] = field(default_factory=list)
    close: tuple[int, str] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


# aiohttp


async def aiohttp_echo(
    ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse, record: PeerRecord
) -> None:
    """Echoes until a close; aiohttp answers a received close frame itself."""
    try:
        while True:
            message = await ws.receive(timeout=WAIT)
            if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                if message.type == aiohttp.WSMsgType.CLOSE:
                    record.close = (message.data, message.extra)
                return
            record.messages.append(message.data)
            if message.data == CLOSE_ME:
                code, reason = PEER_CLOSE
                await ws.close(code=code, message=reason.encode())
                return
            if isinstance(message.data, str):
                await ws.send_str(message.data)
            else:
                await ws.send_bytes(message.data)
    finally:
        record.done.set()


@asynccontextmanager
async def aiohttp_server(record: PeerRecord) -> AsyncIterator[str]:
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
        await web.TCPSite(runner, HOST, 0).start()
        yield f"ws://{HOST}:{runner.addresses[0][1]}/"
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT)


async def aiohttp_client(url: str, record: PeerRecord) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, max_msg_size=MAX_SIZE, compress=15) as ws:
            await aiohttp_echo(ws, record)


# picows


class PicowsEcho(picows.WSListener):
    """Joins fragments into messages and echoes each; answers a close frame and hangs up."""

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
        self.record.messages.append(payload.decode() if is_text else payload)
        self.record.frame_counts.append(len(self.fragments))
        if is_text and payload == CLOSE_ME.encode():
            code, reason = PEER_CLOSE
            transport.send_close(picows.WSCloseCode(code), reason.encode())
        else:
            transport.send(self.kind, payload)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.record.done.set()


@asynccontextmanager
async def picows_server(record: PeerRecord) -> AsyncIterator[str]:
    server = await picows.ws_create_server(
        lambda _request: PicowsEcho(record), HOST, 0, max_frame_size=MAX_SIZE
    )
    try:
        yield f"ws://{HOST}:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), WAIT)


async def picows_client(url: str, record: PeerRecord) -> None:
    transport, _ = await picows.ws_connect(lambda: PicowsEcho(record), url, max_frame_size=MAX_SIZE)
    await transport.wait_disconnected()


PEER_SERVERS: dict[str, Callable[[PeerRecord], AbstractAsyncContextManager[str]]] = {
    "aiohttp": aiohttp_server,
    "picows": picows_server,
}
PEER_CLIENTS: dict[str, Callable[[str, PeerRecord], Awaitable[None]]] = {
    "aiohttp": aiohttp_client,
    "picows": picows_client,
}
