# Ferry as a peer of ../shared/bench/peers.sh (sourced by it; see its header
# for the plugin contract). Usage from the repo root:
#   cargo build --release --bins
#   PEERS="restic ferry" PEER_PLUGINS=$PWD/bench/ferry.peer.sh ../shared/bench/peers.sh
# The hub (catalog + pool) lives under $REPO, so the repo size counts both;
# the agent's journal lives under $RUN/cache like the other tools' caches.
# The hub is a separate process: after each step a "ferry-hub" row records
# its CPU time (from /proc/PID/stat) and peak RSS (VmHWM, reset before the
# step through /proc/PID/clear_refs), beside the agent's "ferry" row.
# BACKEND=s3: the hub keeps its packs in an S3 pool under
# s3://$S3_BUCKET/repo-ferry/ (credentials from the AWS_* env vars, as
# `source $GARAGE_DIR/env` sets them); its catalog stays local under
# $REPO/hub, so the repo size is the prefix's `rclone size` plus `du` of $REPO.

#
# Peer "ferrypg" is the same with the hub's catalog on PostgreSQL: a cluster
# of Debian's server binaries in /tmp/ferry-bench-pg.* (as the postgres
# user when run as root; defaults, so commits are fsynced like SQLite's),
# outside $REPO, so the repo size counts the pool alone. Its rows are
# "ferrypg" and "ferrypg-hub"; bench/ratios.py reports ferry ÷ ferrypg.
#
# Peer "ferrytls" is ferry with TLS on the agent-hub link: a self-signed
# certificate from `ferry-hub tls init`, trusted by pin.

FERRY_BIN=${FERRY_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release}

setup_ferry() { ferry_setup ferry sqlite plain; }
setup_ferrypg() { ferry_setup ferrypg postgres plain; }
backup_ferrypg() { backup_ferry "$@"; }
restore_ferrypg() { restore_ferry "$@"; }
teardown_ferrypg() { teardown_ferry; }
setup_ferrytls() { ferry_setup ferrytls sqlite tls; }
backup_ferrytls() { backup_ferry "$@"; }
restore_ferrytls() { restore_ferry "$@"; }
teardown_ferrytls() { teardown_ferry; }

# ferry_pg_start DIR: initdb and start a cluster in DIR on a free loopback
# port; sets FERRY_PG_CTL (a command prefix) and FERRY_PG_PORT.
ferry_pg_start() {
  local dir=$1 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  [ -x "$bin/initdb" ] || { echo "ferrypg: no PostgreSQL server (apt-get install postgresql)" >&2; return 1; }
  mkdir -p "$dir"
  FERRY_PG_RUN=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; FERRY_PG_RUN=(runuser -u postgres --); fi
  FERRY_PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  FERRY_PG_CTL=("${FERRY_PG_RUN[@]}" "$bin/pg_ctl" -D "$dir/data")
  (cd "$dir" && "${FERRY_PG_RUN[@]}" "$bin/initdb" -D "$dir/data" -U ferry --auth=trust -E UTF8 > "$dir/initdb.log")
  (cd "$dir" && "${FERRY_PG_CTL[@]}" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $FERRY_PG_PORT -k $dir" start > /dev/null)
  (cd "$dir" && "${FERRY_PG_RUN[@]}" "$bin/createdb" -h 127.0.0.1 -p "$FERRY_PG_PORT" -U ferry ferry)
}

# ferry_setup PEER ENGINE LINK: a hub with its catalog on ENGINE (sqlite or
# postgres), the agent-hub link plain or tls, and an agent config, for the
# rows of PEER.
ferry_setup() {
  FERRY_PEER=$1
  local engine=$2 link=$3 scheme=http agent_tls=
  local cfg=$REPO/agent.toml
  mkdir -p "$REPO" "$RUN/cache/ferry"
  rm -f "$REPO/hub.ready"
  local hub=("$FERRY_BIN/ferry-hub")
  : > "$REPO/hub.toml"
  if [ "$engine" = postgres ]; then
    # Not under $RUN: the postgres user must reach it (a mktemp -d run
    # directory is root's alone).
    FERRY_PG_DIR=$(mktemp -d /tmp/ferry-bench-pg.XXXXXX)
    ferry_pg_start "$FERRY_PG_DIR" || return 1
    cat >> "$REPO/hub.toml" <<TOML
[catalog]
engine = "postgres"
url = "postgresql://ferry@127.0.0.1:$FERRY_PG_PORT/ferry"
TOML
  fi
  if [ "$BACKEND" = s3 ]; then
    cat >> "$REPO/hub.toml" <<TOML
[[pool]]
name = "garage"
s3 = { endpoint = "$S3_ENDPOINT", region = "${AWS_REGION:-garage}", bucket = "$S3_BUCKET", prefix = "repo-$PEER/" }
TOML
    REPO_BYTES_CMD="echo \$(( \$(rclone size 'benchs3:$S3_BUCKET/repo-$PEER' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"bytes\"])') + \$(du -sb '$REPO' | cut -f1) ))"
  fi
  if [ "$link" = tls ]; then
    "${hub[@]}" --json tls init --name 127.0.0.1 --cert-file "$REPO/hub.crt" \
      --key-file "$REPO/hub.key" > "$REPO/tls.json"
    cat >> "$REPO/hub.toml" <<TOML
[tls]
cert-file = "$REPO/hub.crt"
key-file = "$REPO/hub.key"
TOML
    scheme=https
    agent_tls=$(printf '\n[tls]\npin = "%s"\n' \
      "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pin"])' "$REPO/tls.json")")
  fi
  hub+=(--config "$REPO/hub.toml" --data-dir "$REPO/hub")
  "${hub[@]}" serve --listen 127.0.0.1:0 \
    --ready-file "$REPO/hub.ready" > "$RUN/logs/ferry.hub.log" 2>&1 &
  FERRY_HUB_PID=$!
  for _ in $(seq 1 200); do [ -f "$REPO/hub.ready" ] && break; sleep 0.05; done
  [ -f "$REPO/hub.ready" ] || { echo "ferry-hub did not start:" >&2; tail -5 "$RUN/logs/ferry.hub.log" >&2; return 1; }
  # The hub must run as configured: a dropped --config once made ferrypg
  # measure SQLite (and BACKEND=s3 a local pool) without a word.
  if [ "$engine" = postgres ] && ! grep -q 'catalog on PostgreSQL' "$RUN/logs/ferry.hub.log"; then
    echo "ferrypg: the hub's catalog is not on PostgreSQL" >&2; return 1
  fi
  if [ "$link" = tls ] && ! grep -q 'tls=true' "$RUN/logs/ferry.hub.log"; then
    echo "ferrytls: the hub does not serve TLS" >&2; return 1
  fi
  {
    "${hub[@]}" tenant add bench
    "${hub[@]}" site add --tenant bench agent --token-file "$RUN/cache/ferry/site.token"
    "${hub[@]}" bucket add bench/data --source agent
    "${hub[@]}" bucket add bench/small --source agent
    "$FERRY_BIN/ferry-agent" key generate --out "$RUN/cache/ferry/tenant.key"
  } > "$RUN/logs/ferry.init.log" 2>&1
  cat > "$cfg" <<TOML
hub = "$scheme://$(cat "$REPO/hub.ready")"
token-file = "$RUN/cache/ferry/site.token"
key-file = "$RUN/cache/ferry/tenant.key"
state-dir = "$RUN/cache/ferry/state"

[[source]]
name = "data"
path = "$SRC"
bucket = "bench/data"

[[source]]
name = "small"
path = "$SMALL"
bucket = "bench/small"
$agent_tls
TOML
}

