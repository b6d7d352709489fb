#!/usr/bin/env bash
# Issue 5: reconcile of a bucket with many small objects (default 1,000,000
# of 0-4 KiB, bench/mkmany.py) in Garage: time and peak RSS of the agent
# and the hub for the first backup (every object read), a reconcile with
# nothing changed (a full listing compared with the object index), and one
# after 1,000 objects were replaced. Writes bench/results/<date>-reconcile.md.
#
# Knobs: N (1000000), MANY (/tmp/benchdata-many-$N), RUN (/tmp/bench-reconcile),
#   FERRY_BUILD (1), FERRY_BIN, STEP_TIMEOUT (3600), UPLOAD_TRANSFERS (64), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/deps.sh
root=$(pwd)
export SHARED_BENCH=${SHARED_BENCH:-$root/../shared/bench}
N=${N:-1000000}
MANY=${MANY:-/tmp/benchdata-many-$N}
RUN=${RUN:-/tmp/bench-reconcile}
STEP_TIMEOUT=${STEP_TIMEOUT:-3600}

if [ "${FERRY_BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
if [ ! -f "$MANY/.done" ]; then
  rm -rf "$MANY"
  python3 bench/mkmany.py "$MANY" "$N"
  touch "$MANY/.done"
fi

rm -rf "$RUN"; mkdir -p "$RUN/logs"
export RCLONE_CONFIG=$RUN/rclone.conf; : > "$RCLONE_CONFIG"
# shellcheck source=bench/garage.sh
source bench/garage.sh
garage_up
HUB_PID=
cleanup() {
  if [ -n "${HUB_PID:-}" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  garage_down
}
trap cleanup EXIT

echo "uploading $N objects into $S3_BUCKET" >&2
up_start=$(date +%s.%N)
rclone copy "$MANY" "garage:$S3_BUCKET/" --exclude .done \
  --transfers "${UPLOAD_TRANSFERS:-64}" --checkers 16 --s3-no-check-bucket --no-check-dest
up_end=$(date +%s.%N)
UPLOAD_S=$(python3 -c "print(round($up_end - $up_start, 1))")

# Hub (local pool) and agent with the bucket as its source; AWS_* from Garage's env.
# shellcheck source=bench/hub.sh
source bench/hub.sh
ferry_hub_up "$RUN" many
{ ferry_agent_head "$RUN"; cat <<TOML
[[source]]
name = "many"
bucket = "bench/many"
s3 = { endpoint = "$S3_ENDPOINT", region = "$AWS_REGION", bucket = "$S3_BUCKET" }
TOML
} > "$RUN/agent.toml"

hub_hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$HUB_PID/status"; }
hub_cpu() { awk '{print ($14+$15)/100}' "/proc/$HUB_PID/stat"; }
reset_hub_hwm() { echo 5 > "/proc/$HUB_PID/clear_refs" 2>/dev/null || true; }

rows=()
step() {
  local name=$1 log=$RUN/logs/$1
  sync; reset_hub_hwm
  local cpu0; cpu0=$(hub_cpu)
  timeout "$STEP_TIMEOUT" /usr/bin/time -v -o "$log.time" \
    "$FERRY_BIN/ferry-agent" -c "$RUN/agent.toml" --json backup > "$log.json" 2> "$log.err"
  local wall cpu rss hub_rss hub_cpu_s read objects
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log.time")
  cpu=$(awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$log.time")
  rss=$(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$log.time")
  hub_rss=$(hub_hwm)
  hub_cpu_s=$(python3 -c "print(round($(hub_cpu) - $cpu0, 2))")
  objects=$(python3 -c "import json; print(json.load(open('$log.json'))['files'])")
  read=$(python3 -c "import json; print(json.load(open('$log.json'))['files_read'])")
  rows+=("| $name | $objects | $read | $wall | $cpu | $hub_cpu_s | $rss | $hub_rss |")
  echo "${rows[-1]}" >&2
}

step backup-initial
step reconcile-unchanged
# Replace 1,000 objects (the first directory) with new bytes.
python3 - "$RUN/changed/d0000" <<'PY'
import os, random, sys
out = sys.argv[1]; os.makedirs(out, exist_ok=True); rng = random.Random(7)
for i in range(1000):
    open(os.path.join(out, f"f{i:03d}"), "wb").write(rng.randbytes(rng.randint(1, 4096)))
PY
rclone copy "$RUN/changed" "garage:$S3_BUCKET/" --transfers 32 --s3-no-check-bucket --no-check-dest
step reconcile-1000-changed

out=${OUT:-bench/results/$(date +%F)-reconcile.md}
{
  echo "# Bucket reconcile at scale: $N objects of 0-4 KiB in Garage"
  echo
  echo "$(date -u +%FT%TZ), $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, Ferry $(git rev-parse --short HEAD), $("$GARAGE" --version | head -1)"
  echo
  echo "Command: \`N=$N bench/reconcile.sh\`. Hub: local pool. The agent lists the bucket"
  echo "(ListObjectsV2, 1,000 keys a page) and compares each key with its SQLite object index;"
  echo "the first backup reads every object (16 GETs in flight). Upload of the objects with"
  echo "rclone (not part of the figures): ${UPLOAD_S} s."
  echo
  echo "| step | objects | read | wall s | agent CPU s | hub CPU s | agent peak RSS MiB | hub peak RSS MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} > "$out"
echo "wrote $out" >&2
