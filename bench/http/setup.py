"""Set-up and checks for bench/http/run.sh, before anything is measured.

Creates one multipart upload through Companion (POST /s3/multipart), one
through the broker's Companion-compatible route and one through its native
POST /v1/uploads (100 parts of 5 MiB); then asks every route that will be
loaded once and checks the answer: a 200, JSON of the route's shape, the right
number of presigned URLs, each a SigV4 query-signed URL for the bucket at the
LocalStack endpoint. Finally it PUTs a few bytes to a URL of each route and
server: LocalStack (signature validation on) must accept it, so the URLs are
real. Prints shell assignments (URLs for wrk, the POST body) on stdout.

Environment: COMPANION_URL, BROKER_URL, BROKER_KEY, S3_ENDPOINT, S3_BUCKET,
BATCH (100).
"""

import json
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request

C = os.environ["COMPANION_URL"]
B = os.environ["BROKER_URL"]
AUTH = {"Authorization": "Bearer " + os.environ["BROKER_KEY"]}
ENDPOINT = os.environ["S3_ENDPOINT"]
BUCKET = os.environ["S3_BUCKET"]
N = int(os.environ.get("BATCH", "100"))
PART = 5 * 1024 * 1024


def fail(msg):
    print(f"setup.py: {msg}", file=sys.stderr)
    sys.exit(1)


def call(method, url, body=None, headers=None, want=200):
    data = None if body is None else json.dumps(body).encode()
    h = dict(headers or {})
    if data is not None:
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, text = res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode(errors="replace")
    if status != want:
        fail(f"{method} {url} answered {status}, expected {want}: {text[:500]}")
    return json.loads(text)


def check_url(what, url):
    u = urllib.parse.urlsplit(url)
    q = urllib.parse.parse_qs(u.query)
    ok = (
        url.startswith(ENDPOINT + "/" + BUCKET + "/")
        and q.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"]
        and q.get("X-Amz-Signature")
        and q.get("uploadId")
        and q.get("partNumber")
    )
    if not ok:
        fail(f"{what}: not a presigned UploadPart URL for {ENDPOINT}/{BUCKET}: {url}")
    return int(q["partNumber"][0])


def put_part(what, url, size=1024):
    """LocalStack validates the signature: a forged or wrong URL fails here."""
    req = urllib.request.Request(url, data=b"x" * size, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, etag = res.status, res.headers.get("ETag")
    except urllib.error.HTTPError as e:
        fail(f"{what}: PUT to its URL answered {e.code}: {e.read().decode(errors='replace')[:500]}")
    if status != 200 or not etag:
        fail(f"{what}: PUT to its URL answered {status} without an ETag")


def q(s):
    return urllib.parse.quote(s, safe="")


numbers = list(range(1, N + 1))
csv = ",".join(map(str, numbers))
out = {}

# Companion, and the broker's Companion-compatible routes: the same requests.
for name, base, headers in (("C", C, {}), ("B", B, AUTH)):
    up = call("POST", f"{base}/s3/multipart",
              {"filename": "bench.bin", "type": "application/octet-stream", "metadata": {}}, headers)
    key, upload_id = up.get("key"), up.get("uploadId")
    if not key or not upload_id:
        fail(f"{base}/s3/multipart answered no key/uploadId: {up}")
    one = f"{base}/s3/multipart/{q(upload_id)}/7?key={q(key)}"
    batch = f"{base}/s3/multipart/{q(upload_id)}/batch?key={q(key)}&partNumbers={csv}"
    got = call("GET", one, headers=headers)
    if not isinstance(got.get("url"), str) or check_url(f"{name} one", got["url"]) != 7:
        fail(f"{one}: answer is not {{url}} for part 7: {got}")
    put_part(f"{name} one part", got["url"])
    got = call("GET", batch, headers=headers)
    urls = got.get("presignedUrls") or {}
    if sorted(map(int, urls)) != numbers:
        fail(f"{name} batch: expected {N} URLs for parts 1..{N}, got keys {sorted(urls)[:10]}…")
    for n, url in urls.items():
        if check_url(f"{name} batch part {n}", url) != int(n):
            fail(f"{name} batch: the URL for part {n} is for another part")
    put_part(f"{name} batch", urls[str(N)])
    out[f"{name}_ONE"], out[f"{name}_BATCH"] = one, batch

# The broker's native route.
up = call("POST", f"{B}/v1/uploads",
          {"filename": "bench.bin", "size": N * PART, "partSize": PART}, AUTH, want=201)
token = up.get("resumeToken")
if not token or up.get("partCount") != N:
    fail(f"POST /v1/uploads: no resumeToken or partCount != {N}: {json.dumps(up)[:300]}")
body = json.dumps({"partNumbers": numbers}, separators=(",", ":"))
native = f"{B}/v1/uploads/{token}/parts"
got = call("POST", native, json.loads(body), AUTH)
parts = got.get("parts") or []
if [p.get("partNumber") for p in parts] != numbers:
    fail(f"POST …/parts: expected parts 1..{N} in order, got {len(parts)}")
for p in parts:
    if check_url(f"native part {p['partNumber']}", p.get("url", "")) != p["partNumber"]:
        fail(f"native: the URL for part {p['partNumber']} is for another part")
put_part("B native", parts[N // 2]["url"], parts[N // 2]["size"])  # its signed length
out["B_PARTS"], out["PARTS_BODY"] = native, body

print(f"checked: every route answers 200 with {N} (or 1) presigned URLs; a PUT to one URL of each "
      "route and server was accepted by LocalStack", file=sys.stderr)
for k, v in out.items():
    print(f"{k}={shlex.quote(v)}")
