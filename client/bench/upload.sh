#!/usr/bin/env bash
# Benchmark (not a test): `upb upload` of one file (1 GiB by default) at
# concurrency 4 with 16 MiB parts, against `aws s3 cp` (awscli from PyPI, same
# concurrency and part size) on the same file and the same LocalStack, through
# the real broker: wall time, CPU (user + system) and peak RSS from
# /usr/bin/time. Then the resume overhead: an upload interrupted (SIGINT)
# halfway and run again. Prints Markdown rows for docs/benchmarks.md.
#
#   client/bench/upload.sh            # SIZE_MIB=1024 by default
#   S3_ENDPOINT=… S3_BUCKET=… client/bench/upload.sh   # use a running LocalStack
#
# Builds `upb` in release mode (under `flock /tmp/cargo.lock`); the broker is
# the debug build (it only signs and completes: no byte passes through it).
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$ROOT"

SIZE_MIB="${SIZE_MIB:-1024}"
bench="$ROOT/target/upb-bench"
mkdir -p "$bench"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ensure_postgres

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_localstack
  [ -n "${db_url:-}" ] && psql "${DATABASE_URL%/*}/postgres" -qc "drop database if exists upb_bench with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ -z "${S3_ENDPOINT:-}" ]; then
  ls_dir="$bench/localstack"; rm -rf "$ls_dir"
  start_localstack "$(free_port)" "$ls_dir"
  export S3_BUCKET=upb-bench
fi
export S3_BUCKET="${S3_BUCKET:-upb-bench}"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
S3_BUCKET="$S3_BUCKET" AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2

log "Building upb (release) and the broker (debug)"
flock /tmp/cargo.lock cargo build --release --locked -p upload-broker-client --bin upb
flock /tmp/cargo.lock cargo build --locked --bin upload-broker
UPB="$ROOT/target/release/upb"

AWS_VENV="$CACHE_DIR/awscli-venv"
AWS_SPEC="awscli==1.46.2"
if [ "$(cat "$AWS_VENV/.stamp" 2>/dev/null)" != "$AWS_SPEC" ]; then
  log "Installing $AWS_SPEC into $AWS_VENV (once; cached)"
  rm -rf "$AWS_VENV"; python3.11 -m venv "$AWS_VENV"
  "$AWS_VENV/bin/pip" install -q --disable-pip-version-check "$AWS_SPEC"
  echo "$AWS_SPEC" > "$AWS_VENV/.stamp"
fi

db_url="${DATABASE_URL%/*}/upb_bench"
psql "${DATABASE_URL%/*}/postgres" -qc "drop database if exists upb_bench with (force)" >/dev/null
DATABASE_URL="$db_url" S3_ENDPOINT="$S3_ENDPOINT" S3_FORCE_PATH_STYLE=true S3_KEY_PREFIX="bench/" \
  BROKER_API_KEYS="bench:bench-key" \
  BROKER_TOKEN_SECRET="upb-bench-token-secret-0123456789abcdef" SWEEP_INTERVAL=0 RUST_LOG=warn \
  start_broker "$bench/broker.log" "$ROOT/target/debug/upload-broker" serve
pids+=("$BROKER_PID")
export UPLOAD_BROKER_URL="$BROKER_URL" UPLOAD_BROKER_CREDENTIAL=bench-key XDG_STATE_HOME="$bench/state"

file="$bench/upload-$SIZE_MIB.bin"
if [ "$(stat -c %s "$file" 2>/dev/null)" != "$((SIZE_MIB * 1048576))" ]; then
  log "Writing $SIZE_MIB MiB of random bytes to $file"
  head -c "$((SIZE_MIB * 1048576))" /dev/urandom > "$file"
fi

