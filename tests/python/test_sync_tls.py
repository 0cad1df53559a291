"""TLS with certificates issued by a trustme CA for 127.0.0.1 and localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ferrows.exceptions as fx
import pytest
import trustme
import websockets.sync.client
from ferrows.sync import ServerConnection, connect, serve
from wsutil import HOST, Outbox, Running, TlsFiles


@pytest.fixture
def tls_server(ferrows_server: Callable[..., Running], tls_files: TlsFiles) -> Running:
    """A ferrows echo server with TLS."""
    return ferrows_server(certfile=tls_files.cert_pem, keyfile=tls_files.key_pem)


def echo_once(client: object, message: str | bytes) -> str | bytes:
    client.send(message)  # type: ignore[attr-defined]
    return client.recv(timeout=5)  # type: ignore[attr-defined]


def test_tls_echo_with_cafile(tls_server: Running, tls_files: TlsFiles) -> None:
    assert tls_server.url.startswith("wss://")
    with connect(tls_server.url, open_timeout=5, cafile=tls_files.ca_pem) as client:
        assert echo_once(client, "secure text") == "secure text"
        assert echo_once(client, b"secure bytes") == b"secure bytes"
        big = bytes(range(256)) * 4096
        assert echo_once(client, big) == big
        assert client.ping().wait(timeout=5) > 0


def test_tls_by_host_name(tls_server: Running, tls_files: TlsFiles) -> None:
    # The certificate names both 127.0.0.1 and localhost; verify against each.
    url = f"wss://localhost:{tls_server.port}/"
    with connect(url, open_timeout=5, cafile=str(tls_files.ca_pem)) as client:
        assert echo_once(client, "by name") == "by name"
    with connect(
        tls_server.url, open_timeout=5, cafile=tls_files.ca_pem, server_hostname="localhost"
    ) as client:
        assert echo_once(client, "by server_hostname") == "by server_hostname"


def test_tls_with_cadata(tls_server: Running, tls_files: TlsFiles) -> None:
    pem = tls_files.ca_pem.read_text()
    with connect(tls_server.url, open_timeout=5, cadata=pem) as client:
        assert echo_once(client, "cadata str") == "cadata str"
    with connect(tls_server.url, open_timeout=5, cadata=pem.encode()) as client:
        assert echo_once(client, "cadata bytes") == "cadata bytes"


def test_tls_with_only_the_given_roots(tls_server: Running, tls_files: TlsFiles) -> None:
    with connect(
        tls_server.url, open_timeout=5, cafile=tls_files.ca_pem, use_system_roots=False
    ) as client:
        assert echo_once(client, "private roots") == "private roots"


def test_untrusted_certificate_is_rejected_by_default(tls_server: Running) -> None:
    with pytest.raises(fx.TLSError) as info:
        connect(tls_server.url, open_timeout=5)
    assert isinstance(info.value, ConnectionError)
    assert not isinstance(info.value, fx.TimeoutError)


def test_wrong_server_hostname_is_rejected(tls_server: Running, tls_files: TlsFiles) -> None:
    with pytest.raises(fx.TLSError):
        connect(
            tls_server.url,
            open_timeout=5,
            cafile=tls_files.ca_pem,
            server_hostname="wrong.example",
        )


def test_insecure_skip_verify(tls_server: Running) -> None:
    with connect(tls_server.url, open_timeout=5, insecure_skip_verify=True) as client:
        assert echo_once(client, "unverified") == "unverified"


def test_server_still_serves_after_a_failed_tls_handshake(
    tls_server: Running, tls_files: TlsFiles
) -> None:
    with pytest.raises(fx.TLSError):
        connect(tls_server.url, open_timeout=5)
    with connect(tls_server.url, open_timeout=5, cafile=tls_files.ca_pem) as client:
        assert echo_once(client, "still up") == "still up"


def test_tls_client_against_a_plain_server(echo_server: Running, tls_files: TlsFiles) -> None:
    url = f"wss://{HOST}:{echo_server.port}/"
    with pytest.raises(fx.TLSError):
        connect(url, open_timeout=5, cafile=tls_files.ca_pem)


def test_websockets_client_with_ferrows_tls_server(
    ferrows_server: Callable[..., Running], tls_files: TlsFiles, outbox: Outbox
) -> None:
    def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        outbox.put(connection.request.headers["Host"])
        for message in connection:
            connection.send(message)

    running = ferrows_server(handler, certfile=tls_files.cert_pem, keyfile=tls_files.key_pem)
    with websockets.sync.client.connect(
        running.url, ssl=tls_files.client_context(), open_timeout=5, proxy=None
    ) as ws:
        ws.send("over TLS")
        assert ws.recv(timeout=5) == "over TLS"
        ws.send(b"\x00" * 100_000)
        assert ws.recv(timeout=5) == b"\x00" * 100_000
        assert outbox.get() == f"{HOST}:{running.port}"


def test_ferrows_client_with_websockets_tls_server(
    websockets_server: Callable[..., Running], tls_files: TlsFiles
) -> None:
    running = websockets_server(ssl=tls_files.server_context())
    assert running.url.startswith("wss://")
    with connect(running.url, open_timeout=5, cafile=tls_files.ca_pem) as client:
        assert echo_once(client, "to websockets") == "to websockets"
        assert echo_once(client, b"binary") == b"binary"
        assert client.ping().wait(timeout=5) > 0


def test_ferrows_client_rejects_websockets_tls_server_without_ca(
    websockets_server: Callable[..., Running], tls_files: TlsFiles
) -> None:
    running = websockets_server(ssl=tls_files.server_context())
    with pytest.raises(fx.TLSError):
        connect(running.url, open_timeout=5)


def test_tls_server_with_key_in_certfile(
    ferrows_server: Callable[..., Running], tls_files: TlsFiles, tmp_path: Path
) -> None:
    # Like ssl.SSLContext.load_cert_chain: without keyfile, the key is in certfile.
    combined = tmp_path / "combined.pem"
    combined.write_bytes(tls_files.cert_pem.read_bytes() + tls_files.key_pem.read_bytes())
    running = ferrows_server(certfile=combined)
    with connect(running.url, open_timeout=5, cafile=tls_files.ca_pem) as client:
        assert echo_once(client, "combined") == "combined"


def test_tls_server_needs_a_key(tls_files: TlsFiles) -> None:
    server = None
    try:
        with pytest.raises((ValueError, fx.TLSError)):
            server = serve(lambda connection: None, HOST, 0, certfile=tls_files.ca_pem)
    finally:
        if server is not None:
            server.shutdown()


def test_missing_certfile_raises_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        serve(lambda connection: None, HOST, 0, certfile=tmp_path / "missing.pem")


def test_a_cafile_without_a_certificate_is_a_clear_error(
    tls_server: Running, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    text = tmp_path / "text.pem"
    text.write_text("not a certificate\n")
    for cafile in (empty, text):
        with pytest.raises(fx.TLSError, match="CA certificate: no certificate in PEM"):
            connect(tls_server.url, open_timeout=5, cafile=cafile)


def test_cadata_without_a_valid_certificate_is_a_clear_error(tls_server: Running) -> None:
    broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    for cadata in ("", b"not a certificate", broken):
        with pytest.raises(fx.TLSError, match="CA certificate"):
            connect(tls_server.url, open_timeout=5, cadata=cadata)


def test_a_certificate_from_another_ca_is_untrusted(tls_server: Running) -> None:
    other = trustme.CA()
    with pytest.raises(fx.TLSError, match="untrusted certificate"):
        connect(
            tls_server.url,
            open_timeout=5,
            cadata=other.cert_pem.bytes(),
            use_system_roots=False,
        )


SYSTEM_ROOTS_CHILD = """
import sys
from ferrows.sync import connect
url, cafile = sys.argv[1:]
try:
    connect(url, cafile=cafile, open_timeout=5)
except Exception as exc:
    print(type(exc).__name__, exc, flush=True)
with connect(url, cafile=cafile, use_system_roots=False, open_timeout=5) as websocket:
    websocket.send("without the system's roots")
    print(websocket.recv(timeout=5), flush=True)
"""


def test_system_roots_that_cannot_be_loaded_are_reported(
    tls_server: Running, tls_files: TlsFiles, tmp_path: Path
) -> None:
    # The system's roots are read once per process: a child reads them from a missing file.
    env = dict(os.environ, SSL_CERT_FILE=str(tmp_path / "missing.pem"))
    env.pop("SSL_CERT_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", SYSTEM_ROOTS_CHILD, tls_server.url, str(tls_files.ca_pem)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    failure, answer = result.stdout.splitlines()
    assert failure.startswith("TLSError"), failure
    assert "the system's root certificates could not be loaded" in failure
    assert answer == "without the system's roots"
