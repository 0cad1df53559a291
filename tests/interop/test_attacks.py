"""Attacks on every server face (sync, asyncio, C), each server in its own process.

Each test has a peer do something that costs it little and could cost the server a lot —
pings it never reads the answers to, floods of empty or one-byte frames, tiny messages to a
handler that is busy — and asserts that the server's resident memory stays under a stated
bound during the attack and after it, that the attack ends as the protocol says (1009, or the
server simply stops reading), and that a well-behaved client on the same server keeps echoing
with bounded latency meanwhile.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import ferrows.sync
import pytest
from interop_support import HOST, ROOT, ServerProcess, compile_c, pkg_config_env

sys.path.insert(0, str(ROOT / "tests" / "python"))

from wsutil import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawStream,
    accept_value,
    encode_frame,
    handshake_request,
    new_key,
    parse_close,
)

FACES = ("sync", "asyncio", "c")
ATTACK_SECONDS = 20.0  # the longest an attack may send for
# What an attack may add to a server's resident memory, during it and after it. Measured
# before the message layer: 9 MB (pings), 93 MB (empty fragments), 40-68 MB (one-byte
# fragments); measured after it: under 3 MB for each (see the closing notes).
RSS_BOUND_KIB = 8 * 1024
# The probe's echo latency during an attack, at the 99th percentile.
PROBE_P99_SECONDS = 0.25
PROBE_ROUND_TRIPS = 100


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.fixture(scope="session")
def c_attack_server(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/interop/attack_server.c built against the installed libferrows."""
    out = tmp_path_factory.mktemp("attack") / "attack_server"
    source = Path(__file__).with_name("attack_server.c")
    return compile_c(source, out, "ferrows", pkg_config_env(prefix))


@pytest.fixture
def start_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., ServerProcess]]:
    """Starts an attack server of a face; options are limits (Python keyword names)."""
    started: list[ServerProcess] = []

    def start(face: str, **options: object) -> ServerProcess:
        if face == "c":
            program = request.getfixturevalue("c_attack_server")
            argv = [program]
            if "max_fragments" in options:
                argv.append(str(options.pop("max_fragments") or 0))
            assert not options, f"the C attack server takes no {options}"
        else:
            script = Path(__file__).with_name("attack_server.py")
            argv = [sys.executable, script, face, json.dumps(options)]
        server = ServerProcess(argv, None)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


class Probe:
    """A well-behaved client echoing on the attacked server, in a thread, until stopped."""

    def __init__(self, port: int) -> None:
        self.client = ferrows.sync.connect(f"ws://{HOST}:{port}/", open_timeout=5)
        self.latencies: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 3 * ATTACK_SECONDS
        try:
            while time.monotonic() < deadline:
                if self._stop.is_set() and len(self.latencies) >= PROBE_ROUND_TRIPS:
                    return
                started = time.monotonic()
                self.client.send("probe")
                assert self.client.recv(timeout=5) == "probe"
                self.latencies.append(time.monotonic() - started)
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> None:
        """Stops once the probe made enough round trips (some after the attack), checks them."""
        self._stop.set()
        self._thread.join(20)
        self.client.close()
        assert self.error is None, f"the probe failed: {self.error!r}"
        assert len(self.latencies) >= PROBE_ROUND_TRIPS, f"{len(self.latencies)} round trips"
        p99 = statistics.quantiles(self.latencies, n=100)[98]
        assert p99 < PROBE_P99_SECONDS, f"probe p99 {p99 * 1000:.0f} ms"


def attacker(port: int, busy: bool, offer: str | None = None) -> RawStream:
    """A peer with a tiny receive buffer that completes the handshake by hand; with `busy`,
    the server's handler never reads it; `offer` is its Sec-WebSocket-Extensions."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((HOST, port))
    stream = RawStream(sock)
    key = new_key()
    extra = ["Sec-WebSocket-Protocol: busy"] if busy else []
    if offer:
        extra.append(f"Sec-WebSocket-Extensions: {offer}")
    stream.send(handshake_request(port, key=key, extra=extra))
    head = stream.read_head()
    assert head.status == 101 and head.get("Sec-WebSocket-Accept") == accept_value(key), head
    return stream


def flood(stream: RawStream, frame: bytes, count: int, batch: int = 4096) -> tuple[int, str]:
    """Sends `frame` `count` times in batches, bounded by ATTACK_SECONDS. Returns how many
    were sent and why it stopped: "sent" (all), "paused" (the server stopped reading: a
    send waited 2 s), or "closed" (the server ended the connection)."""
    deadline = time.monotonic() + ATTACK_SECONDS
    chunk = frame * batch
    sent = 0
    stream.sock.settimeout(2)
    try:
        while sent < count:
            assert time.monotonic() < deadline, f"{sent} frames sent in {ATTACK_SECONDS} s"
            stream.sock.sendall(chunk)
            sent += batch
    except socket.timeout:
        return sent, "paused"
    except (BrokenPipeError, ConnectionResetError):
        return sent, "closed"
    return sent, "sent"


class Memory:
    """The server's resident memory: a baseline, then the peak of samples taken on demand."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_kib(pid)
        self.peak = self.baseline

    def sample(self) -> int:
        now = rss_kib(self.pid)
        self.peak = max(self.peak, now)
        return now

    def check(self, when: str) -> None:
        now = self.sample()
        print(
            f"{when}: RSS +{self.peak - self.baseline} KiB at peak, +{now - self.baseline} KiB now"
        )
        assert self.peak - self.baseline < RSS_BOUND_KIB, (
            f"{when}: RSS grew by {(self.peak - self.baseline) // 1024} MiB at its peak "
            f"(baseline {self.baseline // 1024} MiB)"
        )
        assert now - self.baseline < RSS_BOUND_KIB, f"{when}: RSS {now // 1024} MiB"


