#!/usr/bin/env bash
# Benchmark of the service against baseline servers (examples/baseline.rs), side by side.
# Run `scripts/bench.sh --help` for what it measures and its options.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [--quick] [options]

Builds the release binary and the baseline servers (examples/baseline.rs), prepares datasets
through `shortener import`, then measures each scenario with wrk: the service and its baseline
are started one at a time (server pinned to one CPU, wrk to another), run alternately for
several rounds (the order flips every round so drift cancels), each run after its SQLite file
was read into the OS page cache and a discarded warm-up. Prints one row per scenario and server: median req/s, p50, p99, peak RSS (VmHWM),
CPU use of the server and of wrk, start-up to ready, errors, and ratios to the baseline; for
the service, the share of its link cache lookups that missed during the measured window.

Scenarios (links stored in parentheses, full run / --quick):
  hot            uniform over 10k codes, all cached         vs baseline map   (10k / 10k)
  zipf           Zipf (s=1) over every code, default cache  vs baseline map   (1M / 10k)
  cold-sqlite    cache off, uniform over every code         vs baseline sqlite (1M / 10k)
  cold-pg        cache off, uniform, on Postgres            vs baseline postgres (1M / 10k)
  create-sqlite  POST /api/v1/links on an empty SQLite file (no baseline), with the default
                 --sqlite-synchronous full and with normal, and with the default on a copy
                 of the middle dataset                                        (1M / 10k)
  create-pg      POST /api/v1/links on an empty Postgres database (no baseline)
  scale-hot      hot on 10M links vs the same on 10k links  (full run only)
  scale-cold     cold on 10M links vs the same on 10k links (full run only)
  clicks-hot     hot, clicks flushed every second (the default) vs the flush put off
                 (--click-flush-interval 1h --click-flush-bytes 0): what counting
                 clicks costs                                               (10k / 10k)
  clicks-zipf    the same over the Zipf mix                                 (1M / 10k)
A full run also times `shortener import` of each dataset and `shortener copy` of the 1M and
10M datasets from SQLite to Postgres.

Options:
  --quick            small datasets and short runs (2 rounds of 2 s): under two minutes
                     once the release build is cached
  --rounds N         measured runs per server and scenario (default 3)
  --duration S       seconds per measured run (default 10)
  --zipf-duration S  seconds per measured run of zipf and clicks-zipf (default 70). A run
                     over the Zipf mix must span the minute after which the service first
                     moves its pending clicks into the links: until then the table it flushes
                     clicks into only grows, and each flush costs more, so a 10 s run shows a
                     state the service has left a minute after it starts
  --warmup S         seconds of discarded warm-up before each run (default 3)
  --connections N    wrk connections (default 64)
  --only LIST        comma-separated scenarios to run (default: all of them)
  --no-10m           skip the 10-million-link dataset (and the scale scenarios)
  --no-postgres      skip the Postgres scenarios
  --profile NAME     cargo profile to build and measure (default release). CI runs
                     `--quick --profile dev` on the binaries `cargo test` already built, to keep
                     the script working without a 15-minute release build; its figures say
                     nothing about speed
  -h, --help         this text

Environment:
  BENCH_DIR          work directory for datasets and logs (default target/bench); datasets
                     and the Postgres cluster are kept there so re-runs are fast
  BENCH_SERVER_CPU   CPU of the server and of Postgres (default 0)
  BENCH_LOAD_CPU     CPU of wrk (default 1)
  BENCH_PG_URL       an existing Postgres admin URL (role with CREATEDB) instead of the
                     throwaway cluster of scripts/pg-temp.sh, which runs with fsync=off

Needs: cargo, python3, curl, taskset, wrk (installed with apt-get when missing and root),
and for Postgres initdb/pg_ctl/psql. Figures are printed, never judged.
EOF
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

