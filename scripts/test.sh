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

step "cargo fmt --all --check (and the fuzz crate, a workspace of its own)"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

# The store interface has two backends: the serve suite (the service, its SCIM intake, resuming
# a killed run) runs again with every test world's store on PostgreSQL. The replica tests, the
# `on_postgres` variants and the SCIM store tests (`scim_users`, `scim_conformance`: one variant
# per backend) are on PostgreSQL already; the internals test reads SQLite's own file on purpose.
step "the serve suite again on PostgreSQL (CLOSEOUT_TEST_STORE=postgres)"
CLOSEOUT_TEST_STORE=postgres cargo test -p closeout --test integration -- \
    serve_ cli_resume --skip serve_replicas --skip serve_internals --skip on_postgres

# The fuzz targets (docs/fuzzing.md) are not built here by default: their instrumented build
# compiles the whole library and its SDKs again (about 30 minutes on 2 cores), which the CI
# budget does not allow. The parsers' property tests run above as ordinary unit tests.
# CLOSEOUT_FUZZ_RUNS=N runs each target for N executions as well.
if [ -n "${CLOSEOUT_FUZZ_RUNS:-}" ]; then
    step "scripts/fuzz.sh $CLOSEOUT_FUZZ_RUNS"
    scripts/fuzz.sh "$CLOSEOUT_FUZZ_RUNS"
fi

step "all checks passed"
