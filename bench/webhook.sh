#!/usr/bin/env bash
# The agent's S3 event webhook under load: durable (200-acknowledged) events
# per second and acknowledgement latency, against `ferry-agent run` with a
# Garage bucket as its source and a hub with a local pool, all on loopback.
# Target (issue): >= 30,000 events/s sustained, p99 ack latency <= 20 ms.
#
#   bench/webhook.sh                         settings "16x1 64x1 16x10", 20 s each
#   SETTINGS="64x1 64x1@30000" DURATION=30 bench/webhook.sh
#   SETTLES="1s 1h" bench/webhook.sh        each setting with snapshots running
#                                            (settle 1s) and deferred (1h: ingest only)
#
# A setting is CONNECTIONSxRECORDS[@RATE]: C keep-alive connections posting
# bodies of R records back to back, or at RATE events/s in all (open loop;
# latency then counts from each request's scheduled time). Each setting gets
# a fresh agent (fresh events.db); the events name keys that do not exist, so
# the agent's event-driven snapshots HEAD them against Garage and find them
# gone: background load on the same cores, as in real use.
# Writes bench/results/<date>-webhook.md (OUT to change) with the table, the
# machine, versions, the agent's CPU per thread and the raw JSON.
# Knobs: SETTINGS, SETTLES (the agent's [run] settle, a list; "1h" keeps
# snapshots out of the run), DURATION (s), WARMUP (s), MAX_PENDING, DRAIN (s to
# watch the queue after each run), PERF (1: count fsyncs with perf if it
# works), QUIET_WAIT (s to wait before each setting for the machine to be
# under QUIET_BUSY % busy over 2 s; default 120 and 25), STATE_DIR (the
# agent's state dir, e.g. on tmpfs to take fsync out), AGENT_BIN (another
# ferry-agent build to measure, e.g. a patched one), SKIP_BUILD=1,
# KEEP=1 (keep the work dir), WORK, OUT, GARAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/deps.sh
root=$(pwd)
shared=${SHARED_BENCH:-$root/../shared/bench}
SETTINGS=${SETTINGS:-"16x1 64x1 16x10"}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
MAX_PENDING=${MAX_PENDING:-10000000}
SETTLES=${SETTLES:-${SETTLE:-1s}}
DRAIN=${DRAIN:-5}
PERF=${PERF:-1}
QUIET_WAIT=${QUIET_WAIT:-120}
QUIET_BUSY=${QUIET_BUSY:-25}
OUT=${OUT:-bench/results/$(date +%Y-%m-%d)-webhook.md}
if [ -z "${GARAGE:-}" ]; then
  GARAGE=$(command -v garage || echo "$HOME/.cargo/bin/garage")
fi
export GARAGE
unset AWS_CA_BUNDLE
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --bins --locked -p ferry-agent -p ferry-hub -p ferry-tests
fi
# What was built, recorded now: the tree may move on during the run.
commit=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain --untracked-files=no | awk '{print $2}' | paste -sd' ' -)
BUILT=${CARGO_TARGET_DIR:-$root/target}/release
AGENT_BIN=${AGENT_BIN:-$BUILT/ferry-agent}
agent_label=$([ "$AGENT_BIN" = "$BUILT/ferry-agent" ] || echo "$AGENT_BIN")
for b in "$AGENT_BIN" "$BUILT/ferry-hub" "$BUILT/webhook-load"; do
  [ -x "$b" ] || { echo "$b is missing" >&2; exit 1; }
done

