#!/usr/bin/env bash
# The benchmark suite, from a fresh clone: installs the peers (pip into .venv, Debian's
# libwebsockets-dev), builds ferrows (the Python extension and libferrows), the load
# generator (bench/loadgen) and the C programs (bench/c), then runs bench/suite.py, which
# prints the table and writes bench/results/latest.json (docs/performance.md).
#   usage: bench/run.sh [--quick] [--installed] [suite.py options]
#     --quick      every scenario once, briefly: proves the suite runs (bench/results/quick.json)
#     --installed  benchmark the ferrows already installed in the virtualenv (no maturin build)
#   FERROWS_VENV overrides the virtualenv (default .venv), CARGO_TARGET_DIR the build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${FERROWS_VENV:-$ROOT/.venv}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/bench
step() { printf '\n=== bench: %s\n' "$*"; }

build_ferrows=1
quick=0
suite_args=()
for arg in "$@"; do
  case $arg in
    --installed) build_ferrows=0 ;;
    --quick) quick=1; suite_args+=("$arg") ;;
    *) suite_args+=("$arg") ;;
  esac
done

step "Python peers ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements.txt

step "System packages: libwebsockets-dev, a C compiler, pkg-config"
if ! pkg-config --exists libwebsockets 2>/dev/null || ! command -v cc >/dev/null || ! command -v readelf >/dev/null; then
  apt-get update -qq && apt-get install -y -qq libwebsockets-dev pkg-config gcc binutils >/dev/null
fi

if [ "$build_ferrows" = 1 ]; then
  step "ferrows: the Python extension (release) and libferrows"
  (VIRTUAL_ENV=$VENV "$VENV/bin/maturin" develop --release -q)
  cargo build --release --quiet -p ferrows-ffi
fi

step "Load generator (bench/loadgen, outside the workspace)"
cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml --target-dir "$TARGET/loadgen"

step "permessage-deflate in the core, without I/O (bench/codec; docs/compression.md runs it)"
cargo build --release --quiet --manifest-path bench/codec/Cargo.toml --target-dir "$TARGET/codec"
if [ "$quick" = 1 ]; then "$TARGET/codec/release/ferrows-codec-bench" 0.02 1 >/dev/null; fi

step "C programs (bench/c)"
LIB_DIR=$TARGET/release
[ -f "$LIB_DIR/libferrows.so" ] || { echo "no $LIB_DIR/libferrows.so: cargo build --release -p ferrows-ffi" >&2; exit 1; }
mkdir -p "$OUT"
# Programs ask the loader for the soname (libferrows.so.0.MINOR): give it that name.
SONAME=$(readelf -d "$LIB_DIR/libferrows.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
ln -sf "$LIB_DIR/libferrows.so" "$OUT/${SONAME:-libferrows.so}"
read -r -a LWS <<<"$(pkg-config --cflags --libs libwebsockets)"
CFLAGS=(-O2 -Wall -Wextra -Werror)
for program in ferrows_client ferrows_server ferrows_broadcast; do
  cc "${CFLAGS[@]}" -I include -o "$OUT/$program" "bench/c/$program.c" -L"$LIB_DIR" -lferrows -Wl,-rpath,"$OUT"
done
for program in lws_client lws_server; do
  cc "${CFLAGS[@]}" -o "$OUT/$program" "bench/c/$program.c" "${LWS[@]}"
done
cc "${CFLAGS[@]}" -o "$OUT/tcp_client" bench/c/tcp_client.c

step "Suite"
exec "$VENV/bin/python" bench/suite.py --bin-dir "$OUT" --loadgen "$TARGET/loadgen/release/ferrows-loadgen" "${suite_args[@]}"
