"""Helpers for the C and C++ interop tests: paths, bounded runs of commands and of the C
programs, and the echo handlers of the Python servers they talk to."""

from __future__ import annotations

import os
import queue
import re
import signal
import ssl
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
INSTALL = ROOT / "ffi-c" / "install.sh"
PROGRAMS = ("echo_client", "echo_server", "poll_server", "echo_client_cpp")
# The tools the suite needs; tests/run.sh installs them (apt-get install -y cmake pkg-config).
TOOLS = ("cc", "c++", "make", "cmake", "pkg-config", "readelf", "ldd")

BUILD_TIMEOUT = 300.0  # seconds, for install.sh, make, cmake
RUN_TIMEOUT = 30.0  # seconds, for one run of a client program
STOP_TIMEOUT = 15.0  # seconds, for a server to exit after SIGTERM or SIGINT
LISTEN_TIMEOUT = 10.0  # seconds, for a server to print "listening on PORT"
JOIN_TIMEOUT = 10.0  # seconds, for a thread to finish


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
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion within ``timeout``; with ``check``, an exit status other
    than 0 fails the test, showing the command's output."""
    command = [str(arg) for arg in argv]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited with {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def pkg_config_env(prefix: Path) -> dict[str, str]:
    return {**os.environ, "PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}


def compile_c(source: Path, out: Path, package: str, env: dict[str, str] | None = None) -> Path:
    """Builds one C program against a pkg-config package, with -Wall -Wextra -Werror and an
    rpath to the package's libdir."""
    flags = run(["pkg-config", "--cflags", "--libs", package], env=env).stdout.split()
    libdir = run(["pkg-config", "--variable=libdir", package], env=env).stdout.strip()
    strict = ["-std=c11", "-Wall", "-Wextra", "-Werror", f"-Wl,-rpath,{libdir}"]
    run(["cc", *strict, source, "-o", out, *flags, "-lpthread"])
    return out


def run_client(
    build_dir: Path,
    program: str,
    url: str,
    messages: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a C or C++ echo client to completion, within RUN_TIMEOUT."""
    return run(
        [build_dir / program, url, *messages],
        timeout=RUN_TIMEOUT,
        env={**os.environ, **(env or {})},
        check=False,
    )


class ServerProcess:
    """A C server program: started, its port read from "listening on PORT", its output
    collected by reader threads (so a full pipe never blocks it), stopped by a signal."""

    def __init__(self, argv: Sequence[str | os.PathLike[str]], env: dict[str, str] | None):
        self.argv = [str(arg) for arg in argv]
        self.process = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
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
        self.port = self._wait_listening(LISTEN_TIMEOUT)

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
                pytest.fail(f"{self.argv} exited with {self.process.returncode}\n{self.output}")
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
        """Sends ``signum``, waits (bounded) for the exit, and returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout, f"signal {signum}")

    def wait(self, timeout: float, since: str = "its start") -> int:
        """Waits (bounded) for the exit, and returns the exit status."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.argv} still running {timeout} s after {since}\n{self.output}")
        for reader in self._readers:
            reader.join(JOIN_TIMEOUT)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(JOIN_TIMEOUT)


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


@dataclass
class TlsFiles:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_pem, self.key_pem)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_pem)


def ferrows_echo(connection: ferrows.sync.ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def websockets_echo(connection: websockets.sync.server.ServerConnection) -> None:
    for message in connection:
        connection.send(message)
