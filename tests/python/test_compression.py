"""permessage-deflate on the sync and asyncio faces, as client and server.

Against websockets with every parameter it can set, and against hand-made peers that show
the wire: RSV1 on compressed frames, the opt-out, an offer of an 8-bit window, a server
telling a client to compress with 8 bits, a bomb (1009) and corrupt data (1007).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import ferrows
import ferrows.asyncio
import ferrows.sync
import pytest
import websockets.asyncio.client
import websockets.sync.client
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from wsutil import (
    HOST,
    OP_CLOSE,
    OP_TEXT,
    HttpHead,
    RawServer,
    RawStream,
    encode_frame,
    handshake_request,
    new_key,
    parse_close,
    parse_frame,
    raw_connect,
    switching_protocols,
)

WAIT = 5.0
FACES = ("sync", "asyncio")
#: 64 KiB of JSON-like text: what compression is for.
DOCUMENT = json.dumps(
    [{"id": i, "user": f"user{i % 97}", "score": i * 7, "tags": ["a", "b"]} for i in range(1100)]
)
#: Messages starting with this are echoed with ``compress=False``.
UNCOMPRESSED = "raw:"
DEFAULT_AGREEMENT = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


def compress(data: bytes, wbits: int = 15, level: int = 6) -> bytes:
    """One message compressed as RFC 7692 §7.2.1 says: deflate, sync flush, tail removed."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


# ferrows servers of either face, echoing (with compress=False after UNCOMPRESSED)


@contextmanager
def ferrows_echo_server(face: str, **kwargs: Any) -> Iterator[int]:
    """Starts a ferrows echo server of ``face``; yields its port."""
    if face == "sync":

        def handler(ws: ferrows.sync.ServerConnection) -> None:
            for message in ws:
                ws.send(message, compress=not str(message).startswith(UNCOMPRESSED))

        server = ferrows.sync.serve(handler, HOST, 0, **kwargs)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.port
        finally:
            server.shutdown()
            thread.join(WAIT)
            assert not thread.is_alive()
        return

    async def async_handler(ws: ferrows.asyncio.ServerConnection) -> None:
        async for message in ws:
            await ws.send(message, compress=not str(message).startswith(UNCOMPRESSED))

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> ferrows.asyncio.Server:
        return await ferrows.asyncio.serve(async_handler, HOST, 0, **kwargs)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT)
    try:
        yield server.port
    finally:

        async def stop() -> None:
            server.close()
            await asyncio.wait_for(server.wait_closed(), WAIT)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(2 * WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        assert not thread.is_alive()
        loop.close()


def ferrows_client_exchange(
    face: str, url: str, messages: list[tuple[str | bytes, bool]], **kwargs: Any
) -> tuple[str | None, list[str | bytes]]:
    """Connects with ``face``, sends each ``(message, compress)`` and receives one answer
    per message; returns the agreed compression and the answers."""
    if face == "sync":
        with ferrows.sync.connect(url, open_timeout=WAIT, **kwargs) as ws:
            answers = []
            for message, compress_it in messages:
                ws.send(message, compress=compress_it)
                answers.append(ws.recv(timeout=WAIT))
            return ws.compression, answers

    async def exchange() -> tuple[str | None, list[str | bytes]]:
        async with ferrows.asyncio.connect(url, open_timeout=WAIT, **kwargs) as ws:
            answers = []
            for message, compress_it in messages:
                await ws.send(message, compress=compress_it)
                answers.append(await asyncio.wait_for(ws.recv(), WAIT))
            return ws.compression, answers

    return asyncio.run(asyncio.wait_for(exchange(), 3 * WAIT))


# Against websockets, every parameter


SERVER_SIDE = [
    pytest.param({}, DEFAULT_AGREEMENT, id="defaults"),
    pytest.param(
        {"server_no_context_takeover": True},
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
        "client_max_window_bits=12",
        id="server_no_context_takeover",
    ),
    pytest.param(
        {"client_no_context_takeover": True, "client_max_window_bits": 9},
        "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; "
        "client_max_window_bits=9",
        id="client_no_context_takeover-9",
    ),
    pytest.param(
        {"server_max_window_bits": 10, "client_max_window_bits": None},
        "permessage-deflate; server_max_window_bits=10",
        id="server_max_window_bits-10",
    ),
]


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("offer, agreed", SERVER_SIDE)
def test_ferrows_server_with_websockets_client(
    face: str, offer: dict[str, Any], agreed: str
) -> None:
    factory = ClientPerMessageDeflateFactory(
        client_max_window_bits=offer.get("client_max_window_bits", True),
        server_max_window_bits=offer.get("server_max_window_bits"),
        server_no_context_takeover=offer.get("server_no_context_takeover", False),
        client_no_context_takeover=offer.get("client_no_context_takeover", False),
    )
    with ferrows_echo_server(face) as port:
        with websockets.sync.client.connect(
            f"ws://{HOST}:{port}", extensions=[factory], compression=None, open_timeout=WAIT
        ) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"] == agreed
            for message in [DOCUMENT, DOCUMENT, UNCOMPRESSED + DOCUMENT, DOCUMENT.encode(), ""]:
                ws.send(message)
                assert ws.recv(timeout=WAIT) == message


CLIENT_SIDE = [
    pytest.param({}, "permessage-deflate; client_max_window_bits=12", {}, id="defaults"),
    pytest.param(
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "client_max_window_bits=12",
        {},
        id="no_context_takeover",
    ),
    pytest.param(
        {"server_max_window_bits": 9, "client_max_window_bits": 15},
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=15",
        {},
        id="windows-9-15",
    ),
    pytest.param(
        {},
        "permessage-deflate; server_max_window_bits=11; client_max_window_bits=10",
        {"server_max_window_bits": 11, "client_max_window_bits": 10},
        id="ferrows-offers-windows",
    ),
]


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("answer, agreed, ours", CLIENT_SIDE)
def test_ferrows_client_with_websockets_server(
    face: str,
    answer: dict[str, Any],
    agreed: str,
    ours: dict[str, Any],
    websockets_server: Callable[..., Any],
) -> None:
    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=answer.get("server_no_context_takeover", False),
        client_no_context_takeover=answer.get("client_no_context_takeover", False),
        server_max_window_bits=answer.get("server_max_window_bits"),
        client_max_window_bits=answer.get("client_max_window_bits", 12),
    )
    running = websockets_server(extensions=[factory], compression=None)
    compression: Any = ferrows.Deflate(**ours) if ours else "deflate"
    messages = [(DOCUMENT, True), (DOCUMENT, True), (DOCUMENT, False), (b"\x00" * 1000, True)]
    agreed_seen, answers = ferrows_client_exchange(
        face, running.url, messages, compression=compression
    )
    assert agreed_seen == agreed
    assert answers == [message for message, _ in messages]


