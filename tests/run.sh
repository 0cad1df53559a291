#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, builds ferrows, then
# runs style checks, the Rust tests, the release artifacts (scripts/dist.sh, tests/dist) with
# the wheel on clean Python 3.9 and 3.13, the benchmark suite in
# its quick mode (it must run, its figures are not judged), the Python suite and the Autobahn
# conformance suite (inside pytest, summarized at the end).
#   usage: tests/run.sh            (FERROWS_VENV overrides the virtualenv, default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${FERROWS_VENV:-$ROOT/.venv}
step() { printf '\n=== %s\n' "$*"; }

step "Python environment ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
PY=$VENV/bin/python

step "System packages (C toolchain peers and tools)"
if ! command -v cmake >/dev/null || ! command -v valgrind >/dev/null || ! command -v pkg-config >/dev/null \
   || ! command -v c++ >/dev/null || ! command -v make >/dev/null || ! command -v readelf >/dev/null \
   || ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq cmake pkg-config valgrind g++ make binutils openssl >/dev/null
fi

step "Proxies for the proxy tests: tinyproxy, microsocks and stunnel (apt-get)"
if ! command -v tinyproxy >/dev/null || ! command -v microsocks >/dev/null || ! command -v stunnel >/dev/null; then
  apt-get update -qq && apt-get install -y -qq tinyproxy microsocks stunnel4 >/dev/null
fi

step "Redis for the topics tests (apt-get redis-server; the tests start it on a loopback port)"
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi

step "Interop peers: Chromium and libwebsockets (apt-get), Node ws (npm ci)"
if ! command -v chromium >/dev/null || ! pkg-config --exists libwebsockets; then
  apt-get update -qq && apt-get install -y -qq chromium libwebsockets-dev >/dev/null
fi
command -v npm >/dev/null ||
  { echo "no npm: install Node.js and npm (README: what a fresh machine must have)" >&2; exit 1; }
npm ci --prefix tests/interop/node --no-audit --no-fund --loglevel=error

step "C header: include/ferrows.h is what cbindgen generates"
# The generator, pinned: a different version would generate a different header.
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen 0.29.4" ]; then
  cargo install --quiet cbindgen --version 0.29.4 --locked
fi
generated=$(mktemp)
(cd ffi-c && cbindgen --quiet -c cbindgen.toml -o "$generated" .)
diff -u include/ferrows.h "$generated" || { echo "include/ferrows.h is stale: regenerate it (docs/c-api.md)" >&2; exit 1; }
rm -f "$generated"

step "The deflate backend is zlib-rs alone (no crate may swap in another zlib)"
others=$(cargo tree --workspace --edges normal,build --prefix none | grep -E '^(flate2|miniz_oxide|libz-sys|libz-ng-sys|libz-rs-sys|cloudflare-zlib-sys) ' || true)
[ -z "$others" ] || { echo "another deflate backend in the tree: $others" >&2; exit 1; }
cargo tree --workspace --edges normal --prefix none | grep -q '^zlib-rs ' || { echo "zlib-rs is missing" >&2; exit 1; }

step "Style: cargo fmt, clippy, ruff"
cargo fmt --all -- --check
for crate in bench/loadgen bench/codec; do cargo fmt --manifest-path "$crate/Cargo.toml" -- --check; done
cargo clippy --workspace --all-targets --quiet -- -D warnings
"$VENV/bin/ruff" check py/python tests bench
"$VENV/bin/ruff" format --check py/python tests bench

step "Rust tests"
# The py crate is an extension module: it links only inside Python, and is tested there.
cargo test -p ferrows-core -p ferrows-ffi

step "Fuzzing: every cargo-fuzz target for a smoke time (tests/fuzz.sh)"
bash tests/fuzz.sh

step "C ABI: build libferrows and run the C suite (plain, ASan+UBSan, valgrind)"
cargo build --release -p ferrows-ffi
bash tests/c/run.sh

step "Release artifacts: scripts/dist.sh (the sdist, the wheel built from it, the C tarball)"
bash scripts/dist.sh
# The suite runs on the wheel users get, not on a build of the checkout.
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps dist/ferrows-*.whl

step "The artifacts: one version, twine and auditwheel, glibc 2.17, exported symbols, the C tarball"
"$PY" -m pytest -q -p no:cacheprovider tests/dist

step "The abi3 wheel on clean CPython 3.9 and 3.13, no Rust toolchain or compiler on PATH"
interpreters=()
for version in 3.9 3.13; do
  interpreter=$(ls -d "$(pyenv root)"/versions/"$version".*/bin/python"$version" 2>/dev/null | tail -1)
  if [ -z "$interpreter" ]; then
    echo "no CPython $version under pyenv: this machine kind should carry it" >&2
    exit 1
  fi
  interpreters+=("$interpreter")
done
bash tests/dist/smoke_wheel.sh dist/ferrows-*.whl "${interpreters[@]}"

step "Benchmarks, quick mode: every scenario still yields a figure (no figure is judged)"
bash bench/run.sh --quick --installed

step "Python suite and Autobahn conformance"
"$PY" -m pytest tests -q --ignore=tests/dist
