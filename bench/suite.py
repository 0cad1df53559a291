"""The ferrows benchmark suite: every scenario of docs/performance.md, one table.

bench/run.sh installs and builds what it needs, then runs this. Loopback only; every server
process runs on CPU 0 and every client process on CPU 1 (taskset), so that each message
crosses cores the same way for every library. Each scenario is bounded in time: RUNS runs,
each a warm-up of echoes then a measured window (a server's load warms up once, before its
first window).
Two parts measure what the echo scenarios cannot: ``broadcast`` (one message to many
connections, servers of bench/broadcast.py and bench/c/ferrows_broadcast.c) and ``deflate``
(permessage-deflate, the processes of bench/deflate.py).
The table gives medians, the spread of the ranked figure ((max - min) / median) and its
ratio to the best peer (above 1.00: behind it); bench/results/ gets the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, Callable

HERE = Path(__file__).resolve().parent
SERVER_CPU, CLIENT_CPU = 0, 1
SIZES = (256, 8 * 1024, 64 * 1024, 1024 * 1024)
PIPELINED = 32
# Deflate rows: once ferrows takes compression="deflate", add "deflate" here and the client
# scenarios run again compressed, for the libraries bench/clients.py knows the option of.
COMPRESSIONS: tuple[str | None, ...] = (None,)
# The servers' load: (message size, connections, messages in flight on each).
SERVER_LOADS = (
    (256, 1, 1),
    (256, 1, PIPELINED),
    (256, 100, 1),
    (256, 1000, 1),
    (64 * 1024, 1, PIPELINED),
    (1024 * 1024, 1, 8),
)
HANDSHAKE_CONCURRENCY = 16
BROADCAST_SIZE = 256
BROADCAST_WARMUP_ROUNDS = 2
# How long one broadcast round may take, on top of SLACK_SECONDS for the whole part.
BROADCAST_ROUND_SECONDS = 10
# Messages in flight on each deflate client.
DEFLATE_WINDOW = 8
# How long a process may take beyond its measured time before it counts as failed: the
# load generator may take 120 s to open its connections to a slow server.
SLACK_SECONDS = 150


@dataclass(frozen=True)
class Profile:
    runs: int  # measured runs per scenario
    warmup: float  # seconds of echoes before a client's measured window
    server_warmup: float  # seconds of load before a server's first window
    seconds: float  # length of a measured window
    idle_connections: int
    idle_deadline: float  # seconds the idle connections may take to open
    probe_seconds: float  # a live client's echo latency window, alone and beside them
    broadcast_connections: int
    broadcast_rounds: int  # measured rounds per broadcast server, after warm-up rounds
    deflate_messages: int  # 64 KiB messages per measured deflate client run
    deflate_connections: int  # compressed connections held for the memory rows


PROFILES = {
    "full": Profile(
        runs=5,
        warmup=0.1,
        server_warmup=0.5,
        seconds=0.4,
        idle_connections=10_000,
        idle_deadline=30,
        probe_seconds=2,
        broadcast_connections=10_000,
        broadcast_rounds=20,
        deflate_messages=1000,
        deflate_connections=300,
    ),
    "quick": Profile(
        runs=1,
        warmup=0.02,
        server_warmup=0.05,
        seconds=0.05,
        idle_connections=500,
        idle_deadline=10,
        probe_seconds=0.2,
        broadcast_connections=500,
        broadcast_rounds=3,
        deflate_messages=50,
        deflate_connections=20,
    ),
}


@dataclass(frozen=True)
class Section:
    title: str
    ranked: str  # the figure ranked against the best peer
    lower_is_better: bool
    columns: tuple[tuple[str, str], ...]  # (heading, figure)
    about: str = ""  # what the rows measure and what ranks against what, under the title


CLIENT_COLUMNS = (("msg/s", "rate"), ("CPU us/msg", "cpu_us"))
SERVER_COLUMNS = (*CLIENT_COLUMNS, ("p50 us", "p50_us"), ("p99 us", "p99_us"))
SECTIONS = {
    section.title: section
    for section in (
        Section("asyncio clients", "cpu_us", True, CLIENT_COLUMNS),
        Section("sync clients", "cpu_us", True, CLIENT_COLUMNS),
        Section("C clients", "cpu_us", True, CLIENT_COLUMNS),
        Section("Python servers", "cpu_us", True, SERVER_COLUMNS),
        Section("C servers", "cpu_us", True, SERVER_COLUMNS),
        Section("ASGI servers", "cpu_us", True, SERVER_COLUMNS),
        Section(
            "idle memory",
            "kib_per_connection",
            True,
            (
                ("KiB/conn", "kib_per_connection"),
                ("open s", "open_s"),
                ("p99 alone", "p99_alone_us"),
                ("p99 beside", "p99_beside_idle_us"),
                ("p99 x", "p99_growth"),
            ),
        ),
        Section("handshakes", "rate", False, (("hs/s", "rate"), ("CPU us/hs", "cpu_us"))),
        Section(
            "broadcast",
            "cpu_ms",
            True,
            (("call ms", "call_ms"), ("delivered ms", "delivered_ms"), ("CPU ms", "cpu_ms")),
            about=(
                f"One {BROADCAST_SIZE} B message to every connection the load generator holds:"
                " the server's call (the broadcast, or the whole loop of sends), until the"
                " last connection has it (delivered), and the server's CPU time over that"
                " span. ferrows' asyncio broadcast() ranks against websockets.broadcast(),"
                " a loop of ferrows' send() against a loop of websockets' send(). The C rows"
                " have no peer (no other C library is measured): ferrows_broadcast reads"
                " against the loop of ferrows_conn_send beside it, unranked."
            ),
        ),
        Section(
            "deflate clients",
            "cpu_us",
            True,
            CLIENT_COLUMNS,
            about=(
                "permessage-deflate with context takeover: 64 KiB JSON-like text echoed by an"
                " aiohttp server, ferrows at its defaults (zlib-rs level 2), the peers at C"
                " zlib level 1. The sync client ranks against the asyncio peers too."
            ),
        ),
        Section(
            "deflate memory",
            "kib_per_connection",
            True,
            (("KiB/conn", "kib_per_connection"),),
            about=(
                "Server memory per compressed connection (one 4 KiB message each way, then"
                " held open), one run. With no context takeover ferrows keeps not even the"
                " server's window per connection: no peer is measured that way, so that row"
                " is unranked."
            ),
        ),
    )
}

# Python clients: kind (bench/clients.py), section, name in the table, role.
PYTHON_CLIENTS = (
    ("ferrows-await", "asyncio clients", "ferrows await", "ferrows"),
    ("ferrows-callback", "asyncio clients", "ferrows callback", "ferrows"),
    ("picows", "asyncio clients", "picows", "peer"),
    ("aiohttp", "asyncio clients", "aiohttp", "peer"),
    ("websockets", "asyncio clients", "websockets", "peer"),
    ("ferrows-sync", "sync clients", "ferrows sync", "ferrows"),
    ("websockets-sync", "sync clients", "websockets.sync", "peer"),
    ("websocket-client", "sync clients", "websocket-client", "peer"),
)
# Python servers: kind (bench/servers.py), name, role.
PYTHON_SERVERS = (
    ("ferrows-handler", "ferrows handler", "ferrows"),
    ("ferrows-callback", "ferrows callback", "ferrows"),
    ("ferrows-sync", "ferrows sync", "ferrows"),
    ("picows", "picows", "peer"),
    ("aiohttp", "aiohttp", "peer"),
    ("websockets", "websockets", "peer"),
    ("websockets-sync", "websockets.sync", "peer"),
)
# A Starlette echo endpoint under uvicorn, with each WebSocket protocol (bench/servers.py).
ASGI_SERVERS = (
    ("uvicorn-ferrows", "uvicorn + ferrows", "ferrows"),
    ("uvicorn-websockets", "uvicorn + websockets", "peer"),
    ("uvicorn-wsproto", "uvicorn + wsproto", "peer"),
)
# Broadcast servers: kind (bench/broadcast.py, or c- and the mode of ferrows_broadcast.c),
# scenario, name, role.
BROADCASTS = (
    ("ferrows-broadcast", "broadcast()", "ferrows", "ferrows"),
    ("websockets-broadcast", "broadcast()", "websockets", "peer"),
    ("ferrows-send-loop", "send loop", "ferrows", "ferrows"),
    ("websockets-send-loop", "send loop", "websockets", "peer"),
    ("c-broadcast", "C", "ferrows_broadcast", "ferrows"),
    ("c-send-loop", "C", "ferrows_conn_send loop", "ferrows"),
)
# Deflate clients and servers (bench/deflate.py): kind, name, role; servers say whether they
# keep context takeover.
DEFLATE_CLIENTS = (
    ("ferrows-sync", "ferrows sync", "ferrows"),
    ("ferrows-asyncio", "ferrows asyncio", "ferrows"),
    ("websockets", "websockets", "peer"),
    ("aiohttp", "aiohttp", "peer"),
)
DEFLATE_SERVERS = (
    ("ferrows-sync", "ferrows sync", "ferrows", True),
    ("ferrows-asyncio", "ferrows asyncio", "ferrows", True),
    ("websockets", "websockets", "peer", True),
    ("aiohttp", "aiohttp", "peer", True),
    ("ferrows-asyncio-no-takeover", "ferrows asyncio", "ferrows", False),
)
HANDSHAKE_SERVERS = (
    "ferrows-handler",
    "ferrows-sync",
    "picows",
    "aiohttp",
    "websockets",
    "websockets-sync",
)
LIBRARY_VERSIONS = (
    *("ferrows", "picows", "aiohttp", "websockets", "websocket-client", "uvloop"),
    *("uvicorn", "starlette", "wsproto", "httptools"),
)


@dataclass
class Row:
    section: str
    scenario: str
    name: str
    role: str  # "ferrows", "peer", or "floor" (what no WebSocket library can beat)
    samples: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    note: str | None = None
    median: dict[str, float] = field(default_factory=dict)
    spread: float | None = None
    ratio: float | None = None

    def add(self, measure: Callable[..., list[dict[str, float]]], *args: Any) -> None:
        """Adds what `measure(*args)` returns, or records why it failed (then measures no
        more)."""
        if self.error is not None:
            return
        try:
            self.samples.extend(measure(*args))
        except Exception as error:  # one failed scenario must not hide the others
            self.fail(error)

    def fail(self, error: BaseException) -> None:
        self.error = f"{type(error).__name__}: {error}"
        print(f"  FAILED {self.section} / {self.scenario} / {self.name}: {self.error}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *map(str, command)]


def read_line(stream: IO[str], timeout: float) -> str:
    """The next line of `stream`, waiting `timeout` seconds at most."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise TimeoutError(f"no answer within {timeout:.0f} s")
    line = stream.readline()
    if not line:
        raise RuntimeError("the process ended")
    return line


