#!/usr/bin/env bash
# Runs clients/js/test/run.sh with its services: Postgres (127.0.0.1:5432, started
# if down) and a LocalStack of its own. BROKER_BIN defaults to target/debug/upload-broker.
source "$(cd "$(dirname "$0")/../../.." && pwd)/scripts/lib.sh"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker_test}"
ensure_postgres
export BROKER_BIN="${BROKER_BIN:-$ROOT/target/debug/upload-broker}"
dir="$(mktemp -d)"
trap 'stop_localstack; rm -rf "$dir"' EXIT
start_localstack "$(free_port)" "$dir"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
(cd "$ROOT/clients/js" && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; })
bash "$ROOT/clients/js/test/run.sh"
