"""Helpers of the release-artifact tests: where the artifacts are, the workspace version,
unpacking the C tarball."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
# The interop suite's helpers: bounded runs of commands and of the C example programs.
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from interop_support import run  # noqa: E402

TOOLS = ("cc", "c++", "make", "cmake", "pkg-config", "readelf", "nm", "objdump", "tar", "ldd")


@dataclass(frozen=True)
class Artifacts:
    sdist: Path
    wheel: Path
    tarball: Path


def workspace_version() -> str:
    """The version of [workspace.package] in Cargo.toml: the one source of every version."""
    text = (ROOT / "Cargo.toml").read_text()
    section = re.search(r"^\[workspace\.package\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, "no [workspace.package] in Cargo.toml"
    match = re.search(r'^version = "([^"]+)"$', section.group(1), re.M)
    assert match, "no version in [workspace.package] of Cargo.toml"
    return match.group(1)


def unpack(tarball: Path, into: Path) -> Path:
    """Unpacks the C tarball into ``into`` and returns its prefix (the one top folder)."""
    into.mkdir(parents=True, exist_ok=True)
    run(["tar", "-xzf", tarball, "-C", into])
    (prefix,) = into.iterdir()
    return prefix
