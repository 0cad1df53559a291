"""TLS with ssl.SSLContext objects from a trustme CA."""

from __future__ import annotations

import asyncio
import ssl

import ferrows.sync
import pytest
import websockets.asyncio.client
from aiosupport import HOST, aiotest, bounded, echo, send_large_messages_back_to_back, ws_url
from ferrows.asyncio import connect, serve
from ferrows.exceptions import TLSError


def assert_rejected_certificate(caught: pytest.ExceptionInfo[TLSError]) -> None:
    """The TLSError comes from the ssl module's verification failure."""
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError), caught.value


@aiotest
async def test_wss_with_trusted_ca(tls):
    async with serve(echo, HOST, 0, ssl=tls.server_context()) as server:
        async with connect(ws_url(server.port, scheme="wss"), ssl=tls.client_context()) as ws:
            assert ws._transport.get_extra_info("ssl_object") is not None
            for message in ["secure text", b"secure bytes", b"s" * 500_000]:
                await ws.send(message)
                assert await bounded(ws.recv()) == message
        assert ws.close_code == 1000


@aiotest
async def test_large_messages_sent_back_to_back_over_tls_arrive_intact(tls):
    async with serve(echo, HOST, 0, ssl=tls.server_context(), max_size=None) as server:
        url = ws_url(server.port, scheme="wss")
        await send_large_messages_back_to_back(url, ssl=tls.client_context())


@aiotest
async def test_server_hostname_overrides_the_name_checked(tls):
    async with serve(echo, HOST, 0, ssl=tls.server_context()) as server:
        uri = f"wss://{HOST}:{server.port}/"
        async with connect(uri, ssl=tls.client_context(), server_hostname="localhost") as ws:
            await ws.send("by name")
            assert await bounded(ws.recv()) == "by name"
        # A name the certificate does not cover fails verification.
        with pytest.raises(TLSError) as caught:
            await bounded(
                connect(uri, ssl=tls.client_context(), server_hostname="elsewhere.example")
            )
        assert_rejected_certificate(caught)


@aiotest
async def test_client_without_the_ca_fails_verification(tls):
    async with serve(echo, HOST, 0, ssl=tls.server_context()) as server:
        with pytest.raises(TLSError) as caught:
            await bounded(connect(ws_url(server.port, scheme="wss")))
        assert_rejected_certificate(caught)
        with pytest.raises(TLSError) as caught:
            await bounded(connect(ws_url(server.port, scheme="wss"), ssl=True))
        assert_rejected_certificate(caught)
        # The server is unharmed and serves the next, trusting client.
        async with connect(ws_url(server.port, scheme="wss"), ssl=tls.client_context()) as ws:
            await ws.send("after a failed handshake")
            assert await bounded(ws.recv()) == "after a failed handshake"


@aiotest
async def test_ssl_false_with_wss_is_refused(tls):
    with pytest.raises(ValueError):
        await bounded(connect(f"wss://{HOST}:1/", ssl=False))


@aiotest
async def test_plain_client_against_a_tls_server_fails(tls):
    async with serve(echo, HOST, 0, ssl=tls.server_context(), open_timeout=2) as server:
        with pytest.raises(Exception) as caught:
            await bounded(connect(ws_url(server.port), open_timeout=3))
        # The server answers TLS garbage or closes: never a WebSocket connection.
        assert not isinstance(caught.value, AssertionError)


@aiotest
async def test_asyncio_client_to_sync_tls_server(tls, sync_server):
    running = sync_server(certfile=str(tls.cert_pem), keyfile=str(tls.key_pem))
    async with connect(ws_url(running.port, scheme="wss"), ssl=tls.client_context()) as ws:
        await ws.send("to the sync server over TLS")
        assert await bounded(ws.recv()) == "to the sync server over TLS"


@aiotest
async def test_websockets_client_to_asyncio_tls_server(tls):
    async with serve(echo, HOST, 0, ssl=tls.server_context()) as server:
        async with websockets.asyncio.client.connect(
            ws_url(server.port, scheme="wss"), ssl=tls.client_context()
        ) as ws:
            await ws.send("websockets over TLS")
            assert await bounded(ws.recv()) == "websockets over TLS"


@aiotest
async def test_sync_client_to_asyncio_tls_server(tls):
    def sync_client(port: int) -> str:
        with ferrows.sync.connect(
            ws_url(port, scheme="wss"), cadata=tls.ca.cert_pem.bytes(), use_system_roots=False
        ) as ws:
            ws.send("sync over TLS")
            return ws.recv(timeout=5)

    async with serve(echo, HOST, 0, ssl=tls.server_context()) as server:
        answer = await bounded(asyncio.to_thread(sync_client, server.port), 15)
    assert answer == "sync over TLS"
