"""Messages, fragmentation, streaming, pings, close codes and cancellation."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading

import pytest
import websockets.asyncio.client
import websockets.asyncio.server
from aiosupport import (
    HOST,
    aiotest,
    bounded,
    drain,
    echo,
    send_large_messages_back_to_back,
    settle,
    still_pending,
    ws_url,
)
from ferrows import _ferrows
from ferrows.asyncio import ServerConnection, connect, serve
from ferrows.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)
from wsutil import RawServer, RawStream, assert_fragments_joined, split_message_peer

MIB = 1 << 20


def websockets_port(server: websockets.asyncio.server.Server) -> int:
    return next(iter(server.sockets)).getsockname()[1]


class Recorder:
    """A websockets server handler that records each message's frames, via recv_streaming."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[list[str | bytes]] = asyncio.Queue()

    async def __call__(self, connection: websockets.asyncio.server.ServerConnection) -> None:
        try:
            while True:
                frames = [frame async for frame in connection.recv_streaming()]
                await self.messages.put(frames)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def next(self) -> list[str | bytes]:
        return await bounded(self.messages.get())


@aiotest
async def test_text_binary_empty_and_one_mebibyte():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            for message in ["text", "ünïcødé ☃", b"\x00binary\xff", "", b"", b"m" * MIB, "t" * MIB]:
                await ws.send(message)
                answer = await bounded(ws.recv())
                assert type(answer) is type(message)
                assert answer == message


@aiotest
async def test_large_messages_sent_back_to_back_arrive_intact():
    async with serve(echo, HOST, 0, max_size=None) as server:
        await send_large_messages_back_to_back(ws_url(server.port))


@aiotest
async def test_bursts_of_large_messages_of_mixed_sizes_arrive_intact():
    """Messages from 16 KiB up are assembled in buffers the thread recycles (the echo server
    on this loop shares them), many held at once and of any capacity: each must come out
    holding its own bytes only, burst after burst."""
    sizes = [16384, 65536, 20000, MIB, 40000, 65537, 16384, 3 * MIB]
    messages = [bytes([i + 1]) * size for i, size in enumerate(sizes)]
    async with serve(echo, HOST, 0, max_size=None) as server:
        async with connect(ws_url(server.port), max_size=None) as ws:
            for _ in range(3):
                for message in messages:
                    ws.send_nowait(message)
                for message in messages:
                    answer = await bounded(ws.recv())
                    assert len(answer) == len(message) and answer == message
                messages.reverse()


