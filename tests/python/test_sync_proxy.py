"""The sync client through real proxies (tinyproxy, microsocks), over ws and wss; refusals,
a proxy that never answers, and the proxy chosen from the environment."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trustme
from ferrows.exceptions import (
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    TimeoutError,
    TLSError,
)
from ferrows.sync.client import connect
from proxies import PROXY_KINDS, SilentProxy, StartProxy
from wsutil import Running, TlsFiles

OTHER_CA = trustme.CA().cert_pem.bytes()


@pytest.fixture(params=["ws", "wss"])
def server(
    request: pytest.FixtureRequest, ferrows_server: Callable[..., Running], tls_files: TlsFiles
) -> Running:
    if request.param == "wss":
        return ferrows_server(certfile=tls_files.cert_pem, keyfile=tls_files.key_pem)
    return ferrows_server()


@pytest.mark.parametrize("kind", PROXY_KINDS)
def test_echo_through_each_proxy(
    kind: str, start_proxy: StartProxy, server: Running, tls_files: TlsFiles
) -> None:
    proxy = start_proxy(kind)
    with connect(server.url, proxy=proxy.url(), cafile=tls_files.ca_pem, open_timeout=5) as ws:
        # The peer of the socket is the proxy: the connection went through it.
        assert ws.remote_address == ("127.0.0.1", proxy.port)
        ws.send("through the proxy")
        assert ws.recv(timeout=5) == "through the proxy"
        big = bytes(range(256)) * 1024
        ws.send(big)
        assert ws.recv(timeout=5) == big


@pytest.mark.parametrize("kind", ["tinyproxy-tls", "tinyproxy-auth-tls"])
def test_echo_through_an_https_proxy(
    kind: str, start_proxy: StartProxy, server: Running, tls_files: TlsFiles
) -> None:
    # TLS to the proxy (stunnel, verified with the same CA), then, for wss, TLS inside it.
    proxy = start_proxy(kind, tls_files.cert_pem, tls_files.key_pem)
    assert proxy.url().startswith("https://")
    with connect(server.url, proxy=proxy.url(), cafile=tls_files.ca_pem, open_timeout=5) as ws:
        assert ws.remote_address == ("127.0.0.1", proxy.port)
        ws.send("through TLS to the proxy")
        assert ws.recv(timeout=5) == "through TLS to the proxy"


def test_an_untrusted_https_proxy_is_a_tls_error(
    start_proxy: StartProxy, echo_server: Running, tls_files: TlsFiles
) -> None:
    proxy = start_proxy("tinyproxy-tls", tls_files.cert_pem, tls_files.key_pem)
    with pytest.raises(TLSError):
        connect(echo_server.url, proxy=proxy.url(), use_system_roots=False, cadata=OTHER_CA)


def test_socks5_resolving_locally(
    start_proxy: StartProxy, server: Running, tls_files: TlsFiles
) -> None:
    proxy = start_proxy("microsocks")
    url = proxy.url().replace("socks5h://", "socks5://")
    host_url = server.url.replace("127.0.0.1", "localhost")
    with connect(host_url, proxy=url, cafile=tls_files.ca_pem, open_timeout=5) as ws:
        assert ws.remote_address == ("127.0.0.1", proxy.port)
        ws.send("resolved here")
        assert ws.recv(timeout=5) == "resolved here"


# tinyproxy answers 407 without credentials and 401 with wrong ones.
@pytest.mark.parametrize("credentials, status", [(None, 407), (("alice", "wrong"), 401)])
def test_http_proxy_refusing_the_credentials_reports_its_status(
    credentials: tuple[str, str] | None,
    status: int,
    start_proxy: StartProxy,
    echo_server: Running,
) -> None:
    proxy = start_proxy("tinyproxy-auth")
    with pytest.raises(InvalidProxyStatus) as caught:
        connect(echo_server.url, proxy=proxy.url(credentials), open_timeout=5)
    assert caught.value.response.status_code == status
    assert f"HTTP {status}" in str(caught.value)


def test_http_proxy_that_cannot_reach_the_server_reports_its_status(
    start_proxy: StartProxy, silent_proxy: SilentProxy
) -> None:
    proxy = start_proxy("tinyproxy")
    silent_proxy.close()  # now nothing listens on its port
    with pytest.raises(InvalidProxyStatus) as caught:
        connect(f"ws://127.0.0.1:{silent_proxy.port}/", proxy=proxy.url(), open_timeout=5)
    assert caught.value.response.status_code >= 500


def test_socks_proxy_refusing_the_credentials(
    start_proxy: StartProxy, echo_server: Running
) -> None:
    proxy = start_proxy("microsocks-auth")
    with pytest.raises(InvalidProxyMessage, match="rejected the user name"):
        connect(echo_server.url, proxy=proxy.url(("alice", "wrong")), open_timeout=5)
    with pytest.raises(InvalidProxyMessage, match="requires authentication"):
        connect(echo_server.url, proxy=proxy.url(None), open_timeout=5)


def test_socks_proxy_that_cannot_reach_the_server(
    start_proxy: StartProxy, silent_proxy: SilentProxy
) -> None:
    proxy = start_proxy("microsocks")
    silent_proxy.close()
    with pytest.raises(InvalidProxyMessage, match="SOCKS5 proxy refused the connection"):
        connect(f"ws://127.0.0.1:{silent_proxy.port}/", proxy=proxy.url(), open_timeout=5)


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
def test_a_proxy_that_never_answers_hits_the_open_timeout(
    scheme: str, silent_proxy: SilentProxy, echo_server: Running
) -> None:
    with pytest.raises(TimeoutError):
        connect(echo_server.url, proxy=silent_proxy.url(scheme), open_timeout=0.5)


def test_an_invalid_proxy_url_is_refused_at_once(echo_server: Running) -> None:
    with pytest.raises(InvalidProxy, match="isn't supported"):
        connect(echo_server.url, proxy="ftp://127.0.0.1:1")
    with pytest.raises(TypeError):
        connect(echo_server.url, proxy=1)  # type: ignore[arg-type]


def test_the_environment_chooses_the_proxy(
    no_proxy_environment: pytest.MonkeyPatch, start_proxy: StartProxy, echo_server: Running
) -> None:
    proxy = start_proxy("tinyproxy")
    no_proxy_environment.setenv("http_proxy", proxy.url())
    with connect(echo_server.url, open_timeout=5) as ws:
        assert ws.remote_address == ("127.0.0.1", proxy.port)
    # proxy=None ignores the environment.
    with connect(echo_server.url, proxy=None, open_timeout=5) as ws:
        assert ws.remote_address == ("127.0.0.1", echo_server.port)


def test_no_proxy_exempts_a_host(
    no_proxy_environment: pytest.MonkeyPatch, silent_proxy: SilentProxy, echo_server: Running
) -> None:
    # Through the silent proxy, the connection would time out.
    no_proxy_environment.setenv("HTTP_PROXY", silent_proxy.url())
    no_proxy_environment.setenv("no_proxy", "localhost,127.0.0.1")
    with connect(echo_server.url, open_timeout=5) as ws:
        assert ws.remote_address == ("127.0.0.1", echo_server.port)
    no_proxy_environment.setenv("no_proxy", "example.com")
    with pytest.raises(TimeoutError):
        connect(echo_server.url, open_timeout=0.5)


def test_socks_proxy_from_the_environment_over_wss(
    no_proxy_environment: pytest.MonkeyPatch,
    start_proxy: StartProxy,
    ferrows_server: Callable[..., Running],
    tls_files: TlsFiles,
) -> None:
    server = ferrows_server(certfile=tls_files.cert_pem, keyfile=tls_files.key_pem)
    proxy = start_proxy("microsocks")
    # As websockets reads it: socks_proxy=http://host:port means SOCKS5 with remote DNS.
    no_proxy_environment.setenv("socks_proxy", f"http://127.0.0.1:{proxy.port}")
    no_proxy_environment.setenv("https_proxy", "http://127.0.0.1:1")
    with connect(server.url, cafile=tls_files.ca_pem, open_timeout=5) as ws:
        assert ws.remote_address == ("127.0.0.1", proxy.port)
