#!/usr/bin/env bash
# The test command: install what the tests need, then formatting, lints and every test.
# Integration tests start their own emulators (on free loopback ports) through closeout-testkit,
# and fail — never skip — when one cannot start.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CLOSEOUT_VENV="${CLOSEOUT_VENV:-$PWD/.venv}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "scripts/setup.sh"
scripts/setup.sh

step "scripts/check-layers.py (no module cycles, no import from a lower layer to a higher one)"
python3 scripts/check-layers.py src providers/*/src

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "all checks passed"
