#!/usr/bin/env bash
# Issue 16, `ferry-hub recover`: back up a source into a hub with a local
# pool, stop it, then rebuild a new, empty catalog from the pool alone and
# measure it: wall, CPU, peak RSS, blobs indexed per second. One run per
# source: the many-small-files set of bench/scale.sh (N files) and the
# benchmark's dataset (BENCHDATA, if present).
# Prints and writes bench/results/<date>-recover.md.
#
# Knobs: N (1000000), MANY (/tmp/benchdata-many-$N), BENCHDATA
#   (/tmp/benchdata), RUN (/tmp/bench-recover), FERRY_BUILD (1), FERRY_BIN,
#   OUT. The catalog rebuilt is SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/deps.sh
root=$(pwd)
N=${N:-1000000}
MANY=${MANY:-/tmp/benchdata-many-$N}
BENCHDATA=${BENCHDATA:-/tmp/benchdata}
RUN=${RUN:-/tmp/bench-recover}
if [ "${FERRY_BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
FERRY_COMMIT=${FERRY_COMMIT:-$(git rev-parse --short HEAD)}
OUT=${OUT:-bench/results/$(date +%F)-recover.md}
if [ ! -f "$MANY/.done" ]; then
  rm -rf "$MANY"; python3 bench/mkmany.py "$MANY" "$N"; touch "$MANY/.done"
fi
sources=("many:$MANY")
[ -d "$BENCHDATA" ] && sources+=("dataset:$BENCHDATA")

HUB_PID=
trap '[ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null; true' EXIT
# shellcheck source=bench/hub.sh
source bench/hub.sh
rows=()
for entry in "${sources[@]}"; do
  name=${entry%%:*} src=${entry#*:}
  run=$RUN/$name
  rm -rf "$run"; mkdir -p "$run"
  ferry_hub_up "$run" "$name"
  { ferry_agent_head "$run"; printf '[[source]]\nname = "%s"\npath = "%s"\nbucket = "bench/%s"\n' "$name" "$src" "$name"; } > "$run/agent.toml"
  "$FERRY_BIN/ferry-agent" -c "$run/agent.toml" backup > "$run/backup.out"
  kill "$HUB_PID"; wait "$HUB_PID" 2>/dev/null || true; HUB_PID=
  # The lost catalog's stand-in: a new file beside the same pool.
  printf '[catalog]\npath = "%s"\n' "$run/recovered.db" > "$run/recover.toml"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$run/time" "$FERRY_BIN/ferry-hub" --config "$run/recover.toml" \
    --data-dir "$run/hub" --json recover > "$run/recover.json"
  t1=$(date +%s.%N)
  read -r u s m < "$run/time"
  wall=$(echo "$t1 - $t0" | bc -l)
  read -r blobs packs commits < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["blobs_added"], r["packs"], r["commits_added"])' "$run/recover.json")
  rows+=("| $name | $(find "$src" -type f | wc -l) | $packs | $blobs | $commits | $(printf '%.2f' "$wall") | $(echo "$u + $s" | bc -l | xargs printf '%.1f') | $((m / 1024)) | $(echo "$blobs / $wall" | bc | xargs printf '%d') |")
  echo "${rows[-1]}" >&2
done

{
  echo "# \`ferry-hub recover\`, $(date +%F)"
  echo
  echo "\`bench/recover.sh\` ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB): Ferry $FERRY_COMMIT. Each source is backed up"
  echo "into a hub with one local pool; the hub is stopped and a new, empty SQLite catalog is rebuilt"
  echo "from the pool alone (page cache dropped first where permitted). One run each."
  echo "Target (issue 16): >= 100,000 blobs/s, memory flat."
  echo
  echo "| source | files | packs | blobs | commits | wall s | CPU s | peak RSS MiB | blobs/s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
echo "wrote $OUT" >&2
