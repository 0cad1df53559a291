"""uvicorn's own WebSocket protocol tests, run against ``ferrows.asgi.FerrowsProtocol``.

The pinned uvicorn's source distribution is fetched from PyPI with pip, its tests are
extracted, ``uvicorn-websocket-tests.patch`` adds the ferrows protocol to the protocol list
(nothing else changes), and ``tests/protocols/test_websocket.py`` runs in a pytest of its own
with uvicorn's own configuration (warnings are errors), for uvicorn's protocols and ferrows'
alike. The counts per protocol go to the terminal summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

import pytest
import uvicorn

#: The uvicorn whose tests run; tests/requirements.txt installs the same one.
UVICORN_VERSION = "0.54.0"
PATCH = Path(__file__).with_name("uvicorn-websocket-tests.patch")
TEST_FILE = "tests/protocols/test_websocket.py"
#: The protocols of the parametrized list, by test id.
PROTOCOLS = ("ferrows", "websockets-sansio", "wsproto")
#: uvicorn's own skips, for one of its protocols (its tests say why).
UPSTREAM_SKIP = "WebSocketsSansIOProtocol sends both start and body messages in one message."


def _uvicorn_tests(workdir: Path) -> Path:
    """Downloads the pinned sdist, extracts its tests and pytest configuration, patches
    them; returns the folder to run pytest in."""
    download = workdir / "sdist"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check"),
            *("--no-deps", "--no-binary", ":all:", "-d", str(download)),
            f"uvicorn=={UVICORN_VERSION}",
        ],
        check=True,
        timeout=300,
    )
    prefix = f"uvicorn-{UVICORN_VERSION}/"
    root = workdir / "uvicorn"
    with tarfile.open(download / f"uvicorn-{UVICORN_VERSION}.tar.gz") as sdist:
        for member in sdist.getmembers():
            name = member.name[len(prefix) :] if member.name.startswith(prefix) else ""
            if member.isfile() and (name.startswith("tests/") or name == "pyproject.toml"):
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = sdist.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    # git apply outside any repository: it patches the files under cwd.
    environment = {**os.environ, "GIT_CEILING_DIRECTORIES": str(workdir)}
    subprocess.run(["git", "apply", "--verbose", str(PATCH)], cwd=root, env=environment, check=True)
    return root


def _protocol_of(name: str) -> str:
    """The protocol a test id like ``test_x[ferrows-h11]`` ran for."""
    parameters = name.partition("[")[2]
    found = [p for p in PROTOCOLS if p in parameters]
    assert len(found) == 1, f"cannot tell the protocol of {name}"
    return found[0]


def _outcomes(report: Path) -> dict[str, Counter[str]]:
    """Counts of passed, failed and skipped tests per protocol, from a JUnit XML report,
    with the skip reasons."""
    counts: dict[str, Counter[str]] = {protocol: Counter() for protocol in PROTOCOLS}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = f"skipped: {child.get('message', '')}"
        counts[_protocol_of(case.get("name", ""))][outcome] += 1
    return counts


@pytest.mark.timeout(900)
def test_uvicorn_websocket_tests_pass_with_ferrows(
    tmp_path: Path, uvicorn_summary: list[str]
) -> None:
    assert uvicorn.__version__ == UVICORN_VERSION, "tests/requirements.txt pins another uvicorn"
    root = _uvicorn_tests(tmp_path)
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", TEST_FILE, "-q", "-p", "no:cacheprovider"),
            # uvicorn's addopts without its "-n 8" (pytest-xdist): one process here.
            *("-o", "addopts=-rxXs --strict-config --strict-markers"),
            *("--timeout", "60", f"--junitxml={report}"),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=840,
    )
    counts = _outcomes(report)
    for protocol in PROTOCOLS:
        outcome = ", ".join(f"{n} {what}" for what, n in sorted(counts[protocol].items()))
        uvicorn_summary.append(f"{protocol}: {outcome}")
    # 1: some test failed (the counts say which); anything else: the run itself went wrong.
    assert run.returncode in (0, 1), run.stdout[-5000:] + run.stderr[-2000:]
    ferrows = counts["ferrows"]
    assert set(ferrows) == {"passed"} and ferrows["passed"] > 200, run.stdout[-5000:]
    # uvicorn's protocols are the reference: they must have run, and skipped only what
    # uvicorn skips; a failure of theirs is reported in the summary, not ours to fail on.
    for protocol in ("websockets-sansio", "wsproto"):
        assert counts[protocol]["passed"] > 200, counts[protocol]
        assert set(counts[protocol]) <= {"passed", "failed", f"skipped: {UPSTREAM_SKIP}"}
