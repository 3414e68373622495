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
#   CHAOS_S3=s3s scripts/chaos.sh           # against tools/s3s-compat instead of LocalStack
#                                           # (which keeps no part checksums: uploads without)
#
# Postgres: by default a throw-away cluster of its own (initdb and pg_ctl from
# the machine's Postgres binaries, under /tmp, on a free port, removed at the
# end), which the run restarts; the machine's cluster is not touched.
#   CHAOS_PG=machine scripts/chaos.sh       # use DATABASE_URL (default 127.0.0.1:5432)
#                                           # instead; it is not restarted unless
#   CHAOS_PG=machine CHAOS_PG_RESTART=on scripts/chaos.sh   # restart the machine's cluster
#   CHAOS_PG_RESTART=off scripts/chaos.sh   # no Postgres restart at all
#   CHAOS_PG_BIN=/usr/lib/postgresql/15/bin # where initdb and pg_ctl are (default: the newest there)
#   BROKER_BIN=… CHAOS_BIN=… scripts/chaos.sh   # use these binaries instead of building them
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
profile=short
[ "${1:-}" = --long ] && profile=long
work="$ROOT/target/chaos"
rm -rf "$work"; mkdir -p "$work"
pg_mode="${CHAOS_PG:-own}"
case "$pg_mode" in own|machine) ;; *) die "CHAOS_PG=$pg_mode: say own (a throw-away cluster, the default) or machine" ;; esac
started_ls=0 pg_dir=""
# As root the throw-away cluster runs as the postgres user (Postgres refuses root).
as_pg=()
[ "$(id -u)" = 0 ] && as_pg=(runuser -u postgres --)
stop_own_postgres() {
  [ -n "$pg_dir" ] || return 0
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
# (an `if`: under `set -e` a false test as the trap's last word would fail the run)
cleanup() { if [ "$started_ls" = 1 ]; then stop_localstack; fi; stop_s3s 2>/dev/null || true; stop_own_postgres; }
trap cleanup EXIT

pg_restart=""
if [ "$pg_mode" = own ]; then
  pg_bin="${CHAOS_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}"
  [ -n "$pg_bin" ] || pg_bin="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
  [ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] \
    || die "no initdb/pg_ctl for a throw-away Postgres (looked in ${pg_bin:-/usr/lib/postgresql/*/bin}; set CHAOS_PG_BIN, or CHAOS_PG=machine to use DATABASE_URL's server)"
  pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/upload-broker-chaos-pg.XXXXXX")"
  [ "${#as_pg[@]}" = 0 ] || chown postgres "$pg_dir"
  log "A throw-away Postgres cluster ($pg_bin) in $pg_dir"
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres -A trust -E UTF8 --no-sync >"$pg_dir/initdb.log" 2>&1 \
    || { tail -n 20 "$pg_dir/initdb.log" >&2; die "initdb failed (log above)"; }
  # A free port, again if another program took it first (pg_ctl start then fails).
  for attempt in 1 2 3; do
    pg_port="$(free_port)"
    if "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 start \
        -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null; then
      break
    fi
    tail -n 20 "$pg_dir/postgres.log" >&2
    grep -q 'could not bind\|Address already in use' "$pg_dir/postgres.log" && [ "$attempt" -lt 3 ] \
      || die "the throw-away Postgres did not start (log: $pg_dir/postgres.log)"
    log "port $pg_port was taken; trying another"
  done
  export DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
  # pg_ctl restart keeps the options it was started with (postmaster.opts).
  if [ "${CHAOS_PG_RESTART:-on}" != off ]; then
    pg_restart="${as_pg[*]}${as_pg:+ }$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/postgres.log -m fast -w -t 60 restart >/dev/null"
  fi
else
  export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  ensure_postgres
  # The machine's own cluster is restarted only when asked (other work may be on it).
  case "${CHAOS_PG_RESTART:-off}" in
    on|1|yes)
      if command -v pg_ctlcluster >/dev/null 2>&1; then
        ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
        [ -n "$ver" ] && pg_restart="pg_ctlcluster --skip-systemctl-redirect $ver main restart"
      fi
      [ -n "$pg_restart" ] || die "CHAOS_PG_RESTART=on, but there is no pg_ctlcluster cluster this script can restart" ;;
  esac
fi
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

[ -n "${BROKER_BIN:-}" ] || cargo build --locked --bin upload-broker
[ -n "${CHAOS_BIN:-}" ] || cargo build --locked -p upload-broker-client --example chaos

# The summary says how many times Postgres restarted (0 without a restart command).
log "Chaos run, $profile profile (Postgres: ${pg_dir:+a throw-away cluster on }${DATABASE_URL%/*}; restart: ${pg_restart:-none})"
admin="${DATABASE_URL%/*}/postgres"
CHAOS_PROFILE="$profile" CHAOS_DIR="$work" CHAOS_DATABASE_ADMIN_URL="$admin" \
  CHAOS_PG_RESTART="$pg_restart" BROKER_BIN="${BROKER_BIN:-$ROOT/target/debug/upload-broker}" \
  "${CHAOS_BIN:-$ROOT/target/debug/examples/chaos}" | tee "$work/summary.md"
status="${PIPESTATUS[0]}"
exit "$status"
