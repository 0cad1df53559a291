"""Helpers for the C and C++ interop tests: the paths, bounded runs of commands and of the
C programs, and the Python echo servers they talk to."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ferrows.sync
import pytest
import websockets.sync.server

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
EXAMPLES = ROOT / "examples" / "c"
HEADER = ROOT / "include" / "ferrows.h"
PROGRAMS = ("echo_client", "echo_server", "poll_server", "echo_client_cpp")
# The tools the suite needs; tests/run.sh installs them (apt-get install -y cmake pkg-config).
TOOLS = ("cc", "c++", "make", "cmake", "pkg-config", "readelf")

BUILD_TIMEOUT = 300.0  # seconds, for install.sh, make, cmake
RUN_TIMEOUT = 30.0  # seconds, for one client program run
STOP_TIMEOUT = 15.0  # seconds, for a server to exit after SIGTERM or SIGINT
JOIN_TIMEOUT = 10.0


def header_version() -> str:
    """MAJOR.MINOR.PATCH from the FERROWS_VERSION_* macros of include/ferrows.h."""
    text = HEADER.read_text()
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        match = re.search(rf"^#define FERROWS_VERSION_{part} (\d+)\s*$", text, re.MULTILINE)
        assert match, f"FERROWS_VERSION_{part} missing from {HEADER}"
        parts.append(match.group(1))
    return ".".join(parts)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = BUILD_TIMEOUT,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion (bounded); with ``check``, fails the test on an error,
    showing its output."""
    result = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited with {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def pkg_config_env(prefix: Path) -> dict[str, str]:
    return {**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}


def tools() -> None:
    """A missing tool is an install step that did not run, never a reason to skip."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: install them (tests/run.sh does "
            "'apt-get install -y cmake pkg-config' and needs a C/C++ toolchain)"
        )


def prefix(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ferrows installed by ffi-c/install.sh into a temporary prefix."""
    prefix = tmp_path_factory.mktemp("prefix")
    run(["bash", ROOT / "ffi-c" / "install.sh", prefix])
    return prefix


def make_build(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples built by examples/c/Makefile, finding ferrows with pkg-config."""
    out = tmp_path_factory.mktemp("make-build")
    run(["make", "-C", EXAMPLES, f"OUT={out}"], env=pkg_config_env(prefix))
    return out


def cmake_build(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples built by examples/c/CMakeLists.txt, with find_package(ferrows)."""
    out = tmp_path_factory.mktemp("cmake-build")
    run(["cmake", "-S", EXAMPLES, "-B", out, f"-DCMAKE_PREFIX_PATH={prefix}"])
    run(["cmake", "--build", out, "--parallel", "2"])
    return out


def build(request: pytest.FixtureRequest) -> Path:
    """Each test using it runs with both builds of the examples."""
    return request.getfixturevalue(f"{request.param}_build")


class ServerProcess:
    """A C server program: started, its port read from "listening on PORT", its output
    collected by reader threads (so a full pipe never blocks it), stopped by a signal."""

    def __init__(self, argv: Sequence[str | os.PathLike[str]], env: dict[str, str] | None):
        self.argv = [str(arg) for arg in argv]
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout, True)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr, False)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()
        self.port = self._wait_listening(10.0)

    def _read(self, stream: Any, lines: list[str], forward: bool) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if forward:
                self._lines.put(line.rstrip("\n"))
        if forward:
            self._lines.put(None)

    def _wait_listening(self, timeout: float) -> int:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                pytest.fail(f"{self.argv}: no 'listening on PORT' within {timeout} s")
            if line is None:
                self.process.wait(JOIN_TIMEOUT)
                pytest.fail(f"{self.argv} exited with {self.process.returncode}: {self.output}")
            match = re.fullmatch(r"listening on (\d+)", line)
            if match:
                return int(match.group(1))

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    @property
    def output(self) -> str:
        return "\n".join(["--- stdout", *self.stdout, "--- stderr", *self.stderr])

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Sends ``signum`` and waits (bounded) for the exit; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv} still running {timeout} s after signal {signum}")
        for reader in self._readers:
            reader.join(JOIN_TIMEOUT)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(JOIN_TIMEOUT)


def c_server() -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``c_server(build_dir, "echo_server")`` runs a C server on a free port."""
    started: list[ServerProcess] = []

    def start(build_dir: Path, program: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess([build_dir / program, HOST, "0"], env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def run_client(
    build_dir: Path,
    program: str,
    url: str,
    messages: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a C or C++ echo client to completion, bounded by RUN_TIMEOUT."""
    return run(
        [build_dir / program, url, *messages],
        timeout=RUN_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


@dataclass
class PythonServer:
    """A Python echo server serving in a thread."""

    server: Any
    thread: threading.Thread
    port: int
    scheme: str = "ws"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}/"


def _ferrows_echo(connection: ferrows.sync.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def _websockets_echo(connection: websockets.sync.server.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def ferrows_echo_server() -> Iterator[Callable[..., PythonServer]]:
    """Factory for ferrows.sync.server.serve echo servers (keyword arguments go to serve)."""
    started: list[PythonServer] = []

    def start(**kwargs: Any) -> PythonServer:
        server = ferrows.sync.server.serve(_ferrows_echo, HOST, 0, **kwargs)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        scheme = "wss" if kwargs.get("certfile") else "ws"
        running = PythonServer(server, thread, server.port, scheme)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.shutdown()
        running.thread.join(JOIN_TIMEOUT)
        assert not running.thread.is_alive(), "ferrows serve_forever did not return"


def websockets_echo_server() -> Iterator[PythonServer]:
    """websockets' sync echo server."""
    server = websockets.sync.server.serve(_websockets_echo, HOST, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield PythonServer(server, thread, server.socket.getsockname()[1])
    server.shutdown()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "websockets serve_forever did not return"


@dataclass
class TlsFiles:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A trustme CA and a certificate it issued for 127.0.0.1, as PEM files."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert(HOST, "localhost")
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_pem))
    files.cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key_pem))
    return files
