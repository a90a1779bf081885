#!/usr/bin/env bash
# check-terraform.sh: every check of the Terraform stack in terraform/.
#
#   scripts/check-terraform.sh            run all checks (about 4-6 minutes)
#
# Steps:
#   1. fmt        terraform fmt -check -recursive
#   2. validate   offline init from the local provider mirror (lock file read-only), validate
#   3. test       terraform test: secure defaults and variable validation, mocked provider
#   4. checkov    static security scan, zero failed checks (skips in terraform/.checkov.yaml)
#   5. user-data  render the boot script, shellcheck it, and run it against stubs
#   6. moto       apply and destroy the whole stack against moto (AWS emulated on loopback)
#
# Needs terraform on PATH and a filesystem mirror of the hashicorp/aws provider
# (TF_PLUGIN_DIR, or a `tf-plugins` folder found at most two levels below /).
# Installs what else it needs: shellcheck with apt-get when missing, checkov and
# moto into a virtualenv under ${XDG_CACHE_HOME:-~/.cache}/shortener/venv (reused).
# Nothing is written to the source tree: Terraform's data directory, states and
# copies live in a temporary directory that is removed on exit.
set -euo pipefail

readonly CHECKOV_VERSION=3.3.30
readonly MOTO_VERSION=5.2.5

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
readonly ROOT
readonly TF_DIR="$ROOT/terraform"
readonly VENV="${XDG_CACHE_HOME:-$HOME/.cache}/shortener/venv"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shortener-tf.XXXXXX")
readonly WORK

# moto is started by step 6 in a subshell; its PID is kept in a file so that this
# trap can stop it whatever way the script ends.
readonly MOTO_PID_FILE="$WORK/moto.pid"

# stop_moto: stop the moto server started by step 6, if it still runs.
stop_moto() {
  local pid
  [[ -s $MOTO_PID_FILE ]] || return 0
  pid=$(<"$MOTO_PID_FILE")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  : >"$MOTO_PID_FILE"
  return 0
}

cleanup() {
  stop_moto
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*"; }
die() {
  printf 'check-terraform: error: %s\n' "$*" >&2
  exit 1
}

# --- tools ------------------------------------------------------------------------

# python_tools_ok: true when the virtualenv has the pinned checkov and moto (with
# its server extras) and boto3.
python_tools_ok() {
  "$VENV/bin/python" - "$CHECKOV_VERSION" "$MOTO_VERSION" >/dev/null 2>&1 <<'EOF'
import importlib.metadata as m
import sys
assert m.version("checkov") == sys.argv[1]
assert m.version("moto") == sys.argv[2]
import boto3, flask, flask_cors  # noqa: F401  (moto[server] and the inspection)
EOF
}

setup_tools() {
  command -v terraform >/dev/null 2>&1 || die "terraform is not on PATH"
  command -v python3 >/dev/null 2>&1 || die "python3 is not on PATH"

  if ! command -v shellcheck >/dev/null 2>&1; then
    [[ $EUID -eq 0 ]] || die "shellcheck is missing (install it: apt-get install shellcheck)"
    say "installing shellcheck (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  fi

  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    say "creating the virtualenv $VENV"
    rm -rf "$VENV"
    mkdir -p "${VENV%/*}"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      [[ $EUID -eq 0 ]] || die "python3 -m venv failed (install python3-venv)"
      rm -rf "$VENV"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    fi
  fi
  if ! python_tools_ok; then
    say "installing checkov $CHECKOV_VERSION and moto $MOTO_VERSION into $VENV"
    local pkgs=("checkov==$CHECKOV_VERSION" "moto[server]==$MOTO_VERSION" boto3)
    # uv resolves and installs this set in seconds where pip takes minutes; pip
    # remains the fallback.
    if ! { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv &&
      "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" "${pkgs[@]}"; }; then
      say "uv did not work; installing with pip (a minute or two)"
      "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}"
    fi
    python_tools_ok || die "checkov $CHECKOV_VERSION / moto $MOTO_VERSION are still not importable from $VENV"
  fi

  # Offline provider mirror.
  PLUGIN_DIR=${TF_PLUGIN_DIR:-}
  if [[ -z $PLUGIN_DIR ]]; then
    PLUGIN_DIR=$(find / -maxdepth 2 -type d -name tf-plugins -print -quit 2>/dev/null || true)
  fi
  [[ -n $PLUGIN_DIR && -d $PLUGIN_DIR ]] ||
    die "no Terraform provider mirror: set TF_PLUGIN_DIR to a folder holding registry.terraform.io/hashicorp/aws"
  readonly PLUGIN_DIR

  # Terraform: no user CLI config, no update checks, data outside the tree.
  : >"$WORK/terraformrc"
  export TF_CLI_CONFIG_FILE="$WORK/terraformrc"
  export CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
  export TF_DATA_DIR="$WORK/tf-data"
  unset TF_WORKSPACE TF_CLI_ARGS
}

# --- steps ------------------------------------------------------------------------

step_fmt() {
  terraform fmt -check -recursive -diff "$TF_DIR"
}

step_validate() {
  cd "$TF_DIR"
  terraform init -backend=false -input=false -no-color -plugin-dir="$PLUGIN_DIR" -lockfile=readonly >"$WORK/init.log" 2>&1 ||
    {
      cat "$WORK/init.log"
      return 1
    }
  terraform validate -no-color
}

step_test() {
  cd "$TF_DIR"
  [[ -d $TF_DATA_DIR/providers ]] || die "terraform init did not run (see the validate step)"
  terraform test -no-color
}

step_checkov() {
  local report="$WORK/checkov.json"
  timeout 300 "$VENV/bin/checkov" --directory "$TF_DIR" --config-file "$TF_DIR/.checkov.yaml" \
    --framework terraform --skip-download --compact --quiet \
    --output cli --output json --output-file-path "console,$report"
  # Zero failures only count when every file was parsed and resources were seen.
  python3 - "$report" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))["summary"]
