#!/usr/bin/env bash
# package.sh: build the release tarball that a host installs with scripts/run.sh.
#
#   scripts/package.sh [--target TRIPLE] [--binary PATH] [--out-dir DIR]
#
# Writes DIR/shortener-VERSION-TARGET.tar.gz (default DIR: dist/) holding
#   shortener                   the release binary
#   scripts/run.sh              the installer
#   scripts/shortener.service   the systemd unit template run.sh installs
# plus DIR/shortener-VERSION-TARGET.tar.gz.sha256, and prints the SHA-256. Upload the
# tarball and give its URL and hash to Terraform (artifact_url, artifact_sha256). A host
# installs it with:  tar -xzf shortener-*.tar.gz && sudo ./scripts/run.sh --binary ./shortener
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: scripts/package.sh [OPTIONS]

Builds the release binary (cargo build --release --locked) and writes
dist/shortener-VERSION-TARGET.tar.gz with the binary, scripts/run.sh and
scripts/shortener.service, plus a .sha256 file, and prints the SHA-256.

Options:
  --target TRIPLE   Build for this Rust target (default: the host, e.g.
                    x86_64-unknown-linux-gnu). The target must be installed.
  --binary PATH     Package this already built binary instead of building one
                    (its target is taken from --target, default the host).
  --out-dir DIR     Where to write the tarball (default: dist/).
  -h, --help        Show this help.

SOURCE_DATE_EPOCH, when set, fixes the timestamps in the tarball (default: the
last commit's time), so the same binary gives the same hash.
EOF
}

die() {
	printf 'package.sh: error: %s\n' "$1" >&2
	exit 1
}

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
TARGET=''
BINARY=''
OUT_DIR=$ROOT/dist

while (($# > 0)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--target | --binary | --out-dir)
		[[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value"
		case $1 in
		--target) TARGET=$2 ;;
		--binary) BINARY=$2 ;;
		--out-dir) OUT_DIR=$2 ;;
		esac
		shift 2
		;;
	*)
		printf 'package.sh: unknown option: %s\n' "$1" >&2
		usage >&2
		exit 2
		;;
	esac
done

command -v cargo >/dev/null 2>&1 || die "cargo is needed (install Rust: https://rustup.rs)"
cd "$ROOT"

# `cargo pkgid` prints e.g. path+file:///src/shortener#0.1.0 (or ...#shortener@0.1.0).
version=$(cargo pkgid --offline 2>/dev/null || cargo pkgid)
version=${version##*[#@]}
[[ $version =~ ^[0-9A-Za-z.+-]+$ ]] || die "cannot read the package version (got '$version')"

if [[ -z $TARGET ]]; then
	TARGET=$(rustc -vV | sed -n 's/^host: //p')
	[[ -n $TARGET ]] || die "cannot tell the host target from 'rustc -vV'"
	target_args=()
	built=${CARGO_TARGET_DIR:-$ROOT/target}/release/shortener
else
	target_args=(--target "$TARGET")
	built=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/shortener
fi

if [[ -n $BINARY ]]; then
	[[ -f $BINARY && -x $BINARY ]] || die "no executable binary at $BINARY"
	built=$BINARY
else
	printf 'package.sh: cargo build --release --locked %s\n' "${target_args[*]}" >&2
	cargo build --release --locked "${target_args[@]}"
fi
[[ -x $built ]] || die "the build left no binary at $built"
for f in scripts/run.sh scripts/shortener.service; do
	[[ -f $f ]] || die "$f is missing"
done

name=shortener-$version-$TARGET
stage=$(mktemp -d "${TMPDIR:-/tmp}/shortener-package.XXXXXX")
trap 'rm -rf -- "$stage"' EXIT
mkdir -p "$stage/scripts"
install -m 0755 "$built" "$stage/shortener"
install -m 0755 scripts/run.sh "$stage/scripts/run.sh"
install -m 0644 scripts/shortener.service "$stage/scripts/shortener.service"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
mkdir -p "$OUT_DIR"
tarball=$OUT_DIR/$name.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
	-C "$stage" -cf - shortener scripts/run.sh scripts/shortener.service |
	gzip -9 -n >"$tarball.tmp"
mv -f -- "$tarball.tmp" "$tarball"

sha=$(sha256sum -- "$tarball" | cut -d' ' -f1)
printf '%s  %s\n' "$sha" "$name.tar.gz" >"$tarball.sha256"
printf 'package.sh: wrote %s\n' "$tarball" >&2
printf 'artifact_sha256 = "%s"\n' "$sha"
