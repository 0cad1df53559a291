"""The asyncio client through real proxies (tinyproxy, microsocks), over ws and wss, with the
core's proxy handshake; refusals, a silent proxy, and the environment's choice."""

from __future__ import annotations

import pytest
from aiosupport import HOST, aiotest, bounded, echo, ws_url
from ferrows.asyncio import connect, serve
from ferrows.exceptions import InvalidProxyMessage, InvalidProxyStatus, TimeoutError
from proxies import PROXY_KINDS


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("kind", PROXY_KINDS)
@aiotest
async def test_echo_through_each_proxy(kind, scheme, start_proxy, tls):
    proxy = start_proxy(kind)
    server_ssl = tls.server_context() if scheme == "wss" else None
    client_ssl = tls.client_context() if scheme == "wss" else None
    async with serve(echo, HOST, 0, ssl=server_ssl) as server:
        uri = ws_url(server.port, scheme=scheme)
        async with connect(uri, proxy=proxy.url(), ssl=client_ssl, open_timeout=5) as ws:
            assert ws.remote_address[:2] == (HOST, proxy.port)
            for message in ["through the proxy", bytes(range(256)) * 1024]:
                await ws.send(message)
                assert await bounded(ws.recv()) == message


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@aiotest
async def test_echo_through_an_https_proxy(scheme, start_proxy, tls):
    # TLS to the proxy (stunnel), verified with proxy_ssl; for wss, start_tls inside it.
    proxy = start_proxy("tinyproxy-auth-tls", tls.cert_pem, tls.key_pem)
    server_ssl = tls.server_context() if scheme == "wss" else None
    client_ssl = tls.client_context() if scheme == "wss" else None
    async with serve(echo, HOST, 0, ssl=server_ssl) as server:
        uri = ws_url(server.port, scheme=scheme)
        async with connect(
            uri, proxy=proxy.url(), ssl=client_ssl, proxy_ssl=tls.client_context(), open_timeout=5
        ) as ws:
            assert ws.remote_address[:2] == (HOST, proxy.port)
            await ws.send("through TLS to the proxy")
            assert await bounded(ws.recv()) == "through TLS to the proxy"


@aiotest
async def test_socks5_resolving_locally(start_proxy):
    proxy = start_proxy("microsocks")
    url = proxy.url().replace("socks5h://", "socks5://")
    async with serve(echo, HOST, 0) as server:
        async with connect(f"ws://localhost:{server.port}/", proxy=url, open_timeout=5) as ws:
            assert ws.remote_address[:2] == (HOST, proxy.port)
            await ws.send("resolved here")
            assert await bounded(ws.recv()) == "resolved here"


@aiotest
async def test_refusals_are_reported(start_proxy, silent_proxy):
    http = start_proxy("tinyproxy-auth")
    socks = start_proxy("microsocks-auth")
    async with serve(echo, HOST, 0) as server:
        uri = ws_url(server.port)
        with pytest.raises(InvalidProxyStatus) as caught:
            await connect(uri, proxy=http.url(None), open_timeout=5)
        assert caught.value.response.status_code == 407
        with pytest.raises(InvalidProxyMessage, match="rejected the user name"):
            await connect(uri, proxy=socks.url(("alice", "wrong")), open_timeout=5)
    silent_proxy.close()  # nothing listens on its port now
    with pytest.raises(InvalidProxyStatus) as caught:
        await connect(ws_url(silent_proxy.port), proxy=http.url(), open_timeout=5)
    assert caught.value.response.status_code >= 500


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
@aiotest
async def test_a_proxy_that_never_answers_hits_the_open_timeout(scheme, silent_proxy):
    with pytest.raises(TimeoutError):
        await connect(ws_url(1), proxy=silent_proxy.url(scheme), open_timeout=0.5)


@aiotest
async def test_the_environment_chooses_and_no_proxy_exempts(
    no_proxy_environment, start_proxy, silent_proxy
):
    proxy = start_proxy("tinyproxy")
    async with serve(echo, HOST, 0) as server:
        uri = ws_url(server.port)
        no_proxy_environment.setenv("ws_proxy", proxy.url())
        async with connect(uri, open_timeout=5) as ws:
            assert ws.remote_address[:2] == (HOST, proxy.port)
        async with connect(uri, proxy=None, open_timeout=5) as ws:
            assert ws.remote_address[:2] == (HOST, server.port)
        no_proxy_environment.setenv("ws_proxy", silent_proxy.url())
        no_proxy_environment.setenv("NO_PROXY", f"{HOST}:{server.port}")
        async with connect(uri, open_timeout=5) as ws:
            assert ws.remote_address[:2] == (HOST, server.port)
