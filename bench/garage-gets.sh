#!/usr/bin/env bash
# Micro-probe behind the slow restore from an S3 pool: the cost of reading a
# pack chunk by chunk with ranged GETs from Garage, one at a time (what the
# hub's FetchBlobs does today) or 8 in flight, against one GET of the whole
# object. Uses curl --aws-sigv4; a throwaway Garage from bench/garage.sh.
#   bench/garage-gets.sh          (SIZE_MIB=64 CHUNK=638000 PARALLEL=8)
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/deps.sh
export SHARED_BENCH=${SHARED_BENCH:-$PWD/../shared/bench}
SIZE_MIB=${SIZE_MIB:-64}; CHUNK=${CHUNK:-638000}; PARALLEL=${PARALLEL:-8}
# shellcheck source=bench/garage.sh
source bench/garage.sh
garage_up
GPID=$(cat "$GARAGE_DIR/garage.pid"); HZ=$(getconf CLK_TCK)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"; garage_down' EXIT
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$tmp/pack"
rclone copyto "$tmp/pack" garage:bench/probe/pack
url=$S3_ENDPOINT/$S3_BUCKET/probe/pack
size=$((SIZE_MIB << 20))
: > "$tmp/ranges"
for ((o = 0; o < size; o += CHUNK)); do
  e=$((o + CHUNK - 1)); [ "$e" -ge "$size" ] && e=$((size - 1))
  echo "$o-$e" >> "$tmp/ranges"
done
n=$(wc -l < "$tmp/ranges")
get() { curl -sf --aws-sigv4 "aws:amz:$AWS_REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" ${1:+-r "$1"} "$url" -o /dev/null; }
export -f get; export url AWS_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
run() { # LABEL CMD...
  local g0 g1 t0 t1
  g0=$(awk '{print $14 + $15}' "/proc/$GPID/stat"); t0=$(date +%s.%N)
  "${@:2}"
  t1=$(date +%s.%N); g1=$(awk '{print $14 + $15}' "/proc/$GPID/stat")
  printf '| %s | %.2f | %.2f |\n' "$1" "$(echo "$t1 - $t0" | bc -l)" "$(echo "($g1 - $g0) / $HZ" | bc -l)"
}
echo "$SIZE_MIB MiB object of random bytes, $n ranges of $CHUNK bytes"
echo
echo "| read | wall s | garage CPU s |"
echo "|---|---:|---:|"
run "1 GET of the whole object" get ""
# One curl process, one keep-alive connection: no process start per GET.
seq_one_conn() {
  local args=() r
  while read -r r; do
    args+=(--aws-sigv4 "aws:amz:$AWS_REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD"
      --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -sf -r "$r" "$url" -o /dev/null --next)
  done < "$tmp/ranges"
  curl "${args[@]}" --aws-sigv4 "aws:amz:$AWS_REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -sf -r 0-0 "$url" -o /dev/null
}
run "$n ranged GETs, 1 in flight, one connection (1 curl)" seq_one_conn
run "$n ranged GETs, 1 in flight, a curl each" xargs -a "$tmp/ranges" -n1 -P1 bash -c 'get "$0"'
run "$n ranged GETs, $PARALLEL in flight, a curl each" xargs -a "$tmp/ranges" -n1 -P"$PARALLEL" bash -c 'get "$0"'
run "1 GET of the whole object (again)" get ""
