"""Writes the seed corpus of the fuzz targets: real frames, handshakes, close payloads, URIs.

    usage: python3 core/fuzz/make_corpus.py     (rewrites core/fuzz/corpus/<target>/seed-*)

Deterministic, so that running it again changes nothing. Frame inputs start with the two
bytes the `frames` target reads first (flags, cut count plus cuts): see its doc comment.
"""

import struct
import zlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"

SERVER, STREAMING, TIGHT = 1, 2, 4
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = b"\x37\xfa\x21\x3d"


def frame(opcode, payload=b"", fin=True, mask=None, rsv=0):
    """One frame: `mask` (4 bytes) masks it, as a client must."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", len(payload))
    if mask is None:
        return head + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def frames_input(flags, wire, cuts=(), deflate=0):
    """A `frames` input: flags, the cut points (with the deflate bits), then the peer's bytes."""
    head = bytes([flags, deflate | len(cuts)])
    return head + b"".join(struct.pack("<H", c) for c in cuts) + wire


DEFLATE, NO_TAKEOVER = 8, 16


def deflated(data, level=6):
    """`data` compressed as one permessage-deflate message: raw deflate, sync tail removed."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def frame_seeds():
    """The same conversations from a server (unmasked, to a client) and from a client."""
    conversations = {
        "text": [(1, "héllo ☃".encode())],
        "binary": [(2, bytes(range(16)))],
        "empty-text": [(1, b"")],
        "fragmented-text": [(1, b"frag", False), (0, b"men", False), (0, b"ted", True)],
        "fragmented-with-ping": [(2, b"ab", False), (9, b"p"), (0, b"cd", True)],
        "ping-pong": [(9, b"ping"), (10, b"pong")],
        "close-normal": [(8, close_payload(1000, b"bye"))],
        "close-empty": [(8, b"")],
        "close-4000": [(8, close_payload(4000, b"app"))],
        "close-bad-code": [(8, close_payload(1005))],
        "close-one-byte": [(8, b"\x03")],
        "data-after-close": [(8, close_payload(1001)), (1, b"late")],
        "invalid-utf8": [(1, b"\xce\xbaa\xff")],
        "split-utf8": [(1, "€".encode()[:2], False), (0, "€".encode()[2:], True)],
        "reserved-opcode": [(3, b"x")],
        "continuation-first": [(0, b"x")],
        "fragmented-ping": [(9, b"x", False)],
        "medium-binary": [(2, bytes(200))],
    }
    seeds = {}
    for name, frames in conversations.items():
        for role, flags, mask in [("to-client", 0, None), ("to-server", SERVER, MASK)]:
            wire = b"".join(frame(*f, mask=mask) for f in frames)
            seeds[f"{name}-{role}"] = frames_input(flags, wire)
    text = frame(1, "aé€𝄞".encode(), mask=MASK)
    seeds["text-in-pieces-streaming"] = frames_input(SERVER | STREAMING, text, cuts=(1, 3, 7, 9))
    seeds["over-limit-tight"] = frames_input(SERVER | TIGHT, frame(2, bytes(100), mask=MASK))
    seeds["rsv-bits"] = frames_input(0, frame(1, b"x", rsv=4))
    seeds["unmasked-to-server"] = frames_input(SERVER, frame(1, b"x"))
    seeds["masked-to-client"] = frames_input(0, frame(1, b"x", mask=MASK))
    seeds["length-64-bit"] = frames_input(0, frame(2, bytes(70000))[:20])
    seeds["keepalive-timeout"] = frames_input(0x70, frame(1, b"a") * 4, cuts=(3, 6, 9))
    json = b'{"id": 1, "user": "alpha", "tags": ["a", "b"]}' * 20
    for role, flags, mask in [("to-client", 0, None), ("to-server", SERVER, MASK)]:
        compressed = frame(1, deflated(json), rsv=4, mask=mask)
        seeds[f"deflate-text-{role}"] = frames_input(flags, compressed * 2, deflate=DEFLATE)
        seeds[f"deflate-no-takeover-{role}"] = frames_input(
            flags, compressed * 2, cuts=(5, 40), deflate=DEFLATE | NO_TAKEOVER
        )
        payload = deflated(json)
        fragmented = frame(1, payload[:7], fin=False, rsv=4, mask=mask) + frame(
            0, payload[7:], mask=mask
        )
        seeds[f"deflate-fragmented-{role}"] = frames_input(flags, fragmented, deflate=DEFLATE)
        bomb = frame(2, deflated(bytes(1 << 16), level=9), rsv=4, mask=mask)
        seeds[f"deflate-bomb-tight-{role}"] = frames_input(flags | TIGHT, bomb, deflate=DEFLATE)
        seeds[f"deflate-many-{role}"] = frames_input(flags, bomb * 8, deflate=DEFLATE)
        corrupt = frame(1, b"\xff\xff\xff", rsv=4, mask=mask)
        seeds[f"deflate-corrupt-{role}"] = frames_input(flags, corrupt, deflate=DEFLATE)
    return seeds


def http(start_line, headers):
    lines = [start_line] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request_seeds():
    base = [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", SAMPLE_KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
    get = "GET /chat HTTP/1.1"
    return {
        "valid": http(get, base),
        "full": http(
            get,
            [
                *base,
                ("Origin", "https://example.com"),
                ("Sec-WebSocket-Protocol", "chat, superchat"),
                (
                    "Sec-WebSocket-Extensions",
                    'permessage-deflate; client_max_window_bits, x; a="1,2"',
                ),
            ],
        ),
        "deflate-offers": http(
            get,
            [
                *base,
                (
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                    'server_max_window_bits="10"; client_max_window_bits=9; '
                    "server_no_context_takeover, permessage-deflate; x",
                ),
            ],
        ),
        "bad-origin": http(get, [*base, ("Origin", "https://evil.example")]),
        "post": http("POST / HTTP/1.1", base),
        "http-1-0": http("GET / HTTP/1.0", base),
        "no-upgrade": http(get, base[:1] + base[2:]),
        "version-8": http(get, [*base[:4], ("Sec-WebSocket-Version", "8")]),
        "short-key": http(get, [*base[:3], ("Sec-WebSocket-Key", "AAAA"), *base[4:]]),
        "body": http(get, [*base, ("Content-Length", "5")]) + b"hello",
        "two-hosts": http(get, [*base, ("Host", "other")]),
        "partial": http(get, base)[:40],
        "frames-after-head": http(get, base) + frame(1, b"hi", mask=MASK),
    }


def response_seeds():
    base = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", SAMPLE_ACCEPT),
    ]
    switching = "HTTP/1.1 101 Switching Protocols"
    return {
        "accept": http(switching, base),
        "subprotocol": http(switching, [*base, ("Sec-WebSocket-Protocol", "chat")]),
        "unoffered-subprotocol": http(switching, [*base, ("Sec-WebSocket-Protocol", "other")]),
        "extension": http(switching, [*base, ("Sec-WebSocket-Extensions", "permessage-deflate")]),
        "unoffered-extension": http(switching, [*base, ("Sec-WebSocket-Extensions", "x-other")]),
        "wrong-accept": http(switching, [*base[:2], ("Sec-WebSocket-Accept", "AAAA")]),
        "refusal-with-body": http("HTTP/1.1 403 Forbidden", [("Content-Length", "4")]) + b"nope",
        "chunked": http("HTTP/1.1 500 Oops", [("Transfer-Encoding", "chunked")])
        + b"4\r\nnope\r\n0\r\n\r\n",
        "partial": http(switching, base)[:30],
        "frames-after-head": http(switching, base) + frame(1, b"hi"),
    }


def close_seeds():
    return {
        "empty": b"",
        "one-byte": b"\x03",
        "normal": close_payload(1000),
        "reason": close_payload(1001, "going ☃".encode()),
        "app-code": close_payload(4999, b"x"),
        "no-status": close_payload(1005),
        "bad-code": close_payload(999),
        "bad-utf8": close_payload(1000, b"\xc3"),
    }


def uri_seeds():
    uris = [
        "ws://example.com",
        "wss://example.com:8443/chat?room=1",
        "WS://Example.COM/Path",
        "ws://[::1]:9000/x",
        "wss://[fe80::1]",
        "ws://user:p%40ss@h/",
        "ws://h/café?q=é",
        "ws://h:/",
        "ws://h?x=1",
        "ws://h/#f",
        "http://h",
        "ws://h:99999",
    ]
    return {f"{i:02}": uri.encode() for i, uri in enumerate(uris)}


def main():
    targets = {
        "frames": frame_seeds(),
        "request": request_seeds(),
        "response": response_seeds(),
        "close": close_seeds(),
        "uri": uri_seeds(),
    }
    for target, seeds in targets.items():
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("seed-*"):
            stale.unlink()
        for name, data in seeds.items():
            (directory / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
