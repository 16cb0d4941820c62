#!/usr/bin/env bash
# Fuzz each parser that takes outside input for a number of executions (docs/fuzzing.md).
#
#   scripts/fuzz.sh [EXECUTIONS] [TARGET...]
#
# EXECUTIONS: per target, default 10000000 (the goal in docs/fuzzing.md). TARGETs: default all,
# in the order of closeout_fuzz::TARGETS. Prints one line per target (executions, executions per
# second, crashes) and a table at the end; exits 1 if any target crashed, hung or ran out of memory.
#
# The engine is libFuzzer (from the `libfuzzer-sys` crate, compiled from source) driving binaries
# instrumented with LLVM's SanitizerCoverage through stable `-C` flags: no nightly toolchain and no
# cargo plugin. The fuzz crate is its own workspace (fuzz/Cargo.toml); it is built for an explicit
# `--target` so that build scripts and proc macros are not instrumented.
#
# Environment:
#   CARGO_TARGET_DIR  where to build (default fuzz/target). The first build compiles the whole
#                     `closeout` library and its SDKs instrumented: about 30 minutes on 2 cores.
#   FUZZ_MAX_LEN      longest input in bytes (default 4096).
#   FUZZ_TIMEOUT      seconds one input may take before it counts as a hang (default 10).
#   FUZZ_SEED         libFuzzer's random seed (default 1, so a run can be repeated).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

runs="${1:-10000000}"
shift || true
all_targets=(webhook_body scim_filter scim_patch playbook_yaml policy_yaml config_toml hr_csv hr_json)
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/fuzz/target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
max_len="${FUZZ_MAX_LEN:-4096}"
timeout="${FUZZ_TIMEOUT:-10}"
seed="${FUZZ_SEED:-1}"

# SanitizerCoverage as cargo-fuzz sets it up (8-bit counters, the PC table libFuzzer needs, and
# comparison tracing so the fuzzer learns the keywords and magic values the parsers compare
# against), minus the AddressSanitizer that needs nightly: safe Rust needs none to find panics,
# and a bounds or overflow error is a panic here since debug assertions are on.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"

printf '==> building the fuzz targets (%s)\n' "$CARGO_TARGET_DIR" >&2
cargo build --manifest-path fuzz/Cargo.toml --target "$triple" --bins >&2
bin_dir="$CARGO_TARGET_DIR/$triple/debug"

# One summary line per target, printed again as a table at the end.
summary=()
failed=0
for t in "${targets[@]}"; do
    if [ ! -x "$bin_dir/$t" ]; then
        echo "unknown target $t (known: ${all_targets[*]})" >&2
        exit 2
    fi
    corpus="fuzz/corpus/$t"
    artifacts="fuzz/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="fuzz/artifacts/$t.log"
    printf '==> %s: %s executions\n' "$t" "$runs" >&2
    start=$(date +%s.%N)
    # The corpus directory (first) grows with the inputs that found new coverage; the committed
    # seeds (second) are read only.
    set +e
    "$bin_dir/$t" -runs="$runs" -seed="$seed" -max_len="$max_len" -timeout="$timeout" \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$corpus" "fuzz/seeds/$t" >"$log" 2>&1
    status=$?
    set -e
    end=$(date +%s.%N)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    wall=$(echo "$end - $start" | bc)
    # Over the wall time of the whole run, start-up and corpus loading included (libFuzzer's own
    # average is rounded to whole seconds).
    per_sec=$(echo "scale=0; ${execs:-0} / $wall" | bc)
    crashes=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="?"
    fi
    if [ "$status" -ne 0 ]; then
        failed=1
        echo "$t: libFuzzer exited $status; the input is in $artifacts/, the log in $log" >&2
        tail -30 "$log" >&2
    fi
    line=$(printf '%-14s %12s execs %9s exec/s %8.0f s  crashes: %s  corpus: %s' \
        "$t" "${execs:-?}" "${per_sec:-?}" "$wall" "$crashes" \
        "$(find "$corpus" -type f | wc -l)")
    echo "$line"
    summary+=("$line")
done

printf '\n==> summary (%s executions asked per target, seed %s, max_len %s)\n' "$runs" "$seed" "$max_len"
printf '%s\n' "${summary[@]}"
exit "$failed"
