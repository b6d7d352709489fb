#!/usr/bin/env bash
# Quickstart: builds Ferry, starts a hub (embedded defaults: SQLite catalog,
# local pool) and protects a directory with an agent, then lists snapshots
# and restores. Everything lives under ./quickstart (QUICKSTART_DIR).
#
#   scripts/quickstart.sh [DIR]   protect DIR (default: a small demo tree)
#   scripts/quickstart.sh stop    stop the quickstart hub
# Safe to rerun: setup steps already done are skipped; each run backs up again.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
qs=${QUICKSTART_DIR:-$root/quickstart}
port=${FERRY_PORT:-7420}
pidfile=$qs/hub.pid

stop_hub() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    echo "quickstart hub stopped"
  fi
  rm -f "$pidfile"
}
if [ "${1:-}" = stop ]; then stop_hub; exit 0; fi

bash scripts/setup.sh quickstart
echo "== building (release)"
cargo build --release --locked --bins -p ferry-hub -p ferry-agent
bin=${CARGO_TARGET_DIR:-$root/target}/release
hub="$bin/ferry-hub --data-dir $qs/hub"
agent="$bin/ferry-agent --config $qs/agent.toml"
mkdir -p "$qs"

src=${1:-$qs/demo-data}
if [ -z "${1:-}" ] && [ ! -d "$src" ]; then
  echo "== making a demo directory $src"
  mkdir -p "$src/docs" "$src/empty"
  for i in $(seq 1 20); do seq 1 $((i * 500)) > "$src/docs/report-$i.txt"; done
  head -c 8000000 /dev/urandom > "$src/photo.raw"
  ln -sf docs/report-1.txt "$src/latest-report"
fi
src=$(cd "$src" && pwd)

if ! [ -f "$pidfile" ] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "== starting the hub on 127.0.0.1:$port (log: $qs/hub.log)"
  rm -f "$qs/hub.ready"
  $hub serve --listen "127.0.0.1:$port" --ready-file "$qs/hub.ready" >>"$qs/hub.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 100); do [ -f "$qs/hub.ready" ] && break; sleep 0.1; done
  [ -f "$qs/hub.ready" ] || { echo "hub did not start; see $qs/hub.log" >&2; exit 1; }
fi

if [ ! -f "$qs/site.token" ]; then
  echo "== namespace: tenant demo, site site-a, bucket demo/files"
  $hub tenant add demo
  $hub site add --tenant demo site-a --token-file "$qs/site.token"
  $hub bucket add demo/files --source site-a
fi
if [ ! -f "$qs/tenant.key" ]; then
  echo "== tenant key"
  $agent key generate --out "$qs/tenant.key"
fi
cat > "$qs/agent.toml" <<TOML
hub = "http://127.0.0.1:$port"
token-file = "site.token"
key-file = "tenant.key"
state-dir = "agent-state"

[[source]]
name = "files"
path = "$src"
bucket = "demo/files"
TOML

echo "== backup of $src"
$agent backup
echo "== snapshots"
$agent snapshots
restore_dir=$(mktemp -d "$qs/restore-$(date +%Y%m%d-%H%M%S)-XXXX")
echo "== restore of the latest snapshot into $restore_dir"
$agent restore --to "$restore_dir"
diff -r "$src" "$restore_dir" && echo "restore is identical to $src"

cat <<TXT

The hub keeps running (pid $(cat "$pidfile")). Try:
  $agent backup                       # back up again (only changes are read)
  $agent snapshots                    # list snapshots
  $agent restore --to /tmp/r1 --snapshot 1
  $agent restore --to /tmp/r2 --at "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  scripts/quickstart.sh stop          # stop the hub
TXT
