#!/usr/bin/env bash
# run.sh: install, upgrade or run the shortener service on one host.
#
#   sudo scripts/run.sh [OPTIONS]            install or upgrade the systemd service
#   scripts/run.sh --foreground [OPTIONS]    run it in this terminal, no systemd, no root
#
# `scripts/run.sh --help` explains every option and environment variable.
set -euo pipefail

readonly SERVICE=shortener
readonly INSTALL_BIN=/usr/local/bin/shortener
readonly DATA_DIR=/var/lib/shortener
readonly DEFAULT_ENV_FILE=/etc/shortener/shortener.env
readonly UNIT_PATH=/etc/systemd/system/shortener.service
readonly DEFAULT_DATABASE_URL="sqlite://${DATA_DIR}/shortener.db"
readonly DEFAULT_LISTEN=127.0.0.1:8080
readonly DEFAULT_METRICS_LISTEN=127.0.0.1:9090
# Seconds added to drain delay + shutdown timeout for TimeoutStopSec, and its lowest value.
readonly STOP_MARGIN_SECS=15
readonly STOP_FLOOR_SECS=30

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
readonly SCRIPT_DIR
readonly PACKAGE_ROOT="${SCRIPT_DIR%/*}"

usage() {
	cat <<EOF
Usage:
  sudo scripts/run.sh [OPTIONS]             install or upgrade the shortener service (systemd)
  scripts/run.sh --foreground [OPTIONS]     run the service in this terminal (no systemd, no root)

Installing (as root) puts the binary at ${INSTALL_BIN}, creates the system user
'${SERVICE}', the data directory ${DATA_DIR} (SQLite lives here), the environment file
${DEFAULT_ENV_FILE} (0640 root:${SERVICE}) and the unit ${UNIT_PATH}, then
(re)starts the service and waits until /readyz answers. Re-running it upgrades in place:
new binary, restart, data and settings kept unless given again.

Options:
  --binary PATH|URL     The shortener binary to install or run. An https:// URL is
                        downloaded with curl; a .tar.gz (the release tarball) is unpacked
                        and its 'shortener' used. Env: SHORTENER_BINARY.
                        Without it: the 'shortener' next to scripts/ (release tarball),
                        else 'cargo build --release --locked' in this checkout, else the
                        binary already installed.
  --sha256 HEX          Refuse the binary (or downloaded file) unless its SHA-256 is HEX.
                        Env: SHORTENER_SHA256.
  --listen ADDR:PORT    Public HTTP listener. Default ${DEFAULT_LISTEN}; use 0.0.0.0:8080
                        behind a load balancer. Env: SHORTENER_LISTEN.
  --public-url URL      Base of the short links shown (e.g. https://sho.rt).
                        Env: SHORTENER_PUBLIC_URL.
  --metrics-listen ADDR:PORT|off
                        Prometheus listener (GET /metrics). Default ${DEFAULT_METRICS_LISTEN}.
                        Env: SHORTENER_METRICS_LISTEN.
  --database-url URL    Database. Default ${DEFAULT_DATABASE_URL}
                        or postgres://USER:PASSWORD@HOST:5432/DB?sslmode=verify-full&sslrootcert=CA.pem
                        (TLS, server verified against CA.pem). Prefer the DATABASE_URL
                        variable: a flag shows up in 'ps'.
  --env-file PATH       Environment file read and written. Default ${DEFAULT_ENV_FILE}.
  --foreground          Run the service in this terminal with the same configuration
                        (exec, so signals reach it directly). Needs no root. Without a
                        configured database it uses sqlite://shortener.db in the current
                        directory when ${DATA_DIR} is not writable.
  --ready-timeout SECS  How long to wait for /readyz after (re)starting. Default 60.
  --dry-run             Show what would be done (secrets masked) and change nothing.
  --print-unit          Print the systemd unit that would be installed and exit.
  -h, --help            Show this help.

Environment (sudo drops the caller's environment, so put variables after it:
sudo DATABASE_URL='postgres://...' SHORTENER_DRAIN_DELAY=10s scripts/run.sh):
  Service settings: DATABASE_URL, RUST_LOG and every SHORTENER_* variable (except the two
  below) are written to the environment file, overriding the values already there; an
  empty value removes the variable. run.sh itself also reads some of them:
    DATABASE_URL                  checked with 'shortener migrate' before anything changes
    SHORTENER_LISTEN              --listen; its port must be free; /readyz is probed there
    SHORTENER_METRICS_LISTEN      --metrics-listen; its port must be free
    SHORTENER_PUBLIC_URL          --public-url; printed at the end
    SHORTENER_DRAIN_DELAY         default 0s  } the unit's TimeoutStopSec is their sum
    SHORTENER_SHUTDOWN_TIMEOUT    default 30s } + ${STOP_MARGIN_SECS} s (at least ${STOP_FLOOR_SECS} s)
    SHORTENER_DB_CONNECT_TIMEOUT  how long migrate retries an unreachable database (30s)
    SHORTENER_HEADER_READ_TIMEOUT idle keep-alive limit (10s); behind a load balancer set it
                                  above the balancer's idle timeout (AWS ALB: 60s -> 65s)
  run.sh's own (not written to the environment file):
    SHORTENER_BINARY              --binary
    SHORTENER_SHA256              --sha256
    TMPDIR                        where downloads are unpacked (default /tmp)
    PATH                          finds cargo, curl, systemctl, setpriv, ss, ...
    CARGO_HOME, HOME              where cargo is looked for when it is not on PATH
                                  (also the checkout owner's ~/.cargo/bin)
    CARGO_TARGET_DIR              where 'cargo build' puts the binary (default target/)
  Secrets reach 'shortener migrate' and the service through their environment only, never
  a command line ('ps' shows every command line to every local user).

Ports: the defaults are unprivileged; binding a port below 1024 would need a capability
the unit does not grant. Behind a load balancer listen on 8080 and let it serve 80/443.

Logs: journalctl -u ${SERVICE} -f        Status: systemctl status ${SERVICE}
EOF
}

