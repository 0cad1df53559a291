"""Test servers in child processes that print their port on their first line of output."""

from __future__ import annotations

import queue
import subprocess
import threading


def start_reporting_port(
    argv: list[str], timeout: float
) -> tuple[subprocess.Popen[str], int | None]:
    """Starts ``argv`` with text pipes on standard input and output; returns the process and
    the port it printed first, or None when it printed none within ``timeout`` seconds."""
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: lines.put(process.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    ).start()
    try:
        return process, int(lines.get(timeout=timeout))
    except (queue.Empty, ValueError):
        return process, None
