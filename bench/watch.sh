#!/usr/bin/env bash
# Issue 18, a change journal for volumes: `ferry-agent run` on a directory
# source, against a hub with a local pool on loopback. For each tree size:
#   - the agent's idle CPU while it watches the tree (after its first full
#     walk), target < 1 % of a core on a million files;
#   - change -> committed latency for RATE new files per second for
#     DURATION seconds (p50/p99), target p99 <= settle + 1 s.
# Trees come from bench/mkmany.py (files of 0-4 KiB in directories of 1000).
#
#   bench/watch.sh                        TREES="50000 1000000"
#   TREES=1000000 IDLE=120 bench/watch.sh
#
# Each tree is watched with each of WATCHERS ("fanotify inotify": fanotify
# needs root), with the time from the agent's start to its watcher's first
# watches set.
#
# Knobs: TREES, WATCHERS, RATE (100), DURATION (30 s), IDLE (60 s), SETTLE (1s),
#   RUN (/tmp/bench-watch), SKIP_BUILD=1, KEEP=1 (keep each run's directory), OUT.
# Writes bench/results/<date>-watch.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TREES=${TREES:-"50000 1000000"}
WATCHERS=${WATCHERS:-"fanotify inotify"}
RATE=${RATE:-100}
DURATION=${DURATION:-30}
IDLE=${IDLE:-60}
SETTLE=${SETTLE:-1s}
RUN=${RUN:-/tmp/bench-watch}
OUT=${OUT:-bench/results/$(date +%F)-watch.md}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
commit=$(git rev-parse --short HEAD)
# shellcheck source=bench/hub.sh
source bench/hub.sh

HUB_PID= AGENT_PID=
stop_all() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  AGENT_PID= HUB_PID=
  true
}
trap stop_all EXIT

rows=()
for n in $TREES; do
  tree=/tmp/benchdata-many-$n
  if [ ! -f "$tree/.done" ]; then
    rm -rf "$tree"; python3 bench/mkmany.py "$tree" "$n"; touch "$tree/.done"
  fi
  for watcher in $WATCHERS; do
  # The run adds its changes in one directory of the tree (no copy: a
  # million small files take 4 GiB of disk), removed again after.
  dir=$RUN/$n
  rm -rf "$dir" "$tree/bench-changes"; mkdir -p "$dir"
  ferry_hub_up "$dir" "watch"
  { ferry_agent_head "$dir"
    printf '\n[[source]]\nname = "tree"\npath = "%s"\nbucket = "bench/watch"\n' "$tree"
    printf '\n[run]\nsettle = "%s"\nwatcher = "%s"\n' "$SETTLE" "$watcher"
  } > "$dir/agent.toml"
  FERRY_LOG=ferry_agent=info "$FERRY_BIN/ferry-agent" --log-format json --config "$dir/agent.toml" \
    run > /dev/null 2> "$dir/agent.log" &
  AGENT_PID=$!
  started=$(date +%s.%N)
  idle=$(python3 bench/watch_latency.py idle "$dir/agent.log" "$AGENT_PID" "$IDLE")
  setup=$(python3 bench/watch_latency.py setup "$dir/agent.log" "$started")
  echo "tree $n idle: $idle" >&2
  lat=$(python3 bench/watch_latency.py changes "$dir/agent.log" "$tree/bench-changes" "$RATE" "$DURATION")
  echo "tree $n changes: $lat" >&2
  rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$AGENT_PID/status")
  stop_all
  rows+=("$(python3 - "$n" "$idle" "$lat" "$rss" "$watcher" "$setup" <<'PY'
import json, sys
n, idle, lat, rss, watcher, setup = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
print(f"| {int(n):,} | {watcher} | {setup} s | {idle['cpu_percent_of_a_core']} % | {lat['achieved_rate_per_s']}/s | "
      f"{lat['latency_p50_s']} s | {lat['latency_p99_s']} s | {lat['latency_max_s']} s | "
      f"{lat['snapshots']} | {lat['snapshot_duration_mean_s']} s | {rss} MiB |")
PY
)")
  rm -rf "$tree/bench-changes"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
  done
done

{
  echo "# Continuous mode on a directory: idle CPU and change -> committed latency"
  echo
  echo "Commit $commit, $(date -u +%FT%TZ), $(nproc) cores; settle $SETTLE; $RATE new files/s for $DURATION s;"
  echo "idle CPU over $IDLE s after the first full walk. Targets: idle < 1 % of a core (1 M files),"
  echo "p99 <= settle + 1 s."
  echo
  echo "| tree files | watcher | watches set | idle CPU | changes | p50 | p99 | max | snapshots | snapshot mean | agent peak RSS |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT"
