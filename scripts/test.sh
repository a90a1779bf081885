#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and integration tests on SQLite
# and on a throwaway Postgres server, then the deployment and Terraform checks.
#
# Usage: scripts/test.sh
# Installs what it needs that a fresh machine lacks; starts and stops its own servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/shortener-test.XXXXXX")
chmod 0755 "$work"
cleanup() {
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

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --all-targets --locked -- -D warnings

step "throwaway Postgres"
SHORTENER_TEST_POSTGRES_URL=$(scripts/pg-temp.sh start "$work/pg")
export SHORTENER_TEST_POSTGRES_URL
echo "Postgres at ${SHORTENER_TEST_POSTGRES_URL}"

step "tests"
cargo test --locked

for check in scripts/check-api.sh scripts/check-deploy.sh scripts/check-terraform.sh; do
  if [[ -x $check ]]; then
    step "$check"
    "$check"
  fi
done

step "all tests passed"
