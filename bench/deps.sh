#!/usr/bin/env bash
# Installs what the benchmark scripts run beside Ferry, when missing: the
# harness's rsync, bc and /usr/bin/time (../shared/bench/peers.sh), and
# python3 (mkdata.py, the reports). Building Ferry is scripts/setup.sh's
# part; the peers come from ../shared/bench/install-peers.sh.
# Idempotent: `apt-get update` runs only when something must be installed.
set -euo pipefail

need=()
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v bc >/dev/null 2>&1 || need+=(bc)
[ -x /usr/bin/time ] || need+=(time)
command -v python3 >/dev/null 2>&1 || need+=(python3)

if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
