"""Options shared by the sync client and server, checked and normalized for the engine."""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from ..compression import Compression, compression_option

Limits = Optional[Union[int, tuple[int, int]]]
"""A buffer limit: a high watermark (the low one is a quarter of it) or ``(high, low)``."""


def watermarks(limit: Limits, name: str) -> tuple[int, int] | None:
    """Normalizes a buffer limit to ``(high, low)``."""
    if limit is None:
        return None
    if isinstance(limit, int):
        high, low = limit, limit // 4
    else:
        high, low = limit
    if not 0 <= low <= high or high == 0:
        raise ValueError(f"{name} needs 0 <= low <= high and high > 0")
    return high, low


def _seconds(value: float | None, name: str) -> float:
    """None disables a timer; the engine reads 0 as disabled."""
    if value is None:
        return 0.0
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return float(value)


def protocol_options(
    *,
    open_timeout: float | None,
    close_timeout: float | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    max_size: int | None,
    max_frame_size: int | None,
    max_fragments: int | None,
    read_limit: Limits,
    write_limit: Limits,
    compression: Compression,
) -> dict[str, Any]:
    """The engine options every connection has."""
    for name, size in (
        ("max_size", max_size),
        ("max_frame_size", max_frame_size),
        ("max_fragments", max_fragments),
    ):
        if size is not None and size <= 0:
            raise ValueError(f"{name} must be positive or None")
    return {
        "open_timeout": _seconds(open_timeout, "open_timeout"),
        "close_timeout": _seconds(close_timeout, "close_timeout"),
        "ping_interval": _seconds(ping_interval, "ping_interval"),
        "ping_timeout": _seconds(ping_timeout, "ping_timeout"),
        "max_size": max_size,
        "max_frame_size": max_frame_size,
        "max_fragments": max_fragments,
        "read_limit": watermarks(read_limit, "read_limit"),
        "write_limit": watermarks(write_limit, "write_limit"),
        "compression": compression_option(compression),
    }


def read_pem(path: str | os.PathLike[str] | None, name: str) -> bytes | None:
    """Reads a PEM file named by an option."""
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ValueError(f"cannot read {name} {os.fspath(path)!r}: {exc}") from exc
