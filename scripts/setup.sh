#!/usr/bin/env bash
# Installs what one use of Ferry needs beyond Rust itself, and nothing more:
#   scripts/setup.sh quickstart   building the binaries: gcc, pkg-config, libssl-dev
#   scripts/setup.sh test         that, plus what the test suite runs: the age
#                                 CLI, g++ (fuzz targets), PostgreSQL's server
#                                 binaries and Garage (built once, ~11 minutes)
#   scripts/setup.sh garage       Garage alone (the benchmarks' S3 runs)
# Several may be named. Idempotent: only what is missing is installed, and
# `apt-get update` runs only when something is.
set -euo pipefail

usage() { echo "usage: scripts/setup.sh quickstart|test|garage ..." >&2; exit 2; }
[ $# -gt 0 ] || usage
build=0 test=0 garage=0
for what in "$@"; do
  case $what in
    quickstart) build=1 ;;
    test) build=1 test=1 garage=1 ;;
    garage) garage=1 ;;
    *) usage ;;
  esac
done

need=()
if [ $build = 1 ]; then
  command -v cc >/dev/null 2>&1 || need+=(gcc)                 # zstd-sys, rusqlite's bundled SQLite
  command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)  # finds OpenSSL for openssl-sys
  # The agent's ChaCha20-Poly1305 is the system OpenSSL's (crypto/src/stream.rs).
  [ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)
fi
if [ $test = 1 ]; then
  command -v age >/dev/null 2>&1 || need+=(age)                # interop test: stock age decrypts a stored chunk
  command -v c++ >/dev/null 2>&1 || need+=(g++)                # libFuzzer, for scripts/fuzz.sh
  # The tests start their own clusters from the server binaries; Debian
  # keeps them in /usr/lib/postgresql/<major>/bin, off the PATH.
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  # The package would make and start a system-wide cluster; the tests
  # start clusters of their own and need none running.
  if [[ " ${need[*]} " == *" postgresql "* ]] && ! [ -e /etc/postgresql-common/createcluster.conf ]; then
    $SUDO mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust 1.94 or newer" >&2; exit 1; }

# Garage: the S3 server the tests start on loopback. Built once (about 11
# minutes on 2 cores) and kept in ~/.cargo/bin, where reruns find it.
if [ $garage = 1 ]; then
  GARAGE_VERSION=2.5.0
  garage_bin=${GARAGE:-$HOME/.cargo/bin/garage}
  if ! "$garage_bin" --version 2>/dev/null | grep -qE "[:v ]$GARAGE_VERSION( |$)"; then
    echo "setup: building garage $GARAGE_VERSION (cargo install, about 11 minutes)" >&2
    cargo install garage --version "$GARAGE_VERSION" --locked --quiet
  fi
fi
