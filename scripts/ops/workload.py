#!/usr/bin/env python3
"""Runs the broker binary against Postgres and S3 through a real workload and
saves what its /metrics shows afterwards.

The workload, each step through the broker's HTTP API as a client would:
webhook endpoints (one receiver answering 204, one answering 500, so deliveries
are delivered, retried and given up), uploads created and their bytes PUT to
the presigned URLs, part URLs signed, a resume, a status, a completion (also
through the Companion routes), an abort, an upload aborted at the provider
behind the broker's back (its next status: 410, expired), an upload left to
expire and swept by serve's own sweep, a few refused requests; then /healthz,
/readyz and /metrics. Run with the LocalStack venv's Python (boto3).

usage: workload.py BROKER_BIN OUT_METRICS_FILE   (environment: DATABASE_URL,
S3_ENDPOINT, S3_BUCKET; AWS_* default to LocalStack's test credentials)
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3

KEY = "ops-workload-key"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def receiver(status):
    """A webhook receiver answering every POST with `status`; returns (url, hits)."""
    hits = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            hits.append(self.headers.get("webhook-id"))
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/hook", hits


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, key=KEY, expect=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if key:
            req.add_header("authorization", f"Bearer {key}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if expect is not None and status != expect:
            # The path without its resume token or upload id (they stay out of logs).
            shown = "/".join(seg if len(seg) < 24 else "…" for seg in path.split("?")[0].split("/"))
            raise SystemExit(f"workload: {method} {shown} answered {status}, not {expect}: {raw[:300]!r}")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


def put(url, data, headers=None):
    req = urllib.request.Request(url, data=data, method="PUT")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 200:
            raise SystemExit(f"workload: a part PUT answered {r.status}")
        return r.headers.get("etag")


def wait_for(what, cond, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"workload: timed out waiting for {what}")


def main():
    binary, out = sys.argv[1], sys.argv[2]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bucket = os.environ["S3_BUCKET"]
    env = dict(os.environ)
    env.update({
        "BROKER_LISTEN": f"127.0.0.1:{port}",
        "BROKER_API_KEYS": f"ops:{KEY}",
        "BROKER_TOKEN_SECRET": "ops-workload-token-secret-of-32-bytes-or-more",
        "S3_FORCE_PATH_STYLE": "true",
        "S3_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "test"),
        # An upload not completed within 6 s expires; serve sweeps every second.
        "UPLOAD_TTL": "6s",
        "PART_URL_TTL": "60s",
        "SWEEP_INTERVAL": "1s",
        # Failing deliveries: retried after 50 ms, given up after 1 s.
        "WEBHOOK_RETRY_DELAY": "50ms",
        "WEBHOOK_RETRY_MAX_DELAY": "100ms",
        "WEBHOOK_RETRY_FOR": "1s",
        "WEBHOOK_POLL": "50ms",
        "RUST_LOG": "warn",
    })
    help_text = subprocess.run([binary, "serve", "--help"], stdout=subprocess.PIPE, text=True).stdout
    if "EGRESS_ALLOW" in help_text:
        env["EGRESS_ALLOW"] = "127.0.0.0/8"  # the webhook receivers are local
    log = open(out + ".broker.log", "w")
    broker = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = Api(base)

        def up():
            if broker.poll() is not None:
                raise SystemExit(f"workload: the broker exited ({broker.returncode}); log: {out}.broker.log")
            try:
                return api.call("GET", "/healthz", key=None)[0] == 200
            except OSError:
                return False
        wait_for("the broker to answer /healthz", up, 60)
        api.call("GET", "/readyz", key=None, expect=200)

        ok_url, ok_hits = receiver(204)
        bad_url, bad_hits = receiver(500)
        api.call("POST", "/v1/webhooks", {"url": ok_url}, expect=201)
        api.call("POST", "/v1/webhooks", {"url": bad_url, "eventTypes": ["upload.completed"]}, expect=201)
        api.call("GET", "/v1/webhooks", expect=200)

        # A: one part, PUT, completed.
        body = b"x" * 1000
        _, a = api.call("POST", "/v1/uploads", {"filename": "a.bin", "size": len(body),
                                                "contentType": "application/octet-stream"}, expect=201)
        put(a["parts"][0]["url"], body, a["parts"][0].get("headers"))
        api.call("POST", f"/v1/uploads/{a['resumeToken']}/complete", expect=200)
        api.call("GET", f"/v1/uploads/{a['resumeToken']}", expect=200)

        # B: three parts; part 1 PUT, a resume, parts signed again, then aborted.
        size = 2 * 5 * 1024 * 1024 + 100
        _, b = api.call("POST", "/v1/uploads", {"filename": "b.bin", "size": size, "partSize": 5 * 1024 * 1024},
                        expect=201)
        put(b["parts"][0]["url"], b"y" * (5 * 1024 * 1024))
        api.call("POST", f"/v1/uploads/{b['resumeToken']}/resume", expect=200)
        api.call("POST", f"/v1/uploads/{b['resumeToken']}/parts", {"partNumbers": [2, 3]}, expect=200)
        api.call("DELETE", f"/v1/uploads/{b['resumeToken']}", expect=204)

        # C: aborted at the provider behind the broker's back; the broker notices.
        _, c = api.call("POST", "/v1/uploads", {"filename": "c.bin", "size": 10}, expect=201)
        s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        s3.abort_multipart_upload(Bucket=bucket, Key=c["key"], UploadId=c["uploadId"])
        api.call("GET", f"/v1/uploads/{c['resumeToken']}", expect=410)

        # D: through the Companion routes, completed.
        _, d = api.call("POST", "/s3/multipart", {"filename": "d.bin", "type": "text/plain",
                                                  "metadata": {"size": "5"}}, expect=200)
        from urllib.parse import quote
        uid, dkey = quote(d["uploadId"], safe=""), quote(d["key"], safe="")
        _, signed = api.call("GET", f"/s3/multipart/{uid}/1?key={dkey}", expect=200)
        etag = put(signed["url"], b"hello", signed.get("headers"))
        api.call("GET", f"/s3/multipart/{uid}?key={dkey}", expect=200)
        api.call("POST", f"/s3/multipart/{uid}/complete?key={dkey}",
                 {"parts": [{"PartNumber": 1, "ETag": etag}]}, expect=200)

        # E: left to expire; serve's sweep aborts it.
        _, e = api.call("POST", "/v1/uploads", {"filename": "e.bin", "size": 10}, expect=201)

        # Refused requests: no credential, an unknown route.
        api.call("GET", "/v1/uploads", key=None, expect=401)
        api.call("GET", "/v1/nothing-here", expect=404)
        api.call("GET", "/v1/events", expect=200)

        wait_for("a webhook delivery", lambda: len(ok_hits) >= 1)
        wait_for("a failing receiver to be tried", lambda: len(bad_hits) >= 2)

        def swept():  # E untouched until then: its expiry is the sweep's own
            text = api.call("GET", "/metrics", key=None, expect=200)[1]
            return 'upload_broker_uploads_expired_total{reason="sweep"} 1' in text
        wait_for("the sweep to expire an upload", swept, 30)
        api.call("GET", f"/v1/uploads/{e['resumeToken']}", expect=410)
        time.sleep(1.5)  # a delivery given up after WEBHOOK_RETRY_FOR; the deliverer's gauge

        status, text = api.call("GET", "/metrics", key=None, expect=200)
        with open(out, "w") as f:
            f.write(text)
        print(f"workload: done; /metrics saved ({len(text.splitlines())} lines, "
              f"{len(ok_hits)} deliveries to the 204 receiver, {len(bad_hits)} attempts to the 500 one)",
              file=sys.stderr)
    finally:
        broker.terminate()
        try:
            broker.wait(20)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
        log.close()


if __name__ == "__main__":
    main()
