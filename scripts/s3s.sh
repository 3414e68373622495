# tools/s3s-compat: a second S3 implementation, besides LocalStack, that validates
# SigV4 signatures, header and presigned (query) ones. It is s3s-fs 0.14.1 from
# crates.io behind an `s3s::S3` that adds the multipart behaviours AWS documents
# and s3s-fs lacks (ListParts with ETags and paging, NoSuchUpload, the completion's
# ETag check, ListMultipartUploads): see tools/s3s-compat/src/compat.rs and
# docs/s3-compatibility.md. Source it after lib.sh; don't run it.
#
#   source scripts/lib.sh; source scripts/s3s.sh
#   start_s3s "$(free_port)" "$dir"      # sets S3S_PID, exports S3_ENDPOINT
#   S3_BUCKET=upload-broker-test s3s_create_bucket
#   S3_IMPL=s3s cargo test --test api ...; stop_s3s
#
# Still NotImplemented: PutBucketCors/GetBucketCors, PutBucketVersioning/
# GetBucketVersioning, ListObjectVersions, so localstack/init/ready.d/
# 10-create-bucket.py fails against it; s3s_create_bucket creates the bucket and
# reports what was refused. The API tests check it with S3_IMPL=s3s (a signed
# HeadBucket instead of LocalStack's health), and the tests listed in
# tests/api/localstack-only.txt refuse to run against it.

S3S_MANIFEST="$ROOT/tools/s3s-compat/Cargo.toml"
S3S_TARGET="$ROOT/target/s3s-compat"
# debug by default: on 2 cores it builds cold in ~40 s (release: ~75 s) and the
# suite takes as long against either (~50 s; it waits on the broker, not storage).
S3S_PROFILE="${S3S_PROFILE:-debug}"
S3S_BIN="$S3S_TARGET/$S3S_PROFILE/s3s-compat"

# Builds tools/s3s-compat (cargo under the shared build lock; a no-op when current).
ensure_s3s() {
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to build tools/s3s-compat"
  local profile_flag=()
  [ "$S3S_PROFILE" = release ] && profile_flag=(--release)
  log "Building tools/s3s-compat ($S3S_PROFILE, into $S3S_TARGET)"
  flock -o /tmp/cargo.lock cargo build --locked --quiet --manifest-path "$S3S_MANIFEST" \
    --target-dir "$S3S_TARGET" "${profile_flag[@]}" >&2
}

# start_s3s PORT DATADIR -> sets S3S_PID, exports S3_ENDPOINT.
# Access key / secret come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (default
# test/test); s3s checks every request's signature, header or query, against them.
start_s3s() {
  local port="$1" dir="$2"
  ensure_s3s
  mkdir -p "$dir/data"
  log "Starting s3s-compat (s3s-fs 0.14.1) on 127.0.0.1:$port (data: $dir/data)"
  RUST_LOG="${S3S_LOG:-info}" "$S3S_BIN" --host 127.0.0.1 --port "$port" \
    --access-key "${AWS_ACCESS_KEY_ID:-test}" --secret-key "${AWS_SECRET_ACCESS_KEY:-test}" \
    "$dir/data" >"$dir/s3s.log" 2>&1 &
  S3S_PID=$!
  export S3_ENDPOINT="http://127.0.0.1:$port"
  for _ in $(seq 1 60); do
    # Unsigned requests get 403 AccessDenied: that is s3s answering.
    if curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" 2>/dev/null | grep -q '^403$'; then
      return 0
    fi
    if ! kill -0 "$S3S_PID" 2>/dev/null; then
      tail -n 40 "$dir/s3s.log" >&2
      die "s3s-compat exited during start-up (log: $dir/s3s.log)"
    fi
    sleep 0.5
  done
  tail -n 40 "$dir/s3s.log" >&2
  die "s3s-compat did not answer on $S3_ENDPOINT within 30 s (log: $dir/s3s.log)"
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
        print(f"s3s: {name} is not implemented (skipped)")

attempt("PutBucketCors", lambda: s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
    "AllowedOrigins": origins, "AllowedMethods": ["PUT", "POST", "GET", "HEAD"],
    "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}]}))
if os.environ.get("S3_BUCKET_VERSIONING") == "1":
    attempt("PutBucketVersioning", lambda: s3.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}))
print(f"bucket {bucket} ready at {endpoint} (s3s-compat)")
PY
}
