"""The peers of the interop matrix that run as programs: Node ``ws`` (node/), libwebsockets
(lws_peer.c) and headless Chromium (browser/peer.html). Each follows the peer rules of
conversation.py and reports its record as one line ``record {JSON}`` (Chromium: as a request
to ``/verdict`` on the server that served its page). Every wait is bounded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conversation import TEST_TIMEOUT, Link, Peer, PeerRecord, Setting
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from ferrows.http11 import Headers, Response
from interop_support import JOIN_TIMEOUT, ServerProcess, TlsFiles, run

PAGE = Path(__file__).with_name("browser") / "peer.html"
# Headless, and quiet: no sandbox (tests run as root), no GPU, no traffic of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def load_record(record: PeerRecord, what: Sequence[str], output: str) -> None:
    reports = [line.removeprefix("record ") for line in output.splitlines() if "record " in line]
    if len(reports) != 1:
        pytest.fail(f"{' '.join(what)} reported {len(reports)} records\n{output}")
    record.load(reports[0])


async def run_program(argv: Sequence[str]) -> str:
    """Runs a program to completion (bounded); fails unless it exits with 0. Its stdout."""
    result = await asyncio.to_thread(run, argv, timeout=TEST_TIMEOUT)
    return result.stdout


@asynccontextmanager
async def program_server(
    argv: Sequence[str],
) -> AsyncIterator[tuple[int, Callable[[], Awaitable[str]]]]:
    """Starts a program that prints "listening on PORT"; yields the port and ``exited()``:
    its stdout once it exits by itself (bounded), failing unless it exits with 0."""
    server = await asyncio.to_thread(ServerProcess, argv, None)

    async def exited() -> str:
        status = await asyncio.to_thread(server.wait, TEST_TIMEOUT)
        if status != 0:
            pytest.fail(f"{' '.join(server.argv)} exited with {status}\n{server.output}")
        return "\n".join(server.stdout)

    try:
        yield server.port, exited
    finally:
        server.kill()


def program_peer(
    server_argv: Callable[[Setting], list[str]], client_argv: Callable[[Link], list[str]]
) -> Peer:
    """A peer program: started as a server (it prints "listening on PORT" and serves one
    connection) or as a client; either way it prints its record and exits with 0."""

    @asynccontextmanager
    async def serve(record: PeerRecord, setting: Setting) -> AsyncIterator[str]:
        argv = server_argv(setting)
        async with program_server(argv) as (port, exited):
            yield setting.url(port)
            load_record(record, argv, await exited())

    async def connect(link: Link, record: PeerRecord) -> None:
        argv = client_argv(link)
        load_record(record, argv, await run_program(argv))

    return Peer(serve=serve, connect=connect)


def server_tls_options(setting: Setting) -> list[str]:
    tls = setting.tls
    return ["--cert", str(tls.cert_pem), "--key", str(tls.key_pem)] if tls else []


def client_tls_options(link: Link) -> list[str]:
    return ["--ca", str(link.setting.tls.ca_pem)] if link.setting.tls else []


def node_script(setting: Setting, name: str) -> list[str]:
    return ["node", str(setting.tools.node_peers / name)]


NODE_WS = program_peer(
    lambda setting: [*node_script(setting, "ws_server.js"), *server_tls_options(setting)],
    lambda link: [*node_script(link.setting, "ws_client.js"), link.url, *client_tls_options(link)],
)

LIBWEBSOCKETS = program_peer(
    lambda setting: [str(setting.tools.lws_peer), "server", *server_tls_options(setting)],
    lambda link: [str(link.setting.tools.lws_peer), "client", link.url, *client_tls_options(link)],
)


# Chromium: a client only, on a page served by a ferrows server


def spki_hash(tls: TlsFiles) -> str:
    """The base64 SHA-256 of the leaf's public key, as --ignore-certificate-errors-spki-list
    takes it: that Chromium instance then trusts the test's certificate, and only it."""
    leaf = x509.load_pem_x509_certificate(tls.cert_pem.read_bytes())
    der = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def chromium_pages(record: PeerRecord) -> Callable[[Any, Any], Response | None]:
    """A process_request hook: serves the page at /page, takes the verdict at /verdict,
    lets the upgrade at / through."""
    page = PAGE.read_bytes()

    def process_request(connection: Any, request: Any) -> Response | None:
        path = urlsplit(request.path)
        if path.path == "/":
            return None
        if path.path == "/page":
            headers = [("Content-Type", "text/html; charset=utf-8")]
            headers += [("Content-Length", str(len(page))), ("Connection", "close")]
            return Response(200, "OK", Headers(headers), page)
        if path.path == "/verdict":
            record.load(parse_qs(path.query)["record"][0])
            return connection.respond(200, "thanks\n")
        return connection.respond(404, "not found\n")

    return process_request


async def chromium_client(link: Link, record: PeerRecord) -> None:
    page = f"{link.page_origin}/page?ws={quote(link.url, safe='')}"
    tls = link.setting.tls
    trust = [f"--ignore-certificate-errors-spki-list={spki_hash(tls)}"] if tls else []
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        log = Path(profile) / "chromium.log"
        argv = [link.setting.tools.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        with log.open("w") as output:
            # In a session of its own: its helper processes go with it.
            browser = subprocess.Popen(
                [*argv, *trust, page],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            reported = await asyncio.to_thread(record.done.wait, TEST_TIMEOUT)
        finally:
            os.killpg(browser.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                browser.wait(JOIN_TIMEOUT)
        if not reported:
            pytest.fail(f"Chromium reported no verdict within {TEST_TIMEOUT} s\n{log.read_text()}")


CHROMIUM = Peer(connect=chromium_client, sends_fragments=False, pages=chromium_pages)

PROCESS_PEERS = {"node-ws": NODE_WS, "libwebsockets": LIBWEBSOCKETS, "chromium": CHROMIUM}
