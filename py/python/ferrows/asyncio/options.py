"""Options shared by the asyncio client and server, checked and normalized."""

from __future__ import annotations

import logging
from typing import Any, Optional, Union

from ..compression import Compression, compression_option

Limit = Optional[Union[int, tuple[int, int]]]
"""A buffer limit in bytes: a high-water mark (the low one is a quarter of it) or
``(high, low)``."""

DEFAULT_READ_LIMIT = (4 << 20, 1 << 20)
DEFAULT_WRITE_LIMIT = (1 << 20, 256 << 10)


def watermarks(limit: Limit, default: tuple[int, int], name: str) -> tuple[int, int]:
    """Normalizes a limit to ``(high, low)``."""
    if limit is None:
        return default
    high, low = (limit, limit // 4) if isinstance(limit, int) else limit
    if not 0 <= low <= high:
        raise ValueError(f"{name} needs 0 <= low <= high")
    return high, low


def connection_options(
    *,
    max_size: int | None,
    max_frame_size: int | None,
    max_fragments: int | None,
    close_timeout: float | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    read_limit: Limit,
    write_limit: Limit,
    compression: Compression,
    logger: logging.Logger,
) -> dict[str, Any]:
    """The keyword arguments of a Connection, from the public options."""
    return {
        "core_options": core_options(
            max_size=max_size,
            max_frame_size=max_frame_size,
            max_fragments=max_fragments,
            close_timeout=close_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            compression=compression,
        ),
        "read_limit": watermarks(read_limit, DEFAULT_READ_LIMIT, "read_limit"),
        "write_limit": watermarks(write_limit, DEFAULT_WRITE_LIMIT, "write_limit"),
        "close_timeout": close_timeout,
        "logger": logger,
    }


def core_options(
    *,
    max_size: int | None,
    max_frame_size: int | None,
    max_fragments: int | None,
    close_timeout: float | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    compression: Compression,
) -> dict[str, Any]:
    """What the native protocol core takes (and the handshake: ``compression``)."""
    for name, size in (
        ("max_size", max_size),
        ("max_frame_size", max_frame_size),
        ("max_fragments", max_fragments),
    ):
        if size is not None and size <= 0:
            raise ValueError(f"{name} must be positive or None")
    for name, value in (
        ("close_timeout", close_timeout),
        ("ping_interval", ping_interval),
        ("ping_timeout", ping_timeout),
    ):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0 or None")
    return {
        "max_size": max_size,
        "max_frame_size": max_frame_size,
        "max_fragments": max_fragments,
        "close_timeout": close_timeout,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "compression": compression_option(compression),
    }
