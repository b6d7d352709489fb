# Sourced by bench/run.sh (BACKEND=s3) and bench/bucket.sh: a throwaway
# single-node Garage from ../shared/bench/garage/start.sh on free loopback
# ports, its env (AWS_* keys, S3_ENDPOINT, S3_BUCKET=bench, rclone remote
# "garage:") sourced into the caller, stopped and deleted on exit.
#   source bench/garage.sh; garage_up     (sets an EXIT trap: garage_down)
# Knobs: GARAGE (binary; default garage on PATH or ~/.cargo/bin/garage),
#   GARAGE_KEEP=1 (leave the data dir after stopping).

garage_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

garage_up() {
  local shared=${SHARED_BENCH:?} ports p
  if [ -z "${GARAGE:-}" ]; then
    GARAGE=$(command -v garage || echo "$HOME/.cargo/bin/garage")
  fi
  export GARAGE
  # Four distinct free ports (S3, RPC, web, admin): leave 3900.. to others.
  ports=()
  while [ "${#ports[@]}" -lt 4 ]; do
    p=$(garage_free_port)
    case " ${ports[*]} " in *" $p "*) ;; *) ports+=("$p") ;; esac
  done
  GARAGE_DIR=$(mktemp -d /tmp/ferry-bench-garage.XXXXXX)
  export GARAGE_DIR
  trap garage_down EXIT
  S3_PORT=${ports[0]} RPC_PORT=${ports[1]} WEB_PORT=${ports[2]} ADMIN_PORT=${ports[3]} \
    CAPACITY=${GARAGE_CAPACITY:-100G} bash "$shared/garage/start.sh" > "$GARAGE_DIR/start.out" 2>&1 \
    || { cat "$GARAGE_DIR/start.out" >&2; return 1; }
  # shellcheck disable=SC1091
  source "$GARAGE_DIR/env"
  unset AWS_CA_BUNDLE   # the sandbox's proxy CA breaks rclone's S3 remote even on http://127.0.0.1
  export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
  echo "garage: $S3_ENDPOINT bucket $S3_BUCKET, dir $GARAGE_DIR (pid $(cat "$GARAGE_DIR/garage.pid"))" >&2
}

garage_down() {
  [ -n "${GARAGE_DIR:-}" ] && [ -d "$GARAGE_DIR" ] || return 0
  if [ "${GARAGE_KEEP:-0}" = 1 ]; then
    bash "${SHARED_BENCH:?}/garage/stop.sh" "$GARAGE_DIR" --keep || true
  else
    bash "${SHARED_BENCH:?}/garage/stop.sh" "$GARAGE_DIR" || true
  fi
}
