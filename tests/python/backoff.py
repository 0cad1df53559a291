"""The reconnection tests' fixture, shared by the sync and asyncio suites."""

from __future__ import annotations

import ferrows._reconnect as reconnect_module
import pytest


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect delays of tens of milliseconds (read at each run of attempts)."""
    monkeypatch.setattr(reconnect_module, "BACKOFF_INITIAL_DELAY", 0.05)
    monkeypatch.setattr(reconnect_module, "BACKOFF_FACTOR", 1.5)
    monkeypatch.setattr(reconnect_module, "BACKOFF_MAX_DELAY", 0.2)
