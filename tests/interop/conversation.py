"""The scripted conversation of the interop matrix, as ferrows plays it, and what the peer
must have seen.

ferrows leads; every peer follows the same rules (written once per peer language):

- it echoes each whole message with its type, and records its type, its length in bytes
  and, when the peer shows frames, how many frames it came in;
- it answers the text ``FRAGMENT_ME`` with ``PEER_FRAGMENTS`` as one message in three
  frames (peers whose API cannot send fragments are never asked);
- it answers the text ``CLOSE_ME`` by closing with ``PEER_CLOSE``;
- it records the code and reason of the close frame it receives, and reports its record.

ferrows sends text, binary, empty and 1 MiB messages and checks their echoes, a fragmented
message when its face can (the C ABI sends whole messages only), asks for a fragmented one
when the peer can send it, pings and waits for the pong, then closes with ``FERROWS_CLOSE``
or asks the peer to close. tests/interop/c_face.c plays the same script on the C ABI.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import ferrows.asyncio
import ferrows.sync
import pytest
from ferrows.exceptions import ConnectionClosed
from interop_support import TlsFiles

HOST = "127.0.0.1"
ONE_MIB = 2**20
MAX_SIZE = 2**21  # room for the 1 MiB messages on every side
WAIT = 10.0  # seconds, for any one step of a conversation (ms at rest; room for a loaded CI)
TEST_TIMEOUT = 30.0  # seconds, for a whole conversation with a peer process's start

Message = str | bytes
MESSAGES: list[Message] = [
    "hello",
    "café ☕ 𝄞",  # 2-, 3- and 4-byte UTF-8
    b"\x00\x01\xfe\xff",
    "",
    b"",
    "é" * (ONE_MIB // 2),  # 1 MiB of UTF-8
    bytes(range(256)) * (ONE_MIB // 256),
]
FRAGMENTS = ["frag", "men", "ted"]
FRAGMENTED = "".join(FRAGMENTS)
FRAGMENT_ME = "fragment me"
CLOSE_ME = "close me"
PEER_FRAGMENTS = FRAGMENTS  # the three frames a peer answers FRAGMENT_ME with
FERROWS_CLOSE = (4001, "bye")
PEER_CLOSE = (4002, "peer bye")

T = TypeVar("T")
Reply = Message | list[str] | None


@dataclass(frozen=True)
class Plan:
    """Which optional steps a conversation has, from what each side can do."""

    peer_closes: bool
    ferrows_fragments: bool  # ferrows sends FRAGMENTS as one fragmented message
    peer_fragments: bool  # ferrows asks the peer for a fragmented message
    compressed: bool = False  # permessage-deflate is agreed (both ends' defaults)


@dataclass(frozen=True)
class Tools:
    """The programs the tests built or found, those a conversation needs (the others are
    None): the C face, the libwebsockets peer, the Node peers' folder, Chromium."""

    c_face: Path | None = None
    lws_peer: Path | None = None
    node_peers: Path | None = None
    chromium: str | None = None


@dataclass(frozen=True)
class Setting:
    """What every side of one conversation shares: TLS files for wss (None: ws), the tools."""

    tls: TlsFiles | None
    tools: Tools

    def url(self, port: int) -> str:
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{port}/"

    def server_ssl(self) -> ssl.SSLContext | None:
        return self.tls.server_context() if self.tls else None

    def client_ssl(self) -> ssl.SSLContext | None:
        return self.tls.client_context() if self.tls else None


@dataclass(frozen=True)
class Link:
    """Where a peer connects: the URL and, for the browser, the origin serving its page
    (the ferrows server itself, where its face can serve one)."""

    url: str
    setting: Setting
    page_origin: str


@dataclass(frozen=True)
class Peer:
    """A peer: ``serve(record, setting)`` is an async context manager yielding its URL (the
    peer as the server); ``connect(link, record)`` runs it as the client; ``pages(record)``
    is the process_request hook serving its page (the browser)."""

    serve: Callable[[PeerRecord, Setting], AbstractAsyncContextManager[str]] | None = None
    connect: Callable[[Link, PeerRecord], Awaitable[None]] | None = None
    sends_fragments: bool = True
    pages: Callable[[PeerRecord], Callable[..., Any]] | None = None


