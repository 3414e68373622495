#!/usr/bin/env bash
# Benchmark: @upload-broker/client vs @aws-sdk/lib-storage, in Node and in
# headless Chromium, against LocalStack (started here) and the broker
# (BROKER_BIN, default target/debug/upload-broker). Results: docs/benchmarks.md.
source "$(cd "$(dirname "$0")/../../.." && pwd)/scripts/lib.sh"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker_test}"
ensure_postgres
export BROKER_BIN="${BROKER_BIN:-$ROOT/target/debug/upload-broker}"
dir="$(mktemp -d)"
trap 'stop_localstack; rm -rf "$dir"' EXIT
start_localstack "$(free_port)" "$dir"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export JS_PYTHON="$LS_VENV/bin/python" JS_BUCKET=upload-broker-jsbench
export JS_DATABASE_URL="${DATABASE_URL%/*}/upload_broker_jsclient"
DATABASE_URL="$JS_DATABASE_URL" ensure_database
S3_BUCKET="$JS_BUCKET" BROKER_CORS_ORIGINS="*" AWS_ENDPOINT_URL="$S3_ENDPOINT" "$JS_PYTHON" "$ROOT/localstack/init/ready.d/10-create-bucket.py" >&2
cd "$ROOT/clients/js"
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
node build.mjs
cd bench
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
node bench.mjs
