#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests on SQLite
# and on a throwaway Postgres server (faults, soak and a real browser included), the API
# checked against its OpenAPI document, the deployment and Terraform checks, a bounded fuzzing
# run and the quick benchmark.
#
# Usage: scripts/test.sh
# Installs what it needs that a fresh machine lacks; starts and stops its own servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/shortener-test.XXXXXX")
chmod 0755 "$work"
terraform_pid=
cleanup() {
  if [[ -n $terraform_pid ]] && kill -0 "$terraform_pid" 2>/dev/null; then
    # Its own process group: stop terraform and the local AWS endpoint with it.
    kill -- -"$terraform_pid" 2>/dev/null || true
    wait "$terraform_pid" 2>/dev/null || true
  fi
  if [[ -d ${SHORTENER_SCREENSHOTS:-} ]]; then
    echo "browser screenshots: ${SHORTENER_SCREENSHOTS}"
  fi
  scripts/pg-temp.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT

step "tools"
# nginx balances the multi-instance tests (Debian's policy-rc.d keeps it from starting here),
# chromium + chromedriver drive the browser test, promtool checks the metrics text, wrk drives
# the quick benchmark.
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v chromedriver >/dev/null || missing+=(chromium chromium-driver)
command -v promtool >/dev/null || missing+=(prometheus)
command -v wrk >/dev/null || missing+=(wrk)
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Everything the tests need is installed above, so none of them may skip.
export CI=${CI:-true}
# The browser test saves a screenshot of every page it visits here.
SHORTENER_SCREENSHOTS=$PWD/target/screenshots
export SHORTENER_SCREENSHOTS

# The Terraform checks need nothing that cargo builds and spend most of their time waiting on
# a local AWS endpoint: run them beside everything else, and report them at the end.
step "scripts/check-terraform.sh (in the background, reported at the end)"
setsid scripts/check-terraform.sh >"$work/terraform.log" 2>&1 &
terraform_pid=$!

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --all-targets --locked -- -D warnings

step "API docs (broken or private links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked

step "throwaway Postgres"
SHORTENER_TEST_POSTGRES_URL=$(scripts/pg-temp.sh start "$work/pg")
export SHORTENER_TEST_POSTGRES_URL
echo "Postgres at ${SHORTENER_TEST_POSTGRES_URL}"

step "tests"
cargo test --locked

step "scripts/check-api.sh"
scripts/check-api.sh

step "scripts/check-deploy.sh"
scripts/check-deploy.sh

step "scripts/fuzz.sh (bounded)"
# No sanitizer in CI: the crate forbids unsafe code, and it builds in half the time.
FUZZ_SANITIZER=none scripts/fuzz.sh 60

step "scripts/bench.sh --quick --profile dev (keeps the benchmark working; figures not judged)"
scripts/bench.sh --quick --profile dev

step "scripts/check-terraform.sh"
if wait "$terraform_pid"; then
  cat "$work/terraform.log"
else
  cat "$work/terraform.log"
  echo "scripts/check-terraform.sh failed" >&2
  exit 1
fi

step "all tests passed"
