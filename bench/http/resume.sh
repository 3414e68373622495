# Resume against a raw ListParts, for bench/http/run.sh (sourced there, after the
# signing runs; uses its broker, LocalStack and measure.py).
#
# A fresh native upload of 100 parts with none stored; then, one request at a
# time (wrk -t1 -c1), alternating, twice:
#   listparts  GET of a presigned ListParts URL of its provider upload, straight
#              to LocalStack (what the broker's resume must at least wait for)
#   resume     POST /v1/uploads/{token}/resume on the broker: the upload read,
#              ListParts (every page), the reconciliation, and the first
#              BROKER_SIGN_WINDOW (100) part URLs signed and answered
# and prints p50/p99 of each and what resume adds to a raw ListParts.
# RESUME_DURATION (s, 10) sets each run's length.
resume_duration="${RESUME_DURATION:-10}"
resume_out="$work/resume.jsonl"
: >"$resume_out"
created="$(curl -fsS -X POST "http://127.0.0.1:$bport/v1/uploads" -H "Authorization: Bearer bench-key" \
  -H 'content-type: application/json' -d '{"filename": "resume.bin", "size": 524288000, "partSize": 5242880}')"
r_token="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["resumeToken"])' <<<"$created")"
r_id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")"
IFS='|' read -r r_key r_upload_id < <(psql "${admin%/*}/$db" -tAc \
  "select object_key, provider_upload_id from uploads where id = '$r_id'")
[ -n "$r_upload_id" ] || die "resume bench: the new upload has no provider upload id in Postgres"
listparts_url="$(R_KEY="$r_key" R_UPLOAD_ID="$r_upload_id" "$LS_VENV/bin/python" - <<'PY'
import os
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ["AWS_REGION"],
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
print(s3.generate_presigned_url("list_parts", ExpiresIn=3600, Params={
    "Bucket": os.environ["S3_BUCKET"], "Key": os.environ["R_KEY"], "UploadId": os.environ["R_UPLOAD_ID"]}))
PY
)"
one=(-t1 -c1 --latency --timeout 10s -s "$here/wrk.lua" -d"${resume_duration}s")
resume_load() { # WHAT
  if [ "$1" = listparts ]; then
    WRK_POST_BODY="" WRK_EXPECT="ListPartsResult" python3 "$here/measure.py" run --server localstack \
      --route listparts --pid "$LS_PID" --urls 0 --out "$resume_out" -- wrk "${one[@]}" "$listparts_url"
  else
    WRK_POST_BODY='{}' WRK_EXPECT="X-Amz-Signature" python3 "$here/measure.py" run --server broker \
      --route resume --pid "$broker_pid" --urls 100 --out "$resume_out" -- \
      wrk "${one[@]}" -H "Authorization: Bearer bench-key" "http://127.0.0.1:$bport/v1/uploads/$r_token/resume"
  fi
}
log "Resume of an upload with no stored parts against a raw ListParts (one request at a time, ${resume_duration} s each, twice)"
for what in listparts resume resume listparts; do resume_load "$what"; done
python3 - "$resume_out" <<'PY' | tee "$work/resume.md"
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
def mean(route, k):
    v = [r[k] for r in runs if r["route"] == route]
    return sum(v) / len(v), v
print()
print("| one request at a time | raw ListParts (LocalStack) | broker resume (ListParts + 100 URLs) | resume − ListParts |")
print("| --- | ---: | ---: | ---: |")
for k, name in (("p50_ms", "latency p50"), ("p99_ms", "latency p99")):
    (a, av), (b, bv) = mean("listparts", k), mean("resume", k)
    print(f"| {name} (each run) | {a:.2f} ms ({' / '.join(f'{x:.2f}' for x in av)}) | "
          f"{b:.2f} ms ({' / '.join(f'{x:.2f}' for x in bv)}) | {b - a:+.2f} ms |")
(a, _), (b, _) = mean("listparts", "rps"), mean("resume", "rps")
print(f"| requests/s | {a:.0f} | {b:.0f} | |")
PY
