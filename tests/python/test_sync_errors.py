"""Failures: abrupt disconnects, limits, protocol violations, refused handshakes, timeouts."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Iterator

import ferrows.exceptions as fx
import pytest
import websockets.exceptions
import websockets.sync.client
import websockets.sync.server
from ferrows.http11 import Request, Response
from ferrows.sync import ServerConnection, connect
from wsutil import (
    HOST,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    HttpHead,
    Outbox,
    RawServer,
    Running,
    close_at_once,
    encode_frame,
    handshake_request,
    parse_close,
    raw_connect,
    raw_upgrade,
    read_and_ignore,
    switching_protocols,
)


def recording_handler(outbox: Outbox) -> Callable[[ServerConnection], None]:
    """Echoes until the connection closes, then reports the exception and close code."""

    def handler(connection: ServerConnection) -> None:
        try:
            for _ in range(1000):
                connection.send(connection.recv(timeout=10))
        except fx.ConnectionClosed as exc:
            outbox.put(exc)
            outbox.put(connection.close_code)

    return handler


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket that never accepts: TCP connects, nothing ever answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(8)
    yield sock
    sock.close()


# Abrupt disconnects


def test_client_dropping_tcp_gives_1006_on_the_server(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    running = ferrows_server(recording_handler(outbox))
    stream = raw_upgrade(running.port)
    stream.close()
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.rcvd is None
    assert exc.sent is None
    assert exc.code == 1006
    assert outbox.get() == 1006


def test_client_dropping_tcp_mid_message_gives_1006_on_the_server(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    running = ferrows_server(recording_handler(outbox))
    stream = raw_upgrade(running.port)
    stream.send(encode_frame(OP_TEXT, b"first half", fin=False))
    stream.close()
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.rcvd is None
    assert exc.sent is None


def test_server_dropping_tcp_gives_connection_closed_error_on_the_client(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(after=close_at_once)
    client = connect(server.url, open_timeout=5)
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=5)
    assert info.value.rcvd is None
    assert info.value.code == 1006
    assert client.close_code == 1006
    with pytest.raises(fx.ConnectionClosedError):
        client.send("too late")


# Message size limits


def test_oversized_message_from_websockets_client_gets_1009(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    running = ferrows_server(recording_handler(outbox), max_size=1000)
    with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as ws:
        ws.send(b"x" * 1000)
        assert ws.recv(timeout=5) == b"x" * 1000  # exactly max_size is allowed
        ws.send(b"x" * 2000)
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.sent is not None
    assert exc.sent.code == 1009
    assert isinstance(exc.__cause__, fx.PayloadTooBig)


def test_oversized_fragmented_message_gets_1009(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    running = ferrows_server(recording_handler(outbox), max_size=1000)
    with websockets.sync.client.connect(running.url, open_timeout=5, proxy=None) as ws:
        # Each fragment is below the limit; the third one takes the message over it. The
        # close may come before websockets sends its empty final frame: send() raises then.
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
            ws.send([b"y" * 400, b"y" * 400, b"y" * 400])
            ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009
    exc = outbox.get()
    assert exc.sent is not None
    assert exc.sent.code == 1009


def test_oversized_message_to_ferrows_client_raises_payload_too_big_cause(
    websockets_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(ws: websockets.sync.server.ServerConnection) -> None:
        ws.send(b"z" * 1000)
        ws.send(b"z" * 2000)
        try:
            ws.recv(timeout=10)
        except websockets.exceptions.ConnectionClosed as exc:
            outbox.put(exc)

    running = websockets_server(handler)
    client = connect(running.url, open_timeout=5, max_size=1000)
    assert client.recv(timeout=5) == b"z" * 1000
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=5)
    exc = info.value
    assert isinstance(exc.__cause__, fx.PayloadTooBig)
    assert isinstance(exc.__cause__, fx.ProtocolError)
    assert exc.sent is not None
    assert exc.sent.code == 1009
    assert client.close_code == 1009
    peer_exc = outbox.get()
    assert peer_exc.rcvd is not None
    assert peer_exc.rcvd.code == 1009


def test_default_max_size_is_one_mebibyte(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        client.send(b"a" * 2**20)
        assert len(client.recv(timeout=10)) == 2**20
    client = connect(echo_server.url, open_timeout=5)
    client.send(b"a" * (2**20 + 1))
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1009


def test_max_size_none_allows_large_messages(ferrows_server: Callable[..., Running]) -> None:
    running = ferrows_server(max_size=None)
    big = bytes(range(256)) * (3 * 2**20 // 256)
    with connect(running.url, open_timeout=5, max_size=None) as client:
        client.send(big)
        assert client.recv(timeout=20) == big


def test_max_frame_size_bounds_frames_not_messages(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    running = ferrows_server(recording_handler(outbox), max_size=None, max_frame_size=100)
    # Uncompressed: the frame sizes on the wire are the payloads' own.
    with websockets.sync.client.connect(
        running.url, open_timeout=5, proxy=None, compression=None
    ) as ws:
        ws.send([b"f" * 100, b"f" * 100, b"f" * 100])
        assert ws.recv(timeout=5) == b"f" * 300
        ws.send(b"f" * 101)
        with pytest.raises(websockets.exceptions.ConnectionClosedError) as info:
            ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009


# Protocol violations from a hand-made client


def read_close_code(port: int, *frames: bytes) -> int | None:
    """Upgrades by hand, sends ``frames`` and returns the code of the server's close frame."""
    stream = raw_upgrade(port)
    try:
        for frame in frames:
            stream.send(frame)
        code, _ = parse_close(stream.read_until_close_frame(timeout=5))
        return code
    finally:
        stream.close()


