"""The HTTP messages of the opening handshake: requests, responses and their headers."""

from __future__ import annotations

import dataclasses
import http
from collections.abc import Iterable, Iterator, Mapping
from typing import Union

__all__ = ["Headers", "HeadersLike", "Request", "Response", "plain_response"]


class Headers:
    """HTTP headers: ordered, with case-insensitive names and repeatable fields.

    ``headers[name]`` returns the value of a field that appears once and raises
    ``KeyError`` if it is missing or repeated; :meth:`get_all` returns every value.
    """

    __slots__ = ("_items",)

    def __init__(self, items: HeadersLike | None = None, **kwargs: str) -> None:
        self._items: list[tuple[str, str]] = []
        if items is not None:
            self.update(items)
        for name, value in kwargs.items():
            self[name] = value

    def update(self, items: HeadersLike) -> None:
        """Appends every field of ``items``."""
        pairs = items.items() if isinstance(items, (Mapping, Headers)) else items
        for name, value in pairs:
            self[name] = value

    def __setitem__(self, name: str, value: str) -> None:
        """Appends a field (an existing one with the same name stays)."""
        self._items.append((name, value))

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if len(values) != 1:
            raise KeyError(name if not values else f"{name} appears {len(values)} times")
        return values[0]

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        if not any(n.lower() == key for n, _ in self._items):
            raise KeyError(name)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        key = name.lower()
        return next((v for n, v in self._items if n.lower() == key), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, in order."""
        return list(self._items)

    def raw_items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, in order (websockets' name for :meth:`items`)."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(n.lower() for n, _ in self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and sorted(
            (n.lower(), v) for n, v in self._items
        ) == sorted((n.lower(), v) for n, v in other._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def __str__(self) -> str:
        return "".join(f"{n}: {v}\r\n" for n, v in self._items) + "\r\n"


HeadersLike = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]]]


@dataclasses.dataclass
class Request:
    """An opening handshake request."""

    path: str
    headers: Headers
    method: str = "GET"


@dataclasses.dataclass
class Response:
    """An opening handshake response, or any HTTP response a server sends instead."""

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = b""

    @property
    def status(self) -> int:
        """Alias of :attr:`status_code`."""
        return self.status_code


def plain_response(status: int, text: str) -> Response:
    """A plain-text HTTP response (for ``process_request`` to return), closing the
    connection."""
    code = http.HTTPStatus(status)
    body = text.encode()
    headers = Headers(
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(code.value, code.phrase, headers, body)


def _request_from_core(raw: tuple[str, str, list[tuple[str, str]]]) -> Request:
    method, path, headers = raw
    return Request(path=path, headers=Headers(headers), method=method)


def _response_from_core(raw: tuple[int, str, list[tuple[str, str]], bytes]) -> Response:
    status, reason, headers, body = raw
    return Response(status, reason, Headers(headers), body)
