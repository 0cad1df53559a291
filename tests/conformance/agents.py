"""The faces of ferrows under conformance test: how to start each one's echo server and
client driver. A new face (asyncio, C) plugs in by adding an Agent here."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Builds the C agents against target/release/libferrows.so when needed, then execs one.
BUILD_C_AGENTS = ("bash", str(HERE / "build_c_agents.sh"), "--exec")


@dataclasses.dataclass(frozen=True)
class Agent:
    """One face: ``server`` runs an echo server given a port as its last argument;
    ``client`` runs the fuzzingserver driver given the server URL and agent name."""

    name: str
    server: tuple[str, ...]
    client: tuple[str, ...]


AGENTS = [
    Agent(
        name="ferrows-sync",
        server=(sys.executable, str(HERE / "sync_echo_server.py")),
        client=(sys.executable, str(HERE / "sync_client_driver.py")),
    ),
    Agent(
        name="ferrows-asyncio",
        server=(sys.executable, str(HERE / "asyncio_echo_server.py")),
        client=(sys.executable, str(HERE / "asyncio_client_driver.py")),
    ),
    Agent(
        name="ferrows-c",
        server=(*BUILD_C_AGENTS, "c_echo_server"),
        client=(*BUILD_C_AGENTS, "c_client_driver"),
    ),
]