quick=0
rounds=3
duration=10
zipf_duration=70
warmup=3
connections=64
only=""
with_10m=1
with_pg=1
profile=release
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --rounds) rounds=${2:?--rounds needs a number}; shift ;;
    --duration) duration=${2:?--duration needs seconds}; shift ;;
    --zipf-duration) zipf_duration=${2:?--zipf-duration needs seconds}; shift ;;
    --warmup) warmup=${2:?--warmup needs seconds}; shift ;;
    --connections) connections=${2:?--connections needs a number}; shift ;;
    --only) only=${2:?--only needs a list}; shift ;;
    --no-10m) with_10m=0 ;;
    --no-postgres) with_pg=0 ;;
    --profile) profile=${2:?--profile needs a name}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if ((quick)); then
  rounds=2 duration=2 zipf_duration=2 warmup=1 with_10m=0
fi
for n in "$rounds" "$duration" "$zipf_duration" "$warmup" "$connections"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "not a number: $n" >&2; exit 2; }
done

server_cpu=${BENCH_SERVER_CPU:-0}
load_cpu=${BENCH_LOAD_CPU:-1}
bench_dir=${BENCH_DIR:-target/bench}
mkdir -p "$bench_dir"
bench_dir=$(cd "$bench_dir" && pwd)
data=$bench_dir/data
run_dir=$bench_dir/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$data" "$run_dir"
results=$run_dir/results.tsv
: >"$results"
lua=$repo/scripts/bench/wrk.lua
clk_tck=$(getconf CLK_TCK)

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

wants() { [[ -z $only || ,$only, == *,"$1",* ]]; }

# --- processes this script started, stopped by PID on any exit ----------------------------
server_pid=""
load_pid=""
pg_dir=""
pg_started=0

stop_pid() { # PID: SIGTERM, up to 15 s, then SIGKILL; always reaped
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n $load_pid ]] && stop_pid "$load_pid"
  [[ -n $server_pid ]] && stop_pid "$server_pid"
  if ((pg_started)); then
    scripts/pg-temp.sh stop "$pg_dir" || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools -----------------------------------------------------------------------------------
for tool in cargo python3 curl taskset getconf; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
if ! command -v wrk >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing wrk (apt-get)"
    timeout 300 apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq wrk >/dev/null
  else
    die "wrk is missing: install it (Debian: sudo apt-get install wrk) and re-run"
  fi
fi
ncpu=$(nproc)
((server_cpu < ncpu && load_cpu < ncpu)) \
  || die "BENCH_SERVER_CPU=$server_cpu / BENCH_LOAD_CPU=$load_cpu: this machine has $ncpu CPUs"
[[ $server_cpu != "$load_cpu" ]] || log "warning: server and wrk share CPU $server_cpu"

# --- build -----------------------------------------------------------------------------------
log "building profile $profile (shortener, examples/baseline)"
build_start=$(date +%s)
cargo build --locked --profile "$profile" --quiet --bin shortener --example baseline
log "build took $(($(date +%s) - build_start)) s"
target_dir=${CARGO_TARGET_DIR:-$repo/target}
# cargo's output directory of the dev profile is named debug.
profile_dir=$profile
[[ $profile != dev ]] || profile_dir=debug
shortener=$target_dir/$profile_dir/shortener
baseline=$target_dir/$profile_dir/examples/baseline
[[ -x $shortener && -x $baseline ]] || die "binaries not found under $target_dir/$profile_dir"

# --- datasets ----------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now_ns() { date +%s%N; }

# dataset NAME COUNT [SAMPLE]: $data/NAME.db (imported), $data/NAME.codes (codes for wrk).
dataset() {
  local name=$1 count=$2 sample=${3:-}
  local db=$data/$name.db
  if [[ -f $db.done ]]; then
    log "dataset $name: cached ($count links)"
    return
  fi
  rm -f "$db" "$db-wal" "$db-shm"
  log "dataset $name: generating $count links"
  # shellcheck disable=SC2086 # $sample is empty or one number
  python3 scripts/bench/gen-links.py "$count" "$data/$name.jsonl" "$data/$name.codes" $sample
  log "dataset $name: shortener import"
  local t0 t1
  t0=$(now_ns)
  RUST_LOG=warn timeout 1800 "$shortener" import --database-url "sqlite:$db" \
    --input "$data/$name.jsonl" 2>"$run_dir/import-$name.log" \
    || { tail -5 "$run_dir/import-$name.log" >&2; die "import of $name failed"; }
  t1=$(now_ns)
  printf 'import\t%s\t%s\t%s\n' "sqlite $name" "$count" \
    "$(python3 -c "print(($t1 - $t0) / 1e9)")" >>"$results"
  rm -f "$data/$name.jsonl"
  touch "$db.done"
}