rows=()
# measure LABEL COMMAND... : one run under /usr/bin/time; appends a Markdown row.
# SENT_MIB (default SIZE_MIB): the bytes the run sends, for its throughput.
measure() {
  local label="$1"; shift
  local sent="${SENT_MIB:-$SIZE_MIB}"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  /usr/bin/time -f '%e %U %S %M' -o "$bench/time.txt" "$@" >"$bench/out.txt" 2>"$bench/err.txt" \
    || { cat "$bench/err.txt" >&2; die "$label failed"; }
  read -r wall user sys rss_kib < "$bench/time.txt"
  local rate
  rate="$(python3 -c "print(f'{$sent/$wall:.0f}')")"
  rows+=("| $label | $wall s | $rate MiB/s | $(python3 -c "print(f'{$user+$sys:.1f}')") s | $((rss_kib / 1024)) MiB |")
  log "$label: wall ${wall}s, cpu $(python3 -c "print(f'{$user+$sys:.1f}')")s, peak RSS $((rss_kib / 1024)) MiB"
}

for mode in crc32c none sha256; do
  measure "\`upb upload --checksum $mode\`" "$UPB" upload --no-resume --concurrency 4 --part-size 16MiB --checksum "$mode" "$file"
done

cat > "$bench/aws-config" <<CFG
[default]
region = us-east-1
s3 =
  max_concurrent_requests = 4
  multipart_threshold = 16MB
  multipart_chunksize = 16MB
CFG
AWS_CONFIG_FILE="$bench/aws-config" measure "\`aws s3 cp\` (awscli 1.46.2)" \
  "$AWS_VENV/bin/aws" s3 cp --only-show-errors --endpoint-url "$S3_ENDPOINT" "$file" "s3://$S3_BUCKET/bench/aws-cp.bin"

# Resume overhead: interrupt halfway (by time, from the CRC32C run), run again.
full_wall="$(awk -F'|' 'NR==1{print $3}' <<<"${rows[0]}" | tr -dc '0-9.')"
"$UPB" upload --concurrency 4 --part-size 16MiB "$file" >/dev/null 2>"$bench/first.txt" &
up=$!
sleep "$(python3 -c "print($full_wall/2)")"
kill -INT "$up"; wait "$up" || true
# What a resume does before sending: the fingerprint and the lookup (which
# reconciles with ListParts), as `upb ls FILE` does them; best of three.
lookup=99
for _ in 1 2 3; do
  s0=$(date +%s.%N); "$UPB" ls --json "$file" > "$bench/ls.json"; s1=$(date +%s.%N)
  lookup="$(python3 -c "print(min($lookup, $s1 - $s0))")"
done
stored="$(python3 -c "import json; print(json.load(open('$bench/ls.json'))[0]['upload']['progress']['uploadedParts'])")"
total="$(python3 -c "import json; print(json.load(open('$bench/ls.json'))[0]['upload']['partCount'])")"
SENT_MIB=$(( (total - stored) * 16 )) measure "\`upb upload\` again after Ctrl-C at half time ($((total - stored)) parts left)" \
  "$UPB" upload --concurrency 4 --part-size 16MiB "$file"
resumed="$(grep -o 'resuming: [0-9]* of [0-9]* parts stored' "$bench/err.txt")"
second_wall="$(awk -F'|' '{print $3}' <<<"${rows[-1]}" | tr -dc '0-9.')"
overhead="$(python3 -c "print(f'{$second_wall - $full_wall*($total-$stored)/$total:.2f}')")"

echo
echo "$SIZE_MIB MiB, concurrency 4, 16 MiB parts, LocalStack 4.13.1 on this machine ($(nproc) cores):"
echo
echo "| run | wall | throughput | CPU (user+sys) | peak RSS |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "Resume ($resumed): the second run took ${second_wall}s, against $(python3 -c "print(f'{$full_wall*($total-$stored)/$total:.2f}')")s for its share of a full run: ${overhead}s more, which includes a whole completion (not proportional to the parts sent)."
echo "Before its first PUT a resume computes the fingerprint and looks it up (reconciled with ListParts): $(python3 -c "print(f'{$lookup*1000:.0f}')") ms (\`upb ls FILE\`, best of 3); the resume call then lists the parts once more."
