#!/usr/bin/env bash
# Benchmark (not a test): part-URL signing over HTTP, upload-broker (release)
# side by side with Uppy Companion (bench/companion, the version pinned there),
# both presigning for the same LocalStack bucket. Run it as `scripts/bench.sh http`.
#
# Starts LocalStack, the release broker (Postgres database
# upload_broker_bench_http, dropped at the end) and Companion; creates one
# multipart upload through each and checks every route once (200, presigned
# URLs that LocalStack accepts a PUT to: bench/http/setup.py); then loads with
# wrk (bench/http/wrk.lua fails the run on any answer that is not a 200 with a
# URL), the servers alternating, each route twice:
#   one     GET /s3/multipart/{uploadId}/{n}?key=                both
#   batch   GET /s3/multipart/{uploadId}/batch?key=&partNumbers=1,…,100   both
#   native  POST /v1/uploads/{token}/parts {"partNumbers":[1..100]}       broker
# measuring req/s, p50/p99, URLs/s, the server's CPU and RSS (bench/http/measure.py),
# and prints one Markdown table (bench/http/table.py). wrk runs on the same cores.
#
# Environment: BENCH_DURATION (s, 15), BENCH_CONNECTIONS (32), BENCH_THREADS
# (wrk threads, 2), BENCH_PERF (0; 1 records a flat CPU profile of the broker
# with `perf record -e cpu-clock` during its first run of each route, into
# target/http-bench/perf-ROUTE.txt: sampling slows it, so not for the figures),
# BENCH_RESUME (1; 0 skips bench/http/resume.sh, resume
# against a raw ListParts), BENCH_WARMUP (s per server and route before the first run,
# 3), BENCH_QUIET_LOAD (0.5) and BENCH_QUIET_WAIT (s, 120): wait at most that
# long for the 1-minute load average to fall below BENCH_QUIET_LOAD before
# measuring (it measures anyway after, and says so).
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ROOT"
DURATION="${BENCH_DURATION:-15}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
WARMUP="${BENCH_WARMUP:-3}"
QUIET_LOAD="${BENCH_QUIET_LOAD:-0.5}"
QUIET_WAIT="${BENCH_QUIET_WAIT:-120}"
here="$ROOT/bench/http"
cdir="$ROOT/bench/companion"
work="$ROOT/target/http-bench"
rm -rf "$work"
mkdir -p "$work"
results="$work/results.jsonl"
db=upload_broker_bench_http

# ---------------------------------------------------------------- tools
command -v wrk >/dev/null 2>&1 || ensure_debian_package wrk "the HTTP benchmark"
command -v node >/dev/null 2>&1 || die "Node.js 20 is needed for Companion."
pin="$(node -p "require('$cdir/package.json').dependencies['@uppy/companion']")"
have="$(node -p "try { require('$cdir/node_modules/@uppy/companion/package.json').version } catch { '' }")"
if [ "$have" != "$pin" ]; then
  log "Installing @uppy/companion $pin into bench/companion (npm ci, once)"
  (cd "$cdir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# ---------------------------------------------------------------- services
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ensure_postgres
admin="${DATABASE_URL%/*}/postgres"
broker_pid="" companion_pid=""
stop_pid() {
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
  stop_pid "$companion_pid"
  stop_pid "$broker_pid"
  stop_localstack
  psql "$admin" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

ls_dir="$work/localstack"
start_localstack "$(free_port)" "$ls_dir"
export S3_BUCKET=upload-broker-bench-http AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2

log "Building the broker (release; waits for /tmp/cargo.lock)"
flock -o /tmp/cargo.lock cargo build --release --locked --bin upload-broker
psql "$admin" -q -c "set client_min_messages = warning" -c "drop database if exists $db with (force)"
psql "$admin" -qc "create database $db" >/dev/null

DATABASE_URL="${DATABASE_URL%/*}/$db" S3_FORCE_PATH_STYLE=true S3_KEY_PREFIX="bench/" \
  BROKER_API_KEYS="bench:bench-key" RATE_LIMIT=0 \
  BROKER_TOKEN_SECRET="http-bench-token-secret-0123456789abcdef" SWEEP_INTERVAL=0 RUST_LOG=warn \
  start_broker "$work/broker.log" "${CARGO_TARGET_DIR:-$ROOT/target}/release/upload-broker" serve
broker_pid="$BROKER_PID" bport="$BROKER_PORT"
cport="$(free_port)"
NODE_ENV=production PORT="$cport" COMPANION_DATADIR="$work/companion-data" \
  node "$cdir/server.mjs" >"$work/companion.log" 2>&1 &
companion_pid=$!

wait_http() { # NAME URL PID
  for _ in $(seq 1 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$2" 2>/dev/null)" != 000 ] && return 0
    kill -0 "$3" 2>/dev/null || { tail -n 30 "$work/$1.log" >&2; die "$1 exited during start-up"; }
    sleep 0.2
  done
  die "$1 did not answer on $2 within 30 s (log: $work/$1.log)"
}
wait_http companion "http://127.0.0.1:$cport/s3/multipart" "$companion_pid"
cver="$(node -p "require('$cdir/node_modules/@uppy/companion/package.json').version")"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null | head -c1)"
[ -n "$dirty" ] && commit="$commit + uncommitted changes"
log "Companion $cver on :$cport (pid $companion_pid), broker $commit on :$bport (pid $broker_pid)"

measure() { local mode="$1"; shift; python3 "$here/measure.py" "$mode" --out "$results" "$@"; }
measure idle --server companion --pid "$companion_pid"
measure idle --server broker --pid "$broker_pid"

log "Checking every route once"
eval "$(COMPANION_URL="http://127.0.0.1:$cport" BROKER_URL="http://127.0.0.1:$bport" \
  BROKER_KEY=bench-key BATCH=100 python3 "$here/setup.py")"

