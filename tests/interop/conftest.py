"""Fixtures for the interop tests, and the matrix printed at the end of the run.

ferrows is installed into a temporary prefix with ``ffi-c/install.sh`` (from the library in
``target/release``, or ``FERROWS_LIB_DIR``), and the examples in ``examples/c`` are built
from that prefix twice: with ``make`` and pkg-config, and with CMake's ``find_package``.
The C programs then talk to Python peers on 127.0.0.1; every wait is bounded. The matrix's
peer programs (the C face, libwebsockets, Node ws, Chromium) are built or found here: a
missing one fails the tests that need it, saying how to install it.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ferrows.sync
import pytest
import trustme
import websockets.sync.server
from interop_support import (
    EXAMPLES,
    HOST,
    INSTALL,
    JOIN_TIMEOUT,
    ROOT,
    TOOLS,
    PythonServer,
    ServerProcess,
    TlsFiles,
    compile_c,
    ferrows_echo,
    pkg_config_env,
    run,
    websockets_echo,
)
from matrix_report import MatrixReport

INTEROP = ROOT / "tests" / "interop"


@pytest.fixture(scope="session")
def tools() -> None:
    """A missing tool is an install step that did not run, never a reason to skip."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: install them (tests/run.sh runs "
            "'apt-get install -y cmake pkg-config'; a C and C++ toolchain is needed too)"
        )


@pytest.fixture(scope="session")
def prefix(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ferrows installed by ffi-c/install.sh into a temporary prefix."""
    prefix = tmp_path_factory.mktemp("prefix")
    run(["bash", INSTALL, prefix])
    return prefix


@pytest.fixture(scope="session")
def make_build(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples built by examples/c/Makefile, finding ferrows with pkg-config."""
    out = tmp_path_factory.mktemp("make-build")
    run(["make", "-C", EXAMPLES, f"OUT={out}"], env=pkg_config_env(prefix))
    return out


@pytest.fixture(scope="session")
def cmake_build(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples built by examples/c/CMakeLists.txt, with find_package(ferrows)."""
    out = tmp_path_factory.mktemp("cmake-build")
    run(["cmake", "-S", EXAMPLES, "-B", out, f"-DCMAKE_PREFIX_PATH={prefix}"])
    run(["cmake", "--build", out, "--parallel", "2"])
    return out


@pytest.fixture(params=["make", "cmake"])
def build(request: pytest.FixtureRequest) -> Path:
    """The examples' build directory: tests using it run with both builds."""
    return request.getfixturevalue(f"{request.param}_build")


@pytest.fixture
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


@pytest.fixture
def ferrows_echo_server() -> Iterator[Callable[..., PythonServer]]:
    """Factory for ferrows.sync.server.serve echo servers (keyword arguments go to serve)."""
    started: list[PythonServer] = []

    def start(**kwargs: Any) -> PythonServer:
        server = ferrows.sync.server.serve(ferrows_echo, HOST, 0, **kwargs)
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


@pytest.fixture
def websockets_echo_server() -> Iterator[PythonServer]:
    """websockets' sync echo server."""
    server = websockets.sync.server.serve(websockets_echo, HOST, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield PythonServer(server, thread, server.socket.getsockname()[1])
    server.shutdown()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "websockets serve_forever did not return"


@pytest.fixture(scope="session")
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


# The matrix's programs


@pytest.fixture(scope="session")
def c_face(prefix: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/interop/c_face.c built against the installed libferrows."""
    out = tmp_path_factory.mktemp("c-face") / "c_face"
    return compile_c(INTEROP / "c_face.c", out, "ferrows", pkg_config_env(prefix))


@pytest.fixture(scope="session")
def lws_peer(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/interop/lws_peer.c built against the system's libwebsockets."""
    if run(["pkg-config", "--exists", "libwebsockets"], check=False).returncode != 0:
        pytest.fail(
            "libwebsockets is missing: apt-get install -y libwebsockets-dev (tests/run.sh does)"
        )
    out = tmp_path_factory.mktemp("lws") / "lws_peer"
    return compile_c(INTEROP / "lws_peer.c", out, "libwebsockets")


@pytest.fixture(scope="session")
def node_peers() -> Path:
    """The folder of the Node ws peers, with ws installed by npm ci."""
    folder = INTEROP / "node"
    if shutil.which("node") is None:
        pytest.fail("Node.js is missing: install Node.js and npm (README: what a machine needs)")
    if not (folder / "node_modules" / "ws" / "package.json").is_file():
        pytest.fail(f"Node ws is missing: npm ci --prefix {folder} (tests/run.sh does)")
    return folder


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-headless-shell"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is missing: apt-get install -y chromium (tests/run.sh does)")


# The matrix, printed at the end of the run


def pytest_configure(config: pytest.Config) -> None:
    config.stash[MatrixReport.KEY] = MatrixReport()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    config_report = item.config.stash[MatrixReport.KEY]
    config_report.add(item, report)
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    lines = config.stash[MatrixReport.KEY].lines()
    if lines:
        terminalreporter.section("interop matrix")
        for line in lines:
            terminalreporter.write_line(line)
