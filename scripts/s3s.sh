# s3s-fs (crates.io, 0.14.1) as a second S3 implementation that validates SigV4
# signatures, including presigned (query) ones. Source it after lib.sh; don't run it.
#
#   source scripts/lib.sh; source scripts/s3s.sh
#   start_s3s "$(free_port)" "$dir"      # sets S3S_PID, exports S3_ENDPOINT
#   S3_BUCKET=upload-broker-test s3s_create_bucket
#   ...; stop_s3s
#
# s3s-fs refuses (NotImplemented) PutBucketCors/GetBucketCors, PutBucketVersioning/
# GetBucketVersioning, ListObjectVersions and ListMultipartUploads, so
# localstack/init/ready.d/10-create-bucket.py fails at put_bucket_cors against it;
# s3s_create_bucket creates the bucket and reports what s3s-fs refused.
# The API tests' LocalStack health check (tests/api/common/mod.rs) does not pass
# against s3s-fs.

S3S_VERSION="0.14.1"
S3S_ROOT="$CACHE_DIR/s3s-fs"
S3S_BIN="$S3S_ROOT/bin/s3s-fs"

# Installs s3s-fs once into $CACHE_DIR/s3s-fs (cargo under the shared build lock).
ensure_s3s() {
  if [ -x "$S3S_BIN" ] && "$S3S_BIN" --version 2>/dev/null | grep -qx "s3s-fs $S3S_VERSION"; then
    return 0
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to install s3s-fs $S3S_VERSION"
  log "Installing s3s-fs $S3S_VERSION into $S3S_ROOT (once; cached)"
  mkdir -p "$CACHE_DIR"
  flock -o /tmp/cargo.lock cargo install s3s-fs --version "$S3S_VERSION" --features binary \
    --locked --root "$S3S_ROOT" >&2
}

# start_s3s PORT DATADIR -> sets S3S_PID, exports S3_ENDPOINT.
# Access key / secret come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default
# test/test); with both given s3s-fs checks every signature, header or query.
start_s3s() {
  local port="$1" dir="$2"
  ensure_s3s
  mkdir -p "$dir/data"
  log "Starting s3s-fs $S3S_VERSION on 127.0.0.1:$port (data: $dir/data)"
  RUST_LOG="${S3S_LOG:-s3s=info,s3s_fs=info}" "$S3S_BIN" --host 127.0.0.1 --port "$port" \
    --access-key "${AWS_ACCESS_KEY_ID:-test}" --secret-key "${AWS_SECRET_ACCESS_KEY:-test}" \
    "$dir/data" >"$dir/s3s.log" 2>&1 &
  S3S_PID=$!
  export S3_ENDPOINT="http://127.0.0.1:$port"
  for _ in $(seq 1 60); do
    # Unsigned requests get 403 AccessDenied: that is s3s-fs answering.
    if curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" 2>/dev/null | grep -q '^403$'; then
      return 0
    fi
    if ! kill -0 "$S3S_PID" 2>/dev/null; then
      tail -n 40 "$dir/s3s.log" >&2
      die "s3s-fs exited during start-up (log: $dir/s3s.log)"
    fi
    sleep 0.5
  done
  tail -n 40 "$dir/s3s.log" >&2
  die "s3s-fs did not answer on $S3_ENDPOINT within 30 s (log: $dir/s3s.log)"
}

stop_s3s() {
  [ -n "${S3S_PID:-}" ] || return 0
  if kill -0 "$S3S_PID" 2>/dev/null; then
    kill -TERM "$S3S_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$S3S_PID" 2>/dev/null || return 0; sleep 0.5; done
    kill -KILL "$S3S_PID" 2>/dev/null || true
  fi
}

# Creates $S3_BUCKET at $S3_ENDPOINT with the LocalStack venv's boto3. Tries the
# calls 10-create-bucket.py makes (CORS; versioning with S3_BUCKET_VERSIONING=1)
# and reports the ones s3s-fs refuses instead of failing.
s3s_create_bucket() {
  ensure_localstack_venv
  AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" - <<'PY' >&2
import os
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = os.environ["AWS_ENDPOINT_URL"]
bucket = os.environ.get("S3_BUCKET") or "uploads"
origins = [o.strip() for o in (os.environ.get("BROKER_CORS_ORIGINS") or "*").split(",") if o.strip()]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name=os.environ.get("S3_REGION") or "us-east-1",
    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "test",
    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)
if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
    s3.create_bucket(Bucket=bucket)

def attempt(name, call):
    try:
        call()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        if code != "NotImplemented":
            raise
        print(f"s3s-fs: {name} is not implemented (skipped)")

attempt("PutBucketCors", lambda: s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": origins, "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
    "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}]}))
if os.environ.get("S3_BUCKET_VERSIONING") == "1":
    attempt("PutBucketVersioning", lambda: s3.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}))
print(f"bucket {bucket} ready at {endpoint} (s3s-fs)")
PY
}