class Process:
    """A process on one core, its stderr in a log file; a server is ready once it printed
    ``ready``."""

    def __init__(self, cpu: int, command: list[str], log: Path, wait_ready: bool = True) -> None:
        self.log = log
        with open(log, "a") as stderr:
            self.process = subprocess.Popen(
                pinned(cpu, command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        if wait_ready:
            try:
                line = read_line(self.process.stdout, 30)  # type: ignore[arg-type]
            except Exception:
                self.stop()
                raise
            if line.strip() != "ready":
                self.stop()
                raise RuntimeError(f"{command[0]} said {line!r}, see {log}")

    @property
    def pid(self) -> int:
        return self.process.pid  # taskset runs the command in its own process

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Sends a JSON line and returns the JSON line answered (bench/clients.py)."""
        return self.say(json.dumps(request), timeout)

    def say(self, line: str, timeout: float) -> dict[str, Any]:
        """Sends a line and returns the JSON line answered."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.answer(timeout)

    def answer(self, timeout: float) -> dict[str, Any]:
        """The next line the process prints, as JSON."""
        assert self.process.stdout is not None
        return json.loads(read_line(self.process.stdout, timeout))

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def run_json(command: list[str], timeout: float) -> list[dict[str, Any]]:
    """Runs a client on the client core and returns its JSON lines."""
    done = subprocess.run(
        pinned(CLIENT_CPU, command), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def per_message(result: dict[str, Any], cpu_key: str) -> dict[str, float]:
    """Messages (or handshakes) per second and CPU microseconds per message of a window."""
    count = result["count"]
    if count <= 0:
        raise RuntimeError("nothing completed in the measured window")
    figures = {"rate": count / result["seconds"], "cpu_us": result[cpu_key] / count * 1e6}
    figures.update({key: result[key] for key in ("p50_us", "p99_us", "open_s") if key in result})
    return figures


def size_label(size: int) -> str:
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    if size >= 1 << 10:
        return f"{size >> 10} KiB"
    return f"{size} B"


def client_scenario(size: int, inflight: int, compression: str | None) -> str:
    label = f"{size_label(size)} x{inflight}"
    return f"{label} {compression}" if compression else label


class Suite:
    def __init__(self, profile: Profile, bin_dir: Path, loadgen: Path, logs: Path) -> None:
        self.profile = profile
        self.bin_dir = bin_dir
        self.loadgen = loadgen
        self.logs = logs
        self.rows: list[Row] = []

    def row(self, section: str, scenario: str, name: str, role: str) -> Row:
        row = Row(section, scenario, name, role)
        self.rows.append(row)
        return row

    def echo_server(self, raw: bool = False) -> tuple[Process, int]:
        port = free_port()
        command = [self.loadgen, "echo", "--port", port, *(["--raw"] if raw else [])]
        return Process(SERVER_CPU, command, self.logs / "echo.log"), port

    # --- clients against the reference echo server (bench/loadgen)

    def python_clients(self) -> None:
        print("Python clients against the reference echo server")
        echo, port = self.echo_server()
        workers: dict[str, Process] = {}
        try:
            for compression in COMPRESSIONS:
                for size in SIZES:
                    for inflight in (1, PIPELINED):
                        self.python_client_scenario(workers, port, size, inflight, compression)
        finally:
            for worker in workers.values():
                worker.stop()
            echo.stop()

    def python_client_scenario(
        self,
        workers: dict[str, Process],
        port: int,
        size: int,
        inflight: int,
        compression: str | None,
    ) -> None:
        from clients import CLIENTS, options

        scenario = client_scenario(size, inflight, compression)
        rows = {}
        for kind, section, name, role in PYTHON_CLIENTS:
            try:
                options(CLIENTS[kind][0], compression)
            except ValueError:
                continue  # the library has no such compression
            rows[kind] = self.row(section, scenario, name, role)
        request = {
            "port": port,
            "size": size,
            "inflight": inflight,
            "warmup": self.profile.warmup,
            "seconds": self.profile.seconds,
            "compression": compression,
        }

        def measure(kind: str) -> list[dict[str, float]]:
            if kind not in workers:
                command = [sys.executable, HERE / "clients.py", kind]
                log = self.logs / f"client-{kind}.log"
                workers[kind] = Process(CLIENT_CPU, command, log, wait_ready=False)
            try:
                answer = workers[kind].ask(request, self.profile.seconds + SLACK_SECONDS)
            except Exception:
                workers.pop(kind).stop()
                raise
            if "error" in answer:
                raise RuntimeError(answer["error"])
            return [per_message(answer, "cpu_s")]

        for _ in range(self.profile.runs):
            for kind, row in rows.items():
                row.add(measure, kind)

    def c_clients(self) -> None:
        print("C clients against the reference echo server")
        echo, port = self.echo_server()
        raw_echo, raw_port = self.echo_server(raw=True)
        clients = (
            ("ferrows (C)", "ferrows", "ferrows_client", port),
            ("libwebsockets", "peer", "lws_client", port),
            ("raw TCP", "floor", "tcp_client", raw_port),
        )
        try:
            for size in SIZES:
                for inflight in (1, PIPELINED):
                    scenario = client_scenario(size, inflight, None)
                    rows = [
                        (self.row("C clients", scenario, name, role), program, target)
                        for name, role, program, target in clients
                    ]
                    for _ in range(self.profile.runs):
                        for row, program, target in rows:
                            row.add(self.c_client, program, target, size, inflight)
        finally:
            echo.stop()
            raw_echo.stop()

    def c_client(self, program: str, port: int, size: int, inflight: int):
        profile = self.profile
        command = [self.bin_dir / program, port, size, inflight, profile.warmup, profile.seconds]
        (result,) = run_json(command, profile.warmup + profile.seconds + SLACK_SECONDS)
        return [per_message(result, "cpu_s")]

    # --- servers under the load generator

    def load(
        self, server: Process, port: int, size: int, connections: int, inflight: int, raw: bool
    ):
        profile = self.profile
        warmup = profile.server_warmup
        command = [
            self.loadgen, "load", "--port", port, "--pid", server.pid,
            "--connections", connections, "--inflight", inflight, "--size", size,
            "--warmup", warmup, "--seconds", profile.seconds, "--runs", profile.runs,
            *(["--raw"] if raw else []),
        ]  # fmt: skip
        timeout = warmup + profile.runs * profile.seconds + SLACK_SECONDS
        return [per_message(result, "server_cpu_s") for result in run_json(command, timeout)]

    def servers(
        self, section: str, servers: list[tuple[str, str, list[Any], bool]], idle: bool = True
    ) -> None:
        """Each server (name, role, command taking the port last, raw TCP or not) under
        each load of SERVER_LOADS, then, restarted, holding idle connections (unless
        `idle` is False)."""
        print(f"{section} under the load generator")
        for name, role, command, raw in servers:
            loads = [
                (self.row(section, f"{size_label(size)} {c} conn x{k}", name, role), size, c, k)
                for size, c, k in SERVER_LOADS
            ]
            port = free_port()
            try:
                server = Process(SERVER_CPU, [*command, port], self.logs / f"{name}.log")
            except Exception as error:
                for row, *_ in loads:
                    row.fail(error)
                continue
            with server:
                for row, size, connections, inflight in loads:
                    row.add(self.load, server, port, size, connections, inflight, raw)
            if idle and not raw:
                self.idle_memory(name, role, command)

    def idle_memory(self, name: str, role: str, command: list[Any]) -> None:
        connections = self.profile.idle_connections
        deadline = self.profile.idle_deadline
        row = self.row("idle memory", f"{connections:,} connections", name, role)

        def measure() -> list[dict[str, float]]:
            port = free_port()
            with Process(SERVER_CPU, [*command, port], self.logs / f"{name}.log") as server:
                args = ["idle", "--port", port, "--pid", server.pid]
                args += ["--connections", connections, "--deadline", deadline]
                args += ["--probe", self.profile.probe_seconds]
                timeout = deadline + 2 * self.profile.probe_seconds + SLACK_SECONDS
                (result,) = run_json([self.loadgen, *args], timeout)
            if result["connections"] < connections or result["closed"]:
                row.note = (
                    f"{result['connections']:,} of {connections:,} opened in {deadline} s"
                    f" ({result['lost']:,} refused or reset while opening,"
                    f" {result['closed']:,} closed by the server once open)"
                )
            figures = ("kib_per_connection", "open_s", "p99_alone_us", "p99_beside_idle_us")
            sample = {key: result[key] for key in figures}
            sample["p99_growth"] = result["p99_beside_idle_us"] / result["p99_alone_us"]
            return [sample]

        row.add(measure)

    def python_servers(self) -> None:
        servers = [
            (name, role, [sys.executable, HERE / "servers.py", kind], False)
            for kind, name, role in PYTHON_SERVERS
        ]
        self.servers("Python servers", servers)

    def asgi_servers(self) -> None:
        servers = [
            (name, role, [sys.executable, HERE / "servers.py", kind], False)
            for kind, name, role in ASGI_SERVERS
        ]
        self.servers("ASGI servers", servers, idle=False)

    def c_servers(self) -> None:
        servers = [
            ("ferrows (C)", "ferrows", [self.bin_dir / "ferrows_server"], False),
            (
                "ferrows (C, callback)",
                "ferrows",
                [self.bin_dir / "ferrows_server", "--callback"],
                False,
            ),
            ("libwebsockets", "peer", [self.bin_dir / "lws_server"], False),
            ("raw TCP", "floor", [self.loadgen, "echo", "--raw", "--port"], True),
        ]
        self.servers("C servers", servers)

    def handshakes(self) -> None:
        print("Handshakes per second, plain and TLS")
        import trustme

        names = {kind: (name, role) for kind, name, role in PYTHON_SERVERS}
        with tempfile.TemporaryDirectory() as directory:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1")
            ca_pem, cert_pem, key_pem = (Path(directory) / n for n in ("ca", "cert", "key"))
            ca.cert_pem.write_to_path(str(ca_pem))
            cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(key_pem))
            for tls in (False, True):
                for kind in HANDSHAKE_SERVERS:
                    name, role = names[kind]
                    scenario = f"{'TLS' if tls else 'plain'}, {HANDSHAKE_CONCURRENCY} at once"
                    row = self.row("handshakes", scenario, name, role)
                    keys = [cert_pem, key_pem] if tls else []
                    ca_args = ["--ca", ca_pem] if tls else []
                    row.add(self.handshake_run, kind, keys, ca_args)

    def handshake_run(self, kind: str, tls_files: list[Path], ca_args: list[Any]):
        profile = self.profile
        port = free_port()
        command = [sys.executable, HERE / "servers.py", kind, port, *tls_files]
        with Process(SERVER_CPU, command, self.logs / f"handshakes-{kind}.log") as server:
            warmup = profile.server_warmup
            args = [
                "handshakes", "--port", port, "--pid", server.pid, *ca_args,
                "--concurrency", HANDSHAKE_CONCURRENCY, "--warmup", warmup,
                "--seconds", profile.seconds, "--runs", profile.runs,
            ]  # fmt: skip
            timeout = warmup + profile.runs * profile.seconds + SLACK_SECONDS
            return [
                per_message(r, "server_cpu_s") for r in run_json([self.loadgen, *args], timeout)
            ]

    # --- broadcast: one message to many connections

    def broadcast(self) -> None:
        connections = self.profile.broadcast_connections
        print(f"Broadcast: one {BROADCAST_SIZE} B message to {connections:,} connections")
        for kind, scenario, name, role in BROADCASTS:
            row = self.row("broadcast", f"{connections:,} conn {scenario}", name, role)
            row.add(self.broadcast_rounds, kind)

    def broadcast_rounds(self, kind: str) -> list[dict[str, float]]:
        """The rounds of one server against the load generator's ``receive`` mode, after
        BROADCAST_WARMUP_ROUNDS."""
        connections, size = self.profile.broadcast_connections, BROADCAST_SIZE
        library, mode = kind.split("-", 1)
        if library == "c":
            command = [self.bin_dir / "ferrows_broadcast", mode, connections, size]
        else:
            command = [sys.executable, HERE / "broadcast.py", kind, connections, size]
        rounds = BROADCAST_WARMUP_ROUNDS + self.profile.broadcast_rounds
        deadline = SLACK_SECONDS + rounds * BROADCAST_ROUND_SECONDS
        receive = [
            self.loadgen, "receive", "--connections", connections, "--size", size,
            "--rounds", rounds, "--deadline", deadline, "--port",
        ]  # fmt: skip
        log = self.logs / f"broadcast-{kind}.log"
        samples = []
        with Process(SERVER_CPU, command, log, wait_ready=False) as server:
            port = server.answer(30)["port"]
            log = self.logs / "broadcast-loadgen.log"
            with Process(CLIENT_CPU, [*receive, port], log, wait_ready=False) as loadgen:
                loadgen.answer(SLACK_SECONDS)  # {"opened": N}
                for number in range(1, rounds + 1):
                    call = server.say("round", BROADCAST_ROUND_SECONDS)
                    received = loadgen.answer(BROADCAST_ROUND_SECONDS)
                    if received.get("round") != number:
                        raise RuntimeError(f"round {number}: the load generator said {received}")
                    cpu_s = server.say("done", BROADCAST_ROUND_SECONDS)["cpu_s"]
                    if number > BROADCAST_WARMUP_ROUNDS:
                        delivered_s = received["monotonic_s"] - call["started"]
                        samples.append(
                            {
                                "call_ms": call["call_s"] * 1e3,
                                "delivered_ms": delivered_s * 1e3,
                                "cpu_ms": cpu_s * 1e3,
                            }
                        )
        return samples

    # --- permessage-deflate

    def deflate(self) -> None:
        print("permessage-deflate: clients through an aiohttp echo server, server memory")
        scenario = f"64 KiB JSON x{DEFLATE_WINDOW}"
        rows = [
            (self.row("deflate clients", scenario, name, role), kind)
            for kind, name, role in DEFLATE_CLIENTS
        ]
        port = free_port()
        command = [sys.executable, HERE / "deflate.py", "serve", "aiohttp", port]
        try:
            server = Process(SERVER_CPU, command, self.logs / "deflate-aiohttp.log")
        except Exception as error:
            for row, _ in rows:
                row.fail(error)
        else:
            with server:
                for _ in range(self.profile.runs):
                    for row, kind in rows:
                        row.add(self.deflate_client, kind, port)
        connections = self.profile.deflate_connections
        for kind, name, role, takeover in DEFLATE_SERVERS:
            scenario = f"{connections} conn" + ("" if takeover else " no takeover")
            self.row("deflate memory", scenario, name, role).add(self.deflate_memory, kind)

    def deflate_client(self, kind: str, port: int) -> list[dict[str, float]]:
        command = [sys.executable, HERE / "deflate.py", "client", kind, port]
        command += [self.profile.deflate_messages, DEFLATE_WINDOW]
        return run_json(command, SLACK_SECONDS)

    def deflate_memory(self, kind: str) -> list[dict[str, float]]:
        port = free_port()
        command = [sys.executable, HERE / "deflate.py", "serve", kind, port]
        with Process(SERVER_CPU, command, self.logs / f"deflate-{kind}.log") as server:
            memory = [sys.executable, HERE / "deflate.py", "memory", port, server.pid]
            return run_json([*memory, self.profile.deflate_connections], SLACK_SECONDS)

    # --- results

    def summarize(self) -> None:
        """Medians, spreads and ratios to the best peer of the same scenario."""
        for row in self.rows:
            if row.samples:
                keys = row.samples[0].keys()
                row.median = {k: statistics.median(s[k] for s in row.samples) for k in keys}
                ranked = [s[SECTIONS[row.section].ranked] for s in row.samples]
                middle = statistics.median(ranked)
                row.spread = (max(ranked) - min(ranked)) / middle if middle else None
        for row in self.rows:
            section = SECTIONS[row.section]
            peers = [
                r.median[section.ranked]
                for r in self.rows
                if r.section == row.section and r.scenario == row.scenario
                and r.role == "peer" and r.median
            ]  # fmt: skip
            if row.median and peers:
                best = min(peers) if section.lower_is_better else max(peers)
                value = row.median[section.ranked]
                # A figure of 0 (a window too short for the CPU clock to move, in quick
                # mode) ranks nothing.
                if value > 0 and best > 0:
                    row.ratio = value / best if section.lower_is_better else best / value

    def furthest_behind(self, count: int = 3) -> list[Row]:
        ranked = [r for r in self.rows if r.role == "ferrows" and r.ratio is not None]
        return sorted(ranked, key=lambda r: r.ratio or 0, reverse=True)[:count]


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def table_line(cells: list[str], widths: list[int]) -> str:
    """A Markdown table line, padded: names to the left, figures to the right."""
    padded = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "| " + " | ".join(padded) + " |"


def row_cells(row: Row, section: Section) -> list[str]:
    cells = [row.scenario, row.name]
    if row.median:
        cells += [number(row.median[key]) for _, key in section.columns]
        cells.append(f"{row.spread:.0%}" if row.spread is not None else "")
        cells.append(f"{row.ratio:.2f}" if row.ratio is not None else "")
    else:
        cells += ["FAILED" if row.error else "-"]
        cells += ["" for _ in range(len(section.columns) + 1)]
    return cells


def table(suite: Suite) -> str:
    """The results as Markdown tables, one per section."""
    lines = []
    for section in SECTIONS.values():
        rows = [r for r in suite.rows if r.section == section.title]
        if not rows:
            continue
        ranked_heading = next(h for h, key in section.columns if key == section.ranked)
        order = "lower" if section.lower_is_better else "higher"
        headings = ["scenario", "library", *(h for h, _ in section.columns), "spread", "x best"]
        body = [row_cells(row, section) for row in rows]
        # At least these widths, wider where a heading or a cell needs it.
        minimums = [20, 16, *(10 for _ in section.columns), 6, 6]
        widths = [max(w, *map(len, column)) for w, column in zip(minimums, zip(headings, *body))]
        lines += ["", f"### {section.title} (ranked by {ranked_heading}, {order} is better)", ""]
        if section.about:
            lines += [section.about, ""]
        lines.append(table_line(headings, widths))
        lines.append(
            table_line(
                ["-" * w if i < 2 else "-" * (w - 1) + ":" for i, w in enumerate(widths)], widths
            )
        )
        lines += [table_line(cells, widths) for cells in body]
        lines += [f"\n{row.name}, {row.scenario}: {row.note}" for row in rows if row.note]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    def output(command: list[str]) -> str | None:
        try:
            return subprocess.run(
                command, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libraries": {package: version(package) for package in LIBRARY_VERSIONS},
        "libwebsockets": output(["pkg-config", "--modversion", "libwebsockets"]),
        "rustc": output(["rustc", "--version"]),
        "commit": output(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"]),
        "load_average": os.getloadavg(),
    }


# The suite's parts, in the order they run.
PARTS = (
    *("python_clients", "c_clients", "python_servers", "asgi_servers", "c_servers"),
    *("handshakes", "broadcast", "deflate"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every scenario once, briefly")
    parser.add_argument("--bin-dir", type=Path, required=True, help="the built bench/c programs")
    parser.add_argument("--loadgen", type=Path, required=True, help="the built bench/loadgen")
    parser.add_argument("--out", type=Path, help="the JSON file (default bench/results/...)")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run this part only (repeatable); the JSON then goes to bench/results/only.json",
    )
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        print("the suite pins servers and clients to two different cores: it needs two")
        return 1
    mode = "quick" if args.quick else "full"
    profile = PROFILES[mode]
    default_out = "only.json" if args.only else "quick.json" if args.quick else "latest.json"
    out = args.out or HERE / "results" / default_out
    logs = args.bin_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    os.sched_setaffinity(0, {CLIENT_CPU})
    suite = Suite(profile, args.bin_dir, args.loadgen, logs)
    started = time.monotonic()
    before = machine()
    sections = {}
    for part in (getattr(suite, name) for name in PARTS if name in (args.only or PARTS)):
        part_started = time.monotonic()
        part()
        sections[part.__name__] = round(time.monotonic() - part_started)
        print(f"  {part.__name__}: {sections[part.__name__]} s")
    suite.summarize()
    elapsed = time.monotonic() - started
    pinning = (
        f"servers on CPU {SERVER_CPU}, clients and load generator on CPU {CLIENT_CPU} (taskset)"
    )
    print(table(suite))
    load = f"load average {before['load_average']} -> {os.getloadavg()}"
    print(f"\n{mode} mode, {elapsed:.0f} s; {pinning}; {load}")
    behind = suite.furthest_behind()
    if behind:
        print(
            "furthest behind the best peer: "
            + "; ".join(f"{r.section} / {r.scenario} / {r.name} x{r.ratio:.2f}" for r in behind)
        )
    report = {
        "mode": mode,
        "profile": asdict(profile),
        "pinning": pinning,
        "machine": before,
        "load_average_after": os.getloadavg(),
        "seconds": elapsed,
        "section_seconds": sections,
        "rows": [asdict(row) for row in suite.rows],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"JSON: {out}; logs: {logs}")
    missing = [row for row in suite.rows if not row.samples]
    for row in missing:
        print(f"no figure: {row.section} / {row.scenario} / {row.name}: {row.error}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
