#!/usr/bin/env bash
# Installs the Python client (clients/python) into a venv of its own (cached,
# stamped) and runs mypy --strict on it, then its tests: unit tests, and the
# integration tests against the real broker binary, Postgres and LocalStack
# (signature validation on). Expects what scripts/test.sh provides:
#   S3_ENDPOINT   LocalStack
#   DATABASE_URL  a Postgres URL; the tests use the database upload_broker_pyclient beside it
#   BROKER_BIN    the broker binary (target/debug/upload-broker)
# Extra arguments go to pytest (e.g. -k download).
source "$(cd "$(dirname "$0")/../../.." && pwd)/scripts/lib.sh"
PY="$ROOT/clients/python"

for v in S3_ENDPOINT DATABASE_URL BROKER_BIN; do
  [ -n "${!v:-}" ] || die "$v is not set: run this from scripts/test.sh, which starts Postgres and LocalStack and sets it"
done
[ -x "$BROKER_BIN" ] || die "BROKER_BIN=$BROKER_BIN is not an executable (build the broker first: cargo build --bin upload-broker)"
curl -fsS "$S3_ENDPOINT/_localstack/health" >/dev/null 2>&1 || die "LocalStack is not answering at $S3_ENDPOINT (start it: scripts/localstack.sh)"

source "$PY/venv.sh"
ensure_pyclient_venv

log "clients/python: mypy --strict"
(cd "$PY" && "$PYCLIENT_VENV/bin/mypy" --strict src/upload_broker bench)

export PYCLIENT_BUCKET="${PYCLIENT_BUCKET:-upload-broker-pyclient}"
S3_BUCKET="$PYCLIENT_BUCKET" BROKER_CORS_ORIGINS="*" AWS_ENDPOINT_URL="$S3_ENDPOINT" \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
  "$PYCLIENT_VENV/bin/python" "$ROOT/localstack/init/ready.d/10-create-bucket.py" >&2
export PYCLIENT_DATABASE_URL="${DATABASE_URL%/*}/upload_broker_pyclient"
DATABASE_URL="$PYCLIENT_DATABASE_URL" ensure_database

log "clients/python: pytest (unit, then against the broker, Postgres and LocalStack)"
cd "$PY"
# The tests import the installed package, not the source tree.
exec "$PYCLIENT_VENV/bin/python" -m pytest -p no:cacheprovider -ra "$@" test
