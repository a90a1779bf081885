#!/usr/bin/env bash
# Checks the running service against its own OpenAPI document with schemathesis: no 5xx, every
# status and body as documented, stateful sequences (create, read, delete) included.
#
# Usage: scripts/check-api.sh
# Starts a real instance on SQLite (and on Postgres too when SHORTENER_TEST_POSTGRES_URL is
# set), creates an API key for it, runs schemathesis, and stops the instance. Installs
# schemathesis into the shared virtualenv under ${XDG_CACHE_HOME:-~/.cache}/shortener/venv.
# Env: SHORTENER_BIN (default: target/debug/shortener, built if missing),
#      SCHEMATHESIS_VERSION (default below).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

readonly SCHEMATHESIS_VERSION=${SCHEMATHESIS_VERSION:-4.32.5}
readonly VENV=${XDG_CACHE_HOME:-$HOME/.cache}/shortener/venv
BIN=${SHORTENER_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/shortener}

note() { printf 'check-api: %s\n' "$*"; }
die() {
  printf 'check-api: %s\n' "$*" >&2
  exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/shortener-api.XXXXXX")
pid=
cleanup() {
  if [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

ensure_schemathesis() {
  if [[ -x $VENV/bin/st ]] && "$VENV/bin/st" --version | grep -qF "$SCHEMATHESIS_VERSION"; then
    return
  fi
  # The virtualenv is shared with the other check scripts: add to it, never replace it.
  if [[ ! -x $VENV/bin/pip ]]; then
    mkdir -p "${VENV%/*}"
    python3 -m venv "$VENV" || die "python3 -m venv failed (install python3-venv)"
  fi
  note "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# check DATABASE_URL NAME: one schemathesis run against a fresh instance on that database.
check() {
  local db=$1 name=$2 port log key
  port=$(free_port)
  log=$work/$name.log
  DATABASE_URL=$db "$BIN" migrate >/dev/null
  key=$(DATABASE_URL=$db "$BIN" keys create --name "schemathesis-$name" 2>/dev/null)
  # Limits off: schemathesis sends hundreds of creates and lookups from one address.
  DATABASE_URL=$db "$BIN" --listen "127.0.0.1:$port" --metrics-listen off \
    --create-rate-limit 0 --not-found-rate-limit 0 >"$log" 2>&1 &
  pid=$!
  local ready=
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [[ -n $ready ]] || {
    tail -n 30 "$log" >&2
    die "the instance on $name did not become ready"
  }
  note "schemathesis against $name"
  # Run from the work dir: schemathesis keeps its cache in the current directory.
  if ! (cd "$work" && SHORTENER_API_KEY=$key "$VENV/bin/st" \
    --config-file "$ROOT/tests/api/schemathesis.toml" --no-color \
    run "http://127.0.0.1:$port/api/v1/openapi.json"); then
    note "the server's log tail:"
    tail -n 40 "$log" >&2
    die "the API does not match its OpenAPI document on $name"
  fi
  kill "$pid"
  wait "$pid" || die "the instance on $name did not stop cleanly"
  pid=
}

ensure_schemathesis
if [[ ! -x $BIN ]]; then
  note "building $BIN"
  cargo build --locked --quiet
fi
check "sqlite://$work/api.db" sqlite
if [[ -n ${SHORTENER_TEST_POSTGRES_URL:-} ]]; then
  check "$SHORTENER_TEST_POSTGRES_URL" postgres
elif [[ -n ${CI:-} ]]; then
  die "SHORTENER_TEST_POSTGRES_URL is not set (scripts/test.sh starts a Postgres for it)"
else
  note "skipping Postgres: SHORTENER_TEST_POSTGRES_URL is not set"
fi
note "passed"
