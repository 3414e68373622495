#!/usr/bin/env bash
# Benchmark (not a test): webhook delivery latency, from an upload's completion
# to its receiver, over UPLOADS (1000) full uploads at CONCURRENCY (8), beside
# a poller of the event feed. Starts Postgres, LocalStack and the broker
# (release build, under `flock /tmp/cargo.lock`). Prints Markdown rows for
# docs/benchmarks.md.
#
#   bench/webhooks/latency.sh
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ROOT"
work="$ROOT/target/webhook-bench"
mkdir -p "$work"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ensure_postgres
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_localstack
  psql "${DATABASE_URL%/*}/postgres" -qc "drop database if exists webhook_bench with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
ls_dir="$work/localstack"; rm -rf "$ls_dir"
start_localstack "$(free_port)" "$ls_dir"
export S3_BUCKET=webhook-bench AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2

log "Building the broker (release)"
flock /tmp/cargo.lock cargo build --release --locked --bin upload-broker
psql "${DATABASE_URL%/*}/postgres" -qc "drop database if exists webhook_bench with (force)" >/dev/null
DATABASE_URL="${DATABASE_URL%/*}/webhook_bench" S3_FORCE_PATH_STYLE=true S3_KEY_PREFIX="bench/" \
  BROKER_API_KEYS="bench:bench-key" RATE_LIMIT=0 EGRESS_ALLOW=127.0.0.0/8 \
  BROKER_TOKEN_SECRET="webhook-bench-token-secret-0123456789" SWEEP_INTERVAL=0 RUST_LOG=warn \
  start_broker "$work/broker.log" "$ROOT/target/release/upload-broker" serve
pids+=("$BROKER_PID")
log "Running $(nproc) cores, $(date -u +%F)"
BROKER_URL="$BROKER_URL" BROKER_KEY=bench-key node bench/webhooks/latency.mjs
