#!/usr/bin/env bash
# Issue 5: back up and restore a *bucket* (the 1 GiB mixed dataset, uploaded
# into Garage) with Ferry, beside restic with its S3 repo in the same Garage.
# Writes bench/results/<date>-bucket.md (+ raw CSV and logs under $RUN).
#
#   bench/bucket.sh                       Ferry with an S3 pool and a local pool, restic
#   POOLS=s3 bench/bucket.sh              only the hub with the S3 pool
#
# Steps, per tool (fresh repo / hub each):
#   backup-initial    Ferry: `ferry-agent backup` of bucket src (every object read
#                     through S3); restic: `restic backup DATA/mixed` (the same
#                     bytes from the local disk: restic cannot read a bucket)
#   backup-unchanged  the same again with nothing changed (Ferry: a reconcile,
#                     the bucket listed and compared with the journal; restic:
#                     its parent snapshot and files cache)
#   restore           Ferry: `restore --to-target` into an empty bucket, verified
#                     with `rclone check` (sizes + MD5 where the ETag has one) and
#                     `rclone check --download` (every byte) against src;
#                     restic: `restic restore latest` into an empty local dir,
#                     verified with `diff -r` against DATA/mixed
# Each step: `sync` before, /usr/bin/time -v around (wall, user+sys, max RSS),
# `sync` after timed separately ("flush"), all under `timeout $STEP_TIMEOUT`.
# The hub's CPU (/proc/PID/stat) and peak RSS (VmHWM, reset through clear_refs)
# and the Garage server's CPU are recorded per step as well. The upload of the
# dataset into the source bucket (rclone copy) is timed for reference only.
#
# Knobs: DATA (/tmp/benchdata), RUN (/tmp/bench-bucket), POOLS ("s3 local"),
#   TOOLS ("ferry restic"), STEP_TIMEOUT (900), FERRY_BIN, FERRY_BUILD (1),
#   MIXED_SIZE / SMALL_FILES (when the datasets must be made).
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/deps.sh
root=$(pwd)
export SHARED_BENCH=${SHARED_BENCH:-$root/../shared/bench}
DATA=${DATA:-/tmp/benchdata}
RUN=${RUN:-/tmp/bench-bucket}
POOLS=${POOLS:-"s3 local"}
TOOLS=${TOOLS:-"ferry restic"}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
PW=bench-password-not-a-secret