@pytest.mark.parametrize("face", FACES)
def test_compression_off_on_either_side(face: str, websockets_server: Callable[..., Any]) -> None:
    running = websockets_server()  # offers and accepts deflate
    agreed, answers = ferrows_client_exchange(
        face, running.url, [(DOCUMENT, True)], compression=None
    )
    assert (agreed, answers) == (None, [DOCUMENT])
    with ferrows_echo_server(face, compression=None) as port:
        with websockets.sync.client.connect(f"ws://{HOST}:{port}", open_timeout=WAIT) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            ws.send(DOCUMENT)
            assert ws.recv(timeout=WAIT) == DOCUMENT
    with pytest.raises(ValueError, match="level"):
        ferrows_client_exchange(face, running.url, [], compression=ferrows.Deflate(level=10))
    with pytest.raises(ValueError, match="compression"):
        ferrows_client_exchange(face, running.url, [], compression="gzip")


# Between ferrows peers at their defaults


@pytest.mark.parametrize("server_face", FACES)
@pytest.mark.parametrize("client_face", FACES)
def test_default_ferrows_peers_agree_on_the_server_defaults(
    server_face: str, client_face: str
) -> None:
    messages = [(DOCUMENT, True), (DOCUMENT, True), (DOCUMENT.encode(), True), ("", True)]
    with ferrows_echo_server(server_face) as port:
        agreed, answers = ferrows_client_exchange(client_face, f"ws://{HOST}:{port}", messages)
    assert agreed == DEFAULT_AGREEMENT
    assert answers == [message for message, _ in messages]


@pytest.mark.parametrize("face", FACES)
def test_connections_keep_their_own_context_between_messages(face: str) -> None:
    # Compression state goes back to a pool shared by connections between messages; each
    # connection's next message must still start from its own window, on both sides.
    documents = [DOCUMENT.replace("user", f"client{i}-") for i in range(3)]
    with ferrows_echo_server(face) as port, ExitStack() as stack:
        clients = [
            stack.enter_context(ferrows.sync.connect(f"ws://{HOST}:{port}", open_timeout=WAIT))
            for _ in documents
        ]
        for _ in range(3):
            for ws, document in zip(clients, documents):
                ws.send(document)
                assert ws.recv(timeout=WAIT) == document


# The wire, from a hand-made client


def upgrade(port: int, offer: str) -> tuple[RawStream, HttpHead]:
    stream = raw_connect(port)
    extra = [f"Sec-WebSocket-Extensions: {offer}"] if offer else []
    stream.send(handshake_request(port, key=new_key(), extra=extra))
    head = stream.read_head()
    assert head.status == 101, head
    return stream, head


def read_frame_rsv(stream: RawStream) -> tuple[int, int, bytes]:
    """(RSV bits, opcode, payload) of the next frame."""
    deadline = time.monotonic() + WAIT
    while parse_frame(stream.buffer) is None:
        stream._fill(deadline)
    rsv = (stream.buffer[0] >> 4) & 0x7
    _, opcode, payload = stream.read_frame(WAIT)
    return rsv, opcode, payload