# --- Postgres ----------------------------------------------------------------------------------
pg_url=""
pg_admin=""

pin_postgres() { # keep Postgres on the server's CPU, off wrk's
  local pm
  pm=$(head -1 "$pg_dir/data/postmaster.pid" 2>/dev/null) || return 0
  taskset -a -p -c "$server_cpu" "$pm" >/dev/null 2>&1 || true
  for child in $(pgrep -P "$pm" || true); do
    taskset -a -p -c "$server_cpu" "$child" >/dev/null 2>&1 || true
  done
}

start_postgres() {
  if [[ -n ${BENCH_PG_URL:-} ]]; then
    pg_admin=$BENCH_PG_URL
    log "Postgres: using BENCH_PG_URL"
    return
  fi
  command -v initdb >/dev/null || die "initdb not found: install postgresql or use --no-postgres"
  pg_dir=$bench_dir/pg
  if [[ $(id -u) == 0 ]] && ! runuser -u postgres -- test -x "$bench_dir"; then
    pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-pg.XXXXXX") # the postgres user cannot enter BENCH_DIR
  fi
  if [[ -f $pg_dir/data/PG_VERSION ]] && scripts/pg-temp.sh status "$pg_dir"; then
    log "Postgres: cached cluster already running (left running at the end)"
  elif [[ -f $pg_dir/data/PG_VERSION ]] && scripts/pg-temp.sh resume "$pg_dir" 2>"$run_dir/pg.log"; then
    log "Postgres: cached cluster resumed"
    pg_started=1
  else
    log "Postgres: starting a throwaway cluster (scripts/pg-temp.sh)"
    [[ -d $pg_dir ]] && rm -rf -- "$pg_dir"
    rm -f "$bench_dir"/pg-*.done
    scripts/pg-temp.sh start "$pg_dir" >/dev/null 2>"$run_dir/pg.log" \
      || { cat "$run_dir/pg.log" >&2; die "Postgres did not start"; }
    pg_started=1
  fi
  pg_admin="postgres://postgres@127.0.0.1:$(cat "$pg_dir/port")/postgres"
  pin_postgres
}

psql_admin() { PGOPTIONS="-c client_min_messages=warning" timeout 120 psql "$pg_admin" -v ON_ERROR_STOP=1 -qAt "$@"; }

pg_db_url() { # DB: URL of database DB on the admin server
  python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$pg_admin" "$1"
}

