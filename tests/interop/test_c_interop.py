"""The C ABI as its users get it: installed by ffi-c/install.sh, found by pkg-config and
CMake, and the examples in examples/c talking to Python peers (ferrows and websockets),
to each other, and stopping cleanly on signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
import websockets.sync.client
from ferrows.sync.client import connect as ferrows_connect
from interop_support import (
    EXAMPLES,
    HEADER,
    HOST,
    INSTALL,
    PROGRAMS,
    ROOT,
    RUN_TIMEOUT,
    ServerProcess,
    header_version,
    pkg_config_env,
    run,
    run_client,
)

MESSAGES = ["hello", "héllo wörld ✓", "", "x" * 10_000, "last one"]
TIMEOUT = 10.0  # seconds, for each Python-side wait


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def readelf_dynamic(path: Path) -> str:
    return run(["readelf", "-d", path]).stdout


def connect(library: str, url: str, **kwargs):
    """A sync client of ``library`` ("ferrows" or "websockets"), as a context manager."""
    if library == "ferrows":
        return ferrows_connect(url, open_timeout=TIMEOUT, **kwargs)
    return websockets.sync.client.connect(url, open_timeout=TIMEOUT, **kwargs)


# Installing


def test_install_layout(prefix: Path):
    lib = prefix / "lib"
    version = header_version()
    real = lib / f"libferrows.so.{version}"
    assert real.is_file() and not real.is_symlink()
    assert os.access(real, os.X_OK)
    assert os.readlink(lib / "libferrows.so.0.1") == real.name
    assert os.readlink(lib / "libferrows.so") == real.name
    assert "Library soname: [libferrows.so.0.1]" in readelf_dynamic(real)
    assert (lib / "libferrows.a").stat().st_size > 0
    assert (prefix / "include" / "ferrows.h").read_bytes() == HEADER.read_bytes()
    assert (lib / "pkgconfig" / "ferrows.pc").is_file()
    assert (lib / "cmake" / "ferrows" / "ferrowsConfig.cmake").is_file()
    assert (lib / "cmake" / "ferrows" / "ferrowsConfigVersion.cmake").is_file()


def test_install_again_over_an_existing_prefix(prefix: Path):
    run(["bash", INSTALL, prefix])
    assert os.readlink(prefix / "lib" / "libferrows.so") == f"libferrows.so.{header_version()}"


def test_install_refuses_without_a_built_library(tmp_path: Path):
    env = {**os.environ, "FERROWS_LIB_DIR": str(tmp_path / "nothing-built-here")}
    result = run(["bash", INSTALL, tmp_path / "prefix"], env=env, check=False)
    assert result.returncode != 0
    assert "cargo build --release -p ferrows-ffi" in result.stderr
    usage = run(["bash", INSTALL], check=False)
    assert usage.returncode != 0 and "usage" in usage.stderr


def test_pkg_config_describes_the_install(prefix: Path):
    env = pkg_config_env(prefix)

    def pkg_config(*args: str) -> str:
        return run(["pkg-config", *args, "ferrows"], env=env).stdout.strip()

    assert pkg_config("--modversion") == header_version()
    assert pkg_config("--cflags") == f"-I{prefix}/include"
    assert pkg_config("--libs") == f"-L{prefix}/lib -lferrows"
    static = pkg_config("--static", "--libs").split()
    assert static[:2] == [f"-L{prefix}/lib", "-lferrows"]
    assert {"-lpthread", "-ldl", "-lm"} <= set(static)


@pytest.mark.parametrize(
    ("request_line", "found"),
    [
        ("find_package(ferrows REQUIRED)", True),
        ("find_package(ferrows 0.1 REQUIRED)", True),
        ("find_package(ferrows {version} EXACT REQUIRED)", True),
        ("find_package(ferrows 0.0.1...0.5 REQUIRED)", True),
        ("find_package(ferrows 0.2 REQUIRED)", False),  # before 1.0, minors break the ABI
        ("find_package(ferrows 1.0 REQUIRED)", False),
        ("find_package(ferrows 0.1.999 REQUIRED)", False),
    ],
)
def test_cmake_package_version_check(prefix: Path, tmp_path: Path, request_line: str, found: bool):
    version = header_version()
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\n"
        "project(probe LANGUAGES NONE)\n"
        f"{request_line.format(version=version)}\n"
        "get_target_property(location ferrows::ferrows IMPORTED_LOCATION)\n"
        "get_target_property(includes ferrows::ferrows INTERFACE_INCLUDE_DIRECTORIES)\n"
        'message(STATUS "ferrows ${ferrows_VERSION} at ${location} with ${includes}")\n'
    )
    result = run(
        ["cmake", "-S", tmp_path, "-B", tmp_path / "build", f"-DCMAKE_PREFIX_PATH={prefix}"],
        check=False,
    )
    if found:
        assert result.returncode == 0, result.stdout + result.stderr
        location = prefix / "lib" / f"libferrows.so.{version}"
        assert f"ferrows {version} at {location} with {prefix}/include" in result.stdout
    else:
        assert result.returncode != 0
        assert f"version: {version}" in result.stderr and "not accepted" in result.stderr


# Building the examples


@pytest.mark.parametrize("build_name", ["make_build", "cmake_build"])
def test_examples_link_the_installed_library(request: pytest.FixtureRequest, build_name: str):
    build_dir: Path = request.getfixturevalue(build_name)
    prefix: Path = request.getfixturevalue("prefix")
    for program in PROGRAMS:
        binary = build_dir / program
        assert os.access(binary, os.X_OK), f"{binary} was not built"
        assert "Shared library: [libferrows.so.0.1]" in readelf_dynamic(binary)
        # Found through the rpath the build gave it, without LD_LIBRARY_PATH.
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        ldd = run(["ldd", binary], env=env).stdout
        assert f"libferrows.so.0.1 => {prefix}/lib/libferrows.so.0.1" in ldd, ldd


def test_static_link_with_pkg_config_private_libs(
    prefix: Path, tmp_path: Path, ferrows_echo_server
):
    """libferrows.a links with nothing but what Libs.private lists."""
    env = pkg_config_env(prefix)
    cflags = run(["pkg-config", "--cflags", "ferrows"], env=env).stdout.split()
    libs = run(["pkg-config", "--static", "--libs", "ferrows"], env=env).stdout.split()
    private = [flag for flag in libs if flag.startswith("-l") and flag != "-lferrows"]
    search = [flag for flag in libs if flag.startswith("-L")]
    binary = tmp_path / "echo_client_static"
    run(
        [
            "cc",
            "-std=c99",
            "-O2",
            *cflags,
            EXAMPLES / "echo_client.c",
            "-o",
            binary,
            *search,
            "-Wl,-Bstatic",
            "-lferrows",
            "-Wl,-Bdynamic",
            *private,
        ]
    )
    assert "libferrows" not in readelf_dynamic(binary)
    server = ferrows_echo_server()
    result = run_client(tmp_path, binary.name, server.url, ["static"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "static\n"


def test_cmake_static_target(prefix: Path, tmp_path: Path, ferrows_echo_server):
    build_dir = tmp_path / "build"
    run(
        [
            "cmake",
            "-S",
            EXAMPLES,
            "-B",
            build_dir,
            f"-DCMAKE_PREFIX_PATH={prefix}",
            "-DFERROWS_EXAMPLES_STATIC=ON",
        ]
    )
    run(["cmake", "--build", build_dir, "--target", "echo_client"])
    assert "libferrows" not in readelf_dynamic(build_dir / "echo_client")
    server = ferrows_echo_server()
    result = run_client(build_dir, "echo_client", server.url, ["static", "cmake"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "static\ncmake\n"


def test_the_example_in_the_docs(prefix: Path, tmp_path: Path, ferrows_echo_server):
    """docs/c-api.md's complete example compiles as its comment says, and works."""
    docs = (ROOT / "docs" / "c-api.md").read_text()
    match = re.search(r"```c\n(/\* hello\.c: (.*?) \*/\n.*?)```", docs, re.DOTALL)
    assert match, "no hello.c example in docs/c-api.md"
    source, command = match.group(1), match.group(2)
    assert command == "cc -std=c99 hello.c $(pkg-config --cflags --libs ferrows) -o hello"
    (tmp_path / "hello.c").write_text(source)
    env = pkg_config_env(prefix)
    flags = run(["pkg-config", "--cflags", "--libs", "ferrows"], env=env).stdout.split()
    libdir = run(["pkg-config", "--variable=libdir", "ferrows"], env=env).stdout.strip()
    strict = ["-Wall", "-Wextra", "-Wpedantic", "-Werror", f"-Wl,-rpath,{libdir}"]
    run(["cc", "-std=c99", *strict, tmp_path / "hello.c", *flags, "-o", tmp_path / "hello"])
    server = ferrows_echo_server()
    result = run([tmp_path / "hello", server.url], timeout=RUN_TIMEOUT, check=False)
    assert (result.returncode, result.stdout) == (0, "Hello\n"), result.stderr


