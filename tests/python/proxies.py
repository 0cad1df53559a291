"""Real proxies for the tests: tinyproxy (HTTP CONNECT), microsocks (SOCKS5) and stunnel (TLS
in front of tinyproxy: an https:// proxy), the Debian packages tests/run.sh installs, each
started on a free port of 127.0.0.1 for one test; and a "proxy" that accepts and never
answers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from wsutil import HOST

USER, PASSWORD = "alice", "s3cret"
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class ProxyProcess:
    """A proxy running in a child process; ``url()`` names it, with credentials if it has
    them (``credentials=`` overrides them)."""

    scheme: str
    port: int
    process: subprocess.Popen[bytes]
    credentials: tuple[str, str] | None = None
    log: list[str] = field(default_factory=list)

    def url(self, credentials: tuple[str, str] | bool | None = True) -> str:
        chosen = self.credentials if credentials is True else credentials or None
        user_info = f"{chosen[0]}:{chosen[1]}@" if chosen else ""
        return f"{self.scheme}://{user_info}{HOST}:{self.port}"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(START_TIMEOUT)


def _need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"{program} is missing: tests/run.sh installs it with apt-get")
    return path


def start_tinyproxy(directory: Path, auth: bool) -> ProxyProcess:
    """tinyproxy in the foreground; ready once it logs that it accepts connections."""
    port = free_port()
    config = directory / f"tinyproxy-{port}.conf"
    lines = [
        f"Port {port}",
        f"Listen {HOST}",
        "Timeout 30",
        "MaxClients 50",
        "LogLevel Info",
        "User nobody",
        "Group nogroup",
    ]
    if auth:
        lines.append(f"BasicAuth {USER} {PASSWORD}")
    config.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        [_need("tinyproxy"), "-d", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    proxy = ProxyProcess("http", port, process, (USER, PASSWORD) if auth else None)
    _wait_for_line(proxy, "Accepting connections", "tinyproxy")
    return proxy


def start_microsocks(auth: bool) -> ProxyProcess:
    """microsocks; it logs nothing when it listens, so its port is polled (bounded)."""
    port = free_port()
    command = [_need("microsocks"), "-i", HOST, "-p", str(port)]
    if auth:
        command += ["-u", USER, "-P", PASSWORD]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = ProxyProcess("socks5h", port, process, (USER, PASSWORD) if auth else None)
    deadline = time.monotonic() + START_TIMEOUT
    for _ in range(1000):
        try:
            socket.create_connection((HOST, port), timeout=START_TIMEOUT).close()
            return proxy
        except ConnectionRefusedError:
            if process.poll() is not None or time.monotonic() > deadline:
                break
            # Refused at once until it listens: yield the core to it rather than spin.
            time.sleep(0.01)
    proxy.stop()
    raise RuntimeError(f"microsocks did not listen on port {port}")


class SilentProxy:
    """Accepts connections (the kernel's backlog does) and never answers."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind((HOST, 0))
        self.socket.listen(8)
        self.port = self.socket.getsockname()[1]

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{HOST}:{self.port}"

    def close(self) -> None:
        self.socket.close()


PROXY_KINDS = ["tinyproxy", "tinyproxy-auth", "microsocks", "microsocks-auth"]
"""Plain TCP to the proxy; ``tinyproxy-tls`` and ``tinyproxy-auth-tls`` put stunnel in front
(an ``https://`` proxy) and need a certificate."""


def start_stunnel(directory: Path, upstream: ProxyProcess, cert: Path, key: Path) -> ProxyProcess:
    """stunnel (TLS) in front of `upstream`: an https:// proxy with its credentials. Ready
    once it logs that it accepts connections."""
    port = free_port()
    config = directory / f"stunnel-{port}.conf"
    config.write_text(
        "\n".join(
            [
                "foreground = yes",
                "pid =",
                "debug = info",
                "[https-proxy]",
                f"accept = {HOST}:{port}",
                f"connect = {HOST}:{upstream.port}",
                f"cert = {cert}",
                f"key = {key}",
            ]
        )
        + "\n"
    )
    process = subprocess.Popen(
        [_need("stunnel"), str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    proxy = ProxyProcess("https", port, process, upstream.credentials)
    _wait_for_line(proxy, "Accepting new connections", "stunnel")
    return proxy


def _wait_for_line(proxy: ProxyProcess, text: str, name: str) -> None:
    """Follows the proxy's output (kept in ``proxy.log``) until a line holds ``text``."""
    ready = threading.Event()

    def follow() -> None:
        assert proxy.process.stdout is not None
        for raw in proxy.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            proxy.log.append(line)
            if text in line:
                ready.set()

    threading.Thread(target=follow, name=f"{name}-{proxy.port}", daemon=True).start()
    if not ready.wait(START_TIMEOUT):
        proxy.stop()
        raise RuntimeError(f"{name} did not start:\n" + "\n".join(proxy.log))


StartProxy = Callable[..., ProxyProcess]


@pytest.fixture
def start_proxy(tmp_path: Path) -> Iterator[StartProxy]:
    """Factory: ``start_proxy(kind, cert=None, key=None)`` with a kind of
    :data:`PROXY_KINDS` (or a ``-tls`` one, with the certificate and key of the proxy);
    stopped at teardown."""
    started: list[ProxyProcess] = []

    def start(kind: str, cert: Path | None = None, key: Path | None = None) -> ProxyProcess:
        program, *options = kind.split("-")
        auth = "auth" in options
        if program == "tinyproxy":
            proxy = start_tinyproxy(tmp_path, auth=auth)
        else:
            proxy = start_microsocks(auth=auth)
        started.append(proxy)
        if "tls" in options:
            assert cert is not None and key is not None, "a TLS proxy needs a certificate"
            proxy = start_stunnel(tmp_path, proxy, cert, key)
            started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def silent_proxy() -> Iterator[SilentProxy]:
    proxy = SilentProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without proxy variables, which the test then sets."""
    for name in ("ws", "wss", "socks", "https", "http", "all", "no"):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
    return monkeypatch
