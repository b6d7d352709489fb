#!/usr/bin/env bash
# Issue 4, flat memory at scale: N files of 0-4 KiB (bench/mkmany.py), a
# first backup and an incremental one with nothing changed, by Ferry (hub with
# a local pool + agent) and by restic (local repo, its cache), one run each.
# Prints and writes bench/results/<date>-scale.md: wall, CPU and peak RSS.
#
# Knobs: N (1000000), MANY (/tmp/benchdata-many-$N), RUN (/tmp/bench-scale),
#   FERRY_BUILD (1), FERRY_BIN, FERRY_COMMIT, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/deps.sh
root=$(pwd)
N=${N:-1000000}
MANY=${MANY:-/tmp/benchdata-many-$N}
RUN=${RUN:-/tmp/bench-scale}
if [ "${FERRY_BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bins -p ferry-agent -p ferry-hub
fi
FERRY_BIN=${FERRY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release}
FERRY_COMMIT=${FERRY_COMMIT:-$(git rev-parse --short HEAD)}
OUT=${OUT:-bench/results/$(date +%F)-scale.md}
command -v restic > /dev/null || bash "${SHARED_BENCH:-$root/../shared/bench}/install-peers.sh"
if [ ! -f "$MANY/.done" ]; then
  rm -rf "$MANY"; python3 bench/mkmany.py "$MANY" "$N"; touch "$MANY/.done"
fi

rm -rf "$RUN"; mkdir -p "$RUN"
HUB_PID=
trap '[ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null; true' EXIT
# shellcheck source=bench/hub.sh
source bench/hub.sh
ferry_hub_up "$RUN" many
{ ferry_agent_head "$RUN"; cat <<TOML
[[source]]
name = "many"
path = "$MANY"
bucket = "bench/many"
TOML
} > "$RUN/agent.toml"
export RESTIC_REPOSITORY=$RUN/restic RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$RUN/restic-cache
restic init --repository-version 2 > /dev/null

hub_ticks() { awk '{print $14 + $15}' "/proc/$HUB_PID/stat"; }
rows=()
# measure TOOL STEP CMD...: wall (with the final sync), CPU, peak RSS; for
# Ferry the hub's CPU and peak RSS too (reset before the step).
measure() {
  local tool=$1 step=$2; shift 2
  sync
  echo 5 > "/proc/$HUB_PID/clear_refs" 2>/dev/null || true
  local h0 t0 t1; h0=$(hub_ticks); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S %M" -o "$RUN/time" "$@" > "$RUN/$tool-$step.out" 2>&1
  sync; t1=$(date +%s.%N)
  local u s m; read -r u s m < "$RUN/time"
  local hub="" 
  if [ "$tool" = ferry ]; then
    hub="$(echo "($(hub_ticks) - $h0) / $(getconf CLK_TCK)" | bc -l | xargs printf '%.1f') | $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$HUB_PID/status")"
  else
    hub="- | -"
  fi
  rows+=("| $tool | $step | $(echo "$t1 - $t0" | bc -l | xargs printf '%.1f') | $(echo "$u + $s" | bc -l | xargs printf '%.1f') | $((m / 1024)) | $hub |")
  echo "${rows[-1]}" >&2
}
measure ferry initial "$FERRY_BIN/ferry-agent" -c "$RUN/agent.toml" backup
measure ferry incremental "$FERRY_BIN/ferry-agent" -c "$RUN/agent.toml" backup
measure restic initial restic backup --host bench "$MANY"
measure restic incremental restic backup --host bench "$MANY"

{
  echo "# Flat memory at scale: $N files of 0-4 KiB, $(date +%F)"
  echo
  echo "\`bench/scale.sh\` ($(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB): Ferry $FERRY_COMMIT (hub with a local pool, agent),"
  echo "$(restic version | head -1) with a local repo and its cache; one run each, nothing changed"
  echo "between the two backups. Wall includes the final \`sync\`."
  echo "Target (issue 4): peak RSS <= 150 MiB for agent and hub each; incremental <= 0.33 x restic."
  echo
  echo "| tool | step | wall s | CPU s | peak RSS MiB | hub CPU s | hub peak RSS MiB |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Repo: Ferry $(du -sh "$RUN/hub" | cut -f1) (hub data dir), agent journal $(du -sh "$RUN/state" | cut -f1); restic $(du -sh "$RUN/restic" | cut -f1)."
} > "$OUT"
echo "wrote $OUT" >&2
