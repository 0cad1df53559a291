#!/usr/bin/env bash
# The main job, from a fresh machine: installs ferrows for Python and libferrows for C, then
# starts an echo server and exchanges messages with it from the sync, asyncio and C clients,
# printing what happened, and stops.
#   usage: bash examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python package goes into a virtualenv in the repository (.venv, the one the test command
# uses too): Debian and Ubuntu refuse installs into the system Python (PEP 668).
venv=${FERROWS_VENV:-$PWD/.venv}
echo "== installing ferrows (Python package, into $venv) and libferrows (C library); takes a few minutes the first time"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check .
cargo build --release --quiet -p ferrows-ffi
prefix=$PWD/target/demo-prefix
bash ffi-c/install.sh "$prefix" >/dev/null
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
# shellcheck disable=SC2046 # pkg-config prints several flags
cc -std=c99 -O2 -Wall -Wextra -Werror -o target/demo-echo-client examples/c/echo_client.c \
  $(pkg-config --cflags --libs ferrows) -Wl,-rpath,"$prefix/lib"
echo "== running"
"$venv/bin/python" -m ferrows demo --c-client target/demo-echo-client
echo "== ferrows is installed in $venv: run '$venv/bin/python', or 'source $venv/bin/activate' first"
