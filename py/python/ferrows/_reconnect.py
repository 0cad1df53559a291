"""Reconnection, the same for both faces: which failures to retry, and the delays between
attempts (the core's backoff policy, which the C API uses too)."""

from __future__ import annotations

import asyncio
import os

from . import _ferrows
from .exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidProxyStatus,
    InvalidStatus,
    InvalidURI,
)
from .exceptions import TimeoutError as WsTimeoutError

#: Reconnection backoff: the first delay is random up to this (seconds), ...
BACKOFF_INITIAL_DELAY = float(os.environ.get("FERROWS_BACKOFF_INITIAL_DELAY", "5"))
#: ... then delays grow by this factor ...
BACKOFF_FACTOR = float(os.environ.get("FERROWS_BACKOFF_FACTOR", "1.618"))
#: ... up to this many seconds.
BACKOFF_MAX_DELAY = float(os.environ.get("FERROWS_BACKOFF_MAX_DELAY", "90"))


def backoff() -> _ferrows.Backoff:
    """The delays of a run of failed attempts: random up to the initial delay, then growing
    by the factor up to the maximum, each between half of it and all of it. Reads the
    module's settings at each call."""
    return _ferrows.Backoff(BACKOFF_INITIAL_DELAY, BACKOFF_FACTOR, BACKOFF_MAX_DELAY)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: network errors, timeouts and 5xx answers (from the server
    or the proxy), not a 4xx, a bad URI or another handshake error. The core's
    ``Error::is_transient``, for Python exceptions."""
    if isinstance(exc, InvalidURI):
        return False
    if isinstance(exc, (InvalidStatus, InvalidProxyStatus)):
        return exc.response.status_code >= 500
    if isinstance(exc, InvalidHandshake):
        return isinstance(exc, InvalidMessage)
    return isinstance(exc, (OSError, asyncio.TimeoutError, WsTimeoutError))
