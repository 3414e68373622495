#!/usr/bin/env bash
# The Python client's benchmark (scripts/bench.sh python): starts Postgres,
# a LocalStack of its own and the broker, then clients/python/bench/bench.py:
# 1 GiB, concurrency 4, 16 MiB parts, the client side by side with boto3's
# upload_file, then the time to resume after a kill -9 at 50 %.
# BENCH_SIZE_MIB, BENCH_ROUNDS and BROKER_BIN (default: target/release, else
# target/debug) change what runs.
source "$(cd "$(dirname "$0")/../../.." && pwd)/scripts/lib.sh"
source "$ROOT/clients/python/venv.sh"
export DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker_bench_py}"
ensure_postgres
ensure_database
ensure_pyclient_venv
if [ -z "${BROKER_BIN:-}" ]; then
  BROKER_BIN="$ROOT/target/release/upload-broker"
  [ -x "$BROKER_BIN" ] || BROKER_BIN="$ROOT/target/debug/upload-broker"
fi
[ -x "$BROKER_BIN" ] || die "no broker binary at $BROKER_BIN (cargo build --release --bin upload-broker)"

work="$(mktemp -d "${TMPDIR:-/tmp}/pyclient-bench.XXXXXX")"
broker_pid=""
cleanup() { [ -z "$broker_pid" ] || kill "$broker_pid" 2>/dev/null || true; stop_localstack; rm -rf "$work"; }
trap cleanup EXIT
start_localstack "$(free_port)" "$work/localstack"
export S3_BUCKET=upload-broker-bench-py AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$PYCLIENT_VENV/bin/python" "$ROOT/localstack/init/ready.d/10-create-bucket.py" >&2

export UPLOAD_BROKER_KEY="bench-key-$RANDOM$RANDOM"
start_broker "$work/broker.log" env DATABASE_URL="$DATABASE_URL" S3_BUCKET="$S3_BUCKET" S3_ENDPOINT="$S3_ENDPOINT" S3_FORCE_PATH_STYLE=true \
  BROKER_API_KEYS="bench:$UPLOAD_BROKER_KEY" \
  BROKER_TOKEN_SECRET="python-bench-token-secret-of-at-least-32-bytes" SWEEP_INTERVAL=0 RATE_LIMIT=0 \
  RUST_LOG=warn "$BROKER_BIN" serve
broker_pid="$BROKER_PID"

log "Benchmark: $(nproc) cores, $("$PYCLIENT_VENV/bin/python" -V), broker $BROKER_BIN"
"$PYCLIENT_VENV/bin/python" "$ROOT/clients/python/bench/bench.py" "$BROKER_URL" "$S3_ENDPOINT" "$S3_BUCKET" \
  --size-mib "${BENCH_SIZE_MIB:-1024}" --part-mib 16 --concurrency 4 --rounds "${BENCH_ROUNDS:-1}"
