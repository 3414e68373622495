#!/usr/bin/env bash
# The chaos run (client/examples/chaos.rs): two broker instances on one
# database, clients of the Rust library uploading files of random sizes while
# instances are kill -9ed, a fault proxy injects latency, resets, 500/503s and
# "200 with an error inside" on completions, clients vanish and others resume,
# Postgres restarts once and the sweep runs; then the invariants are checked and
# a summary table printed. Exits non-zero on any violation.
#
#   scripts/chaos.sh            # short profile (60 uploads up to 24 MiB, 6 clients)
#   scripts/chaos.sh --long     # long profile (500 uploads up to 200 MiB, 12 clients)
#   CHAOS_PG_RESTART=off scripts/chaos.sh   # keep Postgres running (other work on it)
#   CHAOS_S3=s3s scripts/chaos.sh           # against tools/s3s-compat instead of LocalStack
#                                           # (which keeps no part checksums: uploads without)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
profile=short
[ "${1:-}" = --long ] && profile=long
work="$ROOT/target/chaos"
rm -rf "$work"; mkdir -p "$work"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ensure_postgres
started_ls=0
# (an `if`: under `set -e` a false test as the trap's last word would fail the run)
cleanup() { if [ "$started_ls" = 1 ]; then stop_localstack; fi; stop_s3s 2>/dev/null || true; }
trap cleanup EXIT
export S3_BUCKET=upload-broker-chaos AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
if [ "${CHAOS_S3:-localstack}" = s3s ]; then
  source "$ROOT/scripts/s3s.sh"
  start_s3s "$(free_port)" "$work/s3s"
  s3s_create_bucket
  export CHAOS_CHECKSUMS=off
else
  if [ -z "${S3_ENDPOINT:-}" ]; then
    start_localstack "$(free_port)" "$work/localstack"; started_ls=1
  fi
  AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2
fi

cargo build --locked --bin upload-broker
cargo build --locked -p upload-broker-client --example chaos

# Restart the machine's own cluster once, unless told not to (or there is none
# this script can restart: then the summary says 0 Postgres restarts).
pg_restart=""
if [ "${CHAOS_PG_RESTART:-on}" != off ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  [ -n "$ver" ] && pg_restart="pg_ctlcluster --skip-systemctl-redirect $ver main restart"
fi
log "Chaos run, $profile profile (Postgres restart: ${pg_restart:-none})"
admin="${DATABASE_URL%/*}/postgres"
CHAOS_PROFILE="$profile" CHAOS_DIR="$work" CHAOS_DATABASE_ADMIN_URL="$admin" \
  CHAOS_PG_RESTART="$pg_restart" BROKER_BIN="$ROOT/target/debug/upload-broker" \
  "$ROOT/target/debug/examples/chaos" | tee "$work/summary.md"
status="${PIPESTATUS[0]}"
exit "$status"
