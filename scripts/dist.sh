#!/usr/bin/env bash
# Builds every release artifact into dist/, from a clean checkout:
#
#   ferrows-VERSION.tar.gz                     the sdist: the workspace it needs and Cargo.lock
#   ferrows-VERSION-cp39-abi3-manylinux...whl  the wheel, built FROM that sdist with zig as the
#                                              linker, against glibc 2.17 (manylinux2014)
#   libferrows-VERSION-linux-x86_64.tar.gz     the C library (shared, with its soname links,
#                                              and static), header, pkg-config and CMake files,
#                                              built against glibc 2.17 and relocatable
#
# VERSION is the workspace version in Cargo.toml, the single source of every version.
# Installs its tools into the virtualenv (scripts/dist-requirements.txt: maturin, zig,
# cargo-zigbuild, auditwheel, twine). tests/dist/check.sh tests what it produces.
#   usage: scripts/dist.sh        (FERROWS_VENV: the virtualenv, default .venv;
#                                  CARGO_TARGET_DIR: the build tree, default target)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${FERROWS_VENV:-$ROOT/.venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/dist
# glibc 2.17 is manylinux2014's: the oldest the wheel and the C library run on.
TARGET=x86_64-unknown-linux-gnu
GLIBC=2.17
step() { printf '\n=== dist: %s\n' "$*"; }
started=$SECONDS

step "tools ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/dist-requirements.txt
# maturin finds zig as `python -m ziglang`, and cargo-zigbuild is a binary of the venv.
export PATH="$VENV/bin:$PATH"

VERSION=$(cargo metadata --no-deps --format-version 1 --locked |
  python -c 'import json, sys; print({p["name"]: p["version"] for p in json.load(sys.stdin)["packages"]}["ferrows-ffi"])')
echo "ferrows $VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"

step "sdist"
maturin sdist --out "$OUT"
SDIST=$OUT/ferrows-$VERSION.tar.gz
[ -f "$SDIST" ] || { echo "maturin wrote no $SDIST" >&2; exit 1; }

step "wheel, built from the sdist"
# Unpacked outside the checkout, so nothing but the sdist's files can take part. The build
# tree is shared with the other builds: compiled dependencies are reused, the sources not.
unpacked=$CARGO_TARGET_DIR/dist/sdist
rm -rf "$unpacked"
mkdir -p "$unpacked"
tar -xzf "$SDIST" -C "$unpacked"
(cd "$unpacked/ferrows-$VERSION" &&
  maturin build --release --locked --zig --target "$TARGET" --compatibility manylinux2014 \
    --out "$OUT")

step "C library, against glibc $GLIBC"
cargo zigbuild --release --locked -p ferrows-ffi --target "$TARGET.$GLIBC"
built=$CARGO_TARGET_DIR/$TARGET/release
name=libferrows-$VERSION-linux-x86_64
stage=$CARGO_TARGET_DIR/dist/$name
rm -rf "$stage"
FERROWS_LIB_DIR=$built bash ffi-c/install.sh --relocatable "$stage"
# The static library keeps its symbols but not Rust's debug info (a quarter of its size).
strip --strip-debug "$stage/lib/libferrows.a"
mkdir -p "$stage/share/doc/ferrows"
cp LICENSE CHANGELOG.md "$stage/share/doc/ferrows/"
tar -czf "$OUT/$name.tar.gz" -C "$(dirname "$stage")" --sort=name --owner=0 --group=0 \
  --numeric-owner "$name"

step "artifacts (built in $((SECONDS - started)) s)"
ls -l "$OUT"
