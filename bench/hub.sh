# Sourced by bench scripts: a hub with a local pool under a run directory,
# one tenant "bench", one site and one bucket, and the agent's key; then the
# head of an agent config pointing at it.
#   source bench/hub.sh
#   ferry_hub_up DIR BUCKET [HUB-ARGS...]
#                               starts ferry-hub (data in DIR/hub, log
#                               DIR/hub.log; HUB-ARGS e.g. --config F go
#                               before its subcommands), sets HUB_PID, creates
#                               tenant "bench", site "site", bucket "bench/BUCKET"
#   ferry_agent_head DIR        prints hub, token-file, key-file, state-dir
# Needs FERRY_BIN. The caller stops the hub (kill "$HUB_PID").

ferry_hub_up() {
  local dir=$1 bucket=$2; shift 2
  local hub=("$FERRY_BIN/ferry-hub" "$@" --data-dir "$dir/hub")
  rm -f "$dir/hub.ready"
  "${hub[@]}" serve --listen 127.0.0.1:0 --ready-file "$dir/hub.ready" 2> "$dir/hub.log" &
  HUB_PID=$!
  for _ in $(seq 100); do [ -s "$dir/hub.ready" ] && break; sleep 0.1; done
  [ -s "$dir/hub.ready" ] || { echo "ferry-hub did not start:" >&2; tail -5 "$dir/hub.log" >&2; return 1; }
  "${hub[@]}" tenant add bench > /dev/null
  "${hub[@]}" site add --tenant bench site --token-file "$dir/site.token" > /dev/null
  "${hub[@]}" bucket add "bench/$bucket" --source site > /dev/null
  "$FERRY_BIN/ferry-agent" key generate --out "$dir/tenant.key" > /dev/null
}

ferry_agent_head() {
  printf 'hub = "http://%s"\ntoken-file = "site.token"\nkey-file = "tenant.key"\nstate-dir = "state"\n' \
    "$(cat "$1/hub.ready")"
}
