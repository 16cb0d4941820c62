#!/usr/bin/env bash
# The demo: install what is needed, start the emulators (moto, the AWS emulator, on 127.0.0.1:4566;
# an OpenBao dev server, the Vault API, on 127.0.0.1:8200; the Azure test double, ARM + Microsoft
# Graph + Key Vault over HTTPS, on 127.0.0.1:8444; a throwaway PostgreSQL 15 cluster, the
# payments database, on a free loopback port; Keycloak, the identity provider, on 127.0.0.1:8180;
# two downstream SCIM apps on 127.0.0.1:8091 and 8092), seed the sample organisation into all of
# them (examples/demo/seed_postgres.py, seed_aws.py, seed_vault.py, seed_azure.py, seed_idp.py:
# the payments database's credentials sit in Secrets Manager, Vault KV and Key Vault, and Vault's
# database engine has a connection to it), then close out the leaver Alice Nguyen (E1001) on AWS,
# Vault, Azure, Keycloak and the apps: doctor, plan, apply, closure report. The payments logins
# she could read get new passwords at the database, and the ones she knew are refused; her
# sessions and app accounts are read back (examples/demo/check_idp.py). Then Dana Kim (E1007),
# who never had an IAM user and signs in through IAM Identity Center, is closed out on AWS: her
# membership, assignment and Identity Store user go, and the session deny on the shared role names
# her sessions alone (read back from moto).
#
#   scripts/demo.sh                      run the demo; the emulators are stopped at the end
#   KEEP_EMULATORS=1 scripts/demo.sh     leave them running to explore afterwards, e.g.
#       eval "$(scripts/emulators.sh env)"      # AWS_* for moto, VAULT_ADDR/VAULT_TOKEN for
#                                               # OpenBao, AZURE_DOUBLE_URL/AZURE_DOUBLE_CA_FILE/
#                                               # AZURE_CLIENT_SECRET for the Azure double
#       target/debug/closeout --config examples/demo/closeout.toml resolve --identity E1001
#       .venv/bin/bao list auth/token/accessors     # any bao command works against the dev server
#       curl --cacert "$AZURE_DOUBLE_CA_FILE" "$AZURE_DOUBLE_URL/_double/calls"  # the double's call log
#
# Every run starts the emulators afresh (in-memory state; OpenBao's audit log is
# .emulators/bao-audit.log; the double's CA is new each time, .emulators/azure-double/ca.pem).
# The demo's state (journal, audit log) is reset in .closeout-dev/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export CLOSEOUT_VENV="${CLOSEOUT_VENV:-$ROOT/.venv}"
# examples/demo/closeout.toml names these ports.
export MOTO_PORT=4566
export BAO_PORT=8200
export AZURE_PORT=8444
export KEYCLOAK_PORT=8180 WIKI_PORT=8091 CRM_PORT=8092
CONFIG=examples/demo/closeout.toml
LEAVER=E1001
SSO_LEAVER=E1007

