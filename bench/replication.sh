#!/usr/bin/env bash
# Issue 19, replication: a source site ("site", `ferry-agent run` on a
# directory, settle SETTLE) changing RATE files per second (4 KiB to 1 MiB,
# log-uniform) for DURATION seconds, two replica sites (b and c, each
# `ferry-agent run` with a [[replica]] directory), one hub on loopback.
# Reports change -> applied at each replica (p50/p99/max), how long after
# the load stops both replicas reach zero lag, each process's CPU and peak
# RSS, and the time from `bucket failover --to b` to the first commit b's
# backup gets accepted (the tenant's verifier key registered, so b's backup
# dedups against the copies its applies verified).
# Targets: p99 <= 2 s, zero lag within 5 s, failover <= 5 s.
#
# Knobs: RATE (1000), DURATION (60), SETTLE (1s), RUN (/tmp/bench-replication),
#   SKIP_BUILD=1, OUT. Writes bench/results/<date>-replication.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
RATE=${RATE:-1000}
DURATION=${DURATION:-60}
SETTLE=${SETTLE:-1s}
RUN=${RUN:-/tmp/bench-replication}
OUT=${OUT:-bench/results/$(date +%F)-replication.md}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
commit=$(git rev-parse --short HEAD)
# shellcheck source=bench/hub.sh
source bench/hub.sh

PIDS=()
stop_all() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${HUB_PID:-}" ] && kill "$HUB_PID" 2>/dev/null
  wait 2>/dev/null || true
}
trap stop_all EXIT

rm -rf "$RUN"; mkdir -p "$RUN/src"
ferry_hub_up "$RUN" "files"
hub=("$FERRY_BIN/ferry-hub" --data-dir "$RUN/hub")
verifier=$("$FERRY_BIN/ferry-agent" key verifier --key "$RUN/tenant.key")
"${hub[@]}" tenant verifier bench --key "$verifier" > /dev/null
agent_config() { # DIR, then the tables
  local dir=$1; shift
  mkdir -p "$dir"
  cp "$RUN/tenant.key" "$dir/tenant.key"
  { ferry_agent_head "$RUN"; printf '%s\n' "$@"; } > "$dir/agent.toml"
}
mkdir -p "$RUN/a"; cp "$RUN/site.token" "$RUN/a/site.token"
agent_config "$RUN/a" '[[source]]' 'name = "files"' "path = \"$RUN/src\"" 'bucket = "bench/files"' \
  '[run]' "settle = \"$SETTLE\""
for s in b c; do
  "${hub[@]}" site add --tenant bench "site-$s" --token-file "$RUN/$s.token" > /dev/null
  mkdir -p "$RUN/$s"; mv "$RUN/$s.token" "$RUN/$s/site.token"
  agent_config "$RUN/$s" '[[replica]]' 'bucket = "bench/files"' "path = \"$RUN/copy-$s\""
done
"${hub[@]}" bucket replicas bench/files --replica site-b --replica site-c > /dev/null
start_agent() { # NAME
  FERRY_LOG=ferry_agent=info "$FERRY_BIN/ferry-agent" --log-format json --config "$RUN/$1/agent.toml" \
    run > /dev/null 2> "$RUN/$1/agent.log" &
  PIDS+=($!)
  eval "PID_$1=$!"
}
for s in a b c; do start_agent "$s"; done
sleep 3

result=$(python3 bench/replication_load.py "$RUN/src" "$RUN/copy-b" "$RUN/copy-c" "$RATE" "$DURATION")
echo "load: $result" >&2
usage() { # PID: "cpu-seconds peak-MiB"
  python3 - "$1" <<'PY'
import os, sys
pid = sys.argv[1]
parts = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
rss = next(int(l.split()[1]) // 1024 for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))
print(f"{cpu:.1f} s CPU, {rss} MiB")
PY
}
u_hub=$(usage "$HUB_PID"); u_a=$(usage "$PID_a"); u_b=$(usage "$PID_b"); u_c=$(usage "$PID_c")
lag=$("${hub[@]}" --json replication status --tenant bench)

# Failover: site a is lost; b becomes the source and backs up its copy.
kill "$PID_a"
t0=$(date +%s.%N)
"${hub[@]}" bucket failover bench/files --to site-b > /dev/null
kill "$PID_b"; wait "$PID_b" 2>/dev/null || true
agent_config "$RUN/b" '[[source]]' 'name = "files"' "path = \"$RUN/copy-b\"" 'bucket = "bench/files"'
"$FERRY_BIN/ferry-agent" --json --config "$RUN/b/agent.toml" backup > "$RUN/b/failover-backup.json"
t1=$(date +%s.%N)
failover=$(python3 -c "print(round($t1 - $t0, 2))")
echo "failover to first accepted commit: $failover s" >&2

{
  echo "# Replication: change -> applied at two replicas, and failover"
  echo
  echo "Commit $commit, $(date -u +%FT%TZ), $(nproc) cores; source \`ferry-agent run\` on a directory (settle $SETTLE);"
  echo "$RATE new files/s asked (4 KiB-1 MiB, log-uniform) for $DURATION s; replicas b and c are directories."
  echo "Targets: p99 <= 2 s, zero lag within 5 s of the load's end, failover <= 5 s."
  echo
  python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"Files written: {r['files']} ({r['achieved_rate_per_s']}/s achieved, {r['mib']} MiB).")
print()
print("| replica | p50 | p99 | max | zero lag after the load's end |")
print("|---|---:|---:|---:|---:|")
for name, v in r["replicas"].items():
    print(f"| {name} | {v['p50_s']} s | {v['p99_s']} s | {v['max_s']} s | {v['caught_up_after_end_s']} s |")
PY
  echo
  echo "| process | CPU, peak RSS |"
  echo "|---|---|"
  echo "| hub | $u_hub |"
  echo "| source agent (a) | $u_a |"
  echo "| replica agent (b) | $u_b |"
  echo "| replica agent (c) | $u_c |"
  echo
  echo "Failover (\`bucket failover --to site-b\`, then b's first backup of its copy committed): $failover s."
  echo
  echo "Lag at the end (\`replication status --json\`): \`$lag\`"
} | tee "$OUT"
