#!/usr/bin/env bash
# One command for the side-by-side benchmark: builds Ferry (release),
# installs the peers, makes or reuses the datasets, runs Ferry and its peers
# in one run of ../shared/bench/peers.sh, measures the disk's durable write
# speed, and writes bench/results/<date>-<backend>.md with ratio columns.
#
#   bench/run.sh                       REPEAT=3, peers restic borg rustic
#   REPEAT=1 PEERS="ferry restic" bench/run.sh
#   BACKEND=s3 PEERS="ferry restic" bench/run.sh
#                                      every repo in a throwaway Garage this
#                                      script starts (bench/garage.sh) and stops
# Knobs: REPEAT, PEERS (include ferry), DATA, RUN, MIXED_SIZE, SMALL_FILES,
#   BACKEND (local | s3), FERRY_BUILD (0 = use the binaries in FERRY_BIN as built),
#   FERRY_COMMIT (what those binaries were built from; default HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
export REPEAT=${REPEAT:-3}
export DATA=${DATA:-/tmp/benchdata}
export RUN=${RUN:-/tmp/bench-run}
export PEERS=${PEERS:-"ferry restic borg rustic"}
export BACKEND=${BACKEND:-local}
case $BACKEND in
  local) ;;
  s3) # borg has no S3 backend (peers.sh would fail its setup): drop it.
      PEERS=$(echo " $PEERS " | sed 's/ borg / /; s/^ *//; s/ *$//'); export PEERS ;;
  *) echo "BACKEND must be local or s3" >&2; exit 2 ;;
esac

bash scripts/setup.sh quickstart
if [ "$BACKEND" = s3 ]; then bash scripts/setup.sh garage; fi
bash bench/deps.sh
if [ "${FERRY_BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
export FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
# The commit the binaries were built from (the tree may move on during the run).
export FERRY_COMMIT=${FERRY_COMMIT:-$(git rev-parse --short HEAD)}
case " $PEERS " in *" rustic "*) RUSTIC=1 bash "$shared/install-peers.sh" ;; *) bash "$shared/install-peers.sh" ;; esac

if [ ! -f "$DATA/small.manifest" ] || [ ! -f "$DATA/edit.manifest" ]; then
  python3 "$shared/mkdata.py" --out "$DATA" --mixed-size "${MIXED_SIZE:-1G}" --small-files "${SMALL_FILES:-50000}"
fi

if [ "$BACKEND" = s3 ]; then
  # A throwaway Garage on free loopback ports, stopped on exit; its env
  # gives S3_ENDPOINT, S3_BUCKET and the AWS_* keys peers.sh and the hub use.
  export SHARED_BENCH=$shared
  # shellcheck source=bench/garage.sh
  source bench/garage.sh
  garage_up
fi

mkdir -p "$RUN"
export OUT_CSV=$RUN/results.csv OUT_MD=$RUN/results-peers.md
PEER_PLUGINS="$root/bench/ferry.peer.sh" bash "$shared/peers.sh"

bash bench/report.sh "$RUN"