print("checkov: %(passed)d passed, %(failed)d failed, %(parsing_errors)d parsing errors, %(resource_count)d resources" % summary)
sys.exit(0 if summary["parsing_errors"] == 0 and summary["resource_count"] > 0 and summary["failed"] == 0 else 1)
EOF
}

# render_user_data SHA256 OUT: the boot script as Terraform renders it, with
# sample values for what the stack would pass.
render_user_data() {
  local sha=$1 out=$2 dir="$WORK/render"
  mkdir -p "$dir"
  cat >"$dir/main.tf" <<'EOF'
variable "template" { type = string }
variable "artifact_sha256" { type = string }

output "user_data" {
  value = templatefile(var.template, {
    artifact_url             = "https://releases.example.com/shortener-1.0.0-x86_64-unknown-linux-gnu.tar.gz"
    artifact_sha256          = var.artifact_sha256
    region                   = "us-east-1"
    db_secret_arn            = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-0123-AbCdEf"
    db_host                  = "shortener-db.abcdefghijkl.us-east-1.rds.amazonaws.com"
    db_port                  = 5432
    db_name                  = "shortener"
    db_ca_bundle_url         = "https://truststore.pki.rds.amazonaws.com/us-east-1/us-east-1-bundle.pem"
    public_url               = "https://sho.rt"
    drain_seconds            = 30
    drain_delay_secs         = 40
    header_read_timeout_secs = 65
    app_port                 = 8080
    availability_zones       = "us-east-1a us-east-1b"
    restart_slot_secs        = 160
  })
}
EOF
  local data="$dir/.terraform"
  TF_DATA_DIR=$data terraform -chdir="$dir" init -backend=false -input=false -no-color >/dev/null
  TF_DATA_DIR=$data terraform -chdir="$dir" apply -auto-approve -input=false -no-color \
    -state="$dir/render.tfstate" -var "template=$TF_DIR/user_data.sh.tftpl" -var "artifact_sha256=$sha" >/dev/null
  TF_DATA_DIR=$data terraform -chdir="$dir" output -state="$dir/render.tfstate" -raw user_data >"$out"
}