if [[ -t 2 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
banner() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN" >&2; }

banner "installing (scripts/setup.sh)"
scripts/setup.sh

banner "building closeout"
# The debug profile shares its artifacts with `cargo test`, so the demo and the tests build once.
cargo build --bin closeout
# Where cargo put it: $CARGO_TARGET_DIR (relative to this directory, as cargo reads it) or target/.
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$TARGET" == /* ]] || TARGET="$ROOT/$TARGET"
CLOSEOUT=("$TARGET/debug/closeout" --config "$CONFIG")

banner "starting moto on 127.0.0.1:$MOTO_PORT, OpenBao on 127.0.0.1:$BAO_PORT and the Azure double on 127.0.0.1:$AZURE_PORT"
# Stop first: the seeds expect fresh servers.
scripts/emulators.sh stop
if [[ -z "${KEEP_EMULATORS:-}" ]]; then
    trap 'scripts/emulators.sh stop' EXIT
fi
scripts/emulators.sh start
eval "$(scripts/emulators.sh env)"

banner "resetting .closeout-dev/"
rm -rf .closeout-dev
mkdir -p .closeout-dev
# The audit signing key (docs/audit.md): every audit record and the evidence manifest are signed
# with it; the .pub half is what an auditor verifies with.
"${CLOSEOUT[@]}" audit keygen --out .closeout-dev/audit.key >/dev/null
export CLOSEOUT_AUDIT_KEY_FILE="$ROOT/.closeout-dev/audit.key"

banner "seeding the payments database into PostgreSQL (examples/demo/seed_postgres.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/seed_postgres.py

banner "seeding the sample organisation into moto (examples/demo/seed_aws.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/seed_aws.py

banner "seeding the sample organisation into OpenBao (examples/demo/seed_vault.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/seed_vault.py

banner "seeding the sample organisation into the Azure double (examples/demo/seed_azure.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/seed_azure.py

banner "seeding the identity provider (Keycloak) and the apps behind it (examples/demo/seed_idp.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/seed_idp.py .closeout-dev/idp-tokens.json

banner "giving Closeout its own IAM user in moto (examples/demo/closeout_iam.py)"
# The seeds above use moto's default credentials; Closeout runs as a principal of its own, as in
# production, so `closeout doctor` can read what it is allowed to do.
eval "$("$CLOSEOUT_VENV/bin/python" examples/demo/closeout_iam.py)"

# ---- closeout itself --------------------------------------------------------------------------
banner "closeout doctor (config, playbooks, each provider reached, permissions the playbooks need)"
doctor_rc=0
"${CLOSEOUT[@]}" doctor || doctor_rc=$?
if [[ "$doctor_rc" != 0 ]]; then
    banner "doctor reported a problem (exit $doctor_rc): see above; the demo goes on"
fi

banner "closeout plan leaver --identity $LEAVER"
"${CLOSEOUT[@]}" plan leaver --identity "$LEAVER"

banner "closeout apply leaver --identity $LEAVER --yes --timings"
apply_rc=0
"${CLOSEOUT[@]}" apply leaver --identity "$LEAVER" --yes --timings || apply_rc=$?

banner "closeout runs show <last run>"
last_run="$("${CLOSEOUT[@]}" runs list --limit 1 --format json \
    | "$CLOSEOUT_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["run"])')"
"${CLOSEOUT[@]}" runs show "$last_run" || true

banner "audit log, HTML report and evidence bundle of $last_run"
"${CLOSEOUT[@]}" audit verify --public-key .closeout-dev/audit.key.pub
report_html="$ROOT/.closeout-dev/report-$last_run.html"
bundle="$ROOT/.closeout-dev/evidence-$last_run.tar.gz"
"${CLOSEOUT[@]}" report "$last_run" --format html -o "$report_html"
"${CLOSEOUT[@]}" evidence export "$last_run" -o "$bundle"
# Offline: only the bundle and the public key.
"${CLOSEOUT[@]}" evidence verify "$bundle" --public-key .closeout-dev/audit.key.pub | tail -1

# Dana Kim never had an IAM user: she signs in through IAM Identity Center (a group's permission
# set and one assigned to her alone). Closeout finds her Identity Store user by email, removes her
# membership and her assignment, deletes her user, rotates what her SSO role could read, and puts
# a deny on the roles that names her sessions alone: Hassan, on the same role, keeps working.
banner "closeout apply leaver --identity $SSO_LEAVER (Dana Kim: IAM Identity Center only, no IAM user)"
sso_rc=0
"${CLOSEOUT[@]}" apply leaver --identity "$SSO_LEAVER" --yes || sso_rc=$?
banner "Dana's session deny on the shared role, read back from moto (her sessions only, not Hassan's)"
"$CLOSEOUT_VENV/bin/python" - <<'PY' || true
import json, os, urllib.parse
import boto3
iam = boto3.client("iam", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
role = "AWSReservedSSO_DataAccess_5e1f0c0ffee0d00d"
doc = iam.get_role_policy(RoleName=role, PolicyName="closeout-revoke-sessions.E1007")["PolicyDocument"]
if isinstance(doc, str):
    doc = json.loads(urllib.parse.unquote(doc))
print(f"{role}: {json.dumps(doc['Statement'][0]['Condition'])}")
PY
# ---- end of closeout -------------------------------------------------------------------------

banner "Alice's sign-in sessions and app accounts, read back from Keycloak and the apps (examples/demo/check_idp.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/check_idp.py .closeout-dev/idp-tokens.json || true

if [[ "$apply_rc" == 0 && "$sso_rc" != 0 ]]; then
    banner "the SSO-only leaver $SSO_LEAVER is not closed out (exit $sso_rc): see above"
    apply_rc=$sso_rc
fi
case "$apply_rc" in
    0) banner "done: $LEAVER and $SSO_LEAVER are closed out" ;;
    3) banner "apply finished but closure is NOT verified (exit 3): see the open findings above" ;;
    *) banner "apply failed (exit $apply_rc)" ;;
esac
if [[ -n "${KEEP_EMULATORS:-}" ]]; then
    banner "moto (http://127.0.0.1:$MOTO_PORT), OpenBao (http://127.0.0.1:$BAO_PORT) and the Azure double (https://127.0.0.1:$AZURE_PORT) left running: eval \"\$(scripts/emulators.sh env)\" to use them, scripts/emulators.sh stop to stop them"
fi
echo "HTML report:     $report_html"
echo "evidence bundle: $bundle"
echo "audit public key: $ROOT/.closeout-dev/audit.key.pub"
exit "$apply_rc"
