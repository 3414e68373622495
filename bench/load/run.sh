#!/usr/bin/env bash
# Benchmark (not a test): LIFECYCLES (10000) full upload lifecycles at
# CONCURRENCY (64) clients against the release broker, LocalStack and Postgres
# on this machine: throughput, p50/p99 per route, broker RSS and Postgres
# connections. Prints Markdown rows for docs/benchmarks.md.
#
#   bench/load/run.sh
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ROOT"
work="$ROOT/target/load-bench"
mkdir -p "$work"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ensure_postgres
pids=()
admin="${DATABASE_URL%/*}/postgres"
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_localstack
  psql "$admin" -qc "drop database if exists load_bench with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
ls_dir="$work/localstack"; rm -rf "$ls_dir"
start_localstack "$(free_port)" "$ls_dir"
export S3_BUCKET=load-bench AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2

log "Building the broker (release)"
flock /tmp/cargo.lock cargo build --release --locked --bin upload-broker
psql "$admin" -qc "drop database if exists load_bench with (force)" >/dev/null
DATABASE_URL="${DATABASE_URL%/*}/load_bench" S3_FORCE_PATH_STYLE=true S3_KEY_PREFIX="bench/" \
  BROKER_API_KEYS="bench:bench-key" RATE_LIMIT=0 \
  BROKER_TOKEN_SECRET="load-bench-token-secret-0123456789abc" SWEEP_INTERVAL=0 RUST_LOG=warn \
  start_broker "$work/broker.log" "$ROOT/target/release/upload-broker" serve
pids+=("$BROKER_PID")
log "$(nproc) cores, $(date -u +%F); broker, LocalStack, Postgres and the clients share them"
BROKER_URL="$BROKER_URL" BROKER_KEY=bench-key BROKER_PID="$BROKER_PID" \
  BENCH_DB_NAME=load_bench ADMIN_URL="$admin" node bench/load/lifecycles.mjs
