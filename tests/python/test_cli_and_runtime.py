"""The command line (`python -m ferrows`) and the engine's runtime across fork()."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time

import pytest
from ferrows.sync.client import connect
from wsutil import HOST

CHILD_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited early"
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port: there is nothing to await
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def cli_server():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ferrows", "serve", "--host", HOST, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        wait_listening(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(CHILD_TIMEOUT)


def test_cli_serve_echoes_text_and_binary(cli_server):
    with connect(f"ws://{HOST}:{cli_server}") as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=5) == "hello"
        websocket.send(b"\x00\x01")
        assert websocket.recv(timeout=5) == b"\x00\x01"


def test_cli_connect_sends_typed_lines_and_prints_replies(cli_server):
    process = subprocess.Popen(
        [sys.executable, "-m", "ferrows", "connect", f"ws://{HOST}:{cli_server}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout])
    reader.start()
    try:
        assert lines.get(timeout=CHILD_TIMEOUT).startswith("connected to")
        for typed in ("first line", "second line"):
            # A person types one line and sees its echo before typing the next.
            process.stdin.write(typed + "\n")
            process.stdin.flush()
            assert lines.get(timeout=CHILD_TIMEOUT) == f"< {typed}\n"
        process.stdin.close()  # Ctrl-D
        assert process.wait(CHILD_TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(CHILD_TIMEOUT)
        reader.join(CHILD_TIMEOUT)


def test_cli_demo_runs_the_whole_exchange():
    result = subprocess.run(
        [sys.executable, "-m", "ferrows", "demo"],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=True,
    )
    assert "echoed 'Hello, ferrows!'" in result.stdout
    assert "identical: True" in result.stdout
    assert "closed with code 1000" in result.stdout


def test_runtime_is_rebuilt_in_a_forked_child(echo_server):
    # The parent's runtime exists before the fork; the child must get a working one.
    with connect(echo_server.url) as websocket:
        websocket.send("parent")
        assert websocket.recv(timeout=5) == "parent"
    pid = os.fork()
    if pid == 0:  # the child: any failure is its exit status
        status = 1
        try:
            with connect(echo_server.url, open_timeout=5) as websocket:
                websocket.send("child")
                status = 0 if websocket.recv(timeout=5) == "child" else 2
        finally:
            os._exit(status)
    deadline = time.monotonic() + CHILD_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)  # waitpid has no timeout: poll, bounded
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the forked child hung")
    assert os.waitstatus_to_exitcode(status) == 0
