#!/usr/bin/env bash
# Runs the broker with its local services: Postgres (the machine's, started if
# needed), LocalStack S3 on 127.0.0.1:4566 with the bucket and CORS rule, and the
# broker on 127.0.0.1:8080 with a development API key. Ctrl-C stops everything.
#
# Override with the usual variables (BROKER_LISTEN, BROKER_API_KEYS, S3_BUCKET,
# DATABASE_URL, LOCALSTACK_PORT, ...).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker}"
ensure_postgres
ensure_database

ls_port="${LOCALSTACK_PORT:-4566}"
ls_dir="$ROOT/.local/localstack"
mkdir -p "$ls_dir"
# Ctrl-C, SIGTERM or SIGHUP at any point stops what was started and exits (the EXIT
# trap does the cleaning, and grows as more is started).
trap stop_localstack EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
start_localstack "$ls_port" "$ls_dir"

export S3_BUCKET="${S3_BUCKET:-uploads}"
export S3_FORCE_PATH_STYLE="${S3_FORCE_PATH_STYLE:-true}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export BROKER_LISTEN="${BROKER_LISTEN:-127.0.0.1:8080}"
export BROKER_API_KEYS="${BROKER_API_KEYS:-dev:dev-key}"
export BROKER_CORS_ORIGINS="${BROKER_CORS_ORIGINS:-http://localhost:3000,http://127.0.0.1:3000}"
export BROKER_TOKEN_SECRET_FILE="${BROKER_TOKEN_SECRET_FILE:-$ROOT/.local/token-secret}"
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2

log "Building the broker"
# In its own process group, waited for in the background, so that a signal
# stops the script at once and the trap stops the whole build (rustc included).
setsid cargo build --locked --bin upload-broker &
build_pid=$!
trap 'kill -TERM -- -$build_pid 2>/dev/null || true; stop_localstack' EXIT
wait "$build_pid"
trap stop_localstack EXIT
key="${BROKER_API_KEYS#*:}"; key="${key%%,*}"
cat >&2 <<MSG

upload-broker is starting on http://$BROKER_LISTEN
  storage : $S3_ENDPOINT (bucket $S3_BUCKET)   database: ${DATABASE_URL%%\?*}
  try it  : curl -s -X POST http://$BROKER_LISTEN/v1/uploads \\
              -H 'Authorization: Bearer $key' -H 'Content-Type: application/json' \\
              -d '{"filename":"hello.txt","size":11,"contentType":"text/plain"}'

MSG
target/debug/upload-broker serve &
broker_pid=$!
# (`|| true`: under set -e a failing command would end the trap early.)
trap 'kill -TERM $broker_pid 2>/dev/null || true; wait $broker_pid 2>/dev/null || true; stop_localstack' EXIT
wait $broker_pid
