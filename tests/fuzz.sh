#!/usr/bin/env bash
# Fuzzing: checks the style of the cargo-fuzz targets (core/fuzz), then runs each one on a copy
# of its seed corpus, so the checked-in corpus never grows here. One libFuzzer job per target,
# one core. A crash fails the script; its input is left in core/fuzz/artifacts/<target>/.
#   usage: tests/fuzz.sh [target...]   (default: every target)
#   FERROWS_FUZZ_SECONDS  time per target (default 20: the smoke test)
#   FERROWS_FUZZ_RUNS     executions per target instead (the long run, docs/testing.md)
set -euo pipefail
FUZZ_DIR=$(cd "$(dirname "$0")/../core/fuzz" && pwd)
if [ -n "${FERROWS_FUZZ_RUNS:-}" ]; then
  bound=-runs=$FERROWS_FUZZ_RUNS
else
  bound=-max_total_time=${FERROWS_FUZZ_SECONDS:-20}
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(frames request response close uri)
fi

rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install --quiet cargo-fuzz --version 0.13.2 --locked
fi

cargo fmt --manifest-path "$FUZZ_DIR/Cargo.toml" -- --check
cargo clippy --manifest-path "$FUZZ_DIR/Cargo.toml" --bins --quiet -- -D warnings

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# libFuzzer's -jobs writes fuzz-<job>.log into the working directory: keep it out of the tree.
cd "$work"
for target in "${targets[@]}"; do
  cp -r "$FUZZ_DIR/corpus/$target" "corpus-$target"
  printf -- '--- %s (%s)\n' "$target" "$bound"
  if ! cargo +nightly fuzz run --fuzz-dir "$FUZZ_DIR" "$target" "corpus-$target" -- \
      "$bound" -jobs=1 -print_final_stats=1 >"$target.log" 2>&1; then
    tail -n 60 "$target.log"
    echo "fuzz target $target failed: the input is in core/fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs|stat::(number_of_executed_units|peak_rss_mb))' \
    "$target.log"
done