def test_invalid_utf8_text_gets_1007(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    running = ferrows_server(recording_handler(outbox))
    assert read_close_code(running.port, encode_frame(OP_TEXT, b"\xff\xfe")) == 1007
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.sent is not None
    assert exc.sent.code == 1007


def test_invalid_utf8_across_fragments_gets_1007(ferrows_server: Callable[..., Running]) -> None:
    running = ferrows_server()
    frames = (encode_frame(OP_TEXT, b"\xce", fin=False), encode_frame(OP_CONT, b"A"))
    assert read_close_code(running.port, *frames) == 1007


def test_invalid_utf8_in_close_reason_gets_1007(ferrows_server: Callable[..., Running]) -> None:
    running = ferrows_server()
    frame = encode_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff")
    assert read_close_code(running.port, frame) == 1007


def test_character_split_across_fragments_is_valid(ferrows_server: Callable[..., Running]) -> None:
    running = ferrows_server()
    stream = raw_upgrade(running.port)
    try:
        stream.send(encode_frame(OP_TEXT, b"\xce", fin=False))
        stream.send(encode_frame(OP_CONT, b"\xba"))
        fin, opcode, payload = stream.read_frame(timeout=5)
        assert (fin, opcode, payload.decode()) == (True, OP_TEXT, "κ")
    finally:
        stream.close()


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(encode_frame(OP_TEXT, b"unmasked", mask=False), id="unmasked"),
        pytest.param(encode_frame(0x3, b"reserved opcode"), id="reserved-opcode"),
        pytest.param(encode_frame(OP_TEXT, b"rsv1", rsv=4), id="rsv1-without-extension"),
        pytest.param(encode_frame(OP_CONT, b"nothing to continue"), id="orphan-continuation"),
        pytest.param(encode_frame(OP_PING, b"p", fin=False), id="fragmented-ping"),
        pytest.param(encode_frame(OP_PING, b"p" * 126), id="ping-too-long"),
    ],
)
def test_protocol_errors_get_1002(ferrows_server: Callable[..., Running], frame: bytes) -> None:
    running = ferrows_server()
    assert read_close_code(running.port, frame) == 1002


def test_new_message_inside_a_fragmented_one_gets_1002(
    ferrows_server: Callable[..., Running],
) -> None:
    running = ferrows_server()
    frames = (encode_frame(OP_TEXT, b"a", fin=False), encode_frame(OP_BINARY, b"b"))
    assert read_close_code(running.port, *frames) == 1002


def test_raw_ping_gets_pong_with_same_payload(echo_server: Running) -> None:
    stream = raw_upgrade(echo_server.port)
    try:
        stream.send(encode_frame(OP_PING, b"raw ping"))
        assert stream.read_frame(timeout=5) == (True, 0xA, b"raw ping")
    finally:
        stream.close()


# Handshakes refused by the server


def test_process_request_can_refuse(ferrows_server: Callable[..., Running], outbox: Outbox) -> None:
    def process_request(connection: ServerConnection, request: Request) -> Response:
        outbox.put((connection.remote_address, request.path, request.headers["Host"]))
        return connection.respond(404, "nope")

    running = ferrows_server(process_request=process_request)
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url, open_timeout=5)
    response = info.value.response
    assert response.status_code == 404
    assert response.body == b"nope"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "404" in str(info.value)
    assert isinstance(info.value, fx.InvalidHandshake)
    remote_address, path, host = outbox.get()
    assert remote_address[0] == HOST
    assert isinstance(remote_address[1], int)
    assert path == "/"
    assert host == f"{HOST}:{running.port}"


