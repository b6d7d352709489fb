# Ferry as a peer of ../shared/bench/peers.sh (sourced by it; see its header
# for the plugin contract). Usage from the repo root:
#   cargo build --release --bins
#   PEERS="restic ferry" PEER_PLUGINS=$PWD/bench/ferry.peer.sh ../shared/bench/peers.sh
# The hub (catalog + pool) lives under $REPO, so the repo size counts both;
# the agent's journal lives under $RUN/cache like the other tools' caches.

FERRY_BIN=${FERRY_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release}

setup_ferry() {
  local cfg=$REPO/agent.toml
  mkdir -p "$REPO" "$RUN/cache/ferry"
  rm -f "$REPO/hub.ready"
  "$FERRY_BIN/ferry-hub" --data-dir "$REPO/hub" serve --listen 127.0.0.1:0 \
    --ready-file "$REPO/hub.ready" > "$RUN/logs/ferry.hub.log" 2>&1 &
  FERRY_HUB_PID=$!
  for _ in $(seq 1 200); do [ -f "$REPO/hub.ready" ] && break; sleep 0.05; done
  [ -f "$REPO/hub.ready" ] || { echo "ferry-hub did not start" >&2; return 1; }
  local hub=("$FERRY_BIN/ferry-hub" --data-dir "$REPO/hub")
  {
    "${hub[@]}" tenant add bench
    "${hub[@]}" site add --tenant bench agent --token-file "$RUN/cache/ferry/site.token"
    "${hub[@]}" bucket add bench/data --source agent
    "${hub[@]}" bucket add bench/small --source agent
    "$FERRY_BIN/ferry-agent" key generate --out "$RUN/cache/ferry/tenant.key"
  } > "$RUN/logs/ferry.init.log" 2>&1
  cat > "$cfg" <<TOML
hub = "http://$(cat "$REPO/hub.ready")"
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
TOML
}

backup_ferry() {
  local source=data; [ "$4" = small ] && source=small
  measure ferry "$1" "$2" "$3" -- "$FERRY_BIN/ferry-agent" -c "$REPO/agent.toml" backup --source "$source"
}

restore_ferry() {
  # The initial snapshot of bench/data is its first.
  measure ferry "$1" restore-mixed "$B_MIXED" -- "$FERRY_BIN/ferry-agent" -c "$REPO/agent.toml" \
    restore --source data --snapshot 1 --to "$2"
  RESTORED=$2
}

teardown_ferry() {
  if [ -n "${FERRY_HUB_PID:-}" ]; then
    kill "$FERRY_HUB_PID" 2>/dev/null || true
    wait "$FERRY_HUB_PID" 2>/dev/null || true
    FERRY_HUB_PID=
  fi
  rm -rf "$RUN/cache/ferry"
}
