#!/usr/bin/env bash
# The wheel as a user gets it: installed into a new virtualenv of each CPython given, with
# nothing on PATH but that virtualenv (no Rust toolchain, no C compiler: pip may not build
# anything), then a smoke suite: sync and asyncio echo, TLS on both faces, and
# `python -m ferrows --version` against the workspace version.
#   usage: tests/dist/smoke_wheel.sh WHEEL PYTHON...
#   FERROWS_SMOKE_DIR  where the virtualenvs go (default target/dist/smoke; each is made anew)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
die() { echo "smoke_wheel.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: $0 WHEEL PYTHON..."
WHEEL=$(realpath "$1")
shift
[ -f "$WHEEL" ] || die "no wheel at $WHEEL (bash scripts/dist.sh builds it)"
SMOKE_DIR=${FERROWS_SMOKE_DIR:-$ROOT/target/dist/smoke}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$VERSION" ] || die "no version in [workspace.package] of Cargo.toml"
SUITE=(tests/python/test_sync_echo.py tests/python/test_sync_tls.py
       tests/asyncio/test_asyncio_messages.py tests/asyncio/test_asyncio_tls.py)

for interpreter in "$@"; do
  [ -x "$interpreter" ] || die "no Python at $interpreter"
  env_dir=$SMOKE_DIR/$(basename "$interpreter")
  rm -rf "$env_dir"
  "$interpreter" -m venv "$env_dir"
  # The environment stays (pip's settings, HOME); PATH holds the virtualenv alone, and no
  # variable names a compiler.
  bare=(env -u CC -u CXX -u CARGO -u RUSTC -u RUSTUP_TOOLCHAIN PATH="$env_dir/bin")
  for tool in cc gcc c++ clang cargo rustc maturin; do
    if "${bare[@]}" /bin/sh -c "command -v $tool" >/dev/null; then
      die "$tool is on the smoke test's PATH"
    fi
  done
  echo "--- $("$env_dir/bin/python" --version) in $env_dir: no compiler, no cargo on PATH"
  "${bare[@]}" python -m pip install -q --disable-pip-version-check --only-binary=:all: \
    "$WHEEL" pytest pytest-timeout trustme uvloop websockets websocket-client
  shown=$(cd "$env_dir" && "${bare[@]}" python -m ferrows --version)
  [ "$shown" = "ferrows $VERSION" ] || die "python -m ferrows --version says '$shown', not 'ferrows $VERSION'"
  echo "$shown"
  # From the virtualenv's folder, so that nothing of the checkout can be imported as ferrows.
  (cd "$env_dir" && "${bare[@]}" python -m pytest -q -p no:cacheprovider "${SUITE[@]/#/$ROOT/}")
done
