#!/usr/bin/env bash
# Starts LocalStack (S3 only, signature validation on) in the foreground, creates
# the bucket, and prints the variables to export. Ctrl-C stops it.
#   LOCALSTACK_PORT (default 4566), S3_BUCKET (default uploads)
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
port="${LOCALSTACK_PORT:-4566}"
dir="$ROOT/.local/localstack"
mkdir -p "$dir"
trap stop_localstack EXIT INT TERM
start_localstack "$port" "$dir"
export S3_BUCKET="${S3_BUCKET:-uploads}"
AWS_ENDPOINT_URL="$S3_ENDPOINT" "$LS_VENV/bin/python" localstack/init/ready.d/10-create-bucket.py >&2
cat <<MSG
LocalStack is running. In another shell:
  export S3_ENDPOINT=$S3_ENDPOINT S3_BUCKET=$S3_BUCKET S3_FORCE_PATH_STYLE=true AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
MSG
wait "$LS_PID"
