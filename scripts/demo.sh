#!/usr/bin/env bash
# The demo: install what is needed, start moto on 127.0.0.1:4566, seed the sample organisation
# (examples/demo), then close out the leaver Alice Nguyen (E1001): plan, apply, closure report.
#
#   scripts/demo.sh                      run the demo; moto is stopped at the end
#   KEEP_EMULATORS=1 scripts/demo.sh     leave moto running to explore afterwards, e.g.
#       eval "$(scripts/emulators.sh env)"
#       target/debug/closeout --config examples/demo/closeout.toml resolve --identity E1001
#
# The demo's state (journal, audit log) is reset in .closeout-dev/ on every run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export CLOSEOUT_VENV="${CLOSEOUT_VENV:-$ROOT/.venv}"
# examples/demo/closeout.toml names this port.
export MOTO_PORT=4566
CONFIG=examples/demo/closeout.toml
LEAVER=E1001

if [[ -t 2 ]]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
banner() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$PLAIN" >&2; }

banner "installing (scripts/setup.sh)"
scripts/setup.sh

banner "building closeout"
# The debug profile shares its artifacts with `cargo test`, so the demo and the tests build once.
cargo build --bin closeout
CLOSEOUT=("$ROOT/target/debug/closeout" --config "$CONFIG")

banner "starting moto on 127.0.0.1:$MOTO_PORT"
scripts/emulators.sh stop
scripts/emulators.sh start
if [[ -z "${KEEP_EMULATORS:-}" ]]; then
    trap 'scripts/emulators.sh stop' EXIT
fi
eval "$(scripts/emulators.sh env)"

banner "resetting .closeout-dev/"
rm -rf .closeout-dev
mkdir -p .closeout-dev

banner "seeding the sample organisation (examples/demo/seed_aws.py)"
"$CLOSEOUT_VENV/bin/python" examples/demo/seed_aws.py

# ---- closeout itself --------------------------------------------------------------------------
banner "closeout plan leaver --identity $LEAVER"
"${CLOSEOUT[@]}" plan leaver --identity "$LEAVER"

banner "closeout apply leaver --identity $LEAVER --yes"
apply_rc=0
"${CLOSEOUT[@]}" apply leaver --identity "$LEAVER" --yes || apply_rc=$?

banner "closeout runs show <last run>"
last_run="$("${CLOSEOUT[@]}" runs list --limit 1 --format json \
    | "$CLOSEOUT_VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["run"])')"
"${CLOSEOUT[@]}" runs show "$last_run" || true
# ---- end of closeout -------------------------------------------------------------------------

case "$apply_rc" in
    0) banner "done: $LEAVER is closed out" ;;
    3) banner "apply finished but closure is NOT verified (exit 3): see the open findings above" ;;
    *) banner "apply failed (exit $apply_rc)" ;;
esac
if [[ -n "${KEEP_EMULATORS:-}" ]]; then
    banner "moto left running on http://127.0.0.1:$MOTO_PORT (scripts/emulators.sh stop to stop it)"
fi
exit "$apply_rc"
