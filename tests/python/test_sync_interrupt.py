"""Ctrl-C (SIGINT) interrupts blocking calls promptly, in a child Python process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

# The child blocks in a ferrows call after printing "ready", catches KeyboardInterrupt and
# prints "interrupted <latency> <caught>": the latency is measured from the moment the
# signal arrived (the C-level handler writes to the wakeup fd, which a thread watches) to
# the moment the exception reached the main thread; <caught> is time.monotonic() then.
CHILD = r"""
import os
import signal
import socket
import sys
import threading
import time

import ferrows.sync

scenario = sys.argv[1]

# Note the arrival of the signal, independently of when Python code gets to run.
arrived = []
read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
signal.set_wakeup_fd(write_end)


def watch():
    os.read(read_end, 1)
    arrived.append(time.monotonic())


watcher = threading.Thread(target=watch, daemon=True)
watcher.start()


def echo(connection):
    for message in connection:
        connection.send(message)


if scenario == "recv":
    server = ferrows.sync.serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ferrows.sync.connect(f"ws://127.0.0.1:{server.port}", open_timeout=5)
    client.send("warm up")
    assert client.recv(timeout=5) == "warm up"
    action, native = client.recv, "recv"
elif scenario == "connect":
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    action = lambda: ferrows.sync.connect(f"ws://127.0.0.1:{port}", open_timeout=None)
    native = "wait"
elif scenario == "serve_forever":
    server = ferrows.sync.serve(echo, "127.0.0.1", 0)
    action, native = server.serve_forever, "accept"
elif scenario == "recv_streaming":
    server = ferrows.sync.serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = ferrows.sync.connect(f"ws://127.0.0.1:{server.port}", open_timeout=5)
    action, native = (lambda: list(client.recv_streaming())), "recv_chunk"
elif scenario in ("ping", "recv_partial"):
    # A hand-made peer that completes the handshake, then runs `then(sock)`.
    import base64
    import hashlib

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]

    def raw_peer(then):
        sock, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += sock.recv(4096)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        accept = base64.b64encode(hashlib.sha1(key + guid).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        then(sock)
        while sock.recv(4096):
            pass

    release = threading.Event()

    def split_message(sock):
        # The first fragment of a text message; the rest once the child was interrupted.
        first = "héllo, ".encode()
        sock.sendall(bytes([0x01, len(first)]) + first)
        if release.wait(10):
            sock.sendall(b"\x80\x06world!")

    then = split_message if scenario == "recv_partial" else (lambda sock: None)
    threading.Thread(target=raw_peer, args=(then,), daemon=True).start()
    client = ferrows.sync.connect(f"ws://127.0.0.1:{port}", open_timeout=5, ping_interval=None)
    if scenario == "ping":
        action, native = client.ping().wait, "wait"
    else:
        action, native = client.recv, "recv"

        def after_interrupt():
            release.set()
            print("then " + client.recv(timeout=5), flush=True)
else:
    raise SystemExit(f"unknown scenario {scenario}")

# Print "ready" once the main thread has entered the native blocking call.
if "after_interrupt" not in globals():
    after_interrupt = None
entered = threading.Event()


def profile(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", None) == native:
        entered.set()


def announce():
    if entered.wait(10):
        print("ready", flush=True)
    else:
        print("never blocked", flush=True)


threading.Thread(target=announce, daemon=True).start()
sys.setprofile(profile)
try:
    action()
except KeyboardInterrupt:
    caught = time.monotonic()
    sys.setprofile(None)
    watcher.join(2)
    latency = caught - arrived[0] if arrived else float("nan")
    print(f"interrupted {latency:.6f} {caught:.6f}", flush=True)
    if after_interrupt is not None:
        after_interrupt()
    sys.exit(0)
sys.setprofile(None)
print("returned without interruption", flush=True)
sys.exit(3)
"""


class Child:
    """A child Python process whose stdout lines are read by a thread, bounded waits."""

    def __init__(self, scenario: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, scenario],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the child printed nothing within {timeout} s") from None

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "<still running>"
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def spawn() -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:
        child.kill()
        if child.process.stdout is not None:
            child.process.stdout.close()
        if child.process.stderr is not None:
            child.process.stderr.close()


def interrupt(child: Child) -> None:
    """Sends SIGINT once the child blocks in its native call."""
    ready = child.next_line(timeout=30)
    assert ready == "ready", f"{ready!r}; stderr: {child.stderr()}"
    child.process.send_signal(signal.SIGINT)


def test_sigint_during_recv_keeps_the_partly_received_message(spawn: list[Child]) -> None:
    child = Child("recv_partial")
    spawn.append(child)
    interrupt(child)
    line = child.next_line(timeout=5)
    assert line is not None and line.startswith("interrupted "), f"{line!r}: {child.stderr()}"
    # Nothing lost, nothing split: the next recv() returns the whole message.
    assert child.next_line(timeout=10) == "then héllo, world!", child.stderr()
    assert child.process.wait(timeout=10) == 0, child.stderr()


@pytest.mark.parametrize("scenario", ["recv", "recv_streaming", "connect", "serve_forever", "ping"])
def test_sigint_interrupts_a_blocking_call(spawn: list[Child], scenario: str) -> None:
    child = Child(scenario)
    spawn.append(child)
    ready = child.next_line(timeout=30)
    assert ready == "ready", f"{ready!r}; stderr: {child.stderr()}"
    sent_at = time.monotonic()
    child.process.send_signal(signal.SIGINT)
    try:
        returncode = child.process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the child did not exit within 2 s of SIGINT ({scenario})") from None
    exited_at = time.monotonic()
    line = child.next_line(timeout=2)
    assert line is not None, f"no output; stderr: {child.stderr()}"
    assert line.startswith("interrupted "), f"{line!r}; stderr: {child.stderr()}"
    latency_text, caught_text = line.split()[1:]
    latency = float(latency_text)
    seen_by_parent = float(caught_text) - sent_at  # CLOCK_MONOTONIC is system-wide on Linux
    print(
        f"{scenario}: signal-to-exception {latency * 1000:.1f} ms in the child, "
        f"{seen_by_parent * 1000:.1f} ms from the parent's kill, "
        f"exit after {(exited_at - sent_at) * 1000:.0f} ms"
    )
    assert returncode == 0, child.stderr()
    # The engine checks for signals every 50 ms: < 0.1 s expected, 0.5 s allows for slack.
    assert 0 <= latency < 0.5, latency
    assert seen_by_parent < 0.5, seen_by_parent
