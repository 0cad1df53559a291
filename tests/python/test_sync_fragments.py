"""Fragmented sends that fail half way."""

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