def health_check(connection: ServerConnection, request: object) -> object:
    if getattr(request, "path", None) == "/healthz":
        return connection.respond(200, "ok\n")
    return None


def test_process_request_health_check_and_upgrade(ferrows_server: Callable[..., Running]) -> None:
    running = ferrows_server(process_request=health_check)
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url + "healthz", open_timeout=5)
    assert info.value.response.status_code == 200
    assert info.value.response.body == b"ok\n"
    with connect(running.url + "ws", open_timeout=5) as client:
        assert client.request is not None
        assert client.request.path == "/ws"
        client.send("upgraded")
        assert client.recv(timeout=5) == "upgraded"


def test_process_request_health_check_answers_plain_http(
    ferrows_server: Callable[..., Running],
) -> None:
    # Load balancers probe health checks with plain HTTP requests, without Upgrade headers.
    running = ferrows_server(process_request=health_check)
    conn = http.client.HTTPConnection(HOST, running.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b"ok\n"
    finally:
        conn.close()


def test_process_request_that_raises_gives_500(ferrows_server: Callable[..., Running]) -> None:
    def process_request(connection: ServerConnection, request: object) -> object:
        raise RuntimeError("bug in process_request")

    running = ferrows_server(process_request=process_request)
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url, open_timeout=5)
    assert info.value.response.status_code == 500
    # The server keeps serving.
    with pytest.raises(fx.InvalidStatus):
        connect(running.url, open_timeout=5)


def test_origin_allow_list(ferrows_server: Callable[..., Running]) -> None:
    running = ferrows_server(origins=["https://good.example"])
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url, open_timeout=5, origin="https://evil.example")
    assert info.value.response.status_code == 403
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url, open_timeout=5)
    assert info.value.response.status_code == 403
    with connect(running.url, open_timeout=5, origin="https://good.example") as client:
        client.send("welcome")
        assert client.recv(timeout=5) == "welcome"


def test_origin_allow_list_with_none_allows_no_origin(
    ferrows_server: Callable[..., Running],
) -> None:
    running = ferrows_server(origins=["https://good.example", None])
    with connect(running.url, open_timeout=5) as client:
        client.send("no origin")
        assert client.recv(timeout=5) == "no origin"
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url, open_timeout=5, origin="https://evil.example")
    assert info.value.response.status_code == 403


def test_wrong_version_gets_426(echo_server: Running) -> None:
    stream = raw_connect(echo_server.port)
    try:
        stream.send(handshake_request(echo_server.port, version="8"))
        head = stream.read_head(timeout=5)
        assert head.status == 426
        versions = [
            v.strip() for value in head.get_all("Sec-WebSocket-Version") for v in value.split(",")
        ]
        assert "13" in versions
    finally:
        stream.close()