WORK=${WORK:-$(mktemp -d /tmp/ferry-webhook-bench.XXXXXX)}
mkdir -p "$WORK/results" "$WORK/bin"
# Private copies: a concurrent `cargo build` cannot swap a binary mid-run.
cp "$AGENT_BIN" "$WORK/bin/ferry-agent"
cp "$BUILT/ferry-hub" "$BUILT/webhook-load" "$WORK/bin/"
BIN=$WORK/bin
AGENT_BIN=$BIN/ferry-agent
STATE_DIR=${STATE_DIR:-$WORK/state}
HUB_PID= AGENT_PID= GARAGE_DIR=$WORK/garage
cleanup() {
  set +e
  stop_agent
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null; wait "$HUB_PID" 2>/dev/null; fi
  [ -f "$GARAGE_DIR/garage.pid" ] && bash "$shared/garage/stop.sh" "$GARAGE_DIR" --keep
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
stop_agent() {
  [ -n "$AGENT_PID" ] || return 0
  kill -TERM "$AGENT_PID" 2>/dev/null || true
  # A snapshot in progress finishes before the agent stops: bounded wait.
  for _ in $(seq 1 150); do kill -0 "$AGENT_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_file() { # FILE SECONDS
  for _ in $(seq 1 $(($2 * 20))); do [ -s "$1" ] && return 0; sleep 0.05; done
  return 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Waits (bounded) until the machine is mostly idle; prints its busy % then.
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) b0 b1 t0 t1 busy
  while :; do
    read -r b0 t0 < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    sleep 2
    read -r b1 t1 < <(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)
    busy=$(( 100 * (b1 - b0) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
    if [ "$busy" -lt "$QUIET_BUSY" ] || [ "$SECONDS" -ge "$deadline" ]; then echo "$busy"; return 0; fi
  done
}
# Busy jiffies of the whole machine (all CPUs): user nice system irq softirq steal.
system_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# One line per thread: tid name cpu-ticks.
thread_ticks() {
  for t in /proc/"$1"/task/*; do
    awk -v tid="${t##*/}" '{ s = $0; sub(/^[^(]*\(/, "", s); name = s; sub(/\).*$/, "", name);
      sub(/^.*\) /, "", s); split(s, f, " "); gsub(/ /, "_", name); print tid, name, f[12] + f[13] }' "$t/stat" 2>/dev/null
  done
}

# Garage on free loopback ports (leave :3900.. to others), its "bench" bucket the source.
ports=()
while [ "${#ports[@]}" -lt 4 ]; do
  p=$(free_port)
  case " ${ports[*]} " in *" $p "*) ;; *) ports+=("$p") ;; esac
done
GARAGE_DIR=$GARAGE_DIR S3_PORT=${ports[0]} RPC_PORT=${ports[1]} WEB_PORT=${ports[2]} ADMIN_PORT=${ports[3]} \
  bash "$shared/garage/start.sh" > "$WORK/garage.out" 2>&1 || { cat "$WORK/garage.out" >&2; exit 1; }
# shellcheck disable=SC1091
source "$GARAGE_DIR/env"
unset AWS_CA_BUNDLE
GARAGE_PID=$(cat "$GARAGE_DIR/garage.pid")
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$WORK/s3.credentials"
chmod 600 "$WORK/s3.credentials"

# Hub with a local pool, one tenant, site and bucket.
"$BIN/ferry-hub" --data-dir "$WORK/hub" serve --listen 127.0.0.1:0 --ready-file "$WORK/hub.ready" \
  > "$WORK/hub.log" 2>&1 &
HUB_PID=$!
wait_file "$WORK/hub.ready" 10 || { echo "ferry-hub did not start" >&2; cat "$WORK/hub.log" >&2; exit 1; }
hub=("$BIN/ferry-hub" --data-dir "$WORK/hub")
{
  "${hub[@]}" tenant add bench
  "${hub[@]}" site add --tenant bench site-a --token-file "$WORK/site.token"
  "${hub[@]}" bucket add bench/events --source site-a
  "$BIN/ferry-agent" key generate --out "$WORK/tenant.key"
} > "$WORK/init.log" 2>&1 || { cat "$WORK/init.log" >&2; exit 1; }
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/webhook.token"
cat > "$WORK/agent.toml" <<TOML
hub = "http://$(cat "$WORK/hub.ready")"
token-file = "site.token"
key-file = "tenant.key"
state-dir = "$STATE_DIR"

[webhook]
listen = "127.0.0.1:0"
token-file = "webhook.token"
max-pending = $MAX_PENDING

[run]
settle = "SETTLE"
reconcile-interval = "1h"

[[source]]
name = "events"
bucket = "bench/events"
s3 = { endpoint = "$S3_ENDPOINT", region = "garage", bucket = "$S3_BUCKET", credentials-file = "$WORK/s3.credentials" }
TOML

