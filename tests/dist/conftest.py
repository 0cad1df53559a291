"""Fixtures for the release artifacts that scripts/dist.sh writes into dist/: the sdist, the
wheel built from it and the C tarball, each found by its name, and the tarball unpacked
into a fresh prefix. A missing artifact fails the tests (run `bash scripts/dist.sh`); it is
never a reason to skip them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dist_support import DIST, TOOLS, Artifacts, unpack, workspace_version


@pytest.fixture(scope="session")
def version() -> str:
    return workspace_version()


@pytest.fixture(scope="session")
def artifacts() -> Artifacts:
    def one(pattern: str) -> Path:
        found = sorted(DIST.glob(pattern))
        if len(found) != 1:
            pytest.fail(f"{len(found)} files match dist/{pattern}, not one: bash scripts/dist.sh")
        return found[0]

    return Artifacts(
        one("ferrows-*.tar.gz"), one("ferrows-*.whl"), one("libferrows-*-linux-x86_64.tar.gz")
    )


@pytest.fixture(scope="session")
def tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)} (tests/run.sh installs them with apt-get)")


@pytest.fixture(scope="session")
def prefix(tools: None, artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C tarball unpacked into a fresh folder."""
    return unpack(artifacts.tarball, tmp_path_factory.mktemp("unpacked"))
