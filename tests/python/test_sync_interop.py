"""ferrows against other implementations: websockets (sync and asyncio), websocket-client.

Messages of every kind and size, fragments, pings and closes with every peer are the interop
matrix's (tests/interop/test_matrix.py); these tests cover the rest: pipelined messages,
streaming, subprotocols, headers, compression offers, server shutdown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import ferrows.exceptions as fx
import pytest
import websocket
import websockets.asyncio.client
import websockets.exceptions
import websockets.sync.client
import websockets.sync.server
from ferrows.sync import ServerConnection, connect
from wsutil import Outbox, Running, assert_fragments_joined, parse_close

PAIRS = [
    "ferrows-client/ferrows-server",
    "ferrows-client/websockets-server",
    "websockets-client/ferrows-server",
    "websocket-client/ferrows-server",
]


class EchoPeer(Protocol):
    def send(self, message: str | bytes) -> None: ...

    def recv(self) -> str | bytes: ...


class WebsocketClientPeer:
    """websocket-client, adapted to send str as text and bytes as binary."""

    def __init__(self, url: str) -> None:
        self.ws = websocket.create_connection(url, timeout=10)

    def send(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.ws.send(message)
        else:
            self.ws.send_binary(message)

    def recv(self) -> str | bytes:
        opcode, data = self.ws.recv_data()
        assert opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY), opcode
        return data.decode() if opcode == websocket.ABNF.OPCODE_TEXT else bytes(data)

    def close(self) -> None:
        self.ws.close()


class RecvWithTimeout:
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def send(self, message: str | bytes) -> None:
        self.connection.send(message)

    def recv(self) -> str | bytes:
        return self.connection.recv(timeout=10)


@pytest.fixture(params=PAIRS)
def echo_peer(
    request: pytest.FixtureRequest,
    ferrows_server: Callable[..., Running],
    websockets_server: Callable[..., Running],
) -> Iterator[EchoPeer]:
    client_kind, server_kind = request.param.split("/")
    running = ferrows_server() if server_kind == "ferrows-server" else websockets_server()
    if client_kind == "ferrows-client":
        with connect(running.url, open_timeout=5) as client:
            yield RecvWithTimeout(client)
    elif client_kind == "websockets-client":
        with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as client:
            yield RecvWithTimeout(client)
    else:
        peer = WebsocketClientPeer(running.url)
        try:
            yield peer
        finally:
            peer.close()


def test_echo_sequence(echo_peer: EchoPeer) -> None:
    messages: list[str | bytes] = [f"{i}" if i % 3 else bytes([i % 256]) * i for i in range(100)]
    for message in messages:
        echo_peer.send(message)
    assert [echo_peer.recv() for _ in messages] == messages


# ferrows client <-> websockets sync server


def test_fragmented_send_arrives_as_several_frames_at_websockets(
    websockets_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(ws: websockets.sync.server.ServerConnection) -> None:
        for _ in range(2):
            outbox.put(list(ws.recv_streaming()))
        outbox.put(ws.recv(timeout=5))

    running = websockets_server(handler)
    with connect(running.url, open_timeout=5) as client:
        client.send(["a", "b", "c"])
        client.send([b"\x01", bytearray(b"\x02"), memoryview(b"\x03")])
        client.send(["whole ", "message"])
        assert outbox.get() == ["a", "b", "c"]
        assert outbox.get() == [b"\x01", b"\x02", b"\x03"]
        assert outbox.get() == "whole message"


def test_recv_streaming_of_a_fragmented_message_from_websockets(
    websockets_server: Callable[..., Running],
) -> None:
    def handler(ws: websockets.sync.server.ServerConnection) -> None:
        ws.send(["x", "y", "z"])
        ws.send([b"1", b"22", b"333"])
        ws.send(["join", "ed"])
        ws.recv(timeout=5)

    running = websockets_server(handler)
    with connect(running.url, open_timeout=5) as client:
        # websockets ends a fragmented message with an empty final frame.
        assert_fragments_joined(list(client.recv_streaming()), ["x", "y", "z", ""])
        assert_fragments_joined(list(client.recv_streaming()), [b"1", b"22", b"333", b""])
        assert client.recv(timeout=5) == "joined"
        client.send("done")


def test_ping_latency_against_websockets(websockets_echo_server: Running) -> None:
    with connect(websockets_echo_server.url, open_timeout=5, ping_interval=None) as client:
        latency = client.ping().wait(timeout=5)
        assert isinstance(latency, float)
        assert latency > 0
        assert client.latency > 0


def test_ferrows_client_close_code_reaches_websockets(
    websockets_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(ws: websockets.sync.server.ServerConnection) -> None:
        try:
            ws.recv(timeout=10)
        except websockets.exceptions.ConnectionClosed as exc:
            outbox.put(exc)

    running = websockets_server(handler)
    client = connect(running.url, open_timeout=5)
    client.close(4000, "bye")
    exc = outbox.get()
    assert isinstance(exc, websockets.exceptions.ConnectionClosedError)
    assert exc.rcvd is not None
    assert (exc.rcvd.code, exc.rcvd.reason) == (4000, "bye")
    assert client.close_code == 4000
    assert client.close_reason == "bye"


def test_websockets_server_close_1001_reaches_ferrows(
    websockets_server: Callable[..., Running],
) -> None:
    def handler(ws: websockets.sync.server.ServerConnection) -> None:
        ws.close(1001, "maintenance")

    running = websockets_server(handler)
    client = connect(running.url, open_timeout=5)
    with pytest.raises(fx.ConnectionClosedOK) as info:
        client.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "maintenance")
    assert client.close_code == 1001
    assert client.close_reason == "maintenance"


def test_websockets_server_shutdown_gives_1001(websockets_server: Callable[..., Running]) -> None:
    running = websockets_server()
    client = connect(running.url, open_timeout=5)
    client.send("hi")
    assert client.recv(timeout=5) == "hi"
    running.server.shutdown()
    with pytest.raises(fx.ConnectionClosedOK) as info:
        client.recv(timeout=5)
    assert info.value.code == 1001


def test_subprotocol_with_websockets_server(websockets_server: Callable[..., Running]) -> None:
    running = websockets_server(subprotocols=["b", "a"])
    with connect(running.url, open_timeout=5, subprotocols=["a", "b"]) as client:
        # websockets picks by its own preference too.
        assert client.subprotocol == "b"


def test_additional_headers_reach_websockets(
    websockets_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(ws: websockets.sync.server.ServerConnection) -> None:
        outbox.put(ws.request.headers["X-Token"])
        ws.recv(timeout=5)

    running = websockets_server(handler)
    with connect(running.url, open_timeout=5, additional_headers={"X-Token": "t0k"}) as client:
        assert outbox.get() == "t0k"
        assert client.response is not None
        assert client.response.headers["Server"].startswith("Python/")
        client.send("done")


# websockets sync client <-> ferrows server


def test_websockets_client_fragments_reach_ferrows_as_one_message(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put(connection.recv(timeout=5))
        outbox.put(list(connection.recv_streaming()))
        outbox.put(connection.recv(timeout=5))

    running = ferrows_server(handler)
    with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as ws:
        ws.send(["a", "b", "c"])
        ws.send(["d", "e"])
        ws.send([b"f", b"g"])
        assert outbox.get() == "abc"
        # websockets ends a fragmented message with an empty final frame.
        assert_fragments_joined(outbox.get(), ["d", "e", ""])
        assert outbox.get() == b"fg"


def test_websockets_client_streaming_recv_from_ferrows(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.send(["p", "q", "r"])
        connection.recv(timeout=5)

    running = ferrows_server(handler)
    with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as ws:
        assert list(ws.recv_streaming()) == ["p", "q", "r"]
        ws.send("done")


def test_websockets_client_close_code_reaches_ferrows(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        try:
            connection.recv(timeout=10)
        except fx.ConnectionClosed as exc:
            outbox.put(exc)

    running = ferrows_server(handler)
    with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as ws:
        ws.close(4000, "bye")
        assert ws.close_code == 4000
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.rcvd is not None
    assert (exc.rcvd.code, exc.rcvd.reason) == (4000, "bye")


def test_ferrows_server_close_reaches_websockets_client(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.close(1001, "bye for now")

    running = ferrows_server(handler)
    with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as ws:
        with pytest.raises(websockets.exceptions.ConnectionClosedOK) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "bye for now")


def test_websockets_client_ping_is_answered(echo_server: Running) -> None:
    with websockets.sync.client.connect(echo_server.url, open_timeout=5, proxy=None) as ws:
        assert ws.ping().wait(5) is True
        ws.send("after ping")
        assert ws.recv(timeout=5) == "after ping"


def test_websockets_client_subprotocol_and_headers(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        outbox.put((connection.subprotocol, connection.request.headers["X-Token"]))
        connection.recv(timeout=5)

    running = ferrows_server(handler, subprotocols=["b", "a"])
    with websockets.sync.client.connect(
        running.url,
        open_timeout=5,
        proxy=None,
        subprotocols=["a", "b"],
        additional_headers={"X-Token": "abc"},
    ) as ws:
        assert ws.subprotocol == "b"
        assert outbox.get() == ("b", "abc")
        assert ws.response.headers["Server"].startswith("ferrows/")
        ws.send("done")


def test_websockets_client_compression_offer_is_accepted(echo_server: Running) -> None:
    # websockets offers permessage-deflate by default; ferrows accepts with 12-bit windows.
    with websockets.sync.client.connect(echo_server.url, open_timeout=5, proxy=None) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        ws.send("x" * 10000)
        assert ws.recv(timeout=5) == "x" * 10000


# websocket-client <-> ferrows server


def test_websocket_client_ping_gets_pong(echo_server: Running) -> None:
    ws = websocket.create_connection(echo_server.url, timeout=5)
    try:
        ws.ping("are you there")
        opcode, frame = ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_PONG
        assert frame.data == b"are you there"
    finally:
        ws.close()


def test_websocket_client_fragments(ferrows_server: Callable[..., Running], outbox: Outbox) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put(connection.recv(timeout=5))
        outbox.put(list(connection.recv_streaming()))

    running = ferrows_server(handler)
    ws = websocket.create_connection(running.url, timeout=5)
    try:
        abnf = websocket.ABNF
        for _ in range(2):
            ws.send_frame(abnf.create_frame("a", abnf.OPCODE_TEXT, 0))
            ws.send_frame(abnf.create_frame("b", abnf.OPCODE_CONT, 0))
            ws.send_frame(abnf.create_frame("c", abnf.OPCODE_CONT, 1))
        assert outbox.get() == "abc"
        assert_fragments_joined(outbox.get(), ["a", "b", "c"])
    finally:
        ws.close()


def test_websocket_client_close_code_reaches_ferrows(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        try:
            connection.recv(timeout=10)
        except fx.ConnectionClosed as exc:
            outbox.put(exc)

    running = ferrows_server(handler)
    ws = websocket.create_connection(running.url, timeout=5)
    ws.close(status=4000, reason=b"bye")
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.rcvd is not None
    assert (exc.rcvd.code, exc.rcvd.reason) == (4000, "bye")


def test_ferrows_server_close_reaches_websocket_client(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.close(1001, "later")

    running = ferrows_server(handler)
    ws = websocket.create_connection(running.url, timeout=5)
    try:
        opcode, frame = ws.recv_data_frame(True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert parse_close(frame.data) == (1001, "later")
    finally:
        ws.close()


def test_websocket_client_subprotocol_and_headers(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        outbox.put((connection.subprotocol, connection.request.headers["X-Token"]))
        connection.recv(timeout=5)

    running = ferrows_server(handler, subprotocols=["b", "a"])
    ws = websocket.create_connection(
        running.url, timeout=5, subprotocols=["a", "b"], header=["X-Token: wsc"]
    )
    try:
        assert ws.getsubprotocol() == "b"
        assert outbox.get() == ("b", "wsc")
        assert ws.getheaders()["server"].startswith("ferrows/")
        ws.send("done")
    finally:
        ws.close()
