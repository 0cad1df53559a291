#!/usr/bin/env bash
# Builds the Autobahn agents of the C ABI (c_echo_server, c_client_driver) into
# target/c-agents/, against include/ferrows.h and the built target/release/libferrows.so.
# Rebuilds only what is older than its source, the header or the library.
#
#   usage: build_c_agents.sh                 build
#          build_c_agents.sh --exec NAME ARGS... build, then exec target/c-agents/NAME ARGS
#
# The library's soname (libferrows.so.0.1) is not a file in target/release, so the agents
# find it through a symlink next to them: target/c-agents/lib/<soname> -> the built library.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LIB_DIR=${FERROWS_LIB_DIR:-$ROOT/target/release}
OUT=$ROOT/target/c-agents
CC=${CC:-cc}

[ -f "$LIB_DIR/libferrows.so" ] ||
  { echo "build_c_agents.sh: no $LIB_DIR/libferrows.so: cargo build --release -p ferrows-ffi" >&2; exit 1; }
soname=$(readelf -d "$LIB_DIR/libferrows.so" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[ -n "$soname" ] || { echo "build_c_agents.sh: $LIB_DIR/libferrows.so has no soname" >&2; exit 1; }

mkdir -p "$OUT/lib"
for link in "$soname" libferrows.so; do
  # Two builds may run at once (the Autobahn jobs start together): replace only a wrong link.
  [ "$(readlink "$OUT/lib/$link" 2>/dev/null)" = "$LIB_DIR/libferrows.so" ] ||
    ln -sfn "$LIB_DIR/libferrows.so" "$OUT/lib/$link"
done

for name in c_echo_server c_client_driver; do
  source=$HERE/$name.c
  binary=$OUT/$name
  if [ -x "$binary" ] && [ "$binary" -nt "$source" ] && [ "$binary" -nt "$ROOT/include/ferrows.h" ] &&
     [ "$binary" -nt "$LIB_DIR/libferrows.so" ]; then
    continue
  fi
  # Built under a temporary name and renamed: two concurrent builds never expose half a file.
  temporary=$(mktemp "$OUT/.$name.XXXXXX")
  "$CC" -std=c99 -O2 -g -Wall -Wextra -Wpedantic -Werror -pthread -I"$ROOT/include" \
    "$source" -o "$temporary" -L"$OUT/lib" -Wl,-rpath,'$ORIGIN/lib' -lferrows
  chmod 755 "$temporary"
  mv -f "$temporary" "$binary"
done

if [ "${1:-}" = "--exec" ]; then
  [ $# -ge 2 ] || { echo "usage: $0 --exec NAME ARGS..." >&2; exit 2; }
  name=$2
  shift 2
  exec "$OUT/$name" "$@"
fi
