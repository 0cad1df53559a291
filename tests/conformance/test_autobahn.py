"""The Autobahn|Testsuite, sections 1-10, against every face in agents.py (both directions).

The per-section summary is printed at the end of the pytest run (see conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_autobahn_sections_1_to_10(tmp_path, autobahn_summary):
    result = subprocess.run(
        [sys.executable, str(HERE / "autobahn.py"), "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    autobahn_summary.append(result.stdout + result.stderr[-4000:])
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
