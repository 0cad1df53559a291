"""Prints the counts of uvicorn's WebSocket tests per protocol in pytest's terminal summary."""

from __future__ import annotations

from typing import Any

import pytest

_SUMMARY: list[str] = []


@pytest.fixture
def uvicorn_summary() -> list[str]:
    return _SUMMARY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SUMMARY:
        terminalreporter.section("uvicorn's WebSocket protocol tests")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
