"""The Autobahn|Testsuite, every section (1-10, and 12-13 for permessage-deflate), against
every face in agents.py (both directions).

The per-section summary is printed at the end of the pytest run (see conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


# Six jobs (three faces, two directions) share the machine's cores; sections 12 and 13 are
# the long part (the suite compresses in Python 2).
@pytest.mark.timeout(3300)
def test_autobahn_every_section(tmp_path, autobahn_summary):
    result = subprocess.run(
        [sys.executable, str(HERE / "autobahn.py"), "--outdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=3000,
        check=False,
    )
    autobahn_summary.append(result.stdout + result.stderr[-4000:])
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
