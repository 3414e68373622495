#!/usr/bin/env bash
# Fuzzes the API from its own OpenAPI document with schemathesis: every
# operation, with an API key and with a grant, examples + coverage + fuzzing
# (+ stateful links), checking that nothing answers 5xx other than what the
# document lists for storage trouble, and that every response matches the
# document. Starts Postgres, LocalStack and the broker (debug build).
#   scripts/fuzz.sh                 # FUZZ_EXAMPLES (default 30) per operation
# Exits non-zero on any failure; schemathesis prints each with a curl to reproduce.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
EXAMPLES="${FUZZ_EXAMPLES:-30}"
work="$ROOT/target/fuzz"
mkdir -p "$work"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker_test}"
ensure_postgres
ensure_tools_venv
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_localstack
  psql "${DATABASE_URL%/*}/postgres" -qc "drop database if exists upload_broker_fuzz with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [ -z "${S3_ENDPOINT:-}" ]; then
  ls_dir="$work/localstack"; rm -rf "$ls_dir"
  start_localstack "$(free_port)" "$ls_dir"
fi
export S3_BUCKET=upload-broker-fuzz AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2

[ -x target/debug/upload-broker ] || cargo build --locked --bin upload-broker
psql "${DATABASE_URL%/*}/postgres" -qc "drop database if exists upload_broker_fuzz with (force)" >/dev/null
key="fuzz-api-key-0123456789"
DATABASE_URL="${DATABASE_URL%/*}/upload_broker_fuzz" S3_FORCE_PATH_STYLE=true S3_KEY_PREFIX="fuzz/" \
  BROKER_API_KEYS="fuzz:$key" RATE_LIMIT=0 \
  BROKER_TOKEN_SECRET="fuzz-token-secret-0123456789abcdef0123" SWEEP_INTERVAL=0 RUST_LOG=warn \
  start_broker "$work/broker.log" target/debug/upload-broker serve
pids+=("$BROKER_PID")
base="$BROKER_URL"
grant="$(curl -fsS -X POST "$base/v1/grants" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{"subject": "fuzzer", "ttlSeconds": 3600, "allowDownload": true}' | "$TOOLS_VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["grant"])')"

# /metrics answers Prometheus text, /readyz may be 503 while storage warms up:
# both are documented; the checks below hold for every operation.
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"
status=0
for who in api-key grant; do
  cred="$key"; [ "$who" = grant ] && cred="$grant"
  log "schemathesis with the $who: $EXAMPLES examples per operation"
  # From target/fuzz: schemathesis keeps its example database in the working directory.
  (cd "$work" && "$TOOLS_VENV/bin/st" run "$base/openapi.json" --url "$base" \
    -H "Authorization: Bearer $cred" \
    --checks "$checks" --max-examples "$EXAMPLES" \
    --phases examples,coverage,fuzzing,stateful \
    --workers 2 --seed 1 --no-color \
    --report junit --report-dir "$work/report-$who") \
    || status=1
done
if grep -q '"level":"ERROR"\|panicked' "$work/broker.log"; then
  log "the broker logged errors during the fuzz run:"; grep '"level":"ERROR"\|panicked' "$work/broker.log" | head -20 >&2
fi
exit "$status"
