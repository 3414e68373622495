# Shared helpers for the dev/test scripts. Source it; don't run it.
# Everything here works without Docker: Postgres from the machine (or started
# from Debian's packages), LocalStack from PyPI in a cached Python 3.11 venv.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${UPLOAD_BROKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/upload-broker}"
LS_VENV="$CACHE_DIR/localstack-venv"
LS_PIP_SPEC=("localstack-core[base-runtime]==4.13.1" "cbor2<6" "pyopenssl<26" "cryptography<47" "service-identity")
LS_STAMP="4.13.1-cbor2<6-pyopenssl<26-cryptography<47"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- Postgres
# Sets DATABASE_URL. Uses the one given, else 127.0.0.1:5432, else starts the
# machine's cluster.
ensure_postgres() {
  export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/upload_broker}"
  local hostport
  hostport="$(python3 - "$DATABASE_URL" <<'PY'
import sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
print(f"{u.hostname or '127.0.0.1'} {u.port or 5432}")
PY
)"
  set -- $hostport
  if pg_isready -q -h "$1" -p "$2" 2>/dev/null; then return 0; fi
  log "Postgres is not answering on $1:$2; trying to start the local cluster"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    local ver
    ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
    if [ -n "$ver" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    fi
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h "$1" -p "$2" 2>/dev/null && return 0
    sleep 1
  done
  die "Postgres is not reachable at $1:$2. Start it (e.g. 'pg_ctlcluster 15 main start', or set DATABASE_URL) and try again."
}

# Creates the database named in DATABASE_URL if it does not exist.
ensure_database() {
  python3 - "$DATABASE_URL" <<'PY' | while read -r admin db; do
import sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
db = u.path.lstrip('/') or 'postgres'
admin = u._replace(path='/postgres').geturl()
print(admin, db)
PY
    if [ "$(psql "$admin" -tAc "select 1 from pg_database where datname = '$db'")" != "1" ]; then
      psql "$admin" -qc "create database \"$db\"" >/dev/null
    fi
  done
}

# ---------------------------------------------------------------- LocalStack
ensure_localstack_venv() {
  if [ -x "$LS_VENV/bin/python" ] && [ "$(cat "$LS_VENV/.stamp" 2>/dev/null)" = "$LS_STAMP" ]; then
    return 0
  fi
  local py
  py="$(command -v python3.11 || true)"
  [ -n "$py" ] || die "Python 3.11 is needed for LocalStack 4.13 (python3.11 not found on PATH)."
  log "Installing LocalStack 4.13.1 into $LS_VENV (once; cached)"
  rm -rf "$LS_VENV"
  mkdir -p "$CACHE_DIR"
  "$py" -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install -q --disable-pip-version-check "${LS_PIP_SPEC[@]}"
  echo "$LS_STAMP" > "$LS_VENV/.stamp"
}

# start_localstack PORT DATADIR -> sets LS_PID, S3_ENDPOINT
start_localstack() {
  local port="$1" dir="$2"
  ensure_localstack_venv
  mkdir -p "$dir/fs" "$dir/tmp"
  log "Starting LocalStack (S3) on 127.0.0.1:$port"
  (
    cd "$dir"
    exec env SERVICES=s3 GATEWAY_LISTEN="127.0.0.1:$port" EAGER_SERVICE_LOADING=1 \
      S3_SKIP_SIGNATURE_VALIDATION=0 DNS_ADDRESS=0 DOCKER_BRIDGE_IP=127.0.0.1 \
      DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 FILESYSTEM_ROOT="$dir/fs" \
      TMPDIR="$dir/tmp" LOCALSTACK_VOLUME_DIR="$dir/fs" \
      "$LS_VENV/bin/python" -m localstack.runtime.main
  ) >"$dir/localstack.log" 2>&1 &
  LS_PID=$!
  export S3_ENDPOINT="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    if curl -fsS "$S3_ENDPOINT/_localstack/health" 2>/dev/null | grep -q '"s3": *"\(running\|available\)"'; then
      return 0
    fi
    if ! kill -0 "$LS_PID" 2>/dev/null; then
      tail -n 40 "$dir/localstack.log" >&2
      die "LocalStack exited during start-up (log: $dir/localstack.log)"
    fi
    sleep 0.5
  done
  tail -n 40 "$dir/localstack.log" >&2
  die "LocalStack did not become ready on $S3_ENDPOINT within 60 s (log: $dir/localstack.log)"
}

stop_localstack() {
  [ -n "${LS_PID:-}" ] || return 0
  if kill -0 "$LS_PID" 2>/dev/null; then
    kill -TERM "$LS_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$LS_PID" 2>/dev/null || return 0; sleep 0.5; done
    kill -KILL "$LS_PID" 2>/dev/null || true
  fi
}

# A small venv for Python tools the checks use (the OpenAPI validator).
TOOLS_VENV="$CACHE_DIR/tools-venv"
TOOLS_STAMP="openapi-spec-validator==0.9.0 schemathesis==4.32.5"
ensure_tools_venv() {
  if [ -x "$TOOLS_VENV/bin/openapi-spec-validator" ] && [ -x "$TOOLS_VENV/bin/st" ] && [ "$(cat "$TOOLS_VENV/.stamp" 2>/dev/null)" = "$TOOLS_STAMP" ]; then
    return 0
  fi
  log "Installing $TOOLS_STAMP into $TOOLS_VENV (once; cached)"
  rm -rf "$TOOLS_VENV"
  mkdir -p "$CACHE_DIR"
  python3 -m venv "$TOOLS_VENV"
  # shellcheck disable=SC2086 # one word per package
  "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check $TOOLS_STAMP
  echo "$TOOLS_STAMP" > "$TOOLS_VENV/.stamp"
}

