"""The release artifacts of scripts/dist.sh as users get them: one version everywhere, the
wheel and sdist as PyPI checks them, the wheel manylinux_2_17, the C tarball complete,
built against glibc 2.17, relocatable (pkg-config and CMake find wherever it is unpacked)
and usable: examples/c built from it with make + pkg-config and with CMake, and run.
The wheel's smoke suite on clean CPython 3.9 and 3.13 is tests/dist/smoke_wheel.sh."""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from dist_support import ROOT, Artifacts, unpack
from interop_support import (
    EXAMPLES,
    HEADER,
    HOST,
    PROGRAMS,
    ServerProcess,
    pkg_config_env,
    run,
    run_client,
)

VENV_BIN = Path(sys.executable).parent
SYMBOLS = ROOT / "ffi-c" / "symbols.txt"
# The oldest glibc the wheel and the C library run on (manylinux2014).
GLIBC = (2, 17)
# What the C library may load: glibc's own libraries and nothing else.
SYSTEM_LIBRARIES = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1"}
SYSTEM_LIBRARIES.add("ld-linux-x86-64.so.2")
MESSAGES = ["hello", "héllo wörld ✓", "", "x" * 10_000]


@pytest.fixture(scope="session")
def soname(version: str) -> str:
    """The soname the version gives the library (ffi-c/build.rs): before 1.0 a minor release
    may break the ABI, so it carries the minor version."""
    major, minor, _ = version.split(".", 2)
    return f"libferrows.so.0.{minor}" if major == "0" else f"libferrows.so.{major}"


def macro_version(text: str) -> str:
    """MAJOR.MINOR.PATCH from FERROWS_VERSION_* macros in ``text``."""
    parts = []
    for part in ("MAJOR", "MINOR", "PATCH"):
        match = re.search(rf"^#define FERROWS_VERSION_{part} (\d+)\s*$", text, re.M)
        assert match, f"FERROWS_VERSION_{part} missing"
        parts.append(match.group(1))
    return ".".join(parts)


def metadata_field(text: str, field: str) -> list[str]:
    """The values of one field of core metadata (PKG-INFO, METADATA)."""
    head = text.split("\n\n", 1)[0]
    return [line.split(": ", 1)[1] for line in head.splitlines() if line.startswith(field + ": ")]


def wheel_metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode()


def sdist_file(sdist: Path, version: str, name: str) -> bytes:
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"ferrows-{version}/{name}")
        assert member is not None, name
        return member.read()


# One version everywhere


def test_artifact_names_carry_the_workspace_version(artifacts: Artifacts, version: str):
    assert artifacts.sdist.name == f"ferrows-{version}.tar.gz"
    assert artifacts.wheel.name.startswith(f"ferrows-{version}-cp39-abi3-")
    assert "manylinux_2_17_x86_64" in artifacts.wheel.name
    assert artifacts.tarball.name == f"libferrows-{version}-linux-x86_64.tar.gz"


def test_python_metadata_carries_the_version(artifacts: Artifacts, version: str):
    pkg_info = sdist_file(artifacts.sdist, version, "PKG-INFO").decode()
    assert metadata_field(pkg_info, "Version") == [version]
    assert metadata_field(wheel_metadata(artifacts.wheel), "Version") == [version]


def test_installed_package_reports_the_version(version: str):
    """The ferrows of this virtualenv (tests/run.sh installs the wheel of dist/)."""
    assert importlib.metadata.version("ferrows") == version
    shown = run([sys.executable, "-m", "ferrows", "--version"]).stdout
    assert shown == f"ferrows {version}\n"


def test_c_header_carries_the_version(version: str):
    assert macro_version(HEADER.read_text()) == version
    # The header is generated from cbindgen.toml (tests/run.sh diffs the two).
    assert macro_version((ROOT / "ffi-c" / "cbindgen.toml").read_text()) == version


def test_c_tarball_carries_the_version(prefix: Path, version: str, soname: str):
    lib = prefix / "lib"
    assert (prefix / "include" / "ferrows.h").read_bytes() == HEADER.read_bytes()
    pc = (lib / "pkgconfig" / "ferrows.pc").read_text()
    assert re.search(rf"^Version: {re.escape(version)}$", pc, re.M), pc
    config = (lib / "cmake" / "ferrows" / "ferrowsConfig.cmake").read_text()
    assert f"set(ferrows_VERSION {version})" in config
    assert (lib / f"libferrows.so.{version}").is_file()
    library = ctypes.CDLL(str(lib / soname))
    library.ferrows_version.restype = ctypes.c_char_p
    assert library.ferrows_version().decode() == version


def test_changelog_describes_the_version(version: str):
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), "no section for it"


# The Python artifacts as PyPI sees them


