#!/usr/bin/env bash
# Installs what building and testing Ferry needs beyond Rust itself.
# Idempotent: installs only what is missing.
set -euo pipefail

need=()
command -v age >/dev/null 2>&1 || need+=(age)          # interop test: stock age decrypts a stored chunk
command -v python3 >/dev/null 2>&1 || need+=(python3)  # dataset generator (../shared/bench/mkdata.py)
command -v cc >/dev/null 2>&1 || need+=(gcc)           # zstd-sys, rusqlite's bundled SQLite
command -v c++ >/dev/null 2>&1 || need+=(g++)          # libFuzzer, for scripts/fuzz.sh
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)  # finds OpenSSL for openssl-sys
# The benchmark harness (../shared/bench/peers.sh), which a test runs with
# the Ferry plugin on the quick dataset.
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v bc >/dev/null 2>&1 || need+=(bc)
[ -x /usr/bin/time ] || need+=(time)
# The agent's ChaCha20-Poly1305 is the system OpenSSL's (crypto/src/stream.rs).
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust 1.94 or newer" >&2; exit 1; }

# Garage: the S3 server the tests start on loopback. Built once (about 11
# minutes on 2 cores) and kept in ~/.cargo/bin, where reruns find it.
GARAGE_VERSION=2.5.0
garage_bin=${GARAGE:-$HOME/.cargo/bin/garage}
if ! "$garage_bin" --version 2>/dev/null | grep -qE "[:v ]$GARAGE_VERSION( |$)"; then
  echo "setup: building garage $GARAGE_VERSION (cargo install, about 11 minutes)" >&2
  cargo install garage --version "$GARAGE_VERSION" --locked --quiet
fi
