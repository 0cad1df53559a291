"""Prints the Autobahn summary in pytest's terminal summary, so CI logs show it."""

from __future__ import annotations

import pytest

_SUMMARIES: list[str] = []


@pytest.fixture
def autobahn_summary() -> list[str]:
    return _SUMMARIES


def pytest_terminal_summary(terminalreporter) -> None:
    for summary in _SUMMARIES:
        terminalreporter.section("Autobahn|Testsuite")
        terminalreporter.write(summary)