# pg_dataset NAME: the SQLite dataset NAME copied into database bench_NAME (shortener copy).
pg_dataset() {
  local name=$1 db=bench_${1//-/_}
  pg_url=$(pg_db_url "$db")
  if [[ -f $bench_dir/pg-$name.done && -z ${BENCH_PG_URL:-} ]]; then
    log "Postgres dataset $name: cached"
    return
  fi
  psql_admin -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  log "Postgres dataset $name: shortener copy"
  local t0 t1 count
  count=$(wc -l <"$data/$name.codes")
  t0=$(now_ns)
  RUST_LOG=warn timeout 1800 "$shortener" copy --from "sqlite:$data/$name.db" --to "$pg_url" \
    2>"$run_dir/copy-$name.log" || { tail -5 "$run_dir/copy-$name.log" >&2; die "copy of $name failed"; }
  t1=$(now_ns)
  count=$(timeout 120 psql "$pg_url" -qAt -c "SELECT count(*) FROM links" 2>/dev/null || echo "$count")
  printf 'copy\t%s\t%s\t%s\n' "sqlite->postgres $name" "$count" \
    "$(python3 -c "print(($t1 - $t0) / 1e9)")" >>"$results"
  touch "$bench_dir/pg-$name.done"
}

# --- servers -----------------------------------------------------------------------------------
port=""
metrics_port="" # the service's metrics listener, for its cache counters
ready_ms=0

# start_server NAME CMD...: starts CMD pinned to the server CPU, waits for /readyz.
start_server() {
  local name=$1 deadline t0
  shift
  port=$(free_port)
  while [[ $port == "$metrics_port" ]]; do port=$(free_port); done # picked apart, may collide
  t0=$(now_ns)
  taskset -c "$server_cpu" "$@" --listen "127.0.0.1:$port" >"$run_dir/$name.log" 2>&1 &
  server_pid=$!
  deadline=$((t0 + 180 * 1000000000)) # the map baseline loads every link first
  until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" 2>/dev/null || true
      server_pid=""
      tail -20 "$run_dir/$name.log" >&2
      die "$name failed to start (log: $run_dir/$name.log)"
    fi
    (($(now_ns) < deadline)) || die "$name not ready after 180 s (log: $run_dir/$name.log)"
    sleep 0.005
  done
  ready_ms=$((($(now_ns) - t0) / 1000000))
}

stop_server() {
  [[ -n $server_pid ]] && stop_pid "$server_pid"
  server_pid=""
}

cpu_ticks() { # PID: user + system clock ticks so far
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# User + system seconds of the reaped children of this shell. `times` must run in this
# shell, not in a command substitution (a subshell has no children of its own yet).
children_cpu() {
  times >"$run_dir/times"
  awk 'END { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$run_dir/times" >"$run_dir/times.sum"
}

# load SECONDS OUT ARGS...: wrk on the load CPU against the current server.
load() {
  local seconds=$1 out=$2
  shift 2
  taskset -c "$load_cpu" timeout $((seconds + 120)) wrk -t1 -c"$connections" -d"${seconds}s" \
    --timeout 5s --latency -s "$lua" "http://127.0.0.1:$port" -- "$@" >"$out" 2>&1 &
  load_pid=$!
  local status=0
  wait "$load_pid" || status=$?
  load_pid=""
  ((status == 0)) || { cat "$out" >&2; die "wrk failed (status $status)"; }
}

# cache_lookups: "HITS MISSES" of the current server's link cache so far (negative hits count
# as hits: the database was not asked); "0 0" for a server without metrics (the baselines).
cache_lookups() {
  [[ -n $metrics_port ]] || { echo "0 0"; return; }
  curl -fs --max-time 5 "http://127.0.0.1:$metrics_port/metrics" | awk '
    /^shortener_cache_lookups_total\{/ { if ($1 ~ /result="miss"/) m += $2; else h += $2 }
    END { printf "%d %d\n", h, m }'
}

# warm_files CMD...: reads the SQLite database a server command names (and its WAL) into the OS
# page cache. A long-running server keeps the pages it reads cached, but this machine's page
# cache loses idle file pages within minutes with gigabytes of memory free (a 133 MB database
# unread for 5 minutes: 42% of it gone), so a dataset left idle by the previous scenarios would
# otherwise be read from disk during the run, on the service's request threads.
warm_files() {
  local arg file
  for arg in "$@"; do
    [[ $arg == sqlite:* ]] || continue
    for file in "${arg#sqlite:}" "${arg#sqlite:}-wal"; do
      if [[ -f $file ]]; then cat -- "$file" >/dev/null; fi
    done
  done
}

# check_status PATH EXPECTED [CURL ARGS...]: one request before measuring, so a broken
# server is reported instead of measured.
check_status() {
  local path=$1 expected=$2 got
  shift 2
  got=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "http://127.0.0.1:$port$path")
  [[ $got == "$expected" ]] || die "GET/POST $path answered $got, expected $expected (log: $run_dir)"
}

# measure SCENARIO ROLE LABEL DATASET ROUND PROBE_PATH PROBE_STATUS WRK_ARGS... -- CMD...
# One run: start, probe, warm up, measure, stop; appends a `run` record.
measure() {
  local scenario=$1 role=$2 label=$3 links=$4 round=$5 probe=$6 expect=$7
  shift 7
  local wrk_args=()
  while [[ $1 != -- ]]; do wrk_args+=("$1"); shift; done
  shift
  local name=$scenario-${label// /-}-$round
  metrics_port=""
  if [[ $role == service ]]; then # its cache counters, read around the measured window
    metrics_port=$(free_port)
    set -- "$@" --metrics-listen "127.0.0.1:$metrics_port"
  fi
  warm_files "$@"
  start_server "$name" "$@"
  local startup=$ready_ms
  if [[ ${wrk_args[0]} == create ]]; then
    check_status /api/v1/links 201 -H 'Content-Type: application/json' \
      --data '{"url":"https://example.org/probe"}'
  else
    check_status "$probe" "$expect"
  fi
  if ((warmup > 0)); then
    load "$warmup" "$run_dir/$name.warmup" "${wrk_args[@]}"
  fi
  local ticks0 ticks1 load0 load1 cache0 cache1
  cache0=$(cache_lookups)
  ticks0=$(cpu_ticks "$server_pid")
  children_cpu
  load0=$(cat "$run_dir/times.sum")
  load "${run_seconds:-$duration}" "$run_dir/$name.wrk" "${wrk_args[@]}"
  children_cpu
  load1=$(cat "$run_dir/times.sum")
  ticks1=$(cpu_ticks "$server_pid")
  cache1=$(cache_lookups)
  local rss_kb
  rss_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")
  stop_server
  local json
  json=$(grep '^BENCH_RESULT ' "$run_dir/$name.wrk" | tail -1 | cut -d' ' -f2-)
  [[ -n $json ]] || { cat "$run_dir/$name.wrk" >&2; die "no result from wrk"; }
  python3 - "$json" "$ticks0" "$ticks1" "$clk_tck" "$load0" "$load1" "$cache0" "$cache1" \
    <<'PY' >"$run_dir/line"
import json, sys
r = json.loads(sys.argv[1])
t0, t1, hz, l0, l1 = (float(x) for x in sys.argv[2:7])
(h0, m0), (h1, m1) = ([int(n) for n in a.split()] for a in sys.argv[7:9])
secs = r["seconds"]
lookups = (h1 - h0) + (m1 - m0)
print("\t".join(str(x) for x in (
    r["requests"] / secs, r["p50_us"], r["p99_us"], r["status_errors"] + r["socket_errors"],
    "{:.1f}".format((t1 - t0) / hz / secs * 100), "{:.1f}".format((l1 - l0) / secs * 100),
    "{:.1f}".format((m1 - m0) / lookups * 100) if lookups else "-")))
PY
  printf 'run\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$role" "$label" "$links" \
    "$round" "$(cut -f1-4 "$run_dir/line")" "$rss_kb" "$(cut -f5-6 "$run_dir/line")" "$startup" \
    "$(cut -f7 "$run_dir/line")" >>"$results"
  log "  $scenario $label round $round: $(cut -f1 "$run_dir/line" | cut -d. -f1) req/s, p99 $(cut -f3 "$run_dir/line") µs"
}

service() { # DATABASE_URL [FLAGS...]: the service with the benchmark settings
  # The defaults, but for the create limit (all of wrk's requests come from one address). The
  # metrics listener is added by `measure`, on a port of its own, to read the cache counters.
  local url=$1
  shift
  printf '%s\n' "$shortener" serve --database-url "$url" --create-rate-limit 0 "$@"
}

# pair SCENARIO LINKS [SECONDS]: the service (A) and its reference (B), alternating, `rounds`
# times each, measured for SECONDS a run (default --duration; `measure` sees the local
# `run_seconds`, and runs outside a pair the default). Each side is described by globals:
# *_label, *_probe (a path answering 302), *_wrk (wrk script arguments) and *_cmd (the server
# command line).
a_label="" a_probe="" a_wrk=() a_cmd=()
b_label="" b_probe="" b_wrk=() b_cmd=()
pair() {
  local scenario=$1 links=$2 round run_seconds=${3:-$duration}
  log "scenario $scenario (${run_seconds}s a run)"
  for ((round = 1; round <= rounds; round++)); do
    if ((round % 2)); then
      measure_a "$scenario" "$links" "$round"
      measure_b "$scenario" "$links" "$round"
    else
      measure_b "$scenario" "$links" "$round"
      measure_a "$scenario" "$links" "$round"
    fi
  done
}
measure_a() { measure "$1" service "$a_label" "$2" "$3" "$a_probe" 302 "${a_wrk[@]}" -- "${a_cmd[@]}"; }
measure_b() { measure "$1" baseline "$b_label" "$2" "$3" "$b_probe" 302 "${b_wrk[@]}" -- "${b_cmd[@]}"; }

first_code() { head -1 "$data/$1.codes"; }

# --- plan --------------------------------------------------------------------------------------
small="links-10k"
dataset "$small" 10000
if ((quick)); then
  mid=$small mid_label=10k
else
  mid="links-1m" mid_label=1M
  if wants zipf || wants cold-sqlite || wants cold-pg || wants create-sqlite || wants clicks-zipf; then
    dataset "$mid" 1000000
  fi
fi
big=""
if ((with_10m)) && { wants scale-hot || wants scale-cold; }; then
  big="links-10m"
  dataset "$big" 10000000 1000000 # the codes file is a uniform sample of 1M codes
fi
if ((with_pg)) && { wants cold-pg || wants create-pg || [[ -n $big ]]; }; then
  command -v psql >/dev/null || die "psql not found: install postgresql-client or use --no-postgres"
  start_postgres
  # The move of the largest dataset to Postgres is timed too (`shortener copy`); the cold
  # scenario then runs on the middle one.
  [[ -n $big ]] && pg_dataset "$big"
  wants cold-pg && pg_dataset "$mid"
fi

mapfile -t svc_small < <(service "sqlite:$data/$small.db")
mapfile -t svc_mid < <(service "sqlite:$data/$mid.db")

small_probe=/$(first_code "$small")
mid_probe=""
[[ -f $data/$mid.codes ]] && mid_probe=/$(first_code "$mid") # absent when no scenario needs it
# The service's side of the hot and Zipf scenarios, also measured against itself below.
service_hot() {
  a_label=service a_probe=$small_probe a_wrk=(uniform "$data/$small.codes") a_cmd=("${svc_small[@]}")
}
service_zipf() {
  a_label=service a_probe=$mid_probe a_wrk=(zipf "$data/$mid.codes" 1.0) a_cmd=("${svc_mid[@]}")
}
if wants hot; then
  service_hot
  b_label="baseline map" b_probe=$small_probe b_wrk=("${a_wrk[@]}")
  b_cmd=("$baseline" --mode map --database-url "sqlite:$data/$small.db")
  pair hot 10k
fi
if wants zipf; then
  service_zipf
  b_label="baseline map" b_probe=$mid_probe b_wrk=("${a_wrk[@]}")
  b_cmd=("$baseline" --mode map --database-url "sqlite:$data/$mid.db")
  pair zipf "$mid_label" "$zipf_duration"
fi
if wants cold-sqlite; then
  a_label="service (no cache)" a_probe=$mid_probe a_wrk=(uniform "$data/$mid.codes")
  a_cmd=("${svc_mid[@]}" --cache-size 0)
  b_label="baseline sqlite" b_probe=$mid_probe b_wrk=("${a_wrk[@]}")
  b_cmd=("$baseline" --mode sqlite --database-url "sqlite:$data/$mid.db")
  pair cold-sqlite "$mid_label"
fi
if ((with_pg)) && wants cold-pg; then
  mapfile -t a_cmd < <(service "$pg_url" --cache-size 0)
  a_label="service (no cache)" a_probe=$mid_probe a_wrk=(uniform "$data/$mid.codes")
  b_label="baseline postgres" b_probe=$mid_probe b_wrk=("${a_wrk[@]}")
  b_cmd=("$baseline" --mode postgres --database-url "$pg_url")
  pair cold-pg "$mid_label"
fi
if wants create-sqlite; then
  log "scenario create-sqlite"
  # The default (`synchronous=full`, an fsync per group commit) and `normal` on an empty file,
  # and the default on a copy of the middle dataset (creates into a database that already
  # holds many links touch more pages, and checkpoints have more to write), in turns.
  for ((round = 1; round <= rounds; round++)); do
    order=(full normal stored)
    ((round % 2)) || order=(stored normal full)
    for variant in "${order[@]}"; do
      db=$run_dir/create-$round-$variant.db
      links=0 label=service sync=full
      case $variant in
        normal) sync=normal label="service (synchronous=normal)" ;;
        stored)
          cp -- "$data/$mid.db" "$db"
          if [[ -f $data/$mid.db-wal ]]; then cp -- "$data/$mid.db-wal" "$db-wal"; fi
          links=$mid_label label="service ($mid_label links stored)"
          ;;
      esac
      mapfile -t cmd < <(service "sqlite:$db" --sqlite-synchronous "$sync")
      measure create-sqlite service "$label" "$links" "$round" - 201 create -- "${cmd[@]}"
      rm -f "$db" "$db-wal" "$db-shm"
    done
  done
fi
if ((with_pg)) && wants create-pg; then
  log "scenario create-pg"
  for ((round = 1; round <= rounds; round++)); do
    psql_admin -c "DROP DATABASE IF EXISTS bench_create" -c "CREATE DATABASE bench_create"
    mapfile -t cmd < <(service "$(pg_db_url bench_create)")
    measure create-pg service service 0 "$round" - 201 create -- "${cmd[@]}"
  done
  psql_admin -c "DROP DATABASE IF EXISTS bench_create"
fi
# pair_flush_off SCENARIO LINKS: the service as `a_*` describes it against itself with the
# click flush put off for the run: the cost of counting (an atomic add per redirect) and of
# writing the counts every second. Put off (also the early flush of a long list, which would
# otherwise run every 2 s or so over the Zipf mix), the flush leaves every clicked link listed,
# and in memory, so that server's peak RSS grows with the links clicked (about 300 against
# 64 MiB over 70 s of the 1M Zipf mix).
pair_flush_off() {
  b_label="service (click flush off)" b_probe=$a_probe b_wrk=("${a_wrk[@]}")
  b_cmd=("${a_cmd[@]}" --click-flush-interval 1h --click-flush-bytes 0)
  pair "$@"
}
if wants clicks-hot; then
  service_hot
  pair_flush_off clicks-hot 10k
fi
if wants clicks-zipf; then
  service_zipf
  pair_flush_off clicks-zipf "$mid_label" "$zipf_duration"
fi
if [[ -n $big ]]; then
  mapfile -t svc_big < <(service "sqlite:$data/$big.db")
  if wants scale-hot; then
    # The same 10k hot codes in both databases (the generator's first 10k codes).
    a_label="service 10M" a_probe=$small_probe a_wrk=(uniform "$data/$small.codes")
    a_cmd=("${svc_big[@]}")
    b_label="service 10k" b_probe=$small_probe b_wrk=("${a_wrk[@]}") b_cmd=("${svc_small[@]}")
    pair scale-hot "10M vs 10k"
  fi
  if wants scale-cold; then
    # Uniform over each database's own codes (a 1M sample of the 10M).
    a_label="service 10M (no cache)" a_probe=/$(first_code "$big") a_wrk=(uniform "$data/$big.codes")
    a_cmd=("${svc_big[@]}" --cache-size 0)
    b_label="service 10k (no cache)" b_probe=$small_probe b_wrk=(uniform "$data/$small.codes")
    b_cmd=("${svc_small[@]}" --cache-size 0)
    pair scale-cold "10M vs 10k"
  fi
fi

echo
echo "shortener benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, server on CPU $server_cpu, wrk on CPU $load_cpu"
echo "rounds $rounds x ${duration}s, zipf and clicks-zipf ${zipf_duration}s (warm-up ${warmup}s discarded), wrk -t1 -c$connections; medians over rounds"
echo
python3 scripts/bench/report.py "$results"
echo
echo "raw results and logs: $run_dir"