if [ "${FERRY_BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
if [ ! -f "$DATA/mixed.manifest" ]; then
  python3 "$SHARED_BENCH/mkdata.py" --out "$DATA" --mixed-size "${MIXED_SIZE:-1G}" --small-files "${SMALL_FILES:-50000}"
fi
B_MIXED=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' "$DATA/mixed.manifest")
N_MIXED=$(sed -n 's/.* files=\([0-9]*\).*/\1/p' "$DATA/mixed.manifest")

rm -rf "$RUN"; mkdir -p "$RUN/logs"
export RCLONE_CONFIG=$RUN/rclone.conf; : > "$RCLONE_CONFIG"   # remotes come from the env
# shellcheck source=bench/garage.sh
source bench/garage.sh
# shellcheck source=bench/hub.sh
source bench/hub.sh
garage_up
GARAGE_PID=$(cat "$GARAGE_DIR/garage.pid")
HUB_PID=
cleanup() {
  if [ -n "${HUB_PID:-}" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  garage_down
}
trap cleanup EXIT

CSV=$RUN/results.csv
echo "tool,pool,step,wall_s,flush_s,user_s,sys_s,maxrss_kib,hub_cpu_s,hub_rss_kib,garage_cpu_s,repo_bytes,status" > "$CSV"
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# ------------------------------------------------------------ source bucket
echo "== upload DATA/mixed into garage:src (not part of the comparison)"
rclone mkdir garage:src
t0=$(date +%s.%N)
rclone copy "$DATA/mixed" garage:src --transfers 8 > "$RUN/logs/upload.log" 2>&1
t1=$(date +%s.%N)
UPLOAD_S=$(echo "$t1 - $t0" | bc -l)
read -r SRC_OBJECTS SRC_BYTES < <(rclone size garage:src --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["count"], d["bytes"])')
printf '   %d objects, %d bytes in %.1f s\n' "$SRC_OBJECTS" "$SRC_BYTES" "$UPLOAD_S"
[ "$SRC_OBJECTS" = "$N_MIXED" ] && [ "$SRC_BYTES" = "$B_MIXED" ] || { echo "upload incomplete" >&2; exit 1; }

# measure TOOL POOL STEP -- CMD...   (stdout -> logs/TOOL-POOL.STEP.out)
REPO_BYTES_CMD=
measure() {
  local tool=$1 pool=$2 step=$3; shift 4
  local tag=$tool-$pool.$step tf st=ok
  tf=$RUN/logs/$tag.time
  local h0=0 g0 h1=0 g1 hub_rss=0
  sync
  if [ -n "$HUB_PID" ]; then h0=$(ticks "$HUB_PID"); echo 5 > "/proc/$HUB_PID/clear_refs" 2>/dev/null || true; fi
  g0=$(ticks "$GARAGE_PID")
  local t0 t1 t2
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$tf" timeout "$STEP_TIMEOUT" "$@" > "$RUN/logs/$tag.out" 2> "$RUN/logs/$tag.err" || st=FAIL
  t1=$(date +%s.%N)
  sync
  t2=$(date +%s.%N)
  g1=$(ticks "$GARAGE_PID")
  if [ -n "$HUB_PID" ]; then
    h1=$(ticks "$HUB_PID"); hub_rss=$(awk '/^VmHWM/ {print $2}' "/proc/$HUB_PID/status")
  fi
  local user sys rss repo
  user=$(sed -n 's/^\s*User time (seconds): //p' "$tf"); sys=$(sed -n 's/^\s*System time (seconds): //p' "$tf")
  rss=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$tf")
  repo=$(bash -c "$REPO_BYTES_CMD" 2>/dev/null || echo 0)
  printf '%s,%s,%s,%.3f,%.3f,%s,%s,%s,%.2f,%s,%.2f,%s,%s\n' "$tool" "$pool" "$step" \
    "$(echo "$t1 - $t0" | bc -l)" "$(echo "$t2 - $t1" | bc -l)" "${user:-0}" "${sys:-0}" "${rss:-0}" \
    "$(echo "($h1 - $h0) / $HZ" | bc -l)" "$hub_rss" "$(echo "($g1 - $g0) / $HZ" | bc -l)" "${repo:-0}" "$st" >> "$CSV"
  printf '  %-7s %-6s %-17s wall %7.2fs  %s\n' "$tool" "$pool" "$step" "$(echo "$t1 - $t0" | bc -l)" "$st"
  if [ "$st" != ok ]; then echo "    see $RUN/logs/$tag.err:" >&2; tail -5 "$RUN/logs/$tag.err" >&2; fi
}

# verify TOOL POOL STATUS: a row with the verification result.
verify_row() { echo "$1,$2,verify,0,0,0,0,0,0,0,0,0,$3" >> "$CSV"; echo "  $1 $2 verify: $3"; }

# ------------------------------------------------------------------ Ferry --
run_ferry() {
  local pool=$1 dir=$RUN/ferry-$1 prefix=hub-ferry-$1/
  local hub_args=()
  mkdir -p "$dir"
  if [ "$pool" = s3 ]; then
    cat > "$dir/hub.toml" <<TOML
[[pool]]
name = "garage"
s3 = { endpoint = "$S3_ENDPOINT", region = "$AWS_REGION", bucket = "$S3_BUCKET", prefix = "$prefix" }
TOML
    hub_args=(--config "$dir/hub.toml")
    REPO_BYTES_CMD="echo \$(( \$(rclone size 'garage:$S3_BUCKET/$prefix' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"bytes\"])') + \$(du -sb '$dir/hub' | cut -f1) ))"
  else
    REPO_BYTES_CMD="du -sb '$dir/hub' | cut -f1"
  fi
  ferry_hub_up "$dir" b "${hub_args[@]}"
  rclone mkdir "garage:dr-$pool"
  # No credentials-file: the keys come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
  { ferry_agent_head "$dir"; cat <<TOML

[[source]]
name = "b"
bucket = "bench/b"
s3 = { endpoint = "$S3_ENDPOINT", region = "$AWS_REGION", bucket = "src" }

[[target]]
name = "dr"
s3 = { endpoint = "$S3_ENDPOINT", region = "$AWS_REGION", bucket = "dr-$pool" }
TOML
  } > "$dir/agent.toml"
  local agent=("$FERRY_BIN/ferry-agent" --config "$dir/agent.toml" --json)
  echo "== ferry, hub pool $pool"
  measure ferry "$pool" backup-initial -- "${agent[@]}" backup --source b
  measure ferry "$pool" backup-unchanged -- "${agent[@]}" backup --source b
  measure ferry "$pool" restore -- "${agent[@]}" restore --source b --to-target dr
  local st=ok
  rclone check garage:src "garage:dr-$pool" > "$RUN/logs/ferry-$pool.check.log" 2>&1 || st=DIFF
  rclone check --download garage:src "garage:dr-$pool" > "$RUN/logs/ferry-$pool.check-download.log" 2>&1 || st="$st,DIFF-download"
  verify_row ferry "$pool" "$st"
  kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; HUB_PID=
  rclone purge "garage:dr-$pool" > /dev/null 2>&1 || true
  [ "$pool" = s3 ] && { rclone purge "garage:$S3_BUCKET/$prefix" > /dev/null 2>&1 || true; }
  REPO_BYTES_CMD=
}

# ----------------------------------------------------------------- restic --
run_restic() {
  export RESTIC_REPOSITORY=s3:$S3_ENDPOINT/$S3_BUCKET/repo-restic RESTIC_PASSWORD=$PW RESTIC_CACHE_DIR=$RUN/cache/restic
  REPO_BYTES_CMD="rclone size 'garage:$S3_BUCKET/repo-restic' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"bytes\"])'"
  restic init --repository-version 2 > "$RUN/logs/restic.init.log" 2>&1
  echo "== restic, S3 repo"
  measure restic s3 backup-initial -- restic backup --host bench "$DATA/mixed"
  measure restic s3 backup-unchanged -- restic backup --host bench "$DATA/mixed"
  rm -rf "$RUN/restore-restic"; mkdir -p "$RUN/restore-restic"
  measure restic s3 restore -- restic restore latest --host bench --target "$RUN/restore-restic"
  local st=ok
  diff -r -q "$DATA/mixed" "$RUN/restore-restic$DATA/mixed" > "$RUN/logs/restic.verify.log" 2>&1 || st=DIFF
  verify_row restic s3 "$st"
  rm -rf "$RUN/restore-restic"
  rclone purge "garage:$S3_BUCKET/repo-restic" > /dev/null 2>&1 || true
  REPO_BYTES_CMD=
}

for tool in $TOOLS; do
  case $tool in
    ferry) for pool in $POOLS; do run_ferry "$pool"; done ;;
    restic) run_restic ;;
  esac
done

# ----------------------------------------------------------------- report --
out=bench/results/$(date +%Y-%m-%d)-bucket.md
FERRY_REV="binaries in $FERRY_BIN built $(date -r "$FERRY_BIN/ferry-agent" '+%F %T %Z') (HEAD now $(git rev-parse --short HEAD))" \
  DATA="$DATA" N_MIXED="$N_MIXED" B_MIXED="$B_MIXED" UPLOAD_S="$UPLOAD_S" FERRY_BIN="$FERRY_BIN" GARAGE="$GARAGE" \
  python3 bench/bucket_report.py "$CSV" > "$out"
cp "$CSV" "${out%.md}.csv"
echo "wrote $out (raw: ${out%.md}.csv, logs: $RUN/logs)"
