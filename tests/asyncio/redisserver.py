"""A Redis server (Debian's ``redis-server``) on a loopback port, for the topics tests and
the fan-out benchmark: started, killed and started again on the same port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

READY = b"Ready to accept connections"
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``, without persistence, in ``directory``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("no redis-server: apt-get install redis-server (tests/run.sh)")
        self.executable = executable
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Starts the server; returns once it accepts connections (as its log says)."""
        self.process = subprocess.Popen(
            [
                self.executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                *("--logfile", ""),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        ready = threading.Event()
        log: list[bytes] = []
        threading.Thread(target=self._watch, args=(ready, log), daemon=True).start()
        if not ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"redis-server did not start: {b''.join(log)!r}")
        return self

    def _watch(self, ready: threading.Event, log: list[bytes]) -> None:
        """Reads the server's log to its end (so that it never blocks on a full pipe)."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if len(log) < 100:
                log.append(line)
            if READY in line:
                ready.set()

    def stop(self) -> None:
        """Kills the server (as a crash would) and waits for it to exit."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(START_TIMEOUT)
            self.process = None
