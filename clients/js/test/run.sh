#!/usr/bin/env bash
# Builds @upload-broker/client and runs its tests: unit tests (node:test), then
# the integration tests against the real broker, Postgres and LocalStack: in
# headless Chromium (playwright-core) and in Node. Expects what scripts/test.sh
# provides:
#   S3_ENDPOINT   LocalStack (signature validation on)
#   DATABASE_URL  a Postgres URL; the tests use the database upload_broker_jsclient beside it
#   BROKER_BIN    the broker binary (target/debug/upload-broker)
#   JS_PYTHON     a python with boto3 (default: the LocalStack venv's)
# Run `npm ci` in clients/js first. clients/js/test/standalone.sh starts the
# services itself.
source "$(cd "$(dirname "$0")/../../.." && pwd)/scripts/lib.sh"
JS="$ROOT/clients/js"
cd "$JS"

for v in S3_ENDPOINT DATABASE_URL BROKER_BIN; do
  [ -n "${!v:-}" ] || die "$v is not set: run this from scripts/test.sh, or clients/js/test/standalone.sh (starts Postgres and LocalStack)"
done
[ -x "$BROKER_BIN" ] || die "BROKER_BIN=$BROKER_BIN is not an executable (build the broker first)"
export JS_PYTHON="${JS_PYTHON:-$LS_VENV/bin/python}"
"$JS_PYTHON" -c 'import boto3' 2>/dev/null || die "JS_PYTHON=$JS_PYTHON has no boto3 (the LocalStack venv has it: see scripts/lib.sh)"
curl -fsS "$S3_ENDPOINT/_localstack/health" >/dev/null 2>&1 || die "LocalStack is not answering at $S3_ENDPOINT (start it: scripts/localstack.sh)"
[ -d node_modules ] || die "run 'npm ci' in clients/js first"

export JS_BUCKET="${JS_BUCKET:-upload-broker-jsclient}"
S3_BUCKET="$JS_BUCKET" BROKER_CORS_ORIGINS="*" AWS_ENDPOINT_URL="$S3_ENDPOINT" \
  "$JS_PYTHON" "$ROOT/localstack/init/ready.d/10-create-bucket.py" >&2
export JS_DATABASE_URL="${DATABASE_URL%/*}/upload_broker_jsclient"
DATABASE_URL="$JS_DATABASE_URL" ensure_database

log "clients/js: build (esbuild + tsc --strict) and bundle size"
node build.mjs --size
log "clients/js: unit tests"
node --test test/unit/
log "clients/js: integration tests (Node, then headless Chromium)"
node --test --test-concurrency=1 test/integration/node.test.mjs test/integration/browser.test.mjs
