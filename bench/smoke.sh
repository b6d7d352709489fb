#!/usr/bin/env bash
# Smoke check of the benchmark's Ferry plugin: ../shared/bench/peers.sh runs
# bench/ferry.peer.sh (PEERS=ferry, REPEAT=1, local backend) on the quick
# dataset (mkdata.py --mixed-size 64M --small-files 2000) with a debug build,
# and this fails unless every step has an ok row for the agent ("ferry") and
# for the hub ("ferry-hub") and the restore verified (the harness's diff -r).
# Correctness only: no time is looked at. Run it after changing the plugin or
# the commands it drives; it takes a few minutes.
#   bench/smoke.sh
# Knobs: PEERS ("ferry"; "ferry ferrypg ferrytls" checks the catalog on
#   PostgreSQL and TLS on the link too), FERRY_BIN (binaries to run instead of building), QUICK_DATA
#   (/tmp/benchdata-quick), SHARED_BENCH (../shared/bench), KEEP=1 (keep the run dir).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
[ -f "$shared/peers.sh" ] || { echo "smoke: $shared/peers.sh is missing: the benchmarks need ../shared beside the repository" >&2; exit 1; }
bash scripts/setup.sh quickstart
bash bench/deps.sh
if [ -z "${FERRY_BIN:-}" ]; then
  cargo build --locked --bins -p ferry-agent -p ferry-hub
  FERRY_BIN=${CARGO_TARGET_DIR:-$root/target}/debug
fi
data=${QUICK_DATA:-/tmp/benchdata-quick}
if [ ! -f "$data/small.manifest" ] || [ ! -f "$data/edit.manifest" ]; then
  python3 "$shared/mkdata.py" --out "$data" --mixed-size 64M --small-files 2000 > /dev/null
fi

run=$(mktemp -d /tmp/bench-smoke.XXXXXX)
csv=$run/results.csv
if ! DATA=$data RUN=$run REPEAT=1 BACKEND=local PEERS="${PEERS:-ferry}" \
  PEER_PLUGINS=$root/bench/ferry.peer.sh FERRY_BIN=$FERRY_BIN \
  OUT_MD=$run/results.md OUT_CSV=$csv bash "$shared/peers.sh" > "$run/peers.log" 2>&1; then
  cat "$run/peers.log" >&2
  echo "smoke: peers.sh failed; its logs are in $run/logs" >&2
  exit 1
fi

# peer,rep,step,input_bytes,wall_s,flush_s,user_s,sys_s,maxrss_kib,repo_bytes,status
failed=0
expect_ok() { # PEER STEP
  local status
  status=$(awk -F, -v peer="$1" -v step="$2" \
    'NR > 1 && $1 == peer && $3 == step { s = (NF == 11 ? $11 : "a malformed row") } END { print s }' "$csv")
  if [ "$status" != ok ]; then
    echo "smoke: $1 $2: ${status:-no row}" >&2
    failed=1
  fi
}
for peer in ${PEERS:-ferry}; do
  for step in backup-initial backup-incr backup-small restore-mixed; do
    expect_ok "$peer" "$step"
    expect_ok "$peer-hub" "$step"   # the hub's CPU and RSS beside the agent's
  done
  expect_ok "$peer" verify          # the restore is identical to DATA/mixed
done
if [ $failed != 0 ]; then
  cat "$csv" "$run/peers.log" >&2
  echo "smoke: failed; the run is in $run" >&2
  exit 1
fi
[ "${KEEP:-0}" = 1 ] || rm -rf "$run"
echo "smoke: the Ferry plugin ran every step ok and its restore verified"
