#!/usr/bin/env bash
# Runs every test: unit, conformance suites and end-to-end tests that start
# the real binaries on loopback ports. Reuses a build cache outside the
# clone (FERRY_TARGET_DIR) so reruns are incremental; works from nothing too.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh test
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${FERRY_TARGET_DIR:-$HOME/.cache/ferry/target}}
export CARGO_TERM_COLOR=never
# The S3 tests talk to Garage on loopback: never through a proxy. The Rust
# SDK ignores AWS_CA_BUNDLE, but child tools would not.
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset AWS_CA_BUNDLE

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The end-to-end tests run the binaries, so build them first.
cargo build --workspace --bins --tests --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --test-threads 2
else
  cargo test --workspace --locked --no-fail-fast -- --test-threads 2
fi
# Every decoder of bytes from the network or disk, fuzzed briefly (the
# corpora in fuzz/corpus grow across runs); FUZZ_SECONDS=0 skips it.
fuzz_seconds=${FUZZ_SECONDS:-15}
if [ "$fuzz_seconds" != 0 ]; then
  FUZZ_SECONDS=$fuzz_seconds bash scripts/fuzz.sh
fi