ferry_hub_ticks() { awk '{print $14, $15}' "/proc/$FERRY_HUB_PID/stat"; }

ferry_hub_begin() {
  read -r FERRY_HUB_U0 FERRY_HUB_S0 < <(ferry_hub_ticks)
  echo 5 > "/proc/$FERRY_HUB_PID/clear_refs" 2>/dev/null || true
}

# ferry_hub_end REP STEP BYTES: a row for the hub, with the agent's wall time.
ferry_hub_end() {
  local u1 s1 hz wall rss
  read -r u1 s1 < <(ferry_hub_ticks)
  hz=$(getconf CLK_TCK)
  wall=$(tail -n 1 "$OUT_CSV.tmp" | cut -d, -f5)
  rss=$(awk '/^VmHWM/ {print $2}' "/proc/$FERRY_HUB_PID/status")
  printf '%s-hub,%s,%s,%s,%s,0,%.2f,%.2f,%s,%s,ok\n' "$FERRY_PEER" "$1" "$2" "$3" "$wall" \
    "$(echo "($u1 - $FERRY_HUB_U0) / $hz" | bc -l)" "$(echo "($s1 - $FERRY_HUB_S0) / $hz" | bc -l)" \
    "$rss" "$(repo_size)" >> "$OUT_CSV.tmp"
}

backup_ferry() {
  local source=data; [ "$4" = small ] && source=small
  ferry_hub_begin
  measure "$FERRY_PEER" "$1" "$2" "$3" -- "$FERRY_BIN/ferry-agent" -c "$REPO/agent.toml" backup --source "$source"
  ferry_hub_end "$1" "$2" "$3"
}

restore_ferry() {
  # The initial snapshot of bench/data is its first.
  ferry_hub_begin
  measure "$FERRY_PEER" "$1" restore-mixed "$B_MIXED" -- "$FERRY_BIN/ferry-agent" -c "$REPO/agent.toml" \
    restore --source data --snapshot 1 --to "$2"
  ferry_hub_end "$1" restore-mixed "$B_MIXED"
  RESTORED=$2
}

teardown_ferry() {
  if [ -n "${FERRY_HUB_PID:-}" ]; then
    kill "$FERRY_HUB_PID" 2>/dev/null || true
    wait "$FERRY_HUB_PID" 2>/dev/null || true
    FERRY_HUB_PID=
  fi
  if [ "${FERRY_PEER:-}" = ferrypg ] && [ -n "${FERRY_PG_CTL:-}" ]; then
    (cd / && "${FERRY_PG_CTL[@]}" -m fast stop > /dev/null 2>&1) || true
    rm -rf "$FERRY_PG_DIR"
  fi
  rm -rf "$RUN/cache/ferry"
}