start_agent() { # LOG
  rm -f "$WORK/agent.ready" "$STATE_DIR"/events.db*
  FERRY_LOG=ferry_agent=info "$AGENT_BIN" --config "$WORK/agent.toml" run \
    --ready-file "$WORK/agent.ready" > /dev/null 2> "$1" &
  AGENT_PID=$!
  wait_file "$WORK/agent.ready" 30 || { echo "ferry-agent did not start" >&2; cat "$1" >&2; exit 1; }
  # The full listing at start, before any load.
  for _ in $(seq 1 600); do grep -q 'snapshot committed' "$1" && return 0; sleep 0.1; done
  echo "no initial snapshot" >&2; cat "$1" >&2; exit 1
}

perf_ok=0
if [ "$PERF" = 1 ] && command -v perf > /dev/null \
  && perf stat -e syscalls:sys_enter_fdatasync -x, -o /dev/null -- true 2> /dev/null; then
  perf_ok=1
fi

echo "work dir $WORK; settings: $SETTINGS; settle: $SETTLES; ${WARMUP}s warm-up + ${DURATION}s each" >&2
uptime > "$WORK/loadavg.before"
: > "$WORK/results/runs"
for settle in $SETTLES; do
sed -i "s/^settle = .*/settle = \"$settle\"/" "$WORK/agent.toml"
for setting in $SETTINGS; do
  conns=${setting%%x*}
  rest=${setting#*x}
  records=${rest%%@*}
  rate=0
  case "$setting" in *@*) rate=${setting#*@} ;; esac
  name="c${conns}-r${records}"
  [ "$rate" = 0 ] || name="$name-at$rate"
  name="$name-settle$settle"
  echo "$name $setting $settle" >> "$WORK/results/runs"
  log=$WORK/results/$name.agent.log
  busy_before=$(wait_quiet)
  start_agent "$log"
  echo 5 > "/proc/$AGENT_PID/clear_refs" 2>/dev/null || true
  thread_ticks "$AGENT_PID" > "$WORK/results/$name.threads0"
  a0=$(ticks "$AGENT_PID") g0=$(ticks "$GARAGE_PID") h0=$(ticks "$HUB_PID") s0=$(system_busy)
  snaps0=$(grep -c 'snapshot committed.*full_listing' "$log" || true)
  if [ "$perf_ok" = 1 ]; then
    perf stat -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync' -x, \
      -o "$WORK/results/$name.perf" -p "$AGENT_PID" -- sleep "$((WARMUP + DURATION))" 2> /dev/null &
    perf_pid=$!
  fi
  echo "== $setting, settle $settle" >&2
  # Bounded twice: by its own clock and by timeout(1).
  timeout $((WARMUP + DURATION + 60)) "$BIN/webhook-load" --addr "$(cat "$WORK/agent.ready")" \
    --token-file "$WORK/webhook.token" --bucket "$S3_BUCKET" --connections "$conns" \
    --records "$records" --rate "$rate" --warmup "$WARMUP" --duration "$DURATION" \
    > "$WORK/results/$name.json" || echo "webhook-load failed for $setting" >&2
  a1=$(ticks "$AGENT_PID") g1=$(ticks "$GARAGE_PID") h1=$(ticks "$HUB_PID") s1=$(system_busy)
  thread_ticks "$AGENT_PID" > "$WORK/results/$name.threads1"
  rss=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT_PID/status")
  [ "$perf_ok" = 1 ] && wait "$perf_pid" 2> /dev/null || true
  pending=$(sqlite3 "file:$STATE_DIR/events.db?mode=ro" 'SELECT COUNT(*) FROM events' 2>/dev/null || echo "?")
  sleep "$DRAIN"
  pending_later=$(sqlite3 "file:$STATE_DIR/events.db?mode=ro" 'SELECT COUNT(*) FROM events' 2>/dev/null || echo "?")
  snaps=$(( $(grep -c 'snapshot committed.*full_listing' "$log" || true) - snaps0 ))
  taken=$(grep 'snapshot committed.*full_listing=false' "$log" | sed -n 's/.*events=\([0-9]*\).*/\1/p' | paste -sd+ - | bc 2>/dev/null || true)
  stop_agent
  cat > "$WORK/results/$name.env" <<ENV
setting=$setting
busy_before=$busy_before
agent_cpu_ticks=$((a1 - a0))
garage_cpu_ticks=$((g1 - g0))
hub_cpu_ticks=$((h1 - h0))
system_busy_ticks=$((s1 - s0))
agent_peak_rss_kib=$rss
pending_at_end=$pending
pending_after_drain=$pending_later
snapshots=$snaps
events_taken=${taken:-0}
ENV
  cat "$WORK/results/$name.json" >&2
done
done
uptime > "$WORK/loadavg.after"
# The disk's commit latency where events.db lives: 4 KiB append + fsync.
fsync_probe=$(python3 - "$STATE_DIR" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync.probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
lat = []
for _ in range(500):
    t = time.perf_counter(); os.write(fd, b"x" * 4096); os.fsync(fd); lat.append(time.perf_counter() - t)
os.close(fd); os.unlink(path)
lat.sort()
print(f"p50 {lat[250] * 1e3:.2f} ms, p99 {lat[495] * 1e3:.2f} ms, max {lat[-1] * 1e3:.1f} ms ({500 / sum(lat):.0f} fsyncs/s one at a time)")
PY
)

# The report.
mkdir -p "$(dirname "$OUT")"
python3 - "$WORK" "$OUT" <<PY
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
hz = os.sysconf("SC_CLK_TCK")
runs = [l.split() for l in open(f"{work}/results/runs") if l.strip()]
rows, raw, threads = [], [], []
for n, s, settle in runs:
    try:
        j = json.load(open(f"{work}/results/{n}.json"))
    except Exception as e:
        rows.append(f"| {s} | {settle} | failed: {e} |"); continue
    env = dict(l.strip().split("=", 1) for l in open(f"{work}/results/{n}.env") if "=" in l)
    wall = j["warmup_s"] + j["measured_s"]
    agent = int(env["agent_cpu_ticks"]) / hz
    garage = int(env["garage_cpu_ticks"]) / hz
    hub = int(env["hub_cpu_ticks"]) / hz
    system = int(env["system_busy_ticks"]) / hz
    gen = j.get("loadgen_cpu_s") or 0
    other = max(0.0, system - agent - garage - hub - gen)
    fsyncs = "n/a"
    pf = f"{work}/results/{n}.perf"
    if os.path.exists(pf):
        total = 0
        for line in open(pf):
            parts = line.split(",")
            if len(parts) > 2 and parts[0].strip().isdigit():
                total += int(parts[0])
        fsyncs = f"{total / wall:,.0f}/s"
    lat = j["latency_ms"]
    eps = j["events_per_second"]
    mode = f"{j['connections']} x {j['records_per_request']}" + (f" @ {j['rate_limit']:,.0f}/s" if j["rate_limit"] else "")
    rows.append(
        f"| {mode} | {settle} | {j['events_per_s']:,.0f} | {eps['min']:,} | {j['requests_per_s']:,.0f} "
        f"| {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['max']:.1f} "
        f"| {j['status_503']} | {j['status_other'] + j['io_errors']} "
        f"| {agent:.1f} ({100 * agent / wall:.0f}%) | {int(env['agent_peak_rss_kib']) / 1024:.0f} "
        f"| {garage:.1f} | {hub:.1f} | {gen:.1f} | {other:.1f} | {fsyncs} "
        f"| {env['snapshots']} / {int(env['events_taken']):,} | {env['pending_at_end']} → {env['pending_after_drain']} | {env['busy_before']} |")
    raw.append(f"- \`{s}\`, settle {settle}: \`{json.dumps(j, separators=(',', ':'))}\`")
    def load(p):
        d = {}
        for l in open(p):
            tid, name, t = l.split()
            d[tid] = (name, int(t))
        return d
    t0, t1 = load(f"{work}/results/{n}.threads0"), load(f"{work}/results/{n}.threads1")
    per = {}
    for tid, (name, t) in t1.items():
        dt = t - t0.get(tid, (name, 0))[1]
        if dt > 0:
            per.setdefault(name, []).append(dt / hz)
    split = ", ".join(f"{name} {sum(v):.1f} s" + (f" ({len(v)} threads: " + " / ".join(f"{x:.1f}" for x in sorted(v, reverse=True)) + ")" if len(v) > 1 else "")
                      for name, v in sorted(per.items(), key=lambda kv: -sum(kv[1])))
    threads.append(f"- \`{s}\`, settle {settle}: {split}")
with open(out, "w") as f:
    f.write("\n".join([
        "| connections x records/body | settle | events/s (200) | slowest 1 s | requests/s | p50 ms | p90 ms | p99 ms | max ms | 503s | errors | agent CPU s (% of 1 core) | agent peak RSS MiB | Garage CPU s | hub CPU s | loadgen CPU s | other CPU s | fsync/s | snapshots / events taken | queue at end → +${DRAIN}s | machine busy before % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows, "", "## Agent CPU per thread (during warm-up + run)", "", *threads, "", "## Raw JSON (webhook-load)", "", *raw, ""]))
PY
body=$(cat "$OUT")
{
  echo "# Agent S3 event webhook ingest, $(date +%Y-%m-%d)"
  echo
  echo "\`bench/webhook.sh\` with SETTINGS=\"$SETTINGS\" SETTLES=\"$SETTLES\", ${WARMUP} s warm-up then ${DURATION} s measured per setting;"
  echo "Ferry $commit${dirty:+ plus uncommitted changes in $dirty} (as built at the start)${agent_label:+; agent binary $agent_label}."
  echo "Target (issue): >= 30,000 durable events/s sustained, p99 acknowledgement latency <= 20 ms."
  echo
  echo "$body" | sed -n '1,/^$/p'
  echo "Events/s counts 200-acknowledged events only (each durably in events.db before the answer);"
  echo "\"slowest 1 s\" is the fewest acknowledged in any whole second of the run. Latency is send -> whole"
  echo "answer read (closed loop; with @RATE, from the scheduled send time). CPU columns cover warm-up + run;"
  echo "\"other\" is the machine's busy time outside agent, hub, Garage and the load generator (other work"
  echo "on the machine: compare it with $(nproc) cores x $((WARMUP + DURATION)) s)."
  echo
  echo "## Machine"
  echo
  echo "- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
  echo "- work dir on $(df -T "$WORK" | awk 'NR == 2 {print $2 " (" $1 ")"}'), agent state dir (events.db) on $(df -T "$STATE_DIR" | awk 'NR == 2 {print $2 " (" $1 ")"}')"
  echo "- 4 KiB write + fsync in the state dir, 500 in a row after the runs: $fsync_probe"
  echo "- load before: $(sed 's/.*load average/load average/' "$WORK/loadavg.before"); after: $(sed 's/.*load average/load average/' "$WORK/loadavg.after")"
  echo
  echo "## Versions"
  echo
  echo "- $(rustc --version)"
  echo "- garage: \`$("$GARAGE" --version 2>&1 | head -1)\` (sqlite metadata, fsync off: start.sh)"
  echo "- SQLite (the agent's, bundled by rusqlite): see Cargo.lock; events.db is WAL + synchronous=FULL"
  echo
  echo "## Setup"
  echo
  echo "- Garage on loopback (\`../shared/bench/garage/start.sh\`), its \`$S3_BUCKET\` bucket the agent's source"
  echo "- \`ferry-hub serve\` with a local pool; tenant bench, site site-a, bucket bench/events"
  echo "- \`ferry-agent run\`${agent_label:+ ($agent_label)}: [webhook] max-pending = $MAX_PENDING, [run] settle as in the table (1h: no"
  echo "  snapshot during the run, so ingest alone), reconcile-interval = \"1h\";"
  echo "  a fresh events.db per setting; the event keys do not exist in the bucket, so each event-driven"
  echo "  snapshot HEADs them (32 at once) and finds them gone"
  echo "- \`webhook-load\` (tests/src/bin/webhook-load.rs): keep-alive HTTP/1.1, one thread per connection,"
  echo "  MinIO-shaped records with unique keys and increasing sequencers (no duplicates)"
  echo
  echo "## Commands"
  echo
  echo '```'
  echo "SETTINGS=\"$SETTINGS\" SETTLES=\"$SETTLES\" DURATION=$DURATION WARMUP=$WARMUP bench/webhook.sh"
  echo "# per setting, e.g.:"
  echo "target/release/webhook-load --addr ADDR --token-file webhook.token --bucket $S3_BUCKET \\"
  echo "  --connections C --records R --rate RATE --warmup $WARMUP --duration $DURATION"
  echo '```'
  echo
  echo "$body" | sed -n '/^## Agent CPU/,$p'
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT" >&2
