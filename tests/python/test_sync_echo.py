"""ferrows sync client <-> ferrows sync server: messages, fragments, pings, closing."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable

import ferrows
import ferrows.exceptions as fx
import pytest
from ferrows.sync import ServerConnection, connect
from wsutil import HOST, Outbox, Running, assert_fragments_joined

ONE_MIB = 2**20

PAYLOADS = [
    pytest.param("hello", id="text"),
    pytest.param("café ☕ 𝄞", id="text-non-ascii"),
    pytest.param(b"\x00\x01\xfe\xff", id="binary"),
    pytest.param("", id="empty-text"),
    pytest.param(b"", id="empty-binary"),
    pytest.param("x" * ONE_MIB, id="1MiB-text"),
    pytest.param(bytes(range(256)) * (ONE_MIB // 256), id="1MiB-binary"),
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_echo_keeps_content_and_type(echo_server: Running, payload: str | bytes) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        client.send(payload)
        echoed = client.recv(timeout=10)
    assert type(echoed) is type(payload)
    assert echoed == payload


def test_many_messages_in_order(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        for i in range(200):
            client.send(f"message {i}" if i % 2 else f"message {i}".encode())
        received = [client.recv(timeout=5) for _ in range(200)]
    expected = [f"message {i}" if i % 2 else f"message {i}".encode() for i in range(200)]
    assert received == expected


def test_bytearray_and_memoryview_are_sent_as_binary(echo_server: Running) -> None:
    backing = bytearray(b"0123456789")
    with connect(echo_server.url, open_timeout=5) as client:
        client.send(bytearray(b"from a bytearray"))
        assert client.recv(timeout=5) == b"from a bytearray"
        client.send(memoryview(b"from a memoryview"))
        assert client.recv(timeout=5) == b"from a memoryview"
        client.send(memoryview(backing)[2:5])
        assert client.recv(timeout=5) == b"234"


def test_text_argument_overrides_the_frame_type(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        client.send("caf\u00e9".encode(), text=True)
        assert client.recv(timeout=5) == "café"
        client.send("abc", text=False)
        assert client.recv(timeout=5) == b"abc"


def test_send_rejects_what_is_not_data(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        with pytest.raises(TypeError):
            client.send(12345)  # type: ignore[arg-type]
        client.send("still usable")
        assert client.recv(timeout=5) == "still usable"


def test_fragmented_send_arrives_as_one_message(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        client.send(["a", "b", "c"])
        assert client.recv(timeout=5) == "abc"
        client.send([b"a", bytearray(b"b"), memoryview(b"c")])
        assert client.recv(timeout=5) == b"abc"
        client.send(chunk for chunk in ("gen", "er", "ator"))
        assert client.recv(timeout=5) == "generator"


def test_fragmented_send_rejects_mixed_types(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client, pytest.raises(TypeError):
        client.send(["text", b"bytes"])


def test_server_recv_streaming_sees_each_fragment(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put(list(connection.recv_streaming()))
        outbox.put(list(connection.recv_streaming()))
        outbox.put(list(connection.recv_streaming()))

    running = ferrows_server(handler)
    with connect(running.url, open_timeout=5) as client:
        client.send(["a", "b", "c"])
        client.send([b"x", b"y"])
        client.send("whole")
        assert_fragments_joined(outbox.get(), ["a", "b", "c"])
        assert_fragments_joined(outbox.get(), [b"x", b"y"])
        assert outbox.get() == ["whole"]


def test_recv_streaming_of_an_empty_message_yields_one_empty_chunk(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.send("")
        connection.send(b"")
        connection.recv(timeout=5)

    running = ferrows_server(handler)
    with connect(running.url, open_timeout=5) as client:
        assert list(client.recv_streaming()) == [""]
        assert list(client.recv_streaming()) == [b""]
        client.send("done")


@pytest.mark.parametrize(
    ("sent", "decode", "expected"),
    [
        ("text", None, "text"),
        ("text", True, "text"),
        ("text", False, b"text"),
        (b"binary", None, b"binary"),
        (b"binary", False, b"binary"),
        (b"binary", True, "binary"),
        ("κόσμε", False, "κόσμε".encode()),
    ],
)
def test_recv_decode_option(
    echo_server: Running, sent: str | bytes, decode: bool | None, expected: str | bytes
) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        client.send(sent)
        received = client.recv(timeout=5, decode=decode)
    assert type(received) is type(expected)
    assert received == expected


def test_recv_streaming_decode_option(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        client.send(["ab", "cd"])
        assert b"".join(client.recv_streaming(decode=False)) == b"abcd"
        client.send([b"ef", b"gh"])
        assert "".join(client.recv_streaming(decode=True)) == "efgh"


def test_iteration_ends_cleanly_on_close_1000(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        for message in ("one", b"two", "three"):
            connection.send(message)
        # Returning closes with 1000.

    running = ferrows_server(handler)
    with connect(running.url, open_timeout=5) as client:
        received = []
        deadline = time.monotonic() + 10
        for message in client:
            received.append(message)
            assert len(received) <= 3, received
            assert time.monotonic() < deadline
        assert received == ["one", b"two", "three"]
        assert client.close_code == 1000
        assert client.close_reason == ""


def test_recv_timeout_raises_timeout_error_and_keeps_the_connection(
    echo_server: Running,
) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        started = time.monotonic()
        with pytest.raises(fx.TimeoutError) as info:
            client.recv(timeout=0.2)
        elapsed = time.monotonic() - started
        assert isinstance(info.value, TimeoutError)
        assert 0.15 <= elapsed < 2.0, elapsed
        client.send("after the timeout")
        assert client.recv(timeout=5) == "after the timeout"


def test_ping_latency(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5, ping_interval=None) as client:
        assert client.latency == 0.0
        latency = client.ping().wait(timeout=5)
        assert isinstance(latency, float)
        assert 0 < latency < 5
        assert client.latency > 0
        with_data = client.ping("custom payload").wait(timeout=5)
        assert 0 < with_data < 5
        bytes_data = client.ping(b"\x00\x01").wait(timeout=5)
        assert 0 < bytes_data < 5


def test_ping_waiter_done(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5, ping_interval=None) as client:
        waiter = client.ping()
        waiter.wait(timeout=5)
        assert waiter.done()


def test_server_can_ping_the_client(ferrows_server: Callable[..., Running], outbox: Outbox) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put(connection.ping().wait(timeout=5))
        outbox.put(connection.latency)
        connection.recv(timeout=5)

    running = ferrows_server(handler, ping_interval=None)
    with connect(running.url, open_timeout=5) as client:
        assert 0 < outbox.get() < 5
        assert outbox.get() > 0
        client.send("done")


def test_keepalive_pings_measure_latency(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5, ping_interval=0.1, ping_timeout=2) as client:
        deadline = time.monotonic() + 5
        # The keepalive runs in the engine: poll the latency it records, bounded.
        while client.latency == 0.0 and time.monotonic() < deadline:
            with pytest.raises(fx.TimeoutError):
                client.recv(timeout=0.05)
        assert client.latency > 0


def test_connection_properties(ferrows_server: Callable[..., Running], outbox: Outbox) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put(
            (
                connection.id,
                connection.local_address,
                connection.remote_address,
                connection.request.path if connection.request else None,
                connection.subprotocol,
            )
        )
        connection.recv(timeout=5)

    running = ferrows_server(handler)
    with connect(running.url + "chat?room=1", open_timeout=5) as client:
        server_id, server_local, server_remote, path, server_subprotocol = outbox.get()
        assert client.id != server_id
        assert client.remote_address == (HOST, running.port)
        assert server_local == (HOST, running.port)
        assert server_remote == client.local_address
        assert path == "/chat?room=1"
        assert client.subprotocol is None
        assert server_subprotocol is None
        assert client.response is not None
        assert client.response.status_code == 101
        assert client.request is not None
        assert client.request.path == "/chat?room=1"
        assert client.close_code is None
        assert client.close_reason is None
        assert client.id in repr(client)
        client.send("done")


def test_connection_ids_are_uuid4(echo_server: Running) -> None:
    ids = []
    for _ in range(8):
        with connect(echo_server.url, open_timeout=5) as client:
            ids.append(client.id)
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.variant == uuid.RFC_4122, value
        assert parsed.version == 4, value
    assert len(set(ids)) == len(ids)


def test_client_close_code_and_reason_reach_the_server(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        try:
            connection.recv(timeout=10)
        except fx.ConnectionClosed as exc:
            outbox.put(exc)
            outbox.put((connection.close_code, connection.close_reason))

    running = ferrows_server(handler)
    client = connect(running.url, open_timeout=5)
    client.close(4000, "bye")
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedError
    assert exc.rcvd is not None
    assert exc.rcvd.code == 4000
    assert exc.rcvd.reason == "bye"
    assert exc.sent is not None
    assert exc.sent.code == 4000
    assert exc.rcvd_then_sent is True
    assert exc.code == 4000
    assert exc.reason == "bye"
    assert outbox.get() == (4000, "bye")
    # The client sees the close frame the server sent back (RFC 6455 only requires the
    # code to be echoed).
    assert client.close_code == 4000
    assert client.close_reason == exc.sent.reason
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=5)
    assert info.value.sent is not None
    assert info.value.sent.code == 4000
    assert info.value.rcvd_then_sent is False


def test_client_close_1000_is_ok_on_the_server(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        try:
            connection.recv(timeout=10)
        except fx.ConnectionClosed as exc:
            outbox.put(exc)

    running = ferrows_server(handler)
    with connect(running.url, open_timeout=5):
        pass
    exc = outbox.get()
    assert type(exc) is fx.ConnectionClosedOK
    assert exc.rcvd is not None
    assert exc.rcvd.code == 1000


def test_server_close_1001_gives_connection_closed_ok(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.close(1001, "going away now")

    running = ferrows_server(handler)
    client = connect(running.url, open_timeout=5)
    with pytest.raises(fx.ConnectionClosedOK) as info:
        client.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    assert info.value.rcvd.reason == "going away now"
    assert info.value.code == 1001
    assert client.close_code == 1001
    assert client.close_reason == "going away now"


def test_server_close_with_private_code_gives_connection_closed_error(
    ferrows_server: Callable[..., Running],
) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.close(4321, "custom")

    running = ferrows_server(handler)
    client = connect(running.url, open_timeout=5)
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4321, "custom")
    assert "4321" in str(info.value)


def test_handler_exception_closes_with_1011(ferrows_server: Callable[..., Running]) -> None:
    def handler(connection: ServerConnection) -> None:
        connection.recv(timeout=5)
        raise RuntimeError("handler bug")

    running = ferrows_server(handler)
    client = connect(running.url, open_timeout=5)
    client.send("trigger")
    with pytest.raises(fx.ConnectionClosedError) as info:
        client.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1011


def test_context_manager_exit_with_exception_closes_with_1011(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        try:
            connection.recv(timeout=10)
        except fx.ConnectionClosed as exc:
            outbox.put(exc)

    running = ferrows_server(handler)
    with pytest.raises(ZeroDivisionError), connect(running.url, open_timeout=5):
        1 / 0  # noqa: B018
    exc = outbox.get()
    assert exc.rcvd is not None
    assert exc.rcvd.code == 1011


def test_send_and_recv_after_close_raise_connection_closed(echo_server: Running) -> None:
    client = connect(echo_server.url, open_timeout=5)
    client.close()
    with pytest.raises(fx.ConnectionClosedOK):
        client.send("too late")
    with pytest.raises(fx.ConnectionClosedOK):
        client.recv(timeout=1)
    with pytest.raises(fx.ConnectionClosed):
        client.ping()
    # Closing again returns at once.
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.0


def test_wait_closed(ferrows_server: Callable[..., Running]) -> None:
    release = threading.Event()

    def handler(connection: ServerConnection) -> None:
        release.wait(10)

    running = ferrows_server(handler)
    client = connect(running.url, open_timeout=5)
    try:
        assert client.wait_closed(timeout=0.1) is False
        release.set()
        assert client.wait_closed(timeout=5) is True
        assert client.close_code == 1000
    finally:
        release.set()
        client.close()


def test_two_threads_receiving_raise_concurrency_error(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        results: list[object] = []

        def receive() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    results.append(client.recv(timeout=10))
                    return
                except fx.ConcurrencyError:
                    continue  # the main thread held the lock for a moment: try again
                except Exception as exc:
                    results.append(exc)
                    return

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        error: fx.ConcurrencyError | None = None
        deadline = time.monotonic() + 5
        while error is None and time.monotonic() < deadline:
            try:
                client.recv(timeout=0.02)
            except fx.ConcurrencyError as exc:
                error = exc
            except fx.TimeoutError:
                continue  # the thread is not receiving yet
        assert error is not None, "a second concurrent recv did not raise ConcurrencyError"
        assert isinstance(error, RuntimeError)
        with pytest.raises(fx.ConcurrencyError):
            next(iter(client.recv_streaming()))
        client.send("for the receiving thread")
        thread.join(10)
        assert not thread.is_alive()
        assert results == ["for the receiving thread"]


def test_one_thread_sends_while_another_receives(echo_server: Running) -> None:
    count = 500
    with connect(echo_server.url, open_timeout=5) as client:
        received: list[object] = []

        def receive() -> None:
            for _ in range(count):
                received.append(client.recv(timeout=10))

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        for i in range(count):
            client.send(str(i))
        thread.join(20)
        assert not thread.is_alive()
    assert received == [str(i) for i in range(count)]


def test_many_clients_at_once(echo_server: Running) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with connect(echo_server.url, open_timeout=5) as client:
                for i in range(20):
                    client.send(f"{n}:{i}")
                    assert client.recv(timeout=5) == f"{n}:{i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert errors == []


def test_additional_headers_reach_the_server(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        headers = connection.request.headers
        outbox.put((headers["X-Token"], headers.get_all("X-Multi"), headers.get("User-Agent")))
        connection.recv(timeout=5)

    running = ferrows_server(handler)
    for additional in (
        {"X-Token": "secret", "X-Multi": "one"},
        [("X-Token", "secret"), ("X-Multi", "one"), ("X-Multi", "two")],
        ferrows.Headers([("X-Token", "secret"), ("X-Multi", "one")]),
    ):
        with connect(
            running.url, open_timeout=5, additional_headers=additional, user_agent_header="me/1"
        ) as client:
            token, multi, agent = outbox.get()
            assert token == "secret"
            assert multi[0] == "one"
            assert agent == "me/1"
            assert client.request is not None
            assert client.request.headers["X-Token"] == "secret"
            client.send("done")
        if isinstance(additional, list):
            assert multi == ["one", "two"]


def test_response_has_a_ferrows_server_header(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5) as client:
        assert client.response is not None
        server = client.response.headers["Server"]
    assert server.startswith("ferrows/")
    assert server == f"ferrows/{ferrows.__version__}"
    assert re.fullmatch(r"ferrows/\d+\.\d+\.\d+.*", server)


def test_server_header_can_be_changed_or_removed(ferrows_server: Callable[..., Running]) -> None:
    custom = ferrows_server(server_header="custom/2.0")
    removed = ferrows_server(server_header=None)
    with connect(custom.url, open_timeout=5) as client:
        assert client.response is not None
        assert client.response.headers["Server"] == "custom/2.0"
    with connect(removed.url, open_timeout=5) as client:
        assert client.response is not None
        assert "Server" not in client.response.headers


@pytest.mark.parametrize(
    ("server_protocols", "client_protocols", "expected"),
    [
        (["b", "a"], ["a", "b"], "b"),
        (["a", "b"], ["b", "a"], "a"),
        (["chat"], ["other", "chat"], "chat"),
        (["b", "a"], None, None),
        (["b", "a"], ["c"], None),
        (None, ["a"], None),
    ],
)
def test_subprotocol_negotiation(
    ferrows_server: Callable[..., Running],
    outbox: Outbox,
    server_protocols: list[str] | None,
    client_protocols: list[str] | None,
    expected: str | None,
) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put(connection.subprotocol)
        connection.recv(timeout=5)

    running = ferrows_server(handler, subprotocols=server_protocols)
    with connect(running.url, open_timeout=5, subprotocols=client_protocols) as client:
        assert client.subprotocol == expected
        assert outbox.get() == expected
        assert client.response is not None
        assert client.response.headers.get("Sec-WebSocket-Protocol") == expected
        client.send("done")


def test_select_subprotocol_callback(
    ferrows_server: Callable[..., Running], outbox: Outbox
) -> None:
    def select(connection: ServerConnection, offered: list[str]) -> str | None:
        assert connection.request is not None
        outbox.put(list(offered))
        if connection.request.path == "/none":
            return None
        return offered[-1]

    running = ferrows_server(select_subprotocol=select, subprotocols=["x"])
    with connect(running.url, open_timeout=5, subprotocols=["x", "y", "z"]) as client:
        assert outbox.get() == ["x", "y", "z"]
        assert client.subprotocol == "z"
    with connect(running.url + "none", open_timeout=5, subprotocols=["x", "y"]) as client:
        assert outbox.get() == ["x", "y"]
        assert client.subprotocol is None
    with connect(running.url, open_timeout=5) as client:
        assert client.subprotocol is None


def test_server_shutdown_closes_open_connections_with_1001(
    ferrows_server: Callable[..., Running],
) -> None:
    running = ferrows_server()
    client = connect(running.url, open_timeout=5)
    client.send("ping")
    assert client.recv(timeout=5) == "ping"
    stopper = threading.Thread(target=running.server.shutdown, daemon=True)
    stopper.start()
    with pytest.raises(fx.ConnectionClosedOK) as info:
        client.recv(timeout=5)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1001
    assert client.close_code == 1001
    stopper.join(10)
    assert not stopper.is_alive()
    running.thread.join(5)
    assert not running.thread.is_alive(), "serve_forever kept running after shutdown"
    with pytest.raises(OSError):
        connect(running.url, open_timeout=2)


def test_server_as_context_manager(outbox: Outbox) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put("handled")
        connection.recv(timeout=10)

    with ferrows.sync.serve(handler, HOST, 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        assert server.local_address == (HOST, server.port)
        client = connect(f"ws://{HOST}:{server.port}", open_timeout=5)
        assert outbox.get() == "handled"
    thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(fx.ConnectionClosedOK):
        client.recv(timeout=5)
    assert client.close_code == 1001


def test_max_connections(ferrows_server: Callable[..., Running], outbox: Outbox) -> None:
    def handler(connection: ServerConnection) -> None:
        outbox.put("open")
        try:
            for message in connection:
                connection.send(message)
        finally:
            outbox.put("closed")

    running = ferrows_server(handler, max_connections=1)
    first = connect(running.url, open_timeout=5)
    assert outbox.get() == "open"
    with pytest.raises(fx.InvalidStatus) as info:
        connect(running.url, open_timeout=5)
    assert info.value.response.status_code == 503
    first.send("first still works")
    assert first.recv(timeout=5) == "first still works"
    first.close()
    assert outbox.get() == "closed"
    # The engine frees the slot as the connection ends, concurrently with the handler's
    # return: a few attempts at most, bounded in count and time.
    third = None
    deadline = time.monotonic() + 5
    for _ in range(50):
        try:
            third = connect(running.url, open_timeout=5)
            break
        except fx.InvalidStatus as exc:
            assert exc.response.status_code == 503
            assert time.monotonic() < deadline, "the slot was never released"
    assert third is not None, "the slot was never released"
    with third:
        assert outbox.get() == "open"
        third.send("third")
        assert third.recv(timeout=5) == "third"