def test_a_large_frame_still_referenced_is_never_overwritten():
    """The send buffer that large frames reuse: while anything refers to one (a transport
    keeping what it could not write yet), the next frame is written elsewhere."""
    # A server's frames (payloads unmasked), with a send buffer to reuse.
    core = _ferrows.ProtocolCore(False, {}, send_buffer=_ferrows.SendBuffer())
    first = core.send(b"a" * MIB)
    second = core.send(b"b" * MIB)
    assert bytes(first[-MIB:]) == b"a" * MIB
    assert bytes(second[-MIB:]) == b"b" * MIB
    del first, second
    third = core.send(b"c" * (MIB // 2))
    assert len(third) == 10 + MIB // 2 and bytes(third[10:]) == b"c" * (MIB // 2)


@aiotest
async def test_messages_sent_in_one_turn_keep_their_order_among_pings_and_fragments():
    """Whole messages sent in one turn of the loop wait in the core for one write; a ping,
    a fragmented message or a close written meanwhile goes after them, never before."""
    recorder = Recorder()
    async with websockets.asyncio.server.serve(recorder, HOST, 0) as server:
        async with connect(ws_url(websockets_port(server))) as ws:
            ws.send_nowait("one")
            await ws.send(b"two")
            pong = await ws.ping(b"p")
            ws.send_nowait("three")
            await ws.send(["fr", "ag"])
            await ws.send("four")
            ws.send_nowait("five")
            await ws.close()
        expected = [["one"], [b"two"], ["three"], ["fr", "ag"], ["four"], ["five"]]
        assert [await recorder.next() for _ in expected] == expected
        assert await bounded(pong) >= 0


@aiotest
async def test_bytes_like_messages_are_sent_as_binary():
    recorder = Recorder()
    async with websockets.asyncio.server.serve(recorder, HOST, 0) as server:
        async with connect(ws_url(websockets_port(server))) as ws:
            await ws.send(bytearray(b"from a bytearray"))
            assert await recorder.next() == [b"from a bytearray"]
            await ws.send(memoryview(b"..from a memoryview..")[2:-2])
            assert await recorder.next() == [b"from a memoryview"]
            await ws.send(b"binary as text", text=True)
            assert await recorder.next() == ["binary as text"]
            await ws.send("text as binary", text=False)
            assert await recorder.next() == [b"text as binary"]
            with pytest.raises(TypeError):
                await ws.send(12345)  # type: ignore[arg-type]


@aiotest
async def test_fragmented_send_from_a_list_is_several_frames():
    recorder = Recorder()
    async with websockets.asyncio.server.serve(recorder, HOST, 0) as server:
        async with connect(ws_url(websockets_port(server))) as ws:
            await ws.send(["frag", "men", "ted"])
            assert await recorder.next() == ["frag", "men", "ted"]
            await ws.send([b"\x01\x02", bytearray(b"\x03"), memoryview(b"\x04\x05")])
            assert await recorder.next() == [b"\x01\x02", b"\x03", b"\x04\x05"]
            await ws.send([])  # nothing to send: no message
            await ws.send("after")
            assert await recorder.next() == ["after"]


@aiotest
async def test_fragmented_send_from_an_async_generator_is_several_frames():
    recorder = Recorder()

    async def fragments():
        for index in range(5):
            await asyncio.sleep(0)
            yield f"part{index};"

    async def big_fragments():
        for _ in range(4):
            yield b"B" * 100_000

    async with websockets.asyncio.server.serve(recorder, HOST, 0) as server:
        async with connect(ws_url(websockets_port(server))) as ws:
            await ws.send(fragments())
            assert await recorder.next() == [f"part{i};" for i in range(5)]
            await ws.send(big_fragments())
            frames = await recorder.next()
            assert len(frames) == 4
            assert b"".join(frames) == b"B" * 400_000


@aiotest
async def test_fragments_of_mixed_types_are_refused():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            with pytest.raises(TypeError):
                await ws.send(["text", b"bytes"])


@aiotest
async def test_fragmented_message_is_received_whole_by_recv():
    async def send_fragments(connection: websockets.asyncio.server.ServerConnection) -> None:
        await connection.send(["a", "b", "c"])
        await connection.send([b"1", b"2"])
        await connection.wait_closed()

    async with websockets.asyncio.server.serve(send_fragments, HOST, 0) as server:
        async with connect(ws_url(websockets_port(server))) as ws:
            assert await bounded(ws.recv()) == "abc"
            assert await bounded(ws.recv()) == b"12"


@aiotest
async def test_recv_streaming_yields_the_frames_of_one_message():
    async def send_fragments(connection: websockets.asyncio.server.ServerConnection) -> None:
        await connection.send(["alpha", "beta", "gamma"])
        await connection.send(b"single")
        await connection.send([b"x", b"y"])
        await connection.wait_closed()

    async with websockets.asyncio.server.serve(send_fragments, HOST, 0) as server:
        async with connect(ws_url(websockets_port(server))) as ws:
            chunks = await drain(ws.recv_streaming())
            # websockets ends a fragmented message with an empty final frame.
            assert_fragments_joined(chunks, ["alpha", "beta", "gamma", ""])
            assert await drain(ws.recv_streaming()) == [b"single"]
            chunks = await drain(ws.recv_streaming(decode=True))
            assert "".join(chunks) == "xy"
            assert all(isinstance(chunk, str) for chunk in chunks)


@aiotest
async def test_recv_streaming_then_recv_keep_message_boundaries():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.send("first")
            await ws.send(b"second")
            assert await drain(ws.recv_streaming(decode=False)) == [b"first"]
            assert await bounded(ws.recv()) == b"second"


@aiotest
async def test_decode_argument_of_recv():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.send("text")
            assert await bounded(ws.recv(decode=False)) == b"text"
            await ws.send(b"bytes")
            assert await bounded(ws.recv(decode=True)) == "bytes"
            await ws.send("kept")
            assert await bounded(ws.recv(decode=True)) == "kept"
            await ws.send(b"kept")
            assert await bounded(ws.recv(decode=False)) == b"kept"


@aiotest
async def test_async_for_ends_on_a_clean_close():
    async def three_then_close(connection: ServerConnection) -> None:
        for index in range(3):
            await connection.send(f"message {index}")

    async with serve(three_then_close, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            assert await drain(ws) == ["message 0", "message 1", "message 2"]
            assert ws.close_code == 1000


@aiotest
async def test_async_for_raises_on_an_error_close():
    async def send_then_fail(connection: ServerConnection) -> None:
        await connection.send("before the error")
        raise RuntimeError("handler failure (expected by the test)")

    async with serve(send_then_fail, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            received = []

            async def collect() -> None:
                async for message in ws:
                    received.append(message)

            with pytest.raises(ConnectionClosedError) as caught:
                await bounded(collect())
            assert received == ["before the error"]
            assert caught.value.code == 1011
            assert ws.close_code == 1011


@aiotest
async def test_ping_resolves_to_a_positive_latency():
    async with serve(echo, HOST, 0, ping_interval=None) as server:
        async with connect(ws_url(server.port), ping_interval=None) as ws:
            assert ws.latency == 0.0
            waiter = await ws.ping()
            latency = await bounded(waiter)
            assert isinstance(latency, float)
            assert 0 < latency < 5
            assert ws.latency == latency
            # Custom payloads; a pong answers its ping and every earlier one.
            first = await ws.ping("one")
            second = await ws.ping(b"two")
            assert await bounded(second) > 0
            assert await bounded(first) > 0
            # A payload already waiting for its pong is refused.
            pending = await ws.ping(b"same")
            with pytest.raises(ConcurrencyError):
                await ws.ping(b"same")
            await bounded(pending)


@aiotest
async def test_pending_ping_fails_when_the_connection_closes():
    def never_answer(stream: RawStream, server: RawServer) -> None:
        stream.read_frame(timeout=5)  # the ping, unanswered
        stream.close()

    raw = RawServer(after=never_answer).start()
    try:
        async with connect(raw.url, ping_interval=None) as ws:
            waiter = await ws.ping()
            with pytest.raises(ConnectionClosed):
                await bounded(waiter)
    finally:
        raw.close()


@aiotest
async def test_unsolicited_pong_does_not_disturb_the_peer():
    async with serve(echo, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            await ws.pong(b"heartbeat")
            await ws.send("still fine")
            assert await bounded(ws.recv()) == "still fine"


@aiotest
async def test_client_close_code_and_reason_reach_the_server():
    seen = asyncio.get_running_loop().create_future()

    async def wait_for_close(connection: ServerConnection) -> None:
        with pytest.raises(ConnectionClosedError) as caught:
            await connection.recv()
        settle(seen, (caught.value, connection.close_code, connection.close_reason))

    async with serve(wait_for_close, HOST, 0) as server:
        ws = await connect(ws_url(server.port))
        await bounded(ws.close(4000, "client reason"))
        exc, code, reason = await bounded(seen)
    assert (exc.rcvd.code, exc.rcvd.reason) == (4000, "client reason")
    assert (exc.sent.code, exc.sent.reason) == (4000, "client reason")
    assert exc.rcvd_then_sent is True
    assert (code, reason) == (4000, "client reason")
    assert (ws.close_code, ws.close_reason) == (4000, "client reason")


@aiotest
async def test_server_close_code_and_reason_reach_the_client():
    async def close_with_code(connection: ServerConnection) -> None:
        await connection.close(4001, "server reason")

    async with serve(close_with_code, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            with pytest.raises(ConnectionClosedError) as caught:
                await bounded(ws.recv())
            assert (caught.value.code, caught.value.reason) == (4001, "server reason")
            assert caught.value.rcvd_then_sent is True
            assert (ws.close_code, ws.close_reason) == (4001, "server reason")
            # Once closed, sending raises too.
            with pytest.raises(ConnectionClosedError):
                await ws.send("too late")


@aiotest
async def test_normal_close_raises_connection_closed_ok():
    async def close_normally(connection: ServerConnection) -> None:
        await connection.close(1000, "done")

    async with serve(close_normally, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            with pytest.raises(ConnectionClosedOK) as caught:
                await bounded(ws.recv())
            assert caught.value.reason == "done"
            assert (ws.close_code, ws.close_reason) == (1000, "done")


def drop_with_reset(stream: RawStream, server: RawServer) -> None:
    """Drops the TCP connection with a RST right after the handshake."""
    stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()


def drop_with_fin(stream: RawStream, server: RawServer) -> None:
    stream.close()


@aiotest
@pytest.mark.parametrize("drop", [drop_with_fin, drop_with_reset], ids=["fin", "rst"])
async def test_abrupt_tcp_drop_raises_1006(raw_server, drop):
    server = raw_server(after=drop)
    async with connect(server.url, ping_interval=None) as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            await bounded(ws.recv())
        assert caught.value.code == 1006
        assert caught.value.rcvd is None
        assert caught.value.sent is None
        assert ws.close_code == 1006
        assert ws.close_reason == ""
        await bounded(ws.wait_closed())


@aiotest
async def test_abrupt_client_drop_raises_1006_in_the_handler():
    seen = asyncio.get_running_loop().create_future()

    async def wait_for_close(connection: ServerConnection) -> None:
        try:
            await connection.recv()
        except ConnectionClosed as exc:
            settle(seen, exc)

    async with serve(wait_for_close, HOST, 0) as server:
        ws = await connect(ws_url(server.port))
        ws._transport.abort()  # no close frame
        exc = await bounded(seen)
    assert isinstance(exc, ConnectionClosedError)
    assert exc.code == 1006


@aiotest
async def test_cancelled_recv_loses_no_message():
    sender: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

    async def hold(connection: ServerConnection) -> None:
        settle(sender, connection)
        await connection.wait_closed()

    async with serve(hold, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            peer = await bounded(sender)
            receiving = asyncio.ensure_future(ws.recv())
            assert await still_pending(receiving, 0.1)
            receiving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await bounded(receiving)
            await peer.send("sent after the cancellation")
            assert await bounded(ws.recv()) == "sent after the cancellation"
            # Again, binary this time.
            receiving = asyncio.ensure_future(ws.recv())
            assert await still_pending(receiving, 0.05)
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            await peer.send(b"then binary")
            assert await bounded(ws.recv()) == b"then binary"


@aiotest
async def test_cancel_racing_an_arriving_message_loses_nothing():
    sender: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

    async def hold(connection: ServerConnection) -> None:
        settle(sender, connection)
        await connection.wait_closed()

    rounds = 100
    async with serve(hold, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            peer = await bounded(sender)
            received: list[str | bytes] = []
            outcomes = {"received": 0, "cancelled": 0}
            for index in range(rounds):
                receiving = asyncio.ensure_future(ws.recv())
                await asyncio.sleep(0)  # the task now waits for data
                peer.send_nowait(f"message {index}")
                # Cancel at various points: before the bytes are read, in the iteration that
                # reads them, or after the waiter was woken but before the task resumed.
                for _ in range(index % 6):
                    await asyncio.sleep(0)
                receiving.cancel()
                (result,) = await bounded(asyncio.gather(receiving, return_exceptions=True))
                if isinstance(result, asyncio.CancelledError):
                    outcomes["cancelled"] += 1
                else:
                    assert not isinstance(result, BaseException), result
                    outcomes["received"] += 1
                    received.append(result)
                # Take what the cancelled recv left behind, if it has arrived.
                while len(received) < index + 1:
                    received.append(await bounded(ws.recv()))
            await peer.send("end")
            assert await bounded(ws.recv()) == "end"
    assert received == [f"message {i}" for i in range(rounds)], outcomes
    # Both sides of the race happened: some cancellations won, some recv calls completed.
    assert outcomes["cancelled"] > 0, outcomes
    assert outcomes["received"] > 0, outcomes


@aiotest
async def test_concurrent_recv_raises_concurrency_error():
    sender: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

    async def hold(connection: ServerConnection) -> None:
        settle(sender, connection)
        await connection.wait_closed()

    async with serve(hold, HOST, 0) as server:
        async with connect(ws_url(server.port)) as ws:
            peer = await bounded(sender)
            first = asyncio.ensure_future(ws.recv())
            assert await still_pending(first, 0.05)
            with pytest.raises(ConcurrencyError):
                await bounded(ws.recv())
            with pytest.raises(ConcurrencyError):
                await drain(ws.recv_streaming())
            assert issubclass(ConcurrencyError, RuntimeError)
            # The first recv is undisturbed and gets the next message.
            await peer.send("for the first")
            assert await bounded(first) == "for the first"
            await peer.send("next")
            assert await bounded(ws.recv()) == "next"


@aiotest
async def test_recv_timing_out_mid_message_keeps_the_part(raw_server):
    release = threading.Event()
    server = raw_server(after=split_message_peer(release))
    async with connect(server.url, ping_interval=None, close_timeout=1) as ws:
        for _ in range(3):  # each timeout (a cancellation of recv) keeps what arrived
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
        release.set()
        assert await bounded(ws.recv()) == "héllo, world!"
        assert await bounded(ws.recv()) == "next"
