#!/usr/bin/env bash
# Runs every test: unit, conformance suites and end-to-end tests that start
# the real binaries on loopback ports. Reuses a build cache outside the
# clone (FERRY_TARGET_DIR) so reruns are incremental; works from nothing too.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${FERRY_TARGET_DIR:-$HOME/.cache/ferry/target}}
export CARGO_TERM_COLOR=never

cargo fmt --all -- --check
# The end-to-end tests run the binaries, so build them first.
cargo build --workspace --bins --tests --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --test-threads 2
else
  cargo test --workspace --locked --no-fail-fast -- --test-threads 2
fi