# ---------------------------------------------------------------- load
waited=0
while awk -v q="$QUIET_LOAD" '{ exit !($1 >= q) }' /proc/loadavg && [ "$waited" -lt "$QUIET_WAIT" ]; do
  [ "$waited" = 0 ] && log "Waiting up to ${QUIET_WAIT}s for the load average to fall below $QUIET_LOAD ($(cut -d' ' -f1-3 /proc/loadavg))"
  sleep 5; waited=$((waited + 5))
done
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "Load average before measuring: $load_before"

wrk_args=(-t"$THREADS" -c"$CONNECTIONS" --latency --timeout 30s -s "$here/wrk.lua")
declare -A warmed=()
perf_pids=()
load() { # SERVER ROUTE URLS_PER_REQUEST URL [POST BODY]
  local server="$1" route="$2" urls="$3" url="$4" pid auth=()
  export WRK_POST_BODY="${5:-}"
  if [ "$server" = broker ]; then pid="$broker_pid"; auth=(-H "Authorization: Bearer bench-key")
  else pid="$companion_pid"; fi
  if [ -z "${warmed[$server/$route]:-}" ] && [ "$WARMUP" != 0 ]; then
    wrk "${wrk_args[@]}" -d"${WARMUP}s" "${auth[@]}" "$url" >/dev/null
    warmed[$server/$route]=1
  fi
  if [ "${BENCH_PERF:-0}" = 1 ] && [ "$server" = broker ] && [ ! -e "$work/perf-$route.data" ]; then
    # A flat CPU profile of the broker during its first run of each route.
    perf record -q -F 499 -e cpu-clock -p "$pid" -o "$work/perf-$route.data" -- sleep "$((DURATION - 1))" \
      >/dev/null 2>&1 &
    perf_pids+=($!)
  fi
  measure run --server "$server" --route "$route" --pid "$pid" --urls "$urls" \
    --pg-admin "$admin" --pg-db "$db" -- wrk "${wrk_args[@]}" -d"${DURATION}s" "${auth[@]}" "$url"
}
for round in 1 2; do
  order=(companion broker)
  [ "$round" = 2 ] && order=(broker companion)
  for route in one batch; do
    for server in "${order[@]}"; do
      if [ "$server" = broker ]; then one="$B_ONE" batch="$B_BATCH"; else one="$C_ONE" batch="$C_BATCH"; fi
      if [ "$route" = one ]; then load "$server" one 1 "$one"; else load "$server" batch 100 "$batch"; fi
    done
  done
  load broker native 100 "$B_PARTS" "$PARTS_BODY"
done

if [ "${BENCH_PERF:-0}" = 1 ]; then
  wait "${perf_pids[@]}" # the profiles (not the servers)
  for f in "$work"/perf-*.data; do
    perf report -i "$f" --stdio --no-children --sort dso,symbol --percent-limit 0.8 2>/dev/null \
      | grep -v '^#' | grep -v '^$' >"${f%.data}.txt"
    log "Profile of the broker ($(basename "${f%.data}")): ${f%.data}.txt"
  done
fi

# ---------------------------------------------------------------- resume
[ "${BENCH_RESUME:-1}" = 0 ] || source "$here/resume.sh"

# ---------------------------------------------------------------- report
{
  echo "$(date -u +%F), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "wrk ${THREADS} threads, ${CONNECTIONS} connections, ${DURATION} s per run (after ${WARMUP} s of warm-up),"
  echo "load average before measuring: $load_before; Companion $cver on Node $(node --version); broker $commit"
  echo
  python3 "$here/table.py" "$results" "Companion $cver" "upload-broker"
  if [ -f "$work/resume.md" ]; then cat "$work/resume.md"; fi
} | tee "$work/table.md"
log "Results: $results; table: $work/table.md"