# --- output -------------------------------------------------------------------------------

info() { printf 'run.sh: %s\n' "$*" >&2; }
warn() { printf 'run.sh: warning: %s\n' "$*" >&2; }

# die MESSAGE [HINT...]: print what went wrong and what to do, then exit 1.
die() {
	printf 'run.sh: error: %s\n' "$1" >&2
	shift
	local hint
	for hint in "$@"; do
		printf '  %s\n' "$hint" >&2
	done
	exit 1
}

usage_error() {
	printf 'run.sh: %s\n' "$1" >&2
	printf "Try 'scripts/run.sh --help'.\n" >&2
	exit 2
}

# --- secrets ------------------------------------------------------------------------------

# Literal strings that must never be printed (passwords, tokens); filled by note_secrets.
SECRETS=()

is_secret_name() {
	[[ $1 =~ (PASS|SECRET|TOKEN|KEY|CREDENTIAL) ]]
}

# A URL with a password in its user info: scheme://user:PASSWORD@host.
readonly URL_PASSWORD_RE='^(.*://[^/:@[:space:]]*:)([^*@/[:space:]][^@/[:space:]]*)(@.*)$'
# A password= or sslpassword= query parameter.
readonly QUERY_PASSWORD_RE='^(.*[?&](ssl)?password=)([^&*][^&]*)(.*)$'

