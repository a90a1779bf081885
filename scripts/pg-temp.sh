#!/usr/bin/env bash
# Starts or stops a throwaway Postgres cluster for tests: no system state, loopback only.
#
#   scripts/pg-temp.sh start DIR   prints an admin URL (role with CREATEDB) on stdout
#   scripts/pg-temp.sh stop DIR    stops it (by the PID in DIR)
#   scripts/pg-temp.sh resume DIR  starts a stopped cluster again on its port (a running one is
#                                  left as it is)
#   scripts/pg-temp.sh status DIR  succeeds if the cluster is running
#
# initdb refuses to run as root, so as root the cluster runs as the `postgres` user.
set -euo pipefail

cmd=${1:?usage: pg-temp.sh start|stop|resume|status DIR}
dir=${2:?usage: pg-temp.sh start|stop|resume|status DIR}

as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() {
  as_pg pg_ctl -D "$dir/data" status >/dev/null 2>&1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case $cmd in
  start)
    command -v initdb >/dev/null || { echo "initdb not found: install the postgresql package" >&2; exit 1; }
    mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres: "$dir" && chmod 0700 "$dir"
    as_pg initdb -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    free_port >"$dir/port"
    "$0" resume "$dir" >/dev/null
    echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")/postgres"
    ;;
  resume)
    port=$(cat "$dir/port")
    # pg_ctl refuses to start a running cluster; callers asking for it running get it.
    if running; then exit 0; fi
    as_pg pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    ;;
  status)
    running
    ;;
  stop)
    if [[ -f $dir/data/postmaster.pid ]]; then
      as_pg pg_ctl -D "$dir/data" -m fast -w -t 30 stop >/dev/null || true
    fi
    ;;
  *)
    echo "usage: pg-temp.sh start|stop|resume|status DIR" >&2
    exit 2
    ;;
esac
