"""The ``tls_session_resumption`` option of the sync client (the resumption itself is
checked in the core: engine::client's tests)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from ferrows.sync.client import connect
from wsutil import Running, TlsFiles


@pytest.mark.parametrize("resumption", [True, False])
def test_connects_again_with_and_without_resumption(
    resumption: bool, ferrows_server: Callable[..., Running], tls_files: TlsFiles
) -> None:
    server = ferrows_server(certfile=tls_files.cert_pem, keyfile=tls_files.key_pem)
    for attempt in range(3):
        with connect(
            server.url, cafile=tls_files.ca_pem, tls_session_resumption=resumption
        ) as client:
            client.send(f"attempt {attempt}")
            assert client.recv(timeout=5) == f"attempt {attempt}"
