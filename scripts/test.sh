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
  scripts/pg-temp.sh stop "$work/pg" || true
  rm -rf "$work"
}
trap cleanup EXIT

step "tools"
# nginx balances the multi-instance tests; Debian's policy-rc.d keeps it from starting here.
if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi

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
