"""The interop matrix as a table: a row per ferrows face, role and scheme, a column per peer.
A cell passes when both its conversations (closed by ferrows, closed by the peer) passed."""

from __future__ import annotations

from typing import Any

import pytest

ROW_KEYS = ("face", "role", "scheme")


class MatrixReport:
    KEY = pytest.StashKey["MatrixReport"]()

    def __init__(self) -> None:
        self.passed: dict[tuple[str, ...], int] = {}
        self.failed: set[tuple[str, ...]] = set()
        self.peers: list[str] = []

    def add(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Counts a phase's report of a matrix test (a failure in any phase fails its cell)."""
        callspec = getattr(item, "callspec", None)
        params: dict[str, Any] = callspec.params if callspec else {}
        if not {*ROW_KEYS, "peer", "closer"} <= params.keys():
            return
        cell = (*(params[key] for key in ROW_KEYS), params["peer"])
        if params["peer"] not in self.peers:
            self.peers.append(params["peer"])
        if report.failed:
            self.failed.add(cell)
        elif report.when == "call" and report.passed:
            self.passed[cell] = self.passed.get(cell, 0) + 1
        self.passed.setdefault(cell, 0)

    def lines(self) -> list[str]:
        """The table (Markdown), or nothing when no matrix test ran."""
        if not self.passed:
            return []
        rows = sorted({cell[:3] for cell in self.passed}, key=row_order)
        header = ["ferrows face", "ferrows role", "scheme", *self.peers]
        table = [header, ["---"] * len(header)]
        for row in rows:
            table.append([*row, *(self.cell((*row, peer)) for peer in self.peers)])
        return ["| " + " | ".join(cells) + " |" for cells in table]

    def cell(self, cell: tuple[str, ...]) -> str:
        if cell in self.failed:
            return "FAIL"
        if cell not in self.passed:
            return "n/a"
        return "pass" if self.passed[cell] == 2 else "partial"


def row_order(row: tuple[str, ...]) -> tuple[int, ...]:
    face, role, scheme = row
    faces = ("sync", "asyncio", "c")
    return (faces.index(face) if face in faces else len(faces), role != "client", scheme != "ws")