@pytest.mark.parametrize("face", FACES)
def test_server_compresses_on_the_wire_and_honours_the_opt_out(face: str) -> None:
    with ferrows_echo_server(face) as port:
        stream, head = upgrade(port, "permessage-deflate; client_max_window_bits")
        try:
            assert head.get("Sec-WebSocket-Extensions") == DEFAULT_AGREEMENT
            stream.sock.settimeout(WAIT)
            stream.send(encode_frame(OP_TEXT, compress(DOCUMENT.encode(), wbits=12), rsv=4))
            rsv, opcode, payload = read_frame_rsv(stream)
            assert (rsv, opcode) == (4, OP_TEXT)
            assert len(payload) * 4 < len(DOCUMENT)
            assert inflate(payload) == DOCUMENT.encode()
            # The opt-out, and a message sent uncompressed by the client.
            stream.send(encode_frame(OP_TEXT, (UNCOMPRESSED + DOCUMENT).encode()))
            rsv, _, payload = read_frame_rsv(stream)
            assert (rsv, payload) == (0, (UNCOMPRESSED + DOCUMENT).encode())
        finally:
            stream.close()


@pytest.mark.parametrize("face", FACES)
def test_server_declines_an_8_bit_window_and_takes_the_next_offer(face: str) -> None:
    offers = (
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9"
    )
    with ferrows_echo_server(face) as port:
        for offer, agreed in [
            (offers, "permessage-deflate; server_max_window_bits=9"),
            ("permessage-deflate; server_max_window_bits=8", None),
            (
                "permessage-deflate; x=1, permessage-deflate",
                "permessage-deflate; server_max_window_bits=12",
            ),
        ]:
            stream, head = upgrade(port, offer)
            stream.close()
            assert head.get("Sec-WebSocket-Extensions") == agreed, offer


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize(
    "payload, code",
    [
        # 64 MiB of zeros in about 64 KiB, against a 1 MiB limit.
        pytest.param(compress(bytes(64 << 20), level=9), 1009, id="bomb"),
        pytest.param(b"\xff\xff\xff\xff", 1007, id="corrupt"),
    ],
)
def test_server_refuses_bombs_and_corrupt_data(face: str, payload: bytes, code: int) -> None:
    with ferrows_echo_server(face, max_size=1 << 20) as port:
        stream, _ = upgrade(port, "permessage-deflate")
        try:
            stream.send(encode_frame(0x2, payload, rsv=4))
            close_code, _ = parse_close(stream.read_until_close_frame(timeout=WAIT))
            assert close_code == code
        finally:
            stream.close()


# The wire, from a hand-made server


def deflate_answer(answer: str) -> Callable[[HttpHead], list[str]]:
    return lambda head: switching_protocols(head, f"Sec-WebSocket-Extensions: {answer}")


def echo_frames(count: int) -> Callable[[RawStream, RawServer], None]:
    """Records ``count`` frames, answers each with a compressed text frame, then closes."""

    def after(stream: RawStream, server: RawServer) -> None:
        for _ in range(count):
            rsv, opcode, payload = read_frame_rsv(stream)
            server.frames.append((rsv == 4, opcode, payload))
            stream.send(
                encode_frame(OP_TEXT, compress(DOCUMENT.encode(), wbits=9), mask=False, rsv=4)
            )
        stream.send(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big"), mask=False))
        stream.read_until_close_frame(timeout=WAIT)

    return after


@pytest.mark.parametrize("face", FACES)
def test_client_told_8_bits_keeps_the_extension_and_sends_uncompressed(
    face: str, raw_server: Callable[..., RawServer]
) -> None:
    server = raw_server(
        respond=deflate_answer("permessage-deflate; client_max_window_bits=8"),
        after=echo_frames(2),
    )
    agreed, answers = ferrows_client_exchange(
        face, server.url, [(DOCUMENT, True), ("x" * 100, True)]
    )
    assert agreed == "permessage-deflate; client_max_window_bits=8"
    assert answers == [DOCUMENT, DOCUMENT]
    assert server.frames == [(False, OP_TEXT, DOCUMENT.encode()), (False, OP_TEXT, b"x" * 100)]
    offer = server.requests[0].get("Sec-WebSocket-Extensions")
    assert offer == "permessage-deflate; client_max_window_bits"


@pytest.mark.parametrize("face", FACES)
def test_client_compresses_on_the_wire(face: str, raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(respond=deflate_answer("permessage-deflate"), after=echo_frames(2))
    agreed, answers = ferrows_client_exchange(
        face, server.url, [(DOCUMENT, True), (DOCUMENT, False)]
    )
    assert agreed == "permessage-deflate"
    assert answers == [DOCUMENT, DOCUMENT]
    (first_compressed, _, first), (second_compressed, _, second) = server.frames
    assert first_compressed and inflate(first) == DOCUMENT.encode()
    assert (second_compressed, second) == (False, DOCUMENT.encode())
