"""The sync client: ``connect()`` opens a connection and returns a :class:`ClientConnection`."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from .. import _ferrows
from .._proxy import ProxyOption, proxy_url
from .._reconnect import backoff, is_transient
from ..compression import Compression
from ..http11 import Headers, HeadersLike
from .connection import Connection
from .options import Limits, protocol_options, read_pem

__all__ = ["ClientConnection", "connect", "reconnect"]

logger = logging.getLogger("ferrows.client")


class ClientConnection(Connection):
    """A connection opened by :func:`connect`."""


def connect(
    uri: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = None,
    cafile: str | os.PathLike[str] | None = None,
    cadata: str | bytes | None = None,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    server_hostname: str | None = None,
    use_system_roots: bool = True,
    insecure_skip_verify: bool = False,
    tls_session_resumption: bool = True,
    open_timeout: float | None = 10,
    close_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    max_size: int | None = 2**20,
    max_frame_size: int | None = None,
    max_fragments: int | None = 100_000,
    read_limit: Limits = None,
    write_limit: Limits = None,
    compression: Compression = "deflate",
    proxy: ProxyOption = True,
) -> ClientConnection:
    """Opens a WebSocket connection to ``uri`` (``ws://`` or ``wss://``).

    Blocks until the opening handshake completes, for at most ``open_timeout`` seconds.
    Ctrl-C interrupts the wait.

    TLS: server certificates are verified against the system's roots, plus ``cafile`` /
    ``cadata`` (PEM) if given (``use_system_roots=False`` trusts only those).
    ``certfile``/``keyfile`` present a client certificate. ``server_hostname`` verifies
    against another name than the URI's host. ``insecure_skip_verify=True`` disables
    verification: never use it outside tests. TLS sessions are resumed on the next connection
    with the same TLS options (to the same host), unless ``tls_session_resumption=False``.

    Limits: ``max_size`` bounds a message, ``max_frame_size`` a frame and ``max_fragments``
    the frames of one message (None: no limit);
    ``read_limit`` and ``write_limit`` bound the bytes buffered in each direction, as a high
    watermark or a ``(high, low)`` pair. Keepalive pings every ``ping_interval`` seconds
    and closes with 1011 if no pong comes within ``ping_timeout`` (None disables either).

    Proxy: ``proxy=True`` (the default) connects through the proxy the environment names,
    as websockets does (``wss_proxy``/``ws_proxy``, ``socks_proxy``, ``https_proxy``,
    ``http_proxy``, ``no_proxy``); None connects directly; a URL (``http://``, ``https://``,
    ``socks5://``, ``socks5h://``, with optional ``user:password@``) names the proxy
    (docs/proxies.md). The open timeout covers the proxy too.

    Compression: ``compression="deflate"`` offers permessage-deflate, None does not, a
    :class:`~ferrows.Deflate` sets its parameters (docs/compression.md).

    Raises :class:`~ferrows.exceptions.InvalidURI`,
    :class:`~ferrows.exceptions.InvalidProxy`,
    :class:`~ferrows.exceptions.InvalidHandshake` and subclasses (``ProxyError``...),
    :class:`~ferrows.exceptions.TimeoutError`, :class:`~ferrows.exceptions.TLSError` or
    :class:`OSError`.
    """
    # Given CAs go to the engine even if empty: it reports a PEM without a certificate.
    ca = read_pem(cafile, "cafile")
    if cadata is not None:
        ca = (ca or b"") + (cadata.encode() if isinstance(cadata, str) else cadata)
    cert = read_pem(certfile, "certfile")
    # Like ssl.SSLContext.load_cert_chain: without keyfile, the key is in certfile.
    key = read_pem(keyfile, "keyfile") if keyfile is not None else cert
    options = protocol_options(
        open_timeout=open_timeout,
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        max_size=max_size,
        max_frame_size=max_frame_size,
        max_fragments=max_fragments,
        read_limit=read_limit,
        write_limit=write_limit,
        compression=compression,
    )
    options.update(
        origin=origin,
        subprotocols=list(subprotocols) if subprotocols else None,
        additional_headers=Headers(additional_headers).items() if additional_headers else None,
        user_agent=user_agent_header,
        ca_data=ca,
        no_system_roots=not use_system_roots,
        cert_data=cert,
        key_data=key,
        server_hostname=server_hostname,
        insecure_skip_verify=insecure_skip_verify,
        tls_session_resumption=tls_session_resumption,
        proxy=proxy_url(proxy, uri),
    )
    pending = _ferrows.connect(uri, options)
    connection = ClientConnection(pending.wait(), logger)
    logger.debug("connected to %s as %s", uri, connection.id)
    return connection


def reconnect(uri: str, **options: Any) -> Iterator[ClientConnection]:
    """Connects to ``uri`` again and again: ``for websocket in reconnect(uri): ...``.

    Each connection is yielded, then closed when the loop body moves on (or leaves the
    loop). After a transient failure (refused, reset, timeouts, TLS failures, 5xx answers
    from the server or the proxy) it waits with exponential backoff and jitter, the same
    policy and settings as the asyncio face's ``async for`` (docs/sync.md), and tries
    again; after a 4xx, an invalid URI or another handshake error it raises. ``options``
    are :func:`connect`'s.

    The sync spelling of asyncio's ``async for websocket in connect(uri)``: here
    ``connect()`` returns an open connection, whose iteration yields messages.
    """
    delays = backoff()
    while True:
        try:
            connection = connect(uri, **options)
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = next(delays)
            logger.info("connect to %s failed (%s); retrying in %.1f s", uri, exc, delay)
            time.sleep(delay)
            continue
        delays = backoff()
        try:
            yield connection
        finally:
            connection.close()
