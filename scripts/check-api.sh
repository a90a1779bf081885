#!/usr/bin/env bash
# Checks the running service against its own OpenAPI document with schemathesis: no 5xx, every
# status and body as documented, stateful sequences (create, read, delete) included.
#
# Usage: scripts/check-api.sh
# Starts a real instance on SQLite (and on Postgres too when SHORTENER_TEST_POSTGRES_URL is
# set), creates an API key for it, runs schemathesis twice (with the key on every request,
# then anonymously, so the 401s and anonymous creates are checked too), and stops the
# instance. Installs schemathesis into the shared virtualenv under
# ${XDG_CACHE_HOME:-~/.cache}/shortener/venv.
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

# schemathesis URL CONFIG: one run against the instance at URL.
schemathesis() {
  # Run from the work dir: schemathesis keeps its cache in the current directory.
  (cd "$work" && "$VENV/bin/st" --config-file "$2" --no-color run "$1/api/v1/openapi.json")
}

# check DATABASE_URL NAME: schemathesis with and without a key against a fresh instance on
# that database.
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
  # The keyed run: the shared settings plus the header, which names the key by its variable,
  # so the key itself is never written to disk.
  local keyed=$work/keyed.toml
  {
    # shellcheck disable=SC2016 # schemathesis expands the variable, not the shell
    printf 'headers = { Authorization = "Bearer ${SHORTENER_API_KEY}" }\n'
    cat "$ROOT/tests/api/schemathesis.toml"
  } >"$keyed"
  # Anonymously, schemathesis warns that two operations answered only 401: that is the point.
  local run runs=(with-key anonymous)
  for run in "${runs[@]}"; do
    note "schemathesis against $name, $run"
    local config=$ROOT/tests/api/schemathesis.toml
    [[ $run == with-key ]] && config=$keyed
    if ! SHORTENER_API_KEY=$key schemathesis "http://127.0.0.1:$port" "$config"; then
      note "the server's log tail:"
      tail -n 40 "$log" >&2
      die "the API does not match its OpenAPI document on $name ($run)"
    fi
  done
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