@dataclass
class PeerRecord:
    """What a peer saw: each message as (kind, length in bytes), frames per message (peers
    that show frames), the close frame received. ``done`` is set once the peer is through."""

    messages: list[tuple[str, int]] = field(default_factory=list)
    frame_counts: list[int] | None = None
    close: tuple[int, str] | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def answer(self, message: Message, frames: int | None = None) -> Reply:
        """Records a message, and returns what the peer rules answer: its echo, the
        fragments of PEER_FRAGMENTS (a list), or None: close with PEER_CLOSE."""
        self.messages.append(summary(message))
        if frames is not None:
            self.frame_counts = [*(self.frame_counts or []), frames]
        if message == CLOSE_ME:
            return None
        if message == FRAGMENT_ME:
            return list(PEER_FRAGMENTS)
        return message

    def load(self, report: str) -> None:
        """Fills the record from a peer's JSON report (the same fields; close as a pair)."""
        fields = json.loads(report)
        self.messages = [(kind, length) for kind, length in fields["messages"]]
        self.frame_counts = fields.get("frames")
        self.close = tuple(fields["close"]) if fields.get("close") is not None else None
        self.done.set()


def summary(message: Message) -> tuple[str, int]:
    if isinstance(message, str):
        return ("text", len(message.encode()))
    return ("binary", len(message))


def assert_same(received: Message, sent: Message) -> None:
    assert type(received) is type(sent), f"sent {type(sent).__name__}, got {received!r:.80}"
    assert received == sent, f"sent {sent!r:.80}, got {received!r:.80}"


def sync_conversation(ws: ferrows.sync.connection.Connection, plan: Plan) -> None:
    assert (ws.compression is not None) == plan.compressed, ws.compression
    for message in MESSAGES:
        ws.send(message)
        assert_same(ws.recv(timeout=WAIT), message)
    if plan.ferrows_fragments:
        ws.send(FRAGMENTS)
        assert_same(ws.recv(timeout=WAIT), FRAGMENTED)
    if plan.peer_fragments:
        ws.send(FRAGMENT_ME)
        assert_same(ws.recv(timeout=WAIT), FRAGMENTED)
    assert 0 <= ws.ping().wait(WAIT) < WAIT
    if plan.peer_closes:
        ws.send(CLOSE_ME)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=WAIT)
        assert (caught.value.code, caught.value.reason) == PEER_CLOSE
        assert (ws.close_code, ws.close_reason) == PEER_CLOSE
    else:
        ws.close(*FERROWS_CLOSE, timeout=WAIT)


async def bounded(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, WAIT)


async def asyncio_conversation(ws: ferrows.asyncio.connection.Connection, plan: Plan) -> None:
    assert (ws.compression is not None) == plan.compressed, ws.compression
    for message in MESSAGES:
        await bounded(ws.send(message))
        assert_same(await bounded(ws.recv()), message)
    if plan.ferrows_fragments:
        await bounded(ws.send(FRAGMENTS))
        assert_same(await bounded(ws.recv()), FRAGMENTED)
    if plan.peer_fragments:
        await bounded(ws.send(FRAGMENT_ME))
        assert_same(await bounded(ws.recv()), FRAGMENTED)
    assert 0 <= await bounded(await ws.ping()) < WAIT
    if plan.peer_closes:
        await bounded(ws.send(CLOSE_ME))
        with pytest.raises(ConnectionClosed) as caught:
            await bounded(ws.recv())
        assert (caught.value.code, caught.value.reason) == PEER_CLOSE
        assert (ws.close_code, ws.close_reason) == PEER_CLOSE
    else:
        await bounded(ws.close(*FERROWS_CLOSE))


def check_peer_record(record: PeerRecord, plan: Plan) -> None:
    """The peer got every message whole (in its frames, where it shows them) and, when
    ferrows closed, its code and reason; when the peer closed, ferrows answered with its
    code."""
    expected: list[Message] = list(MESSAGES)
    frames = [1] * len(MESSAGES)
    if plan.ferrows_fragments:
        expected.append(FRAGMENTED)
        frames.append(len(FRAGMENTS))
    for asked, step in ((plan.peer_fragments, FRAGMENT_ME), (plan.peer_closes, CLOSE_ME)):
        if asked:
            expected.append(step)
            frames.append(1)
    assert record.done.is_set(), "the peer never finished"
    assert record.messages == [summary(message) for message in expected]
    if record.frame_counts is not None:
        assert record.frame_counts == frames
    if not plan.peer_closes:
        assert record.close == FERROWS_CLOSE
    elif record.close is not None:  # ferrows' answer, where the peer shows it: the same code
        assert record.close[0] == PEER_CLOSE[0]