# ensure_debian_package PACKAGE FOR: installs Debian's PACKAGE with apt-get when
# run as root, else stops saying how to (FOR: what needs it).
ensure_debian_package() {
  local package="$1" purpose="$2"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "Installing Debian's $package for $purpose (once)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  else
    die "$package is needed for $purpose: install Debian's package (sudo apt-get install $package)${3:+ $3}."
  fi
}

# Debian's Chromium, for the browser tests (no browser downloads by test tools).
ensure_chromium() {
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && return 0
  ensure_debian_package chromium "the browser tests" "or set CHROMIUM to its path"
}

# free_port: a port of 127.0.0.1 nothing listens on, for a server started next.
# A port is only known to be free until someone binds it, so this narrows the
# race: the port comes from below the kernel's ephemeral range (where port-0
# binds and outgoing connections never land), at random, and is reserved for
# 10 minutes under /tmp/upload-broker-ports (an O_EXCL file), so scripts running
# side by side never get the same one. What is left (another program binding
# that port first) start_broker survives by trying another port.
free_port() {
  python3 - "${UPLOAD_BROKER_PORTS_DIR:-/tmp/upload-broker-ports}" <<'PY'
import os, random, socket, sys, time
lock_dir = sys.argv[1]
try:
    os.makedirs(lock_dir, exist_ok=True)
    if os.stat(lock_dir).st_uid == os.getuid():
        os.chmod(lock_dir, 0o1777)  # shared by every user's scripts, like /tmp
except OSError:
    pass
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
low = max(low, 12000)
for _ in range(200):
    port = random.randrange(low - 10000, low)
    mark = os.path.join(lock_dir, str(port))
    try:
        if time.time() - os.stat(mark).st_mtime < 600:
            continue  # reserved by another free_port a moment ago
        os.unlink(mark)
    except OSError:
        pass
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        continue
    except OSError:
        pass  # no reservations here (permissions): the port is still checked
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue  # taken: keep the mark, it expires
    finally:
        s.close()
    print(port)
    sys.exit(0)
# Fall back to the kernel's choice.
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
PY
}

# wait_ready URL TIMEOUT WHAT [PID [LOG]]: waits until URL answers 2xx, for at
# most TIMEOUT seconds. Dies, with the last lines of LOG if given, when time
# runs out or when PID (the server being waited for) exits first.
wait_ready() {
  local url="$1" timeout="$2" what="$3" pid="${4:-}" logf="${5:-}" rc=0
  await_ready "$url" "$timeout" "$pid" || rc=$?
  [ "$rc" = 0 ] && return 0
  if [ -n "$logf" ] && [ -f "$logf" ]; then tail -n 40 "$logf" >&2; fi
  [ "$rc" = 2 ] && die "$what exited before answering on $url${logf:+ (log: $logf)}"
  die "$what did not answer on $url within $timeout s${logf:+ (log: $logf)}"
}

# await_ready URL TIMEOUT [PID]: wait_ready's loop; returns 0 when ready, 1 on
# time-out, 2 when PID has exited.
await_ready() {
  local url="$1" deadline=$((SECONDS + $2)) pid="${3:-}"
  while :; do
    curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null && return 0
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# start_broker LOG COMMAND...: runs COMMAND (the broker's `serve`, its settings
# in the environment: `VAR=… start_broker LOG bin serve`) in the background with
# BROKER_LISTEN on a free port of 127.0.0.1, its output in LOG, and waits for
# /healthz (BROKER_START_TIMEOUT, 60 s). Sets BROKER_PID, BROKER_PORT and
# BROKER_URL. When the port was taken before the broker bound it ("Address
# already in use") it tries another, three times in all; any other failure
# stops the broker and dies with the end of LOG.
start_broker() {
  local logf="$1" rc=0 attempt
  shift
  for attempt in 1 2 3; do
    BROKER_PORT="$(free_port)"
    BROKER_URL="http://127.0.0.1:$BROKER_PORT"
    BROKER_LISTEN="127.0.0.1:$BROKER_PORT" "$@" >"$logf" 2>&1 &
    BROKER_PID=$!
    rc=0
    await_ready "$BROKER_URL/healthz" "${BROKER_START_TIMEOUT:-60}" "$BROKER_PID" || rc=$?
    [ "$rc" = 0 ] && return 0
    if [ "$rc" = 2 ] && [ "$attempt" -lt 3 ] && grep -q 'Address already in use' "$logf"; then
      log "port $BROKER_PORT was taken before the broker could bind it; trying another"
      continue
    fi
    break
  done
  kill "$BROKER_PID" 2>/dev/null || true
  tail -n 40 "$logf" >&2
  [ "$rc" = 2 ] && die "the broker exited during start-up (log: $logf)"
  die "the broker did not answer on $BROKER_URL/healthz within ${BROKER_START_TIMEOUT:-60} s (log: $logf)"
}