# mask_url URL: the URL with the password of its user info and any password= query
# parameter replaced by ****. Sets REPLY.
mask_url() {
	local url=$1 scheme rest authority tail userinfo
	REPLY=$url
	[[ $url == *://* ]] || return 0
	scheme=${url%%://*}
	rest=${url#*://}
	authority=${rest%%[/?#]*}
	tail=${rest:${#authority}}
	if [[ $authority == *@* ]]; then
		userinfo=${authority%@*}
		if [[ $userinfo == *:* ]]; then
			authority="${userinfo%%:*}:****@${authority##*@}"
		fi
	fi
	while [[ $tail =~ $QUERY_PASSWORD_RE ]]; do
		tail="${BASH_REMATCH[1]}****${BASH_REMATCH[4]}"
	done
	REPLY="${scheme}://${authority}${tail}"
}

# mask_value NAME VALUE: the value as it may be printed. Sets REPLY.
mask_value() {
	if is_secret_name "$1" && [[ -n $2 ]]; then
		REPLY='****'
	else
		mask_url "$2"
	fi
}

# note_secrets NAME VALUE: remember the secret parts of a setting so that mask_text can
# hide them in any output (for example an error message of `shortener migrate`).
note_secrets() {
	local name=$1 value=$2 rest authority userinfo password
	if is_secret_name "$name" && ((${#value} >= 4)); then
		SECRETS+=("$value")
	fi
	[[ $value == *://* ]] || return 0
	rest=${value#*://}
	authority=${rest%%[/?#]*}
	[[ $authority == *@* ]] || return 0
	userinfo=${authority%@*}
	[[ $userinfo == *:* ]] || return 0
	password=${userinfo#*:}
	if ((${#password} >= 4)); then
		SECRETS+=("$password")
		# The percent-decoded form, as a library may print it.
		local decoded=${password//\\/\\\\}
		printf -v decoded '%b' "${decoded//%/\\x}"
		[[ $decoded == "$password" ]] || SECRETS+=("$decoded")
	fi
}

# mask_text: copy stdin to stdout with every remembered secret and URL password masked.
mask_text() {
	local line secret
	while IFS= read -r line || [[ -n $line ]]; do
		for secret in ${SECRETS[@]+"${SECRETS[@]}"}; do
			line=${line//"$secret"/****}
		done
		# Any other URL with a password in it.
		while [[ $line =~ $URL_PASSWORD_RE ]]; do
			line="${BASH_REMATCH[1]}****${BASH_REMATCH[3]}"
		done
		printf '%s\n' "$line"
	done
}

# --- configuration ------------------------------------------------------------------------

declare -A CONF=()

# Variables that configure run.sh itself and are not written to the environment file.
is_own_variable() {
	[[ $1 == SHORTENER_BINARY || $1 == SHORTENER_SHA256 ]]
}

is_service_variable() {
	[[ $1 =~ ^(SHORTENER_[A-Z0-9_]+|DATABASE_URL|RUST_LOG)$ ]] && ! is_own_variable "$1"
}

# unquote_env_value RAW: the value of one environment-file line after '=', read the way
# systemd's EnvironmentFile= reads it (double quotes with \" \\ \$ \` escapes, single
# quotes verbatim, unquoted with trailing blanks removed). Sets REPLY.
unquote_env_value() {
	local raw=$1 out='' c i n quote=''
	raw=${raw#"${raw%%[![:space:]]*}"}
	n=${#raw}
	for ((i = 0; i < n; i++)); do
		c=${raw:i:1}
		if [[ $quote == '"' ]]; then
			if [[ $c == "\\" ]]; then
				i=$((i + 1))
				c=${raw:i:1}
				if [[ $c == '"' || $c == "\\" || $c == '$' || $c == '`' ]]; then
					out+=$c
				else
					out+="\\$c"
				fi
			elif [[ $c == '"' ]]; then
				quote=''
			else
				out+=$c
			fi
		elif [[ $quote == "'" ]]; then
			if [[ $c == "'" ]]; then quote=''; else out+=$c; fi
		elif [[ $c == '"' || $c == "'" ]]; then
			quote=$c
		elif [[ $c == "\\" ]]; then
			i=$((i + 1))
			out+=${raw:i:1}
		else
			out+=$c
		fi
	done
	if [[ -z $quote && $raw != *[\"\']* ]]; then
		out=${out%"${out##*[![:space:]]}"}
	fi
	REPLY=$out
}

# quote_env_value VALUE: VALUE in double quotes, escaped for systemd and for a shell alike.
quote_env_value() {
	local v=$1
	v=${v//\\/\\\\}
	v=${v//\"/\\\"}
	v=${v//\$/\\\$}
	v=${v//\`/\\\`}
	REPLY="\"$v\""
}

read_env_file() {
	local file=$1 line key lineno=0
	while IFS= read -r line || [[ -n $line ]]; do
		lineno=$((lineno + 1))
		line=${line#"${line%%[![:space:]]*}"}
		[[ -z $line || $line == '#'* || $line == ';'* ]] && continue
		line=${line#export }
		if [[ $line != *=* ]]; then
			warn "$file:$lineno: ignoring a line without '='"
			continue
		fi
		key=${line%%=*}
		key=${key%"${key##*[![:space:]]}"}
		if [[ ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
			warn "$file:$lineno: ignoring an invalid variable name"
			continue
		fi
		unquote_env_value "${line#*=}"
		CONF[$key]=$REPLY
	done <"$file"
}

# The settings in the order they are written: the main three first, then by name.
conf_keys() {
	local key
	for key in DATABASE_URL SHORTENER_LISTEN SHORTENER_PUBLIC_URL; do
		[[ -n ${CONF[$key]-} ]] && printf '%s\n' "$key"
	done
	for key in "${!CONF[@]}"; do
		case $key in
		DATABASE_URL | SHORTENER_LISTEN | SHORTENER_PUBLIC_URL) ;;
		*) [[ -n ${CONF[$key]} ]] && printf '%s\n' "$key" ;;
		esac
	done | sort
	return 0
}

# render_env_file: the environment file's content (with secrets!) on stdout.
render_env_file() {
	local key
	printf '# shortener service settings, read by systemd (EnvironmentFile=).\n'
	printf '# Written by scripts/run.sh: re-running it keeps these values unless given again.\n'
	while IFS= read -r key; do
		quote_env_value "${CONF[$key]}"
		printf '%s=%s\n' "$key" "$REPLY"
	done < <(conf_keys)
}

# print_settings: the settings as they may be shown, secrets masked.
print_settings() {
	local key
	while IFS= read -r key; do
		mask_value "$key" "${CONF[$key]}"
		quote_env_value "$REPLY"
		printf '    %s=%s\n' "$key" "$REPLY" >&2
	done < <(conf_keys)
}

# exec_with_settings COMMAND...: replace the current (sub)shell with COMMAND, whose
# environment holds only PATH, HOME (the run directory) and the settings. The settings are
# exported, never written as KEY=VALUE arguments: any local user can read every process's
# command line (ps, /proc/PID/cmdline), while its environment is private to its owner and
# root. Call it in a subshell.
exec_with_settings() {
	local name
	while IFS= read -r name; do
		unset -v "$name" 2>/dev/null || true
	done < <(compgen -e)
	export PATH=/usr/local/bin:/usr/bin:/bin HOME="$RUN_DIR"
	while IFS= read -r name; do
		export "$name=${CONF[$name]}"
	done < <(conf_keys)
	exec "$@"
}

# duration_secs TEXT: a humantime duration ("30s", "1m 30s", "500ms", "2min") in whole
# seconds, rounded up. Sets REPLY; returns 1 when TEXT is not a duration.
duration_secs() {
	local s=${1//[[:space:]]/} ms=0 num unit per
	[[ -n $s ]] || return 1
	while [[ -n $s ]]; do
		[[ $s =~ ^([0-9]{1,12})([A-Za-z]+)(.*)$ ]] || return 1
		num=$((10#${BASH_REMATCH[1]}))
		unit=${BASH_REMATCH[2]}
		s=${BASH_REMATCH[3]}
		case $unit in
		ns | nsec | nanos)
			ms=$((ms + (num + 999999) / 1000000))
			continue
			;;
		us | usec | micros)
			ms=$((ms + (num + 999) / 1000))
			continue
			;;
		ms | msec | millis) per=1 ;;
		s | sec | secs | second | seconds) per=1000 ;;
		m | min | mins | minute | minutes) per=60000 ;;
		h | hr | hrs | hour | hours) per=3600000 ;;
		d | day | days) per=86400000 ;;
		w | week | weeks) per=604800000 ;;
		M | month | months) per=2630016000 ;;
		y | year | years) per=31557600000 ;;
		*) return 1 ;;
		esac
		ms=$((ms + num * per))
	done
	REPLY=$(((ms + 999) / 1000))
}

# stop_timeout_secs: TimeoutStopSec for the current settings. Sets REPLY.
stop_timeout_secs() {
	local drain shutdown name
	for name in SHORTENER_DRAIN_DELAY SHORTENER_SHUTDOWN_TIMEOUT; do
		local value=${CONF[$name]-}
		if [[ -z $value && $name == SHORTENER_DRAIN_DELAY ]]; then
			value=0s
		elif [[ -z $value ]]; then
			value=30s
		fi
		duration_secs "$value" ||
			die "$name='$value' is not a duration" "Use a value like 10s, 1m or 1m 30s."
		if [[ $name == SHORTENER_DRAIN_DELAY ]]; then drain=$REPLY; else shutdown=$REPLY; fi
	done
	REPLY=$((drain + shutdown + STOP_MARGIN_SECS))
	((REPLY >= STOP_FLOOR_SECS)) || REPLY=$STOP_FLOOR_SECS
}

render_unit() {
	local template=$SCRIPT_DIR/shortener.service timeout
	[[ -r $template ]] || die "the unit template $template is missing" \
		"It ships beside run.sh (scripts/shortener.service); use a complete checkout or release tarball."
	stop_timeout_secs
	timeout=$REPLY
	local line
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line//@BINARY@/$INSTALL_BIN}
		line=${line//@ENV_FILE@/$ENV_FILE}
		line=${line//@TIMEOUT_STOP_SEC@/$timeout}
		printf '%s\n' "$line"
	done <"$template"
}

# split_listen ADDR: sets LISTEN_HOST and LISTEN_PORT, or dies.
split_listen() {
	local addr=$1 name=$2
	LISTEN_PORT=${addr##*:}
	LISTEN_HOST=${addr%:*}
	if [[ $addr != *:* || ! $LISTEN_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$LISTEN_PORT > 65535)) || [[ -z $LISTEN_HOST ]]; then
		die "$name='$addr' is not an IP:PORT address" "Use e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::]:8080."
	fi
	LISTEN_PORT=$((10#$LISTEN_PORT))
}

# --- ports --------------------------------------------------------------------------------

# port_listening PORT: true when a TCP socket listens on PORT (any address).
port_listening() {
	local hex table tables=()
	printf -v hex '%04X' "$1"
	for table in /proc/net/tcp /proc/net/tcp6; do
		[[ -r $table ]] && tables+=("$table")
	done
	((${#tables[@]} > 0)) || return 1
	# Fields: sl local_address rem_address st ...; st 0A is LISTEN.
	awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 }
		END { exit !found }' "${tables[@]}"
}

# port_owners PORT: the processes listening on PORT as NAME,pid=N lines (needs ss; only
# root sees other users' processes).
port_owners() {
	command -v ss >/dev/null 2>&1 || return 0
	ss -Hltnp "sport = :$1" 2>/dev/null | grep -o '("[^"]*",pid=[0-9]*' | tr -d '("' | sort -u || true
}

# check_port NAME ADDR: die when the port of ADDR is taken by something other than an
# already installed shortener service that is about to be restarted.
check_port() {
	local name=$1 addr=$2 owners owner main_pid
	split_listen "$addr" "$name"
	port_listening "$LISTEN_PORT" || return 0
	owners=$(port_owners "$LISTEN_PORT")
	if [[ $MODE == install ]] && systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
		# The installed service holds it and is about to be restarted: fine.
		main_pid=$(systemctl show --property=MainPID --value "$SERVICE" 2>/dev/null || true)
		if [[ -z $owners || $'\n'$owners$'\n' == *",pid=$main_pid"$'\n'* ]]; then
			return 0
		fi
	fi
	owner=$(printf '%s\n' "$owners" | paste -sd' ' -)
	local how='--listen ADDR:PORT'
	[[ $name == SHORTENER_METRICS_LISTEN ]] && how='--metrics-listen ADDR:PORT (or off)'
	die "port $LISTEN_PORT ($name=$addr) is already in use${owner:+ by $owner}" \
		"Stop what listens there (see: ss -ltnp 'sport = :$LISTEN_PORT') or choose another port" \
		"with $how."
}

check_ports() {
	check_port SHORTENER_LISTEN "${CONF[SHORTENER_LISTEN]}"
	local metrics=${CONF[SHORTENER_METRICS_LISTEN]-$DEFAULT_METRICS_LISTEN}
	case $metrics in
	'' | off | none) ;;
	*) check_port SHORTENER_METRICS_LISTEN "$metrics" ;;
	esac
}

# --- the binary ---------------------------------------------------------------------------

WORK_DIR=''
STAGED_BIN=''
ENV_TMP=''
UNIT_TMP=''
cleanup() {
	[[ -n $STAGED_BIN && -e $STAGED_BIN ]] && rm -f -- "$STAGED_BIN"
	[[ -n $ENV_TMP && -e $ENV_TMP ]] && rm -f -- "$ENV_TMP"
	[[ -n $UNIT_TMP && -e $UNIT_TMP ]] && rm -f -- "$UNIT_TMP"
	[[ -n $WORK_DIR && -d $WORK_DIR ]] && rm -rf -- "$WORK_DIR"
	return 0
}
trap cleanup EXIT

work_dir() {
	[[ -n $WORK_DIR ]] || WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/shortener-run.XXXXXX")
}

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum -- "$1" | cut -d' ' -f1
	else
		openssl dgst -sha256 -r -- "$1" | cut -d' ' -f1
	fi
}

verify_sha256() {
	local file=$1 want actual
	[[ -n $SHA256 ]] || return 0
	want=${SHA256,,}
	[[ $want =~ ^[0-9a-f]{64}$ ]] || die "--sha256 must be 64 hexadecimal characters"
	actual=$(sha256_of "$file")
	[[ $actual == "$want" ]] || die "SHA-256 mismatch for $BINARY: expected $want, got $actual" \
		"Refusing to use it. Check the URL and the published hash (dist/*.sha256)."
	info "SHA-256 verified: $actual"
}

# find_cargo: the cargo to build with, also when sudo dropped ~/.cargo/bin from PATH.
find_cargo() {
	local owner_home candidate
	if command -v cargo >/dev/null 2>&1; then
		command -v cargo
		return 0
	fi
	owner_home=$(getent passwd "$(stat -c %U -- "$PACKAGE_ROOT")" | cut -d: -f6) || owner_home=''
	for candidate in "${CARGO_HOME:-}/bin/cargo" "$owner_home/.cargo/bin/cargo" "${HOME:-}/.cargo/bin/cargo"; do
		if [[ $candidate == /* && -x $candidate ]]; then
			printf '%s\n' "$candidate"
			return 0
		fi
	done
	return 1
}

build_from_checkout() {
	local cargo=$1 owner
	local target_dir=${CARGO_TARGET_DIR:-$PACKAGE_ROOT/target}
	if [[ $DRY_RUN == 1 ]]; then
		info "would build: cargo build --release --locked (in $PACKAGE_ROOT)"
		BIN_SRC=$target_dir/release/shortener
		return 0
	fi
	owner=$(stat -c %U -- "$PACKAGE_ROOT")
	info "building the release binary: cargo build --release --locked (this takes a few minutes the first time)"
	if [[ $EUID -eq 0 && $owner != root ]]; then
		# Build as the owner of the checkout so target/ does not become root's.
		runuser -u "$owner" -- env PATH="${cargo%/*}:$PATH" \
			"$cargo" build --release --locked --manifest-path "$PACKAGE_ROOT/Cargo.toml" >&2 ||
			die "cargo build failed (see above)"
	else
		"$cargo" build --release --locked --manifest-path "$PACKAGE_ROOT/Cargo.toml" >&2 ||
			die "cargo build failed (see above)"
	fi
	BIN_SRC=$target_dir/release/shortener
}

download() {
	local url=$1 file
	[[ $url == https://* ]] || die "only https:// URLs are downloaded: $url"
	command -v curl >/dev/null 2>&1 || die "curl is needed to download $url" \
		"Install it (apt-get install curl / dnf install curl) or pass --binary PATH."
	work_dir
	file=$WORK_DIR/download
	info "downloading $url"
	curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
		--retry 3 --retry-delay 2 --connect-timeout 10 --max-time 600 \
		--output "$file" -- "$url" || die "download failed: $url" "Check the URL and this host's outbound HTTPS access."
	DOWNLOADED=$file
}

# resolve_binary: sets BIN_SRC to the binary to install or run.
resolve_binary() {
	local cargo src
	BIN_SRC=''
	if [[ -n $BINARY ]]; then
		if [[ $BINARY == *://* ]]; then
			download "$BINARY"
			src=$DOWNLOADED
		else
			[[ -f $BINARY ]] || die "no binary at $BINARY" "Pass the path of the shortener binary, or an https:// URL."
			src=$BINARY
		fi
		verify_sha256 "$src"
		if [[ $BINARY == *.tar.gz || $BINARY == *.tgz ]] || { [[ $src == "$DOWNLOADED" ]] && gzip -t -- "$src" 2>/dev/null; }; then
			work_dir
			mkdir -p "$WORK_DIR/unpacked"
			tar -xzf "$src" -C "$WORK_DIR/unpacked" || die "cannot unpack $BINARY"
			src=$(find "$WORK_DIR/unpacked" -maxdepth 2 -type f -name shortener | head -n 1)
			[[ -n $src ]] || die "$BINARY has no 'shortener' binary inside"
		fi
		BIN_SRC=$src
	elif [[ -f $PACKAGE_ROOT/shortener && -x $PACKAGE_ROOT/shortener ]]; then
		BIN_SRC=$PACKAGE_ROOT/shortener
		verify_sha256 "$BIN_SRC"
	elif [[ -f $PACKAGE_ROOT/Cargo.toml ]] && cargo=$(find_cargo); then
		build_from_checkout "$cargo"
		[[ $DRY_RUN == 1 ]] || verify_sha256 "$BIN_SRC"
	elif [[ -x $INSTALL_BIN ]]; then
		BIN_SRC=$INSTALL_BIN
		info "no new binary given: keeping $INSTALL_BIN"
		verify_sha256 "$BIN_SRC"
	elif [[ $MODE == foreground ]] && command -v shortener >/dev/null 2>&1; then
		BIN_SRC=$(command -v shortener)
		verify_sha256 "$BIN_SRC"
	else
		die "no shortener binary found" \
			"Pass --binary PATH or --binary https://.../shortener-VERSION-TARGET.tar.gz (with --sha256)," \
			"or install Rust (https://rustup.rs) so run.sh can build this checkout with cargo."
	fi
	[[ $DRY_RUN == 1 && ! -e $BIN_SRC ]] && return 0
	[[ -x $BIN_SRC ]] || chmod u+x -- "$BIN_SRC" 2>/dev/null || true
	if ! BIN_VERSION=$("$BIN_SRC" --version 2>&1); then
		die "$BIN_SRC does not run: $BIN_VERSION" \
			"Is it built for this machine ($(uname -m), glibc)? Use the release tarball for this target."
	fi
	info "binary: $BIN_SRC ($BIN_VERSION)"
}

# --- the database -------------------------------------------------------------------------

# migrate BINARY [AS_USER]: apply migrations with the settings; die with its (masked)
# error when the database cannot be reached.
migrate() {
	local bin=$1 as_user=${2:-} out rc=0
	local runner=()
	if [[ -n $as_user ]]; then
		runner=(setpriv --reuid="$as_user" --regid="$as_user" --init-groups)
	fi
	info "checking the database: shortener migrate (an unreachable database is retried for SHORTENER_DB_CONNECT_TIMEOUT, 30 s by default)"
	out=$(cd "$RUN_DIR" && umask 0077 &&
		exec_with_settings timeout 120 ${runner[@]+"${runner[@]}"} "$bin" migrate 2>&1) || rc=$?
	if ((rc != 0)); then
		printf '%s\n' "$out" | tail -n 20 | mask_text | sed 's/^/    /' >&2
		mask_url "${CONF[DATABASE_URL]}"
		die "the database is not usable: 'shortener migrate' failed (exit $rc) with DATABASE_URL=$REPLY" \
			"Check DATABASE_URL (host, port, user, password, database name, sslmode) and that this" \
			"host can reach the database (security groups, pg_hba.conf). For SQLite check that the" \
			"file's directory exists and is writable${as_user:+ by the user $as_user}." \
			${as_user:+"Nothing was changed: the running service (if any) keeps its binary and settings."}
	fi
}

# --- modes --------------------------------------------------------------------------------

load_config() {
	CONF=([DATABASE_URL]='' [SHORTENER_LISTEN]=$DEFAULT_LISTEN)
	if [[ -f $ENV_FILE ]]; then
		if [[ -r $ENV_FILE ]]; then
			read_env_file "$ENV_FILE"
			info "read settings from $ENV_FILE"
		elif [[ $MODE == foreground || $DRY_RUN == 1 || $PRINT_UNIT == 1 ]]; then
			warn "cannot read $ENV_FILE (run as root, or pass --env-file): using defaults and the environment"
		else
			die "cannot read $ENV_FILE"
		fi
	fi
	local name
	while IFS= read -r name; do
		is_service_variable "$name" && CONF[$name]=${!name}
	done < <(compgen -e)
	[[ -n $OPT_LISTEN ]] && CONF[SHORTENER_LISTEN]=$OPT_LISTEN
	[[ -n $OPT_PUBLIC_URL ]] && CONF[SHORTENER_PUBLIC_URL]=$OPT_PUBLIC_URL
	[[ -n $OPT_METRICS_LISTEN ]] && CONF[SHORTENER_METRICS_LISTEN]=$OPT_METRICS_LISTEN
	[[ -n $OPT_DATABASE_URL ]] && CONF[DATABASE_URL]=$OPT_DATABASE_URL
	[[ -n ${CONF[SHORTENER_LISTEN]} ]] || CONF[SHORTENER_LISTEN]=$DEFAULT_LISTEN
	if [[ -z ${CONF[DATABASE_URL]} ]]; then
		if [[ $MODE == foreground && ! -w $DATA_DIR ]]; then
			CONF[DATABASE_URL]=sqlite://shortener.db
			info "no DATABASE_URL set and $DATA_DIR is not writable: using sqlite://shortener.db in $(pwd)"
		else
			CONF[DATABASE_URL]=$DEFAULT_DATABASE_URL
		fi
	fi
	for name in "${!CONF[@]}"; do
		[[ ${CONF[$name]} != *$'\n'* ]] || die "$name contains a newline, which an environment file cannot hold"
		note_secrets "$name" "${CONF[$name]}"
	done
	split_listen "${CONF[SHORTENER_LISTEN]}" SHORTENER_LISTEN
	stop_timeout_secs
	STOP_TIMEOUT=$REPLY
}

run_foreground() {
	RUN_DIR=$(pwd)
	load_config
	check_ports
	resolve_binary
	if [[ $DRY_RUN == 1 ]]; then
		info "dry run: would run '$BIN_SRC serve' in $RUN_DIR with:"
		print_settings
		return 0
	fi
	migrate "$BIN_SRC"
	info "starting in the foreground with:"
	print_settings
	# Exported, not passed as arguments: nothing secret on the command line.
	local key
	while IFS= read -r key; do
		export "$key=${CONF[$key]}"
	done < <(conf_keys)
	exec "$BIN_SRC" serve
}

ensure_user() {
	if getent passwd "$SERVICE" >/dev/null; then
		return 0
	fi
	local nologin=/usr/sbin/nologin
	[[ -x $nologin ]] || nologin=/sbin/nologin
	[[ -x $nologin ]] || nologin=/bin/false
	info "creating the system user $SERVICE"
	useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
		--shell "$nologin" --comment "shortener service" "$SERVICE" ||
		die "could not create the user $SERVICE (useradd failed)"
}

wait_ready() {
	local deadline=$((SECONDS + READY_TIMEOUT))
	info "waiting up to ${READY_TIMEOUT}s for /readyz"
	while ((SECONDS < deadline)); do
		# The probe needs the listen address only: none of the settings (secrets included).
		if env -i PATH=/usr/bin:/bin "$INSTALL_BIN" healthcheck --listen "${CONF[SHORTENER_LISTEN]}" \
			--timeout 2s >/dev/null 2>&1; then
			return 0
		fi
		if systemctl is-failed --quiet "$SERVICE"; then
			break
		fi
		sleep 1
	done
	systemctl --no-pager --lines=0 status "$SERVICE" >&2 || true
	journalctl --no-pager -u "$SERVICE" -n 30 2>/dev/null | mask_text >&2 || true
	die "the service did not become ready within ${READY_TIMEOUT}s" \
		"See the log above and: journalctl -u $SERVICE -e" \
		"Settings are in $ENV_FILE; fix them and re-run run.sh."
}

run_install() {
	if [[ $DRY_RUN != 1 ]]; then
		[[ $EUID -eq 0 ]] || die "installing the service must be run as root" \
			"Use: sudo scripts/run.sh ...   or run it without installing: scripts/run.sh --foreground"
		[[ -d /run/systemd/system ]] || die "systemd is not running on this host (a container?)" \
			"Use: scripts/run.sh --foreground   (or the Docker image)"
		local tool
		for tool in useradd systemctl install setpriv timeout; do
			command -v "$tool" >/dev/null 2>&1 || die "'$tool' is missing on this host" "Install it with the package manager, then re-run."
		done
	fi
	RUN_DIR=$DATA_DIR
	load_config
	check_ports
	resolve_binary

	if [[ $DRY_RUN == 1 ]]; then
		info "dry run: nothing is changed. Would:"
		info "  install $BIN_SRC as $INSTALL_BIN"
		info "  create the user $SERVICE and $DATA_DIR (0750), run 'shortener migrate' as $SERVICE"
		info "  write $ENV_FILE (0640 root:$SERVICE):"
		print_settings
		info "  install $UNIT_PATH (TimeoutStopSec=$STOP_TIMEOUT), enable and (re)start $SERVICE"
		return 0
	fi

	ensure_user
	install -d -m 0750 -o "$SERVICE" -g "$SERVICE" "$DATA_DIR"
	chown "$SERVICE:$SERVICE" "$DATA_DIR"
	chmod 0750 "$DATA_DIR"
	local env_dir=${ENV_FILE%/*}
	[[ -d $env_dir ]] || install -d -m 0750 -o root -g "$SERVICE" "$env_dir"

	# Stage the new binary next to the old one and check the database with it before
	# anything is replaced: a failure leaves the running service as it was.
	if [[ $BIN_SRC != "$INSTALL_BIN" ]]; then
		STAGED_BIN=$(mktemp "${INSTALL_BIN%/*}/.shortener.new.XXXXXX")
		install -m 0755 -o root -g root -- "$BIN_SRC" "$STAGED_BIN"
		migrate "$STAGED_BIN" "$SERVICE"
	else
		migrate "$INSTALL_BIN" "$SERVICE"
	fi

	ENV_TMP=$(mktemp "$env_dir/.shortener.env.XXXXXX")
	chmod 0640 "$ENV_TMP"
	chown "root:$SERVICE" "$ENV_TMP"
	render_env_file >"$ENV_TMP"
	mv -f -- "$ENV_TMP" "$ENV_FILE"
	ENV_TMP=''
	info "wrote $ENV_FILE:"
	print_settings

	if [[ -n $STAGED_BIN ]]; then
		mv -f -- "$STAGED_BIN" "$INSTALL_BIN"
		STAGED_BIN=''
		info "installed $INSTALL_BIN"
	fi

	UNIT_TMP=$(mktemp "${UNIT_PATH%/*}/.shortener.service.XXXXXX")
	render_unit >"$UNIT_TMP"
	chmod 0644 "$UNIT_TMP"
	mv -f -- "$UNIT_TMP" "$UNIT_PATH"
	UNIT_TMP=''
	info "installed $UNIT_PATH (TimeoutStopSec=$STOP_TIMEOUT)"

	systemctl daemon-reload
	systemctl enable --quiet "$SERVICE"
	info "restarting $SERVICE"
	systemctl restart "$SERVICE" || true
	wait_ready

	split_listen "${CONF[SHORTENER_LISTEN]}" SHORTENER_LISTEN
	local url="http://${LISTEN_HOST}:${LISTEN_PORT}/"
	case $LISTEN_HOST in
	0.0.0.0) url="http://127.0.0.1:${LISTEN_PORT}/ (listening on all IPv4 addresses)" ;;
	'[::]') url="http://[::1]:${LISTEN_PORT}/ (listening on all addresses)" ;;
	esac
	printf 'shortener is running: %s\n' "$url"
	[[ -n ${CONF[SHORTENER_PUBLIC_URL]-} ]] && printf 'public URL: %s\n' "${CONF[SHORTENER_PUBLIC_URL]}"
	printf 'logs: journalctl -u %s -f    status: systemctl status %s\n' "$SERVICE" "$SERVICE"
}

# --- main ---------------------------------------------------------------------------------

MODE=install
DRY_RUN=0
PRINT_UNIT=0
BINARY=${SHORTENER_BINARY:-}
SHA256=${SHORTENER_SHA256:-}
ENV_FILE=$DEFAULT_ENV_FILE
READY_TIMEOUT=60
OPT_LISTEN=''
OPT_PUBLIC_URL=''
OPT_METRICS_LISTEN=''
OPT_DATABASE_URL=''
DOWNLOADED=''
BIN_SRC=''
BIN_VERSION=''
RUN_DIR=''
STOP_TIMEOUT=''
LISTEN_HOST=''
LISTEN_PORT=''

# need_value OPTION VALUE: fail unless the option has a value.
need_value() {
	[[ $# -ge 2 && -n $2 ]] || usage_error "option $1 needs a value"
}

while (($# > 0)); do
	arg=$1
	value=''
	if [[ $arg == --*=* ]]; then
		value=${arg#*=}
		arg=${arg%%=*}
		set -- "$arg" "$value" "${@:2}"
	fi
	case $arg in
	-h | --help)
		usage
		exit 0
		;;
	--foreground) MODE=foreground ;;
	--dry-run) DRY_RUN=1 ;;
	--print-unit) PRINT_UNIT=1 ;;
	--binary | --sha256 | --listen | --public-url | --metrics-listen | --database-url | --env-file | --ready-timeout)
		need_value "$@"
		case $arg in
		--binary) BINARY=$2 ;;
		--sha256) SHA256=$2 ;;
		--listen) OPT_LISTEN=$2 ;;
		--public-url) OPT_PUBLIC_URL=$2 ;;
		--metrics-listen) OPT_METRICS_LISTEN=$2 ;;
		--database-url) OPT_DATABASE_URL=$2 ;;
		--env-file) ENV_FILE=$2 ;;
		--ready-timeout)
			[[ $2 =~ ^[0-9]+$ ]] || usage_error "--ready-timeout needs a number of seconds"
			READY_TIMEOUT=$2
			;;
		esac
		shift
		;;
	*) usage_error "unknown option: $arg" ;;
	esac
	shift
done

if [[ $PRINT_UNIT == 1 ]]; then
	RUN_DIR=$(pwd)
	load_config
	render_unit
	exit 0
fi

if [[ $MODE == foreground ]]; then
	run_foreground
else
	run_install
fi
