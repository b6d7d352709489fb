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
head -c "$((mib << 20))" /dev/urandom > "$RUN/dd.src"
sync
t0=$(date +%s.%N)
dd if="$RUN/dd.src" of="$RUN/dd.bin" bs=1M conv=fdatasync status=none
t1=$(date +%s.%N)
rm -f "$RUN/dd.src" "$RUN/dd.bin"
dd_s=$(echo "$t1 - $t0" | bc -l)

out=bench/results/$(date +%Y-%m-%d)-$BACKEND.md
repeat=$(python3 -c 'import csv,sys; print(len({r["rep"] for r in csv.DictReader(open(sys.argv[1]))}))' "$OUT_CSV")
peers=$(python3 -c 'import csv,sys; print(" ".join(dict.fromkeys(r["peer"] for r in csv.DictReader(open(sys.argv[1])) if r["peer"] != "ferry-hub")))' "$OUT_CSV")
{
  echo "# Ferry beside its peers ($BACKEND pool), $(date +%Y-%m-%d)"
  echo
  echo "\`bench/run.sh\`: $repeat repeat(s) of peers \"$peers\"; Ferry $(git rev-parse --short HEAD)."
  echo "Ratios are Ferry ÷ peer (time = wall + final sync, medians): below 1 means Ferry is faster or leaner."
  echo
  python3 bench/ratios.py "$OUT_CSV" "$dd_s" "$mib"
  echo
  sed -n '/^## Versions/,$p' "$OUT_MD"
} > "$out"
echo "wrote $out"
