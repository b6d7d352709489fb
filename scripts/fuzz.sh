#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for FUZZ_SECONDS each (default 60), two at
# a time, on stable Rust: libFuzzer from the libfuzzer-sys crate with
# SanitizerCoverage turned on through rustc flags, so neither cargo-fuzz nor
# a nightly toolchain is needed. Corpora grow in fuzz/corpus/<target>; a
# crash is written to fuzz/artifacts/<target>/ and fails the run.
#   scripts/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${FUZZ_SECONDS:-60}
host=$(rustc -vV | sed -n 's/^host: //p')
# An explicit --target keeps the flags off build scripts and proc macros.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/ferry/fuzz-target}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --locked --target "$host" --quiet
bin=$CARGO_TARGET_DIR/$host/release

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
failed=()
run() {
  mkdir -p "corpus/$1" "artifacts/$1"
  "$bin/$1" "corpus/$1" -max_total_time="$seconds" -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$1/" > "artifacts/$1/last-run.log" 2>&1
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do run "$t" & pids+=("$!:$t"); done
  for p in "${pids[@]}"; do
    if wait "${p%%:*}"; then
      echo "fuzz ${p#*:}: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "artifacts/${p#*:}/last-run.log" | tail -1)"
    else
      failed+=("${p#*:}")
      echo "fuzz ${p#*:}: FAILED; see fuzz/artifacts/${p#*:}/" >&2
      tail -30 "artifacts/${p#*:}/last-run.log" >&2
    fi
  done
done
# The hubs hub_handlers ran in.
rm -rf "${TMPDIR:-/tmp}"/ferry-fuzz-hub-*
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: ${failed[*]} failed" >&2; exit 1; }