step_user_data() {
  local t="$WORK/ud" fs="$WORK/ud/fs"
  mkdir -p "$t/stubs" "$t/pkg/scripts" "$fs/var/log" "$fs/usr/local/sbin" "$fs/etc/systemd/system" "$fs/run"

  # A release tarball whose run.sh records what it was given.
  printf '#!/bin/sh\necho "shortener 0.0.0-test"\n' >"$t/pkg/shortener"
  cat >"$t/pkg/scripts/run.sh" <<'EOF'
#!/usr/bin/env bash
{
  printf 'ARGS=%s\n' "$*"
  printf 'PWD=%s\n' "$PWD"
  env | grep -E '^(DATABASE_URL|SHORTENER_[A-Z_]+)=' | sort
} >"$RUNSH_RECORD"
EOF
  chmod 0755 "$t/pkg/shortener" "$t/pkg/scripts/run.sh"
  tar -czf "$t/release.tar.gz" -C "$t/pkg" shortener scripts
  printf 'not the release\n' >"$t/tampered.tar.gz"
  local sha
  sha=$(sha256sum "$t/release.tar.gz" | cut -d ' ' -f 1)

  render_user_data "$sha" "$t/user_data.sh"
  say "rendered $(wc -l <"$t/user_data.sh") lines; shellcheck:"
  shellcheck --shell=bash "$t/user_data.sh"
  say "  clean"

  # Stubs for the AWS CLI, curl (the release, the CA bundle, the instance
  # metadata), sleep and systemctl; paths moved under a temp root.
  cat >"$t/stubs/curl" <<'EOF'
#!/usr/bin/env bash
out="" url=""
while (($#)); do
  case $1 in
  --output) out=$2; shift ;;
  -H | -X | --max-time | --connect-timeout | --proto | --retry | --retry-delay) shift ;;
  http*) url=$1 ;;
  esac
  shift
done
case $url in
http://169.254.169.254/latest/api/token) echo imds-token ;;
http://169.254.169.254/latest/meta-data/placement/availability-zone) echo "$FAKE_AZ" ;;
https://truststore.pki.rds.amazonaws.com/*)
  [[ -n ${FAKE_CA:-} ]] || exit 22
  cp "$FAKE_CA" "$out" ;;
*) cp "$FAKE_DOWNLOAD" "$out" ;;
esac
EOF
  printf '#!/bin/sh\necho "sleep $*" >>"%s"\n' "$t/sleep.log" >"$t/stubs/sleep"
  printf -- '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n' >"$t/ca.pem"
  export FAKE_CA="$t/ca.pem" FAKE_AZ=us-east-1a
  cat >"$t/stubs/aws" <<'EOF'
