#!/usr/bin/env bash
# Writes bench/results/<date>-<backend>.md from a finished peers.sh run in
# RUN (default /tmp/bench-run): the ratio table (bench/ratios.py), a disk
# baseline, and the harness's own table. Called by bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-${RUN:-/tmp/bench-run}}
OUT_CSV=$RUN/results.csv OUT_MD=$RUN/results-peers.md
BACKEND=${BACKEND:-local}

# The disk's durable write time for as many bytes as Ferry stored
# initially. Random bytes: zeros may be compressed or skipped below us.
mib=$(python3 - "$OUT_CSV" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["peer"] == "ferry" and r["step"] == "backup-initial"]
print(max(1, round(statistics.median(int(r["repo_bytes"]) for r in rows) / 2**20)) if rows else 1024)
PY
)
repeat=$(python3 -c 'import csv,sys; print(len({r["rep"] for r in csv.DictReader(open(sys.argv[1]))}))' "$OUT_CSV")
if [ "$BACKEND" = s3 ]; then
  dd_s=0   # no disk baseline: the packs go to Garage (which does not fsync)
else
  # As many writes as repeats, median: this disk's speed moves a lot
  # within a day (0.68-2.72 s for 784 MiB), and one write is one sample.
  head -c "$((mib << 20))" /dev/urandom > "$RUN/dd.src"
  dd_all=()
  for _ in $(seq "$((repeat > 0 ? repeat : 1))"); do
    sync
    t0=$(date +%s.%N)
    dd if="$RUN/dd.src" of="$RUN/dd.bin" bs=1M conv=fdatasync status=none
    t1=$(date +%s.%N)
    rm -f "$RUN/dd.bin"
    dd_all+=("$(echo "$t1 - $t0" | bc -l)")
  done
  rm -f "$RUN/dd.src"
  dd_s=$(printf '%s\n' "${dd_all[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  dd_range="$(printf '%.2f\n' "${dd_all[@]}" | sort -n | paste -sd' ')"
fi

out=bench/results/$(date +%Y-%m-%d)-$BACKEND.md
peers=$(python3 -c 'import csv,sys; print(" ".join(dict.fromkeys(r["peer"] for r in csv.DictReader(open(sys.argv[1])) if not r["peer"].endswith("-hub"))))' "$OUT_CSV")
{
  echo "# Ferry beside its peers ($BACKEND pool), $(date +%Y-%m-%d)"
  echo
  echo "\`bench/run.sh\`: $repeat repeat(s) of peers \"$peers\"; Ferry ${FERRY_COMMIT:-$(git rev-parse --short HEAD)}${FERRY_BIN:+ (binaries in $FERRY_BIN built $(date -r "$FERRY_BIN/ferry-agent" '+%F %T %Z' 2>/dev/null))}."
  echo "Ratios are Ferry ÷ peer (time = wall + final sync, medians): below 1 means Ferry is faster or leaner."
  echo
  python3 bench/ratios.py "$OUT_CSV" "$dd_s" "$mib" "${dd_range:-}"
  echo
  if [ "$BACKEND" = s3 ]; then
    echo "S3: one throwaway single-node Garage ($(garage --version 2>/dev/null | head -1 || echo garage)) on loopback,"
    echo "started by bench/run.sh on the same 2 cores as the clients (zstd-1 block compression, sqlite metadata,"
    echo "no fsync). Ferry's hub keeps its packs in an S3 pool under \`bench/repo-ferry/\` and its SQLite catalog"
    echo "in a local data dir; Ferry's repo size is both (rclone size of the prefix + du of the hub dir)."
    echo "restic uses its \`s3:\` backend under \`bench/repo-restic/\`, its cache local as usual."
    echo
  fi
  sed -n '/^## Versions/,$p' "$OUT_MD"
} > "$out"
echo "wrote $out"
