"""Fragmented sends that fail half way, and closing twice."""

from __future__ import annotations

import ferrows.sync


def test_fragmented_send_failing_half_way_fails_the_connection(echo_server):
    # A message cut in the middle cannot be finished: the connection closes with 1011.
    with ferrows.sync.connect(echo_server.url) as ws:
        try:
            ws.send(["text", b"bytes"])
        except TypeError:
            pass
        else:
            raise AssertionError("mixed fragment types were accepted")
        assert ws.wait_closed(timeout=5)
        assert ws.close_code == 1011


def test_close_after_the_peer_closed_returns_quietly(echo_server):
    # The server handler closes after the client's close arrived: no exception anywhere.
    with ferrows.sync.connect(echo_server.url) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    ws.close()  # again, once closed
    assert ws.close_code == 1000
