"""Raw-socket helpers for the ferrows tests: hand-made handshakes, frames and peers.

Everything here speaks to real sockets on 127.0.0.1 and every read is bounded in time.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOST = "127.0.0.1"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept value matching a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def handshake_request(
    port: int,
    *,
    path: str = "/",
    key: str | None = None,
    version: str = "13",
    extra: Iterable[str] = (),
) -> bytes:
    """An opening handshake request, built by hand."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key or new_key()}",
        f"Sec-WebSocket-Version: {version}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """One WebSocket frame; client frames are masked (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        head = bytes([first, mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + length.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a close frame's payload; (None, "") when it has no code."""
    if len(payload) < 2:
        return None, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def parse_frame(data: bytes | bytearray) -> tuple[tuple[bool, int, bytes], int] | None:
    """Parses one frame at the start of ``data``: ((fin, opcode, payload), bytes used)."""
    if len(data) < 2:
        return None
    first, second = data[0], data[1]
    length = second & 0x7F
    offset = 2
    if length == 126:
        if len(data) < 4:
            return None
        length, offset = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        if len(data) < 10:
            return None
        length, offset = int.from_bytes(data[2:10], "big"), 10
    key = b""
    if second & 0x80:
        if len(data) < offset + 4:
            return None
        key, offset = bytes(data[offset : offset + 4]), offset + 4
    if len(data) < offset + length:
        return None
    payload = bytes(data[offset : offset + length])
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return (bool(first & 0x80), first & 0x0F, payload), offset + length


@dataclass
class HttpHead:
    """A parsed HTTP response or request head."""

    start_line: str
    headers: list[tuple[str, str]]

    @property
    def status(self) -> int:
        return int(self.start_line.split()[1])

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None


class RawStream:
    """A socket with a read buffer; every read has a deadline."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(buffered)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("peer closed the connection")
        self.buffer += data

    def read_exactly(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            self._fill(deadline)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_head(self, timeout: float = 5.0, limit: int = 65536) -> HttpHead:
        """Reads an HTTP head up to the blank line."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > limit:
                raise ValueError("HTTP head too long")
            self._fill(deadline)
        end = self.buffer.index(b"\r\n\r\n")
        raw = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        start_line, *lines = raw.split("\r\n")
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return HttpHead(start_line, headers)

    def read_frame(self, timeout: float = 5.0) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload) of the next frame, unmasked; consumes nothing on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = parse_frame(self.buffer)
            if parsed is not None:
                frame, used = parsed
                del self.buffer[:used]
                return frame
            self._fill(deadline)

    def read_until_close_frame(self, timeout: float = 5.0, max_frames: int = 100) -> bytes:
        """Skips frames until a close frame; returns its payload."""
        deadline = time.monotonic() + timeout
        for _ in range(max_frames):
            _, opcode, payload = self.read_frame(max(deadline - time.monotonic(), 0.001))
            if opcode == OP_CLOSE:
                return payload
        raise AssertionError(f"no close frame within {max_frames} frames")

    def read_until_eof(self, timeout: float = 5.0, limit: int = 1 << 20) -> bytes:
        """Everything until the peer closes; raises socket.timeout if it doesn't in time."""
        deadline = time.monotonic() + timeout
        try:
            while len(self.buffer) <= limit:
                self._fill(deadline)
        except (EOFError, ConnectionResetError):
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def raw_connect(port: int, timeout: float = 5.0) -> RawStream:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    return RawStream(sock)


def raw_upgrade(port: int, *, path: str = "/", extra: Iterable[str] = ()) -> RawStream:
    """Connects and completes the opening handshake by hand; checks the 101 answer."""
    stream = raw_connect(port)
    key = new_key()
    stream.send(handshake_request(port, path=path, key=key, extra=extra))
    head = stream.read_head()
    assert head.status == 101, head
    assert head.get("Sec-WebSocket-Accept") == accept_value(key), head
    return stream


@dataclass
class RawServer:
    """A hand-made WebSocket server: answers the handshake, then runs ``after``.

    ``respond(request_head)`` returns the response head lines (without the blank line);
    the default is a correct 101 answer. ``after(stream, server)`` runs on the connection
    once answered. Connections are served one at a time in a daemon thread; ``handled`` is
    set once one has been served.
    """

    respond: Callable[[HttpHead], list[str]] | None = None
    after: Callable[[RawStream, RawServer], None] | None = None
    port: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    requests: list[HttpHead] = field(default_factory=list)
    frames: list[tuple[bool, int, bytes]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    handled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((HOST, 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, name="raw-server", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/"

    def start(self) -> RawServer:
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            stream = RawStream(sock)
            try:
                head = stream.read_head(timeout=5)
                self.requests.append(head)
                lines = (self.respond or switching_protocols)(head)
                stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
                if self.after is not None:
                    self.after(stream, self)
            except Exception as exc:
                self.errors.append(exc)
            finally:
                stream.close()
                self.handled.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive(), "raw server thread did not stop"


def switching_protocols(head: HttpHead, *extra: str) -> list[str]:
    key = head.get("Sec-WebSocket-Key") or ""
    return [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_value(key)}",
        *extra,
    ]


def close_at_once(stream: RawStream, server: RawServer) -> None:
    """Drops the TCP connection right after the handshake."""
    stream.close()


def read_and_ignore(stream: RawStream, server: RawServer, limit: float = 30.0) -> None:
    """Reads and records frames, answers nothing, until EOF or the server stops."""
    deadline = time.monotonic() + limit
    while not server.stop.is_set() and time.monotonic() < deadline:
        try:
            server.frames.append(stream.read_frame(timeout=0.1))
        except socket.timeout:
            continue
        except (EOFError, OSError):
            return


@dataclass
class Running:
    """A server serving in a thread."""

    server: Any
    thread: threading.Thread
    port: int
    scheme: str = "ws"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}/"


class Outbox:
    """Results that handler threads report to the test; reads are bounded."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def get(self, timeout: float = 5.0) -> Any:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"nothing reported within {timeout} s") from None

    def empty(self) -> bool:
        return self._queue.empty()


@dataclass
class TlsFiles:
    ca: trustme.CA
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    leaf: trustme.LeafCert

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        return context

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf.configure_cert(context)
        return context


def assert_fragments_joined(chunks: list[Any], fragments: list[Any]) -> None:
    """Asserts that streamed `chunks` are the `fragments` sent, in order, each chunk the
    join of one or more consecutive fragments: fragments that arrive before the receiver
    takes them join one chunk (RFC 6455 gives fragment boundaries no meaning). Empty
    fragments are not queued unless they end the message: only the last chunk may be empty."""
    empty = fragments[0][:0]
    assert chunks and all(chunks[:-1]), f"an empty chunk before the last in {chunks!r}"
    pending = [fragment for fragment in fragments if fragment]
    for chunk in chunks:
        joined = empty
        while len(joined) < len(chunk) and pending:
            joined += pending.pop(0)
        assert joined == chunk, f"{chunks!r} is not a join of {fragments!r}"
    assert not pending, f"{chunks!r} lacks {pending!r} of {fragments!r}"


def split_message_peer(release: threading.Event) -> Callable[[RawStream, RawServer], None]:
    """A RawServer `after` that sends the first fragment of "héllo, world!", stalls until
    `release` is set, then sends the rest and the message "next"."""

    def after(stream: RawStream, server: RawServer) -> None:
        stream.send(encode_frame(OP_TEXT, "héllo, ".encode(), fin=False, mask=False))
        assert release.wait(10), "the test never released the rest of the message"
        stream.send(encode_frame(OP_CONT, b"world", fin=False, mask=False))
        stream.send(encode_frame(OP_CONT, b"!", fin=True, mask=False))
        stream.send(encode_frame(OP_TEXT, b"next", mask=False))
        read_and_ignore(stream, server, limit=10)

    return after
