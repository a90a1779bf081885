#!/usr/bin/env bash
# Fuzzes the parsers of short codes, aliases and target URLs (fuzz/fuzz_targets/) for a bounded
# time, as CI runs it.
#
# Usage: scripts/fuzz.sh [SECONDS]   run every fuzz target for SECONDS each (default 60)
#        scripts/fuzz.sh --help
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none. `none` runs about twice as many inputs per
#                   second and builds faster, but no longer catches memory errors in the unsafe
#                   code of dependencies. Switching rebuilds everything in fuzz/target.
#   FUZZ_RSS_MB     memory limit of the fuzzer process, in MiB (default 2048).
#
# Installs cargo-fuzz when it is missing (about a minute and a half). The first build compiles
# the whole service with fuzzing instrumentation (3 to 5 minutes on 2 cores); later runs reuse
# fuzz/target, which is kept apart from the main build's target/ so neither invalidates the
# other. Inputs that found new code paths are kept in fuzz/corpus/ (not committed; cache it in
# CI to start each run where the last one stopped); fuzz/seeds/ holds a few committed examples.
# fuzz/Cargo.lock is committed, started from the service's own lock so the fuzzer tests the
# versions that ship; cargo-fuzz has no --locked, so cargo adds entries to it when the service
# gains a dependency: commit that change.
#
# Exits non-zero when an input makes a target panic, fail an assertion, time out or run out of
# memory; the input is then in fuzz/artifacts/TARGET/ and is printed at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
esac
if (($# > 1)); then
  usage >&2
  exit 2
fi
seconds=${1:-60}
if [[ ! $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a positive whole number, not '$seconds'" >&2
  exit 2
fi
sanitizer=${FUZZ_SANITIZER:-address}
rss_mb=${FUZZ_RSS_MB:-2048}

step() { printf '\n==> %s\n' "$*"; }

step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  started=$(date +%s)
  # --locked: build it with the dependency versions its release was tested with.
  cargo install cargo-fuzz --locked
  echo "cargo-fuzz installed in $(($(date +%s) - started)) s"
fi
cargo fuzz --version

# With a sanitizer, cargo-fuzz passes rustc the nightly-only -Zsanitizer=...; CI has only a
# stable toolchain, and RUSTC_BOOTSTRAP=1 makes it accept the flag. The address sanitizer
# then builds and links with the runtime that comes with the toolchain, so it stays on: this
# crate forbids unsafe code, but its dependencies (url, idna, http) have some, and a memory
# error there would otherwise go unnoticed. The coverage flags cargo-fuzz always adds are
# stable, so with FUZZ_SANITIZER=none the variable changes nothing.
export RUSTC_BOOTSTRAP=1

mapfile -t targets < <(cargo fuzz list)
if ((${#targets[@]} == 0)); then
  echo "fuzz.sh: no fuzz targets in fuzz/fuzz_targets/" >&2
  exit 1
fi

step "build (${targets[*]}, sanitizer: $sanitizer)"
started=$(date +%s)
cargo fuzz build --sanitizer "$sanitizer"
echo "built in $(($(date +%s) - started)) s"

log=$(mktemp "${TMPDIR:-/tmp}/shortener-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT

crashes=()
failed=()
panics=()
for target in "${targets[@]}"; do
  step "fuzz $target for ${seconds} s"
  corpus=(fuzz/corpus/"$target")
  mkdir -p "${corpus[0]}"
  # Seeds are read, never written: libFuzzer adds new inputs to the first directory only.
  if [[ -d fuzz/seeds/$target ]]; then
    corpus+=(fuzz/seeds/"$target")
  fi
  # One job (the default, stated so it stays so): CI machines are small and a second job would
  # only halve the time of each. -timeout: an input that takes seconds is a hang worth failing
  # on. -max_len: past twice the default URL length limit (2048), so over-long URLs are tried.
  if cargo fuzz run --sanitizer "$sanitizer" --jobs 1 "$target" "${corpus[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=10 -max_len=4096 \
    -print_final_stats=1 2>&1 | tee "$log"; then
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    echo "$target: no crash; ${rate:-?} executions per second"
  else
    failed+=("$target")
    # The panic message, if it was one (not a timeout or out-of-memory), for the summary.
    panics+=("$(sed -n '/panicked at/,/^stack backtrace:$/p' "$log" | sed '/^stack backtrace:$/d')")
    # libFuzzer names the file it saved the failing input to (crash-, timeout-, oom-...).
    mapfile -t -O "${#crashes[@]}" crashes < <(sed -n "s/.*Test unit written to \(.*\)$/$target \1/p" "$log")
  fi
done

if ((${#failed[@]} == 0)); then
  step "no crash found"
  exit 0
fi

step "failed: ${failed[*]}"
for i in "${!failed[@]}"; do
  printf '\n%s: %s\n' "${failed[i]}" "${panics[i]:-no panic message (timeout, out of memory or setup error)}"
done
for crash in "${crashes[@]}"; do
  target=${crash%% *}
  artifact=${crash#* }
  printf '\nInput that failed %s, saved as %s\n' "$target" "$artifact"
  # As the target sees it (a `&str` target prints a Rust string literal), then its exact
  # bytes. Reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET ARTIFACT
  cargo fuzz fmt --sanitizer "$sanitizer" "$target" "$artifact" 2>&1 || true
  od -A d -c "$artifact" | head -n 40
done
if ((${#crashes[@]} == 0)); then
  echo "no input was saved: the fuzzer itself failed (see its output above)"
fi
exit 1