def test_twine_check_passes(artifacts: Artifacts):
    result = run([VENV_BIN / "twine", "check", "--strict", artifacts.sdist, artifacts.wheel])
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_auditwheel_finds_the_wheel_manylinux_2_17(artifacts: Artifacts):
    shown = " ".join(run([VENV_BIN / "auditwheel", "show", artifacts.wheel]).stdout.split())
    print(shown)
    assert 'is consistent with the following platform tag: "manylinux_2_17_x86_64"' in shown


def test_wheel_holds_the_package_and_its_metadata(artifacts: Artifacts):
    with zipfile.ZipFile(artifacts.wheel) as archive:
        names = set(archive.namelist())
    for name in ("_ferrows.abi3.so", "_ferrows.pyi", "py.typed", "__init__.py", "__main__.py"):
        assert f"ferrows/{name}" in names
    assert any(re.fullmatch(r"ferrows-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)
    metadata = wheel_metadata(artifacts.wheel)
    assert metadata_field(metadata, "Summary") and metadata_field(metadata, "Requires-Python")
    assert metadata_field(metadata, "License-Expression") == ["MIT"]
    classifiers = set(metadata_field(metadata, "Classifier"))
    expected = {"Operating System :: POSIX :: Linux", "Typing :: Typed"}
    expected |= {f"Programming Language :: Python :: 3.{minor}" for minor in (9, 13)}
    assert expected <= classifiers
    assert metadata_field(metadata, "Description-Content-Type")[0].startswith("text/markdown")
    assert metadata.split("\n\n", 1)[1].startswith("# ferrows\n")
    for url in metadata_field(metadata, "Project-URL"):
        assert not re.search(r"example\.|TODO|placeholder|USER", url), url


def test_sdist_carries_the_workspace_it_builds(artifacts: Artifacts, version: str):
    with tarfile.open(artifacts.sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md", "LICENSE"}
    needed |= {"CHANGELOG.md", "core/Cargo.toml", "core/src/lib.rs", "py/Cargo.toml"}
    needed |= {"py/src/lib.rs", "py/python/ferrows/__init__.py", "py/python/ferrows/py.typed"}
    assert needed <= names, needed - names
    # The lock file is the repository's: a wheel built from the sdist has the same crates.
    assert sdist_file(artifacts.sdist, version, "Cargo.lock") == (ROOT / "Cargo.lock").read_bytes()


# The C tarball


def test_c_tarball_layout(prefix: Path, version: str, soname: str):
    lib = prefix / "lib"
    real = lib / f"libferrows.so.{version}"
    assert real.is_file() and not real.is_symlink() and os.access(real, os.X_OK)
    assert os.readlink(lib / soname) == real.name
    assert os.readlink(lib / "libferrows.so") == real.name
    assert f"Library soname: [{soname}]" in run(["readelf", "-d", real]).stdout
    assert (lib / "libferrows.a").stat().st_size > 0
    assert (lib / "cmake" / "ferrows" / "ferrowsConfigVersion.cmake").is_file()
    assert (prefix / "share" / "doc" / "ferrows" / "LICENSE").is_file()
    assert (prefix / "share" / "doc" / "ferrows" / "CHANGELOG.md").is_file()
    # Nothing in it names the folder it was staged in.
    pc = (lib / "pkgconfig" / "ferrows.pc").read_text()
    assert pc.startswith("prefix=${pcfiledir}/../..\n"), pc


def glibc_versions(library: Path) -> set[tuple[int, ...]]:
    """The GLIBC_x.y symbol versions a library asks of the loader."""
    dynamic = run(["objdump", "-T", library]).stdout
    found = re.findall(r"\bGLIBC_(\d+(?:\.\d+)+)\b", dynamic)
    return {tuple(int(part) for part in text.split(".")) for text in found}


def test_c_library_runs_on_glibc_2_17(prefix: Path, version: str):
    library = prefix / "lib" / f"libferrows.so.{version}"
    versions = glibc_versions(library)
    assert versions, "no GLIBC symbol versions found"
    assert max(versions) <= GLIBC, max(versions)
    needed = set(re.findall(r"\(NEEDED\).*\[(.+)\]", run(["readelf", "-d", library]).stdout))
    assert needed <= SYSTEM_LIBRARIES, needed - SYSTEM_LIBRARIES


def read_listing(text: str) -> tuple[str, set[str]]:
    """The soname and the symbols of ffi-c/symbols.txt."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines and lines[0].startswith("soname "), "ffi-c/symbols.txt starts with its soname"
    return lines[0].removeprefix("soname "), set(lines[1:])


def symbol_problems(listing: str, soname: str, exported: set[str]) -> list[str]:
    """What breaks the rule "within one soname the exported symbols only grow", comparing
    ffi-c/symbols.txt (``listing``) with what a library exports under ``soname``."""
    listed_soname, listed = read_listing(listing)
    if listed_soname != soname:
        return [
            f"the library's soname is {soname}, the list's {listed_soname}: a new soname "
            "starts a new list (ffi-c/symbols.txt, docs/c-api.md: ABI policy)"
        ]
    return [
        *(
            f"{name} is no longer exported: that needs a new soname"
            for name in sorted(listed - exported)
        ),
        *(
            f"{name} is exported but not in ffi-c/symbols.txt: add it"
            for name in sorted(exported - listed)
        ),
    ]


def test_exported_symbols_only_grow(prefix: Path, soname: str):
    library = prefix / "lib" / soname
    symbols = run(["nm", "-D", "--defined-only", library]).stdout.splitlines()
    exported = {line.split()[-1] for line in symbols if line.strip()}
    assert exported and all(name.startswith("ferrows_") for name in exported), exported
    problems = symbol_problems(SYMBOLS.read_text(), soname, exported)
    assert not problems, "\n".join(problems)


def test_symbol_check_catches_removed_and_unlisted_symbols():
    listing = SYMBOLS.read_text()
    listed_soname, listed = read_listing(listing)
    assert "ferrows_version" in listed
    removed = symbol_problems(listing, listed_soname, listed - {"ferrows_version"})
    assert removed == ["ferrows_version is no longer exported: that needs a new soname"]
    added = symbol_problems(listing, listed_soname, listed | {"ferrows_new"})
    assert added == ["ferrows_new is exported but not in ffi-c/symbols.txt: add it"]
    (renamed,) = symbol_problems(listing, listed_soname + "0", listed)
    assert "a new soname starts a new list" in renamed


def cmake_probe(prefix: Path, directory: Path) -> str:
    """What find_package(ferrows) reports about the library it found under ``prefix``."""
    directory.mkdir()
    (directory / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.14)\n"
        "project(probe LANGUAGES NONE)\n"
        "find_package(ferrows REQUIRED)\n"
        "get_target_property(location ferrows::ferrows IMPORTED_LOCATION)\n"
        'message(STATUS "found ${location}")\n'
    )
    configure = ["cmake", "-S", directory, "-B", directory / "build"]
    output = run([*configure, f"-DCMAKE_PREFIX_PATH={prefix}"]).stdout
    match = re.search(r"-- found (.+)\n", output)
    assert match, output
    return match.group(1)


def test_pkg_config_and_cmake_find_wherever_it_is_unpacked(
    tools: None, artifacts: Artifacts, version: str, tmp_path: Path
):
    for place in ("here", "somewhere/much/deeper"):
        prefix = unpack(artifacts.tarball, tmp_path / place)
        env = pkg_config_env(prefix)

        def pkg_config(*args: str, env: dict[str, str] = env) -> str:
            return run(["pkg-config", *args, "ferrows"], env=env).stdout.strip()

        assert pkg_config("--modversion") == version
        assert Path(pkg_config("--variable=prefix")).resolve() == prefix.resolve()
        (include,) = pkg_config("--cflags").split()
        assert Path(include.removeprefix("-I")).resolve() == prefix / "include"
        location = cmake_probe(prefix, tmp_path / place / "probe")
        assert Path(location) == prefix / "lib" / f"libferrows.so.{version}"


def check_echoes(result: subprocess.CompletedProcess[str], messages: list[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split("\n") == [*messages, ""]


@pytest.mark.parametrize("build_system", ["make", "cmake"])
def test_examples_build_and_run_against_the_tarball(
    prefix: Path, soname: str, tmp_path: Path, build_system: str
):
    build = tmp_path / "build"
    if build_system == "make":
        run(["make", "-C", EXAMPLES, f"OUT={build}"], env=pkg_config_env(prefix))
    else:
        run(["cmake", "-S", EXAMPLES, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}"])
        run(["cmake", "--build", build, "--parallel", "2"])
    for program in PROGRAMS:
        # The loader finds the tarball's library, through the rpath the build gave it.
        env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
        ldd = run(["ldd", build / program], env=env).stdout
        match = re.search(rf"{re.escape(soname)} => (\S+)", ldd)
        assert match and os.path.normpath(match.group(1)) == str(prefix / "lib" / soname), ldd
    server = ServerProcess([build / "echo_server", HOST, "0"], None)
    try:
        for client in ("echo_client", "echo_client_cpp"):
            check_echoes(run_client(build, client, server.url, MESSAGES), MESSAGES)
        assert server.stop() == 0, server.output
    finally:
        server.kill()


def test_static_library_links_with_cmake(prefix: Path, tmp_path: Path):
    build = tmp_path / "build"
    static = [f"-DCMAKE_PREFIX_PATH={prefix}", "-DFERROWS_EXAMPLES_STATIC=ON"]
    run(["cmake", "-S", EXAMPLES, "-B", build, *static])
    run(["cmake", "--build", build, "--parallel", "2", "--target", "echo_client", "echo_server"])
    assert "libferrows" not in run(["readelf", "-d", build / "echo_client"]).stdout
    server = ServerProcess([build / "echo_server", HOST, "0"], None)
    try:
        check_echoes(run_client(build, "echo_client", server.url, ["static"]), ["static"])
        assert server.stop() == 0, server.output
    finally:
        server.kill()
