#!/usr/bin/env bash
# Runs a benchmark in release mode: `scripts/bench.sh presign` (no services),
# `scripts/bench.sh sweep` (starts Postgres and LocalStack like the tests),
# `scripts/bench.sh grants` (Postgres) or `scripts/bench.sh http` (part signing
# over HTTP with wrk, side by side with Uppy Companion: bench/http/run.sh), or
# `scripts/bench.sh python` (the Python client beside boto3: clients/python/bench/run.sh).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
name="${1:?usage: scripts/bench.sh presign|sweep|grants|http|python}"
if [ "$name" = http ]; then
  exec "$ROOT/bench/http/run.sh"
fi
if [ "$name" = python ]; then
  # The Python client beside boto3's upload_file: clients/python/bench/run.sh.
  exec "$ROOT/clients/python/bench/run.sh"
fi
if [ "$name" = sweep ]; then
  export DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker_bench}"
  ensure_postgres
  ensure_database
  ls_dir="$(mktemp -d "${TMPDIR:-/tmp}/ub-bench-ls.XXXXXX")"
  trap 'stop_localstack; rm -rf "$ls_dir"' EXIT
  start_localstack "$(free_port)" "$ls_dir"
  export S3_BUCKET=upload-broker-bench AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2
fi
if [ "$name" = grants ]; then
  export DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker_bench}"
  ensure_postgres
  ensure_database
fi
cargo bench --locked --bench "$name"