#!/usr/bin/env python3
import json, os
secret = {"username": "shortener", "password": os.environ["FAKE_PASSWORD"]}
print(json.dumps({"VersionId": os.environ["FAKE_VERSION"], "SecretString": json.dumps(secret)}))
EOF
  printf '#!/bin/sh\necho "systemctl $*" >>"%s"\n' "$t/systemctl.log" >"$t/stubs/systemctl"
  chmod 0755 "$t/stubs/"*
  sed -E "s#^(readonly (RELEASES_DIR|STATE_DIR|LOG_FILE|SELF_PATH|UNIT_DIR|LOCK_FILE|CA_DIR)=)/#\\1$fs/#" \
    "$t/user_data.sh" >"$t/boot.sh"
  grep -q "^readonly RELEASES_DIR=$fs/" "$t/boot.sh" || die "could not relocate the boot script's paths"

  local password="p@ss:w/rd?#%&'\"x y"
  local expected_url
  expected_url=$(python3 -c '
import sys, urllib.parse
print("postgres://shortener:%s@shortener-db.abcdefghijkl.us-east-1.rds.amazonaws.com:5432/shortener?sslmode=verify-full&sslrootcert=%s"
      % (urllib.parse.quote(sys.argv[1], safe=""), sys.argv[2]))
' "$password" "$fs/usr/local/share/shortener/rds-ca-bundle.pem")
  export RUNSH_RECORD="$t/run.record" FAKE_PASSWORD="$password"
  local stub_path="$t/stubs:$PATH"
  local failures=0
  check() {
    if "$@"; then say "  ok: $CHECK_NAME"; else
      say "  FAILED: $CHECK_NAME"
      failures=$((failures + 1))
    fi
  }

  # First boot with the right tarball.
  rm -f "$RUNSH_RECORD"
  local rc=0
  PATH=$stub_path FAKE_DOWNLOAD="$t/release.tar.gz" FAKE_VERSION=v1 \
    bash "$t/boot.sh" 2>&1 | cat >"$t/boot.out" || rc=$?
  CHECK_NAME="boot succeeds" check test "$rc" -eq 0
  CHECK_NAME="run.sh gets --binary ./shortener --listen 0.0.0.0:8080" \
    check grep -qxF 'ARGS=--binary ./shortener --listen 0.0.0.0:8080' "$RUNSH_RECORD"
  CHECK_NAME="run.sh runs in the verified release directory" \
    check grep -qxF "PWD=$fs/usr/local/lib/shortener/releases/$sha" "$RUNSH_RECORD"
  CHECK_NAME="DATABASE_URL has the percent-encoded password and sslmode=verify-full with the CA bundle" \
    check grep -qxF "DATABASE_URL=$expected_url" "$RUNSH_RECORD"
  CHECK_NAME="the CA bundle is installed" \
    check cmp -s "$t/ca.pem" "$fs/usr/local/share/shortener/rds-ca-bundle.pem"
  CHECK_NAME="the CA bundle is readable by the service (0644)" \
    check test "$(stat -c %a "$fs/usr/local/share/shortener/rds-ca-bundle.pem")" = 644
  CHECK_NAME="SHORTENER_SHUTDOWN_TIMEOUT=30s" check grep -qxF 'SHORTENER_SHUTDOWN_TIMEOUT=30s' "$RUNSH_RECORD"
  CHECK_NAME="SHORTENER_DRAIN_DELAY=40s" check grep -qxF 'SHORTENER_DRAIN_DELAY=40s' "$RUNSH_RECORD"
  CHECK_NAME="SHORTENER_HEADER_READ_TIMEOUT=65s" check grep -qxF 'SHORTENER_HEADER_READ_TIMEOUT=65s' "$RUNSH_RECORD"
  CHECK_NAME="SHORTENER_PUBLIC_URL" check grep -qxF 'SHORTENER_PUBLIC_URL=https://sho.rt' "$RUNSH_RECORD"
  CHECK_NAME="the password is not in the boot log" check absent "$password" "$t/boot.out" "$fs/var/log/shortener-bootstrap.log"
  CHECK_NAME="the rotation timer is enabled" check grep -qxF 'systemctl enable --now shortener-db-credentials.timer' "$t/systemctl.log"
  CHECK_NAME="the refresh unit runs the installed copy" \
    check grep -qxF "ExecStart=$fs/usr/local/sbin/shortener-bootstrap refresh-credentials" "$fs/etc/systemd/system/shortener-db-credentials.service"

  # The timer with an unchanged secret: nothing is restarted.
  rm -f "$RUNSH_RECORD"
  rc=0
  PATH=$stub_path FAKE_VERSION=v1 bash "$fs/usr/local/sbin/shortener-bootstrap" refresh-credentials >"$t/refresh1.out" 2>&1 || rc=$?
  CHECK_NAME="unchanged secret: refresh succeeds" check test "$rc" -eq 0
  CHECK_NAME="unchanged secret: no restart" check test ! -e "$RUNSH_RECORD"

  # The timer after a rotation: run.sh again with the new password.
  expected_url=${expected_url/shortener:p/shortener:rotated-p}
  rc=0
  PATH=$stub_path FAKE_VERSION=v2 FAKE_PASSWORD="rotated-$password" \
    bash "$fs/usr/local/sbin/shortener-bootstrap" refresh-credentials >"$t/refresh2.out" 2>&1 || rc=$?
  CHECK_NAME="rotated secret: refresh succeeds" check test "$rc" -eq 0
  CHECK_NAME="rotated secret: restarted with the new password" \
    check grep -qxF "DATABASE_URL=$expected_url" "$RUNSH_RECORD"
  CHECK_NAME="rotated secret, first zone: restarted at once" check test ! -e "$t/sleep.log"

  # A rotation seen from the second zone: the restart waits for the first zone's turn.
  rm -f "$RUNSH_RECORD" "$t/sleep.log"
  rc=0
  PATH=$stub_path FAKE_VERSION=v3 FAKE_AZ=us-east-1b FAKE_PASSWORD="rotated-$password" \
    bash "$fs/usr/local/sbin/shortener-bootstrap" refresh-credentials >"$t/refresh3.out" 2>&1 || rc=$?
  CHECK_NAME="rotated secret, second zone: refresh succeeds" check test "$rc" -eq 0
  CHECK_NAME="rotated secret, second zone: waits one slot (160 s) before the restart" \
    check grep -qxF 'sleep 160' "$t/sleep.log"
  CHECK_NAME="rotated secret, second zone: restarted" check test -e "$RUNSH_RECORD"

  # No CA bundle: the boot stops before the service starts, and says why.
  rm -rf "$RUNSH_RECORD" "$fs/usr/local/lib/shortener" "$fs/usr/local/share/shortener"
  rc=0
  PATH=$stub_path FAKE_DOWNLOAD="$t/release.tar.gz" FAKE_VERSION=v1 FAKE_CA="" \
    bash "$t/boot.sh" 2>&1 | cat >"$t/noca.out" || rc=$?
  CHECK_NAME="no CA bundle: boot fails" check test "$rc" -ne 0
  CHECK_NAME="no CA bundle: says so" check grep -q 'FATAL: could not download the database CA bundle' "$t/noca.out"
  CHECK_NAME="no CA bundle: run.sh never runs" check test ! -e "$RUNSH_RECORD"

  # A tarball that does not match its checksum is refused before anything runs.
  rm -rf "$RUNSH_RECORD" "$fs/usr/local/lib/shortener"
  rc=0
  PATH=$stub_path FAKE_DOWNLOAD="$t/tampered.tar.gz" FAKE_VERSION=v1 \
    bash "$t/boot.sh" 2>&1 | cat >"$t/bad.out" || rc=$?
  CHECK_NAME="checksum mismatch: boot fails" check test "$rc" -ne 0
  CHECK_NAME="checksum mismatch: says so" check grep -q 'FATAL: checksum mismatch' "$t/bad.out"
  CHECK_NAME="checksum mismatch: run.sh never runs" check test ! -e "$RUNSH_RECORD"

  if ((failures > 0)); then
    local f
    for f in boot.out refresh1.out refresh2.out refresh3.out noca.out bad.out; do
      [[ -f $t/$f ]] || continue
      say "--- $f (the password here is a test value) ---"
      cat "$t/$f"
    done
    return 1
  fi
}

