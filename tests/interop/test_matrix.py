"""The interop matrix: every face of ferrows (sync, asyncio, C) plays the scripted
conversation of conversation.py with every peer, as a client and as a server where the peer
has that role, over ws and over wss (a trustme CA made for the run), closed by ferrows or by
the peer. conftest.py prints the matrix at the end of the run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import signal
import socket
import struct
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ferrows.asyncio
import ferrows.sync
import pytest
from conversation import (
    HOST,
    MAX_SIZE,
    TEST_TIMEOUT,
    WAIT,
    Link,
    Peer,
    PeerRecord,
    Plan,
    Setting,
    Tools,
    asyncio_conversation,
    bounded,
    check_peer_record,
    sync_conversation,
)
from interop_support import JOIN_TIMEOUT, ROOT, TlsFiles, run
from process_peers import (
    PROCESS_PEERS,
    client_tls_options,
    program_server,
    run_program,
    server_tls_options,
)
from python_peers import PYTHON_PEERS, serving_in_thread

sys.path.insert(0, str(ROOT / "tests" / "python"))

from wsutil import accept_value

CELL_TIMEOUT = 2 * TEST_TIMEOUT  # seconds, for one cell: its programs' runs and their starts
Outcome = Callable[[], Awaitable[Any]]  # waits (bounded) for the ferrows side's verdict
Pages = Callable[..., Any]  # a process_request hook serving the browser's page


@dataclass(frozen=True)
class Face:
    """A face of ferrows: ``connect(link, plan)`` plays the conversation as a client;
    ``serve(plan, setting, pages)`` is an async context manager yielding the link peers
    connect to and the server's outcome."""

    connect: Callable[[Link, Plan], Awaitable[None]]
    serve: Callable[
        [Plan, Setting, Pages | None], AbstractAsyncContextManager[tuple[Link, Outcome]]
    ]
    sends_fragments: bool = True


def origin(url: str) -> str:
    """The http(s) origin of a ws(s) URL: where a ferrows server serves the browser's page."""
    return url.replace("ws", "http", 1).rstrip("/")


def settled(future: concurrent.futures.Future[None]) -> Outcome:
    return lambda: bounded(asyncio.wrap_future(future))


def settle(future: concurrent.futures.Future[None], error: BaseException | None) -> None:
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


# The sync face


async def sync_connect(link: Link, plan: Plan) -> None:
    tls = link.setting.tls

    def play() -> None:
        with ferrows.sync.connect(
            link.url, max_size=MAX_SIZE, open_timeout=WAIT, cafile=tls.ca_pem if tls else None
        ) as ws:
            sync_conversation(ws, plan)

    await asyncio.to_thread(play)


@asynccontextmanager
async def sync_serve(
    plan: Plan, setting: Setting, pages: Pages | None
) -> AsyncIterator[tuple[Link, Outcome]]:
    outcome: concurrent.futures.Future[None] = concurrent.futures.Future()

    def handler(ws: ferrows.sync.ServerConnection) -> None:
        try:
            sync_conversation(ws, plan)
        except (Exception, pytest.fail.Exception) as exc:
            settle(outcome, exc)
        else:
            settle(outcome, None)

    tls = setting.tls
    server = ferrows.sync.serve(
        handler,
        HOST,
        0,
        max_size=MAX_SIZE,
        process_request=pages,
        certfile=tls.cert_pem if tls else None,
        keyfile=tls.key_pem if tls else None,
    )
    async with serving_in_thread(server, setting.url(server.port)) as url:
        yield Link(url, setting, origin(url)), settled(outcome)


# The asyncio face


async def asyncio_connect(link: Link, plan: Plan) -> None:
    async with ferrows.asyncio.connect(
        link.url, max_size=MAX_SIZE, open_timeout=WAIT, ssl=link.setting.client_ssl()
    ) as ws:
        await asyncio_conversation(ws, plan)


@asynccontextmanager
async def asyncio_serve(
    plan: Plan, setting: Setting, pages: Pages | None
) -> AsyncIterator[tuple[Link, Outcome]]:
    outcome: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def handler(ws: ferrows.asyncio.ServerConnection) -> None:
        try:
            await asyncio_conversation(ws, plan)
        except (Exception, pytest.fail.Exception) as exc:
            settle(outcome, exc)
        else:
            settle(outcome, None)

    async with ferrows.asyncio.serve(
        handler, HOST, 0, max_size=MAX_SIZE, ssl=setting.server_ssl(), process_request=pages
    ) as server:
        url = setting.url(server.port)
        yield Link(url, setting, origin(url)), settled(outcome)


# The C face: tests/interop/c_face.c


def c_plan_options(plan: Plan) -> list[str]:
    return [
        *(["--peer-fragments"] if plan.peer_fragments else []),
        *(["--peer-closes"] if plan.peer_closes else []),
    ]


async def c_connect(link: Link, plan: Plan) -> None:
    program = str(link.setting.tools.c_face)
    await run_program(
        [program, "client", link.url, *client_tls_options(link), *c_plan_options(plan)]
    )


