"""Large messages on the sync face: their buffers are reused from message to message (one
spare per thread), which must not mix their contents.
"""

from __future__ import annotations

from ferrows.sync import connect
from wsutil import Running

ONE_MIB = 2**20


def patterned(size: int, seed: int) -> bytes:
    """`size` bytes that differ from any other seed's at every position."""
    return bytes((i + seed) % 251 for i in range(256)) * (size // 256) + bytes(size % 256)


def test_successive_large_messages_keep_their_own_contents(echo_server: Running) -> None:
    # Shrinking and growing sizes: a reused buffer holds the last message's bytes past the
    # end of the next one, and must not be cut short when the next one is longer.
    sizes = [ONE_MIB, 300_000, 70_000, 900_000, ONE_MIB, 65_537]
    with connect(echo_server.url, open_timeout=5, max_size=ONE_MIB) as client:
        for seed, size in enumerate(sizes):
            message = patterned(size, seed)
            client.send(message)
            assert client.recv(timeout=10) == message
            text = "é" * (size // 2)
            client.send(text)
            assert client.recv(timeout=10) == text


def test_large_messages_received_as_chunks_keep_their_contents(echo_server: Running) -> None:
    with connect(echo_server.url, open_timeout=5, max_size=ONE_MIB) as client:
        for seed, size in enumerate([ONE_MIB, 200_000, 800_000]):
            message = patterned(size, seed)
            client.send(message)
            assert b"".join(client.recv_streaming(timeout=10)) == message