def close_code_of(stream: RawStream) -> int | None:
    """The code of the server's close frame, reading past anything before it."""
    code, _ = parse_close(stream.read_until_close_frame(timeout=10, max_frames=1_000_000))
    return code


def attack_with_probe(
    server: ServerProcess,
    attack: Callable[[RawStream, Memory], None],
    *,
    busy: bool = False,
    offer: str | None = None,
) -> None:
    """Warms the server up, starts the probe, runs `attack`, then checks memory after the
    attacker is gone (once the probe has made a round trip since)."""
    probe = Probe(server.port)
    memory = Memory(server.process.pid)
    stream = attacker(server.port, busy, offer)
    try:
        attack(stream, memory)
        memory.check("during the attack")
    finally:
        stream.close()
    probe.stop()
    memory.check("after the attack")


@pytest.mark.parametrize("face", FACES)
def test_ping_flood_from_a_peer_that_never_reads_owes_few_pongs(face, start_server):
    server = start_server(face)

    def attack(stream: RawStream, memory: Memory) -> None:
        ping = encode_frame(OP_PING, b"ping")
        sent, outcome = flood(stream, ping, 3_000_000)
        memory.sample()
        # The server reads every ping (a few pongs are owed at a time) or stops reading.
        assert outcome in ("sent", "paused"), (sent, outcome)

    attack_with_probe(server, attack)


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize(
    ("fragment", "count", "busy"),
    [(b"", 3_000_000, True), (b"a", 1_000_000, False)],
    ids=["empty-to-a-busy-handler", "one-byte"],
)
def test_fragment_flood_past_max_fragments_fails_with_1009(
    face, fragment, count, busy, start_server
):
    server = start_server(face)

    def attack(stream: RawStream, memory: Memory) -> None:
        stream.send(encode_frame(OP_TEXT, b"x", fin=False))
        sent, outcome = flood(stream, encode_frame(OP_CONT, fragment, fin=False), count)
        memory.sample()
        # Empty fragments are not queued, others join one chunk; past max_fragments the
        # message is refused (the server may read and drop the rest for a while after).
        assert close_code_of(stream) == 1009, (sent, outcome)

    attack_with_probe(server, attack, busy=busy)


@pytest.mark.parametrize("face", FACES)
def test_a_million_one_byte_fragments_without_a_frame_limit_cost_one_buffer(face, start_server):
    server = start_server(face, max_fragments=None)

    def attack(stream: RawStream, memory: Memory) -> None:
        stream.send(encode_frame(OP_TEXT, b"a", fin=False))
        sent, outcome = flood(stream, encode_frame(OP_CONT, b"a", fin=False), 1_000_000)
        memory.sample()
        # Nobody reads them, and they joined one chunk of a megabyte: nothing to refuse.
        assert outcome == "sent", (sent, outcome)

    attack_with_probe(server, attack, busy=True)


def pausing_flood(
    frame: bytes, count: int, batch: int = 4096
) -> Callable[[RawStream, Memory], None]:
    """An attack sending `frame` `count` times that the server must stop reading."""

    def attack(stream: RawStream, memory: Memory) -> None:
        sent, outcome = flood(stream, frame, count, batch)
        memory.sample()
        assert outcome == "paused", (sent, outcome)

    return attack


@pytest.mark.parametrize("face", FACES)
def test_tiny_message_flood_to_a_busy_handler_pauses_reading(face, start_server):
    server = start_server(face)
    # Each queued message is charged a fixed overhead: the inbox fills, reading stops.
    attack = pausing_flood(encode_frame(OP_TEXT, b""), 3_000_000)
    attack_with_probe(server, attack, busy=True)


@pytest.mark.parametrize("face", FACES)
def test_compressed_flood_to_a_busy_handler_holds_the_inbox_to_its_limit(face, start_server):
    server = start_server(face)
    # A message of almost 1 MiB (the default max_size) in about 1 KiB: one read of such
    # messages inflates to dozens of MiB, unless the server holds what the inbox has no room for.
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = deflater.compress(bytes((1 << 20) - 1024)) + deflater.flush(zlib.Z_SYNC_FLUSH)
    # The inbox fills to its limit, the rest is held compressed, reading stops.
    attack = pausing_flood(encode_frame(OP_BINARY, payload[:-4], rsv=4), 100_000, batch=64)
    attack_with_probe(server, attack, busy=True, offer="permessage-deflate")