# absent TEXT FILE...: true when no FILE contains TEXT (and every FILE exists).
absent() {
  local text=$1 file
  shift
  for file in "$@"; do
    [[ -f $file ]] || return 1
    if grep -qF -- "$text" "$file"; then
      return 1
    fi
  done
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

step_moto() {
  local port stack="$WORK/stack"
  port=$(free_port)

  # Fake credentials, loopback endpoint; nothing from the machine's AWS config.
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
  export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
  export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
  unset AWS_PROFILE

  # Managed policies must exist in moto for the RDS enhanced-monitoring role's attachment
  # (the instance role has only an inline policy).
  MOTO_IAM_LOAD_MANAGED_POLICIES=true "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$WORK/moto.log" 2>&1 &
  printf '%s\n' "$!" >"$MOTO_PID_FILE"
  # This step runs in a subshell: stop moto when it ends, however it ends.
  trap stop_moto EXIT
  "$VENV/bin/python" - "$AWS_ENDPOINT_URL" <<'EOF' || return 1
import sys, time, urllib.request
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2)
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("moto did not start within 60 s")
        time.sleep(0.5)
EOF
  say "moto $MOTO_VERSION on $AWS_ENDPOINT_URL (pid $(<"$MOTO_PID_FILE"))"

  # A copy of the stack with its own data directory and state.
  mkdir -p "$stack"
  cp "$TF_DIR"/*.tf "$TF_DIR"/*.tftpl "$TF_DIR/.terraform.lock.hcl" "$stack/"
  export TF_DATA_DIR="$stack/.terraform"

  local cert
  cert=$("$VENV/bin/python" -c '
import boto3
print(boto3.client("acm").request_certificate(DomainName="sho.rt.example")["CertificateArn"])')
  cat >"$stack/test.tfvars" <<EOF
artifact_url        = "https://releases.example.com/shortener-1.0.0-x86_64-unknown-linux-gnu.tar.gz"
artifact_sha256     = "$(printf '%064d' 0)"
certificate_arn     = "$cert"
deletion_protection = false
skip_final_snapshot = true
multi_az            = false
EOF

  cd "$stack"
  terraform init -backend=false -input=false -no-color -plugin-dir="$PLUGIN_DIR" -lockfile=readonly >"$WORK/moto-init.log" 2>&1 ||
    {
      cat "$WORK/moto-init.log"
      return 1
    }

  local t0=$SECONDS rc=0
  timeout --kill-after=30 420 terraform apply -auto-approve -input=false -no-color -var-file=test.tfvars >"$WORK/apply.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    say "apply FAILED (exit $rc); last lines:"
    tail -n 40 "$WORK/apply.log"
    return 1
  fi
  say "apply: $(grep -o 'Resources: .*' "$WORK/apply.log" | head -n 1) ($((SECONDS - t0)) s)"

  terraform output -json >"$WORK/outputs.json"
  terraform show -json >"$WORK/state.json"
  rc=0
  "$VENV/bin/python" - "$WORK/outputs.json" "$WORK/state.json" "$stack/terraform.tfstate" <<'EOF' || rc=$?
import base64, json, sys
import boto3

outputs_file, state_json_file, raw_state_file = sys.argv[1:4]
outputs = {k: v["value"] for k, v in json.load(open(outputs_file)).items()}
failures = []

def check(name, ok):
    print(("  ok: " if ok else "  FAILED: ") + name)
    if not ok:
        failures.append(name)

asg = boto3.client("autoscaling").describe_auto_scaling_groups(
    AutoScalingGroupNames=[outputs["asg_name"]])["AutoScalingGroups"][0]
check("ASG min >= 2 and desired >= 2", asg["MinSize"] >= 2 and asg["DesiredCapacity"] >= 2)
in_service = [i for i in asg["Instances"] if i["LifecycleState"] == "InService"]
check("ASG runs >= 2 instances in service (%d)" % len(in_service), len(in_service) >= 2)
check("ASG spans two subnets", len(asg["VPCZoneIdentifier"].split(",")) == 2)
check("ASG uses ELB health checks", asg["HealthCheckType"] == "ELB")

elbv2 = boto3.client("elbv2")
tg_arn = asg["TargetGroupARNs"][0]
tg = elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
check("target group health check is /readyz expecting 200",
      tg["HealthCheckPath"] == "/readyz" and tg["Matcher"]["HttpCode"] == "200")
check("target group is HTTP on 8080", tg["Port"] == 8080 and tg["Protocol"] == "HTTP")
attrs = {a["Key"]: a["Value"] for a in elbv2.describe_target_group_attributes(TargetGroupArn=tg_arn)["Attributes"]}
check("deregistration delay is 30 s", attrs.get("deregistration_delay.timeout_seconds") == "30")

lb_arn = tg["LoadBalancerArns"][0]
lb_attrs = {a["Key"]: a["Value"] for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=lb_arn)["Attributes"]}
check("ALB drops invalid header fields", lb_attrs.get("routing.http.drop_invalid_header_fields.enabled") == "true")
listeners = {l["Port"]: l for l in elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]}
check("HTTPS listener with a TLS 1.3 policy",
      listeners.get(443, {}).get("SslPolicy") == "ELBSecurityPolicy-TLS13-1-2-2021-06")
check("HTTP redirects to HTTPS",
      listeners.get(80, {}).get("DefaultActions", [{}])[0].get("RedirectConfig", {}).get("Protocol") == "HTTPS")

rds = boto3.client("rds")
db = rds.describe_db_instances()["DBInstances"][0]
check("database is not publicly accessible", db["PubliclyAccessible"] is False)
check("database storage is encrypted", db["StorageEncrypted"] is True)
check("database password is managed in Secrets Manager", "MasterUserSecret" in db)
check("database endpoint output matches",
      outputs["database_endpoint"].startswith(db["Endpoint"]["Address"]))

lt = asg["LaunchTemplate"]
lt_data = boto3.client("ec2").describe_launch_template_versions(
    LaunchTemplateId=lt["LaunchTemplateId"], Versions=[lt["Version"]])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
check("launch template requires IMDSv2 with hop limit 1",
      lt_data["MetadataOptions"]["HttpTokens"] == "required" and lt_data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1)
check("launch template root volume is encrypted",
      all(b["Ebs"]["Encrypted"] for b in lt_data["BlockDeviceMappings"]))

iam = boto3.client("iam")
profile_name = lt_data["IamInstanceProfile"]["Arn"].rsplit("/", 1)[-1]
role = iam.get_instance_profile(InstanceProfileName=profile_name)["InstanceProfile"]["Roles"][0]["RoleName"]
check("instance role has no managed policy attached",
      iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == [])
inline = iam.list_role_policies(RoleName=role)["PolicyNames"]
statements = [st for name in inline
              for st in iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]["Statement"]]
actions = [a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]
check("instance role: one inline policy, no wildcard action, no ssm:GetParameter",
      len(inline) == 1 and not any("*" in a for a in actions) and not any(a.startswith("ssm:GetParameter") for a in actions))

secret = boto3.client("secretsmanager").get_secret_value(SecretId=db["MasterUserSecret"]["SecretArn"])
password = json.loads(secret["SecretString"])["password"]
user_data = base64.b64decode(lt_data["UserData"]).decode()
check("the password is not in user_data", password not in user_data)
check("the password is not in the outputs", password not in json.dumps(outputs))
check("the password is not in the state",
      password not in open(state_json_file).read() and password not in open(raw_state_file).read())

sys.exit(1 if failures else 0)
EOF
  local inspect_rc=$rc

  t0=$SECONDS
  rc=0
  timeout --kill-after=30 300 terraform destroy -auto-approve -input=false -no-color -var-file=test.tfvars >"$WORK/destroy.log" 2>&1 || rc=$?
  if ((rc != 0)); then
    say "destroy FAILED (exit $rc); last lines:"
    tail -n 40 "$WORK/destroy.log"
    return 1
  fi
  say "destroy: $(grep -o 'Resources: .*' "$WORK/destroy.log" | head -n 1) ($((SECONDS - t0)) s)"
  return "$inspect_rc"
}

# --- main -------------------------------------------------------------------------

STEPS=(fmt validate test checkov user-data moto)
declare -A RESULT=() DURATION=()

run_step() {
  local name=$1 fn=$2 start rc
  say ""
  say "==> $name"
  start=$SECONDS
  set +e
  (
    set -euo pipefail
    "$fn"
  )
  rc=$?
  set -e
  DURATION[$name]=$((SECONDS - start))
  if ((rc == 0)); then
    RESULT[$name]=passed
    say "--- $name: passed (${DURATION[$name]} s)"
  else
    RESULT[$name]=FAILED
    say "--- $name: FAILED (exit $rc, ${DURATION[$name]} s)"
  fi
}

total_start=$SECONDS
say "==> tools"
setup_tools
say "--- tools ready ($((SECONDS - total_start)) s); provider mirror: $PLUGIN_DIR"

run_step fmt step_fmt
run_step validate step_validate
run_step test step_test
run_step checkov step_checkov
run_step user-data step_user_data
run_step moto step_moto

passed=0
failed=0
say ""
say "summary:"
for name in "${STEPS[@]}"; do
  printf '  %-10s %-7s %4d s\n' "$name" "${RESULT[$name]}" "${DURATION[$name]}"
  if [[ ${RESULT[$name]} == passed ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
say "  total               $((SECONDS - total_start)) s"
say ""
say "terraform: $passed passed, $failed failed"
((failed == 0))
