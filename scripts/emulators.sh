#!/usr/bin/env bash
# Start, stop and inspect the local emulators the demo uses. Integration tests do not use this
# script: they start their own servers on free ports through the closeout-testkit crate.
#
#   scripts/emulators.sh start    start moto on 127.0.0.1:$MOTO_PORT (no-op if already running)
#   scripts/emulators.sh stop     stop it (no-op if not running)
#   scripts/emulators.sh status   say whether it runs; exit 0 if it does, 3 if not
#   scripts/emulators.sh env      print `export AWS_...` lines for the running emulator:
#                                   eval "$(scripts/emulators.sh env)"
#
# Environment:
#   MOTO_PORT        port for moto (default 4566)
#   CLOSEOUT_VENV    the virtualenv scripts/setup.sh created (default: <repo>/.venv)
#   MOTO_IAM_LOAD_MANAGED_POLICIES  passed to moto (default false: AWS managed policies not loaded)
#   Any other MOTO_* / INITIAL_NO_AUTH_ACTION_COUNT variable is passed through to moto.
#
# State (pidfile, port, log) lives in <repo>/.emulators/. Messages go to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CLOSEOUT_VENV:-$ROOT/.venv}"
STATE_DIR="$ROOT/.emulators"
MOTO_PORT="${MOTO_PORT:-4566}"
MOTO_PIDFILE="$STATE_DIR/moto.pid"
MOTO_PORTFILE="$STATE_DIR/moto.port"
MOTO_LOG="$STATE_DIR/moto.log"
START_TIMEOUT_SECS=30

log() { printf 'emulators: %s\n' "$*" >&2; }
die() { printf 'emulators: error: %s\n' "$*" >&2; exit 1; }

# The pid of our moto if it is alive (and really is moto_server), else nothing.
moto_pid() {
    [[ -f "$MOTO_PIDFILE" ]] || return 0
    local pid
    pid="$(cat "$MOTO_PIDFILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q moto_server; then
        echo "$pid"
    fi
}

moto_running_port() {
    cat "$MOTO_PORTFILE" 2>/dev/null || echo "$MOTO_PORT"
}

# True when something answers HTTP on 127.0.0.1:$1.
http_up() {
    local url="http://127.0.0.1:$1/moto-api/"
    if command -v curl >/dev/null 2>&1; then
        local code
        code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null || true)"
        [[ -n "$code" && "$code" != "000" ]]
    else
        "$VENV/bin/python" - "$url" <<'PY' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
PY
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

log_tail() {
    if [[ -s "$MOTO_LOG" ]]; then
        printf -- '--- last lines of %s ---\n' "$MOTO_LOG" >&2
        tail -n 30 "$MOTO_LOG" >&2
        printf -- '---\n' >&2
    fi
}

moto_start() {
    local pid port
    pid="$(moto_pid)"
    if [[ -n "$pid" ]]; then
        port="$(moto_running_port)"
        if [[ "$port" != "$MOTO_PORT" ]]; then
            die "moto already runs (pid $pid) on port $port, not $MOTO_PORT: run '$0 stop' first"
        fi
        log "moto already running (pid $pid) on http://127.0.0.1:$port"
        return
    fi
    rm -f "$MOTO_PIDFILE" "$MOTO_PORTFILE"

    [[ -x "$VENV/bin/moto_server" ]] || die "moto_server not found at $VENV/bin/moto_server: run scripts/setup.sh"
    if port_busy "$MOTO_PORT"; then
        die "port $MOTO_PORT on 127.0.0.1 is already in use by another process; set MOTO_PORT to a free port"
    fi

    mkdir -p "$STATE_DIR"
    : >"$MOTO_LOG"
    log "starting moto on http://127.0.0.1:$MOTO_PORT (log: $MOTO_LOG)"
    MOTO_IAM_LOAD_MANAGED_POLICIES="${MOTO_IAM_LOAD_MANAGED_POLICIES:-false}" PYTHONUNBUFFERED=1 \
        nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >>"$MOTO_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$MOTO_PIDFILE"
    echo "$MOTO_PORT" >"$MOTO_PORTFILE"

    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$MOTO_PIDFILE" "$MOTO_PORTFILE"
            log_tail
            die "moto exited during start-up (see the log above)"
        fi
        if http_up "$MOTO_PORT"; then
            log "moto is up (pid $pid)"
            return
        fi
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$MOTO_PIDFILE" "$MOTO_PORTFILE"
    log_tail
    die "moto did not answer on http://127.0.0.1:$MOTO_PORT within ${START_TIMEOUT_SECS}s"
}

moto_stop() {
    local pid
    pid="$(moto_pid)"
    if [[ -z "$pid" ]]; then
        log "moto not running"
        rm -f "$MOTO_PIDFILE" "$MOTO_PORTFILE"
        return
    fi
    log "stopping moto (pid $pid)"
    kill "$pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "moto did not stop on SIGTERM; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$MOTO_PIDFILE" "$MOTO_PORTFILE"
}

moto_status() {
    local pid
    pid="$(moto_pid)"
    if [[ -n "$pid" ]]; then
        log "moto running (pid $pid) on http://127.0.0.1:$(moto_running_port)"
        return 0
    fi
    log "moto not running"
    return 3
}

moto_env() {
    local port
    if [[ -n "$(moto_pid)" ]]; then port="$(moto_running_port)"; else port="$MOTO_PORT"; fi
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
EOF
}

case "${1:-}" in
    start) moto_start ;;
    stop) moto_stop ;;
    status) moto_status ;;
    env) moto_env ;;
    *)
        echo "usage: $0 start|stop|status|env" >&2
        exit 2
        ;;
esac