# The C and C++ clients against Python servers and the C servers


def check_echoes(result: subprocess.CompletedProcess[str], messages: list[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("\n") == [*messages, ""]
    assert "closed with code 1000 (ok)" in result.stderr


@pytest.mark.parametrize("program", ["echo_client", "echo_client_cpp"])
def test_clients_with_the_ferrows_python_server(build: Path, ferrows_echo_server, program: str):
    server = ferrows_echo_server()
    check_echoes(run_client(build, program, server.url, MESSAGES), MESSAGES)


@pytest.mark.parametrize("program", ["echo_client", "echo_client_cpp"])
def test_clients_with_the_websockets_server(build: Path, websockets_echo_server, program: str):
    check_echoes(run_client(build, program, websockets_echo_server.url, MESSAGES), MESSAGES)


@pytest.mark.parametrize("server_program", ["echo_server", "poll_server"])
@pytest.mark.parametrize("program", ["echo_client", "echo_client_cpp"])
def test_clients_with_the_c_servers(build: Path, c_server, server_program: str, program: str):
    server = c_server(build, server_program)
    check_echoes(run_client(build, program, server.url, MESSAGES), MESSAGES)
    assert server.stop() == 0, server.output
    assert any("closed with code 1000 after 5 messages" in line for line in server.stdout)


def test_client_with_no_arguments_but_the_url(build: Path, ferrows_echo_server):
    server = ferrows_echo_server()
    check_echoes(run_client(build, "echo_client", server.url), [])


@pytest.mark.parametrize("program", ["echo_client", "echo_client_cpp"])
def test_clients_report_errors(build: Path, program: str):
    refused = run_client(build, program, f"ws://{HOST}:{free_port()}/", ["hello"])
    assert refused.returncode == 1
    assert "ferrows_connect_blocking: I/O error (" in refused.stderr
    assert "no details" not in refused.stderr, refused.stderr  # the last error was printed
    assert refused.stdout == ""

    bad_url = run_client(build, program, "http://example.invalid/", ["hello"])
    assert bad_url.returncode == 1
    assert "ferrows_connect_blocking: invalid URI (" in bad_url.stderr
    assert "no details" not in bad_url.stderr, bad_url.stderr

    usage = run_client(build, program, "")
    usage_without_url = run([build / program], check=False, timeout=RUN_TIMEOUT)
    assert usage_without_url.returncode == 2 and "usage" in usage_without_url.stderr
    assert usage.returncode == 1  # an empty URL is no URL


# Python clients against the C servers


@pytest.mark.parametrize("library", ["ferrows", "websockets"])
@pytest.mark.parametrize("server_program", ["echo_server", "poll_server"])
def test_python_clients_with_the_c_servers(
    build: Path, c_server, server_program: str, library: str
):
    server = c_server(build, server_program)
    big = os.urandom(900 * 1024)  # under the default 1 MiB limit of both sides
    with connect(library, server.url, max_size=2**20) as client:
        for message in ["text", "ünïcødé", "", b"\x00\x01binary", b"", big]:
            client.send(message)
            echo = client.recv(timeout=TIMEOUT)
            assert type(echo) is type(message) and echo == message
        client.close()
    assert server.stop() == 0, server.output
    assert any("closed with code 1000 after 6 messages" in line for line in server.stdout)


@pytest.mark.parametrize("server_program", ["echo_server", "poll_server"])
def test_several_clients_at_once(build: Path, c_server, server_program: str):
    """Every client is connected before any sends; each then runs in its own thread."""
    server = c_server(build, server_program)
    count, rounds = 8, 50
    libraries = ["ferrows", "websockets"] * (count // 2)
    clients = [connect(library, server.url).__enter__() for library in libraries]
    failures: list[BaseException] = []

    def talk(index: int) -> None:
        client = clients[index]
        try:
            for round_ in range(rounds):
                text, data = f"{index}:{round_}", bytes([index, round_]) * 100
                client.send(text)
                client.send(data)
                assert client.recv(timeout=TIMEOUT) == text
                assert client.recv(timeout=TIMEOUT) == data
        except BaseException as exc:
            failures.append(exc)

    try:
        threads = [threading.Thread(target=talk, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads), "a client hung"
        assert not failures, failures
    finally:
        for client in clients:
            client.__exit__(None, None, None)
    assert server.stop() == 0, server.output
    closed = [line for line in server.stdout if "closed with code 1000" in line]
    assert len(closed) == count, server.output
    if server_program == "poll_server":
        assert any(f"connected ({count} clients)" in line for line in server.stdout)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("server_program", ["echo_server", "poll_server"])
def test_c_servers_stop_cleanly_on_signals(build: Path, c_server, server_program: str, signum: int):
    server = c_server(build, server_program)
    with ferrows_connect(server.url, open_timeout=TIMEOUT) as client:
        client.send("before the signal")
        assert client.recv(timeout=TIMEOUT) == "before the signal"
        assert server.stop(signum) == 0, server.output
        assert client.wait_closed(timeout=TIMEOUT)
        assert client.close_code == 1001  # going away
    assert server.stdout[-1].startswith("stopped"), server.output


def test_echo_server_reports_a_port_in_use(build: Path, c_server):
    first = c_server(build, "echo_server")
    result = run([build / "echo_server", HOST, str(first.port)], check=False, timeout=RUN_TIMEOUT)
    assert result.returncode == 1
    assert "ferrows_server_listen: I/O error (" in result.stderr
    assert "no details" not in result.stderr, result.stderr
    assert first.stop() == 0


# TLS from C


@pytest.mark.parametrize("program", ["echo_client", "echo_client_cpp"])
def test_clients_over_tls(build: Path, ferrows_echo_server, tls_files, program: str):
    server = ferrows_echo_server(certfile=tls_files.cert_pem, keyfile=tls_files.key_pem)
    trusted = run_client(
        build, program, server.url, ["secure"], env={"FERROWS_CA_FILE": str(tls_files.ca_pem)}
    )
    check_echoes(trusted, ["secure"])
    untrusted = run_client(build, program, server.url, ["secure"], env={"FERROWS_CA_FILE": ""})
    assert untrusted.returncode == 1
    assert "ferrows_connect_blocking: untrusted TLS certificate (" in untrusted.stderr


def test_echo_server_over_tls(build: Path, c_server, tls_files):
    env = {
        **os.environ,
        "FERROWS_CERT_FILE": str(tls_files.cert_pem),
        "FERROWS_KEY_FILE": str(tls_files.key_pem),
    }
    server: ServerProcess = c_server(build, "echo_server", env=env)
    url = f"wss://{HOST}:{server.port}/"
    with ferrows_connect(url, cafile=tls_files.ca_pem, open_timeout=TIMEOUT) as client:
        client.send("over TLS")
        assert client.recv(timeout=TIMEOUT) == "over TLS"
    check_echoes(
        run_client(
            build, "echo_client", url, ["from C"], {"FERROWS_CA_FILE": str(tls_files.ca_pem)}
        ),
        ["from C"],
    )
    assert server.stop() == 0, server.output


def test_echo_server_refuses_a_bad_certificate(build: Path, tmp_path: Path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    env = {**os.environ, "FERROWS_CERT_FILE": str(bad), "FERROWS_KEY_FILE": str(bad)}
    result = run([build / "echo_server", HOST, "0"], env=env, check=False, timeout=RUN_TIMEOUT)
    assert result.returncode == 1
    assert "ferrows_server_listen: TLS error (" in result.stderr, result.stderr
    assert "no certificate in PEM" in result.stderr, result.stderr
