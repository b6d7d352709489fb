#!/usr/bin/env bash
# One command for the side-by-side benchmark: builds Ferry (release),
# installs the peers, makes or reuses the datasets, runs Ferry and its peers
# in one run of ../shared/bench/peers.sh, measures the disk's durable write
# speed, and writes bench/results/<date>-<backend>.md with ratio columns.
#
#   bench/run.sh                       REPEAT=3, peers restic borg rustic
#   REPEAT=1 PEERS="ferry restic" bench/run.sh
# Knobs: REPEAT, PEERS (include ferry), DATA, RUN, MIXED_SIZE, SMALL_FILES, BACKEND.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
export REPEAT=${REPEAT:-3}
export DATA=${DATA:-/tmp/benchdata}
export RUN=${RUN:-/tmp/bench-run}
export PEERS=${PEERS:-"ferry restic borg rustic"}
export BACKEND=${BACKEND:-local}
if [ "$BACKEND" != local ]; then
  echo "BACKEND=$BACKEND: Ferry's S3 pool is not built yet (issue 5); only local runs" >&2
  exit 2
fi

bash scripts/setup.sh
cargo build --release --bins --locked
export FERRY_BIN=${CARGO_TARGET_DIR:-$root/target}/release
case " $PEERS " in *" rustic "*) RUSTIC=1 bash "$shared/install-peers.sh" ;; *) bash "$shared/install-peers.sh" ;; esac

if [ ! -f "$DATA/small.manifest" ] || [ ! -f "$DATA/edit.manifest" ]; then
  python3 "$shared/mkdata.py" --out "$DATA" --mixed-size "${MIXED_SIZE:-1G}" --small-files "${SMALL_FILES:-50000}"
fi

mkdir -p "$RUN"
export OUT_CSV=$RUN/results.csv OUT_MD=$RUN/results-peers.md
PEER_PLUGINS="$root/bench/ferry.peer.sh" bash "$shared/peers.sh"

bash bench/report.sh "$RUN"