def test_missing_key_gets_400(echo_server: Running) -> None:
    stream = raw_connect(echo_server.port)
    try:
        request = (
            f"GET / HTTP/1.1\r\nHost: {HOST}:{echo_server.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        stream.send(request.encode())
        assert stream.read_head(timeout=5).status == 400
    finally:
        stream.close()


def test_garbage_instead_of_a_handshake_gets_400(echo_server: Running) -> None:
    stream = raw_connect(echo_server.port)
    try:
        stream.send(b"\x00\x01garbage\r\n\r\n")
        head = stream.read_head(timeout=5)
        assert head.start_line.startswith("HTTP/1.1 400"), head
        # Then the server closes the connection (read_until_eof raises on a timeout).
        stream.read_until_eof(timeout=5)
    finally:
        stream.close()
    # And keeps serving other clients.
    with connect(echo_server.url, open_timeout=5) as client:
        client.send("still serving")
        assert client.recv(timeout=5) == "still serving"


def test_silent_client_is_dropped_after_the_open_timeout(
    ferrows_server: Callable[..., Running],
) -> None:
    running = ferrows_server(open_timeout=0.5)
    stream = raw_connect(running.port)
    try:
        started = time.monotonic()
        stream.read_until_eof(timeout=5)
        elapsed = time.monotonic() - started
    finally:
        stream.close()
    assert 0.3 <= elapsed < 2.0, elapsed


# Client-side failures


def test_open_timeout_against_a_listener_that_never_answers(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(fx.TimeoutError) as info:
        connect(f"ws://{HOST}:{port}/", open_timeout=0.5)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TimeoutError)
    assert 0.4 <= elapsed < 2.0, elapsed


def test_keepalive_timeout_closes_with_1011(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(after=read_and_ignore)
    client = connect(server.url, open_timeout=5, ping_interval=0.2, ping_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=10)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed
    assert info.value.sent is not None
    assert info.value.sent.code == 1011
    assert info.value.rcvd is None
    assert server.handled.wait(5), "the client never dropped the connection"
    opcodes = [opcode for _, opcode, _ in server.frames]
    assert OP_PING in opcodes
    closes = [payload for _, opcode, payload in server.frames if opcode == OP_CLOSE]
    assert [parse_close(payload)[0] for payload in closes] == [1011]


def test_ping_wait_times_out_without_pong(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(after=read_and_ignore)
    with connect(server.url, open_timeout=5, ping_interval=None, close_timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(fx.TimeoutError):
            client.ping().wait(timeout=0.3)
        assert time.monotonic() - started < 2.0


def test_close_timeout_when_the_peer_never_answers_close(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(after=read_and_ignore)
    client = connect(server.url, open_timeout=5, ping_interval=None, close_timeout=0.5)
    started = time.monotonic()
    client.close()
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.5, elapsed
    assert client.close_code is not None
    with pytest.raises(fx.ConnectionClosed):
        client.send("after close")


@pytest.mark.parametrize(
    "uri",
    [
        "http://x",
        "https://example.com/",
        "ftp://example.com/",
        "localhost:8765",
        "ws://",
        "wss://",
        "ws://localhost:99999/",
        "not a uri",
    ],
)
def test_invalid_uri(uri: str) -> None:
    with pytest.raises(fx.InvalidURI) as info:
        connect(uri, open_timeout=2)
    assert info.value.uri == uri
    assert uri in str(info.value)


def test_connection_refused() -> None:
    # A bound socket that doesn't listen keeps the port taken and refuses connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError) as info:
            connect(f"ws://{HOST}:{port}/", open_timeout=5)
        assert isinstance(info.value, OSError)
    finally:
        sock.close()


def bad_accept(head: HttpHead) -> list[str]:
    return [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: d3Jvbmcgd3Jvbmcgd3Jvbmc=",
    ]


def test_wrong_accept_header_is_rejected(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(respond=bad_accept)
    with pytest.raises(fx.InvalidHeader) as info:
        connect(server.url, open_timeout=5)
    assert info.value.name.lower() == "sec-websocket-accept"


def test_unrequested_subprotocol_is_rejected(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(
        respond=lambda head: switching_protocols(head, "Sec-WebSocket-Protocol: unasked")
    )
    with pytest.raises(fx.InvalidHandshake):
        connect(server.url, open_timeout=5, subprotocols=["chat"])


@pytest.mark.parametrize(
    "extension, compression",
    [("x-webkit-deflate-frame", "deflate"), ("permessage-deflate", None)],
)
def test_unrequested_extension_is_rejected(
    raw_server: Callable[..., RawServer], extension: str, compression: str | None
) -> None:
    server = raw_server(
        respond=lambda head: switching_protocols(head, f"Sec-WebSocket-Extensions: {extension}")
    )
    with pytest.raises(fx.NegotiationError):
        connect(server.url, open_timeout=5, compression=compression)


def test_non_101_status_is_invalid_status(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(
        respond=lambda head: ["HTTP/1.1 302 Found", "Location: /elsewhere", "Content-Length: 0"]
    )
    with pytest.raises(fx.InvalidStatus) as info:
        connect(server.url, open_timeout=5)
    assert info.value.response.status_code == 302
    assert info.value.response.headers["Location"] == "/elsewhere"


def test_non_http_answer_is_invalid_message(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(respond=lambda head: ["SSH-2.0-OpenSSH_9.0", "garbage"])
    with pytest.raises(fx.InvalidMessage):
        connect(server.url, open_timeout=5)


@pytest.mark.parametrize(
    "options",
    [
        {"max_size": 0},
        {"max_size": -1},
        {"open_timeout": -1},
        {"ping_interval": -1},
        {"read_limit": (10, 20)},
        {"cafile": "/nonexistent/ca.pem"},
    ],
)
def test_invalid_options_raise_value_error(echo_server: Running, options: dict) -> None:
    with pytest.raises(ValueError):
        connect(echo_server.url, **options)
