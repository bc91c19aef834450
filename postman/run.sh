#!/usr/bin/env bash
# Run the Postman collection against a fresh server.
#
# Starts gemini-backend in embedded mode (SQLite, no Redis, no Gemini/Stripe keys, OTP_DELIVERY=response) from a
# new temporary instance folder on a free port — gunicorn plus the Huey worker — waits for /healthz, runs the
# collection with newman, stops both processes and exits with newman's status.
#
#   postman/run.sh                          # from anywhere
#   postman/run.sh --reporters cli,junit    # extra arguments go to `newman run`
#
# Environment: POSTMAN_PORT (default: a free port), KEEP_INSTANCE=1 (keep the temp folder and logs),
# PYTHON_BIN_DIR (default: <project>/.venv/bin).
# newman comes from postman/node_modules (pinned in package.json / package-lock.json; installed with `npm ci`
# on first use), or, if that cannot be installed, from `npx --yes newman@<same version>`.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${PYTHON_BIN_DIR:-$ROOT/.venv/bin}"
NEWMAN_VERSION="6.2.2"

log() { printf '[postman/run.sh] %s\n' "$*" >&2; }

for tool in "$BIN/python" "$BIN/flask" "$BIN/gunicorn"; do
    [[ -x "$tool" ]] || { log "missing $tool: create the virtualenv first (make install)"; exit 2; }
done
command -v node >/dev/null || { log "node is not installed"; exit 2; }

# --- newman ------------------------------------------------------------------------------------------------
NEWMAN=("$HERE/node_modules/.bin/newman")
if [[ ! -x "${NEWMAN[0]}" ]]; then
    log "installing newman $NEWMAN_VERSION into postman/node_modules (npm ci)"
    if ! npm ci --prefix "$HERE" --no-audit --no-fund --loglevel=error >&2; then
        log "npm ci failed; falling back to npx newman@$NEWMAN_VERSION"
        NEWMAN=(npx --yes "newman@$NEWMAN_VERSION")
    fi
fi

# --- a clean embedded server ----------------------------------------------------------------------------------
INSTANCE="$(mktemp -d "${TMPDIR:-/tmp}/gb-postman-XXXXXX")"
PORT="${POSTMAN_PORT:-$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
BASE_URL="http://127.0.0.1:$PORT"

# Embedded mode whatever the caller's environment or .env says: empty values win over .env (it never overrides).
export INSTANCE_PATH="$INSTANCE" FLASK_APP=wsgi PYTHONUNBUFFERED=1
export APP_ENV=development OTP_DELIVERY=response
export DATABASE_URL= REDIS_URL= QUEUE_URL= \
       GEMINI_API_KEY= GOOGLE_API_KEY= GEMINI_BASE_URL= \
       STRIPE_SECRET_KEY= STRIPE_WEBHOOK_SECRET= STRIPE_PRO_PRICE_ID= STRIPE_PRICE_ID= STRIPE_API_BASE= \
       CORS_ORIGINS=
export PORT GUNICORN_BIND="127.0.0.1:$PORT" WEB_CONCURRENCY=2 GUNICORN_THREADS=8 GUNICORN_ACCESS_LOG=/dev/null

WEB_PID="" WORKER_PID=""

stop() {  # stop a process we started: its signal, then SIGKILL after a grace period
    local pid="$1" sig="$2"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
}

cleanup() {
    stop "$WEB_PID" TERM       # gunicorn: graceful stop of its workers
    stop "$WORKER_PID" INT     # huey consumer: SIGINT lets a running reply finish
    if [[ "${KEEP_INSTANCE:-0}" == 1 ]]; then
        log "kept $INSTANCE (web.log, worker.log)"
    else
        rm -rf "$INSTANCE"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
    for name in web worker; do
        [[ -s "$INSTANCE/$name.log" ]] || continue
        log "---- last lines of $name.log ----"
        tail -n 40 "$INSTANCE/$name.log" >&2
    done
}

cd "$ROOT" || exit 2
log "instance $INSTANCE"
if ! "$BIN/flask" db upgrade >"$INSTANCE/migrate.log" 2>&1; then
    log "flask db upgrade failed:"; cat "$INSTANCE/migrate.log" >&2; exit 2
fi

"$BIN/gunicorn" -c gunicorn.conf.py wsgi:app >"$INSTANCE/web.log" 2>&1 &
WEB_PID=$!
"$BIN/flask" worker -w 2 >"$INSTANCE/worker.log" 2>&1 &
WORKER_PID=$!

# Ready = /healthz answers and the consumer has started (the collection long-polls a reply it must produce).
log "waiting for $BASE_URL/healthz and the worker"
web_ready=0 worker_ready=0
for _ in $(seq 1 150); do   # up to 30 s
    if ! kill -0 "$WEB_PID" 2>/dev/null || ! kill -0 "$WORKER_PID" 2>/dev/null; then
        log "the server or the worker exited during start-up"; show_logs; exit 2
    fi
    if [[ $web_ready != 1 ]] && "$BIN/python" - "$BASE_URL/healthz" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)
PY
    then web_ready=1; fi
    if [[ $worker_ready != 1 ]] && grep -q "consumer started" "$INSTANCE/worker.log" 2>/dev/null; then
        worker_ready=1
    fi
    [[ $web_ready == 1 && $worker_ready == 1 ]] && break
    sleep 0.2
done
if [[ $web_ready != 1 || $worker_ready != 1 ]]; then
    log "not ready within 30 s (web: $web_ready, worker: $worker_ready)"; show_logs; exit 2
fi

# --- the run ------------------------------------------------------------------------------------------------
# The working directory is the repository root: "Upload a file" sends postman/fixtures/pixel.png from there.
log "running the collection against $BASE_URL"
"${NEWMAN[@]}" run "$HERE/gemini-backend.postman_collection.json" \
    --environment "$HERE/local.postman_environment.json" \
    --env-var "baseUrl=$BASE_URL" \
    --working-dir "$ROOT" \
    --timeout-request 30000 \
    --timeout 120000 \
    --color off \
    "$@"
status=$?
if [[ $status != 0 ]]; then
    log "newman exited with $status"; show_logs
fi
exit "$status"