@asynccontextmanager
async def c_serve(
    plan: Plan, setting: Setting, pages: Pages | None
) -> AsyncIterator[tuple[Link, Outcome]]:
    """The C server; the C ABI serves no HTTP, so the browser's page comes from a ferrows
    sync server next to it."""
    argv = [str(setting.tools.c_face), "server", *server_tls_options(setting)]
    async with AsyncExitStack() as stack:
        port, exited = await stack.enter_async_context(
            program_server([*argv, *c_plan_options(plan)])
        )
        page_origin = ""
        if pages is not None:  # its handler never runs: the page's WebSocket goes to C
            page_link, _ = await stack.enter_async_context(sync_serve(plan, setting, pages))
            page_origin = page_link.page_origin
        yield Link(setting.url(port), setting, page_origin), exited


FACES = {
    "sync": Face(sync_connect, sync_serve),
    "asyncio": Face(asyncio_connect, asyncio_serve),
    "c": Face(c_connect, c_serve, sends_fragments=False),
}
PEERS: dict[str, Peer] = {**PYTHON_PEERS, **PROCESS_PEERS}
# The tools (conftest.py fixtures) a face or a peer needs.
NEEDS = {
    "c": "c_face",
    "libwebsockets": "lws_peer",
    "node-ws": "node_peers",
    "chromium": "chromium",
}


# Where permessage-deflate is agreed: (peer, ferrows' role). ferrows and the peers run their
# defaults, but for the Node ws server, given perMessageDeflate; picows, websocket-client and
# the libwebsockets peer have none.
COMPRESSED = {
    *(
        (peer, role)
        for peer in ("websockets-asyncio", "websockets-sync", "aiohttp", "node-ws")
        for role in ("client", "server")
    ),
    ("chromium", "server"),
}


def roles(peer: Peer) -> list[str]:
    """The roles ferrows can take with a peer: the client of its server, the server of its
    client."""
    return [role for role, side in (("client", peer.serve), ("server", peer.connect)) if side]


CELLS = [
    pytest.param(face, peer, role, scheme, closer, id=f"{face}-{role}-{peer}-{scheme}-{closer}")
    for face in FACES
    for peer in PEERS
    for role in roles(PEERS[peer])
    for scheme in ("ws", "wss")
    for closer in ("ferrows-closes", "peer-closes")
]


async def converse(face: Face, peer: Peer, role: str, setting: Setting, plan: Plan) -> None:
    record = PeerRecord()
    if role == "client":
        assert peer.serve is not None
        async with peer.serve(record, setting) as url:
            await face.connect(Link(url, setting, ""), plan)
    else:
        assert peer.connect is not None
        pages = peer.pages(record) if peer.pages else None
        async with face.serve(plan, setting, pages) as (link, outcome):
            await peer.connect(link, record)
            await outcome()
    check_peer_record(record, plan)


@pytest.mark.parametrize("face, peer, role, scheme, closer", CELLS)
def test_conversation(
    face: str, peer: str, role: str, scheme: str, closer: str, request: pytest.FixtureRequest
) -> None:
    tools = Tools(
        **{
            NEEDS[name]: request.getfixturevalue(NEEDS[name])
            for name in (face, peer)
            if name in NEEDS
        }
    )
    setting = Setting(request.getfixturevalue("tls_files") if scheme == "wss" else None, tools)
    plan = Plan(
        peer_closes=closer == "peer-closes",
        ferrows_fragments=FACES[face].sends_fragments,
        peer_fragments=PEERS[peer].sends_fragments,
        compressed=(peer, role) in COMPRESSED,
    )
    coroutine = converse(FACES[face], PEERS[peer], role, setting, plan)
    asyncio.run(asyncio.wait_for(coroutine, CELL_TIMEOUT))


# A reset is an error to report, not a signal: the C face's SIGPIPE keeps its default action


def reset_after_first_frame(listener: socket.socket, tls: TlsFiles | None) -> None:
    """Accepts one client, answers its upgrade, reads a few bytes of its first frame, then
    resets the connection (SO_LINGER 0)."""
    listener.settimeout(WAIT)
    raw, _ = listener.accept()
    conn = tls.server_context().wrap_socket(raw, server_side=True) if tls else raw
    with conn:
        conn.settimeout(WAIT)
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            head += conn.recv(4096)
        key = re.search(rb"Sec-WebSocket-Key: *(\S+)", head, re.IGNORECASE)
        assert key, head
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_value(key.group(1).decode()).encode() + b"\r\n\r\n"
        )
        conn.recv(2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_c_face_reports_a_reset(
    scheme: str, c_face: Path, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """A server that resets the connection: the C client reports an error and exits with 1;
    libferrows must not kill it with SIGPIPE (a C program keeps SIGPIPE's default action)."""
    tls = tls_files if scheme == "wss" else None
    with socket.create_server((HOST, 0)) as listener:
        server = threading.Thread(target=reset_after_first_frame, args=(listener, tls))
        server.start()
        url = Setting(tls, Tools()).url(listener.getsockname()[1])
        ca = ["--ca", str(tls.ca_pem)] if tls else []
        result = run([c_face, "client", url, *ca], timeout=TEST_TIMEOUT, check=False)
        server.join(JOIN_TIMEOUT)
    assert result.returncode == 1, (
        f"c_face exited with {result.returncode} (-{int(signal.SIGPIPE)} is SIGPIPE)\n"
        f"{result.stderr}"
    )
    assert "c_face: " in result.stderr
