"""Unit tests: no services. Request bodies, checksums, retry policy, errors,
sources, and the broker-call rules (401 refresh once, 4xx at once, 429 with
Retry-After) against an httpx mock transport."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import time
from typing import Any, Dict, List

import httpx
import pytest

import upload_broker
from upload_broker import (
    AsyncUploadBroker,
    Progress,
    RetryPolicy,
    UploadBroker,
    UploadBrokerError,
    UploadResource,
    UploadResult,
)
from upload_broker import _core as core


def test_public_names_and_fields() -> None:
    assert [f.name for f in dataclasses.fields(Progress)] == [
        "uploaded_bytes",
        "total_bytes",
        "uploaded_parts",
        "total_parts",
        "percent",
    ]
    assert [f.name for f in dataclasses.fields(UploadResult)][:6] == [
        "status",
        "resume_token",
        "key",
        "bucket",
        "etag",
        "size",
    ]
    # The wire type (checked against the OpenAPI document by scripts/check-client-types.py).
    assert {"id", "resumeToken", "size"} <= UploadResource.__required_keys__
    assert {"subject", "etag", "objectSize"} <= UploadResource.__optional_keys__
    assert UploadResult.from_resource({"status": "completed", "size": 5, "subject": "user-42"}).upload["subject"] == "user-42"
    r = UploadResult("completed", "SECRET-TOKEN", "k", "b", '"e"', 5)
    assert "SECRET-TOKEN" not in repr(r), "the resume token stays out of repr"
    e = UploadBrokerError("x", status=413, code="TOO_LARGE")
    assert (e.status, e.code) == (413, "TOO_LARGE")
    for name in ("upload", "resume_upload", "status", "abort", "list_active", "download"):
        assert callable(getattr(UploadBroker, name))
        assert asyncio.iscoroutinefunction(getattr(AsyncUploadBroker, name)), name
    assert upload_broker.__version__


def test_create_body_sends_auto_complete_only_when_true() -> None:
    base = dict(filename="a.bin", size=10, fingerprint="fp")
    assert "autoComplete" not in core.build_create_body(**base)  # type: ignore[arg-type]
    assert "autoComplete" not in core.build_create_body(auto_complete=False, **base)  # type: ignore[arg-type]
    body = core.build_create_body(auto_complete=True, **base)  # type: ignore[arg-type]
    assert body["autoComplete"] is True
    full = core.build_create_body(
        filename="m.mp4",
        size=123,
        content_type="video/mp4",
        metadata={"camera-id": "7"},
        checksum="sha256",
        part_size=5 * 1024 * 1024,
        fingerprint="f",
    )
    assert full == {
        "filename": "m.mp4",
        "size": 123,
        "contentType": "video/mp4",
        "metadata": {"camera-id": "7"},
        "checksumAlgorithm": "SHA256",
        "partSize": 5 * 1024 * 1024,
        "fingerprint": "f",
    }
    assert core.build_create_body(filename="a", size=1)["checksumAlgorithm"] == "CRC32C"
    assert "checksumAlgorithm" not in core.build_create_body(filename="a", size=1, checksum=None)
    with pytest.raises(ValueError):
        core.build_create_body(filename="a", size=1, checksum="md5")


def test_auto_complete_reaches_the_create_request() -> None:
    seen: List[Dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        import json

        seen.append(json.loads(req.content))
        return httpx.Response(400, json={"error": {"code": "INVALID_REQUEST", "message": "stop here"}})

    b = UploadBroker("http://broker.test", "k")
    b._http = httpx.Client(transport=httpx.MockTransport(handler))
    for flag in (True, False):
        with pytest.raises(UploadBrokerError):
            b.upload(io.BytesIO(b"x" * 10), fingerprint=False, auto_complete=flag)
    assert seen[0]["autoComplete"] is True
    assert "autoComplete" not in seen[1]


def test_checksums_are_storage_s_form() -> None:
    # S3's x-amz-checksum-crc32c of "123456789" is base64(0xE3069283).
    assert core.crc32c_b64(b"123456789") == base64.b64encode(bytes.fromhex("e3069283")).decode()
    h = core.Hasher("CRC32C")
    h.update(b"12345")
    h.update(b"6789")
    assert h.b64() == core.crc32c_b64(b"123456789")
    s = core.Hasher("SHA256")
    s.update(b"abc")
    assert s.b64() == base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    import google_crc32c

    assert google_crc32c.implementation == "c", "the C-accelerated CRC32C is in use"


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    p = RetryPolicy(attempts=5, base_delay=0.1, max_delay=2.0)
    for attempt in range(12):
        exp = min(2.0, 0.1 * 2**attempt)
        for _ in range(30):
            d = core.backoff(attempt, p)
            assert exp / 2 <= d <= exp
    assert len({core.backoff(4, p) for _ in range(20)}) > 1, "jitter"
    assert core.backoff(0, p, retry_after=1.5) >= 1.5
    assert core.backoff(0, p, retry_after=60) <= 2.0
    assert core.parse_retry_after("3") == 3
    assert core.parse_retry_after("soon") is None
    assert core.parse_retry_after(None) is None
    later = time.time() + 30
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(later))
    d = core.parse_retry_after(date)
    assert d is not None and 27 < d <= 30


def test_errors_and_routes_never_name_tokens() -> None:
    e = core.broker_error(
        409,
        b'{"error":{"code":"PARTS_MISSING","message":"m","missingParts":[2]}}',
        "POST /v1/uploads/{token}/complete",
        False,
    )
    assert (e.status, e.code, e.details) == (409, "PARTS_MISSING", {"missingParts": [2]})
    assert core.broker_error(502, b"<html>", "GET /x", True).code == "UNAVAILABLE"
    assert core.route_of("/v1/uploads/AQGsecret/complete") == "/v1/uploads/{token}/complete"
    assert core.route_of("/v1/uploads/AQGsecret") == "/v1/uploads/{token}"
    s = core.storage_error(400, b"<Error><Code>BadDigest</Code><Message>no</Message></Error>", "part 3", False)
    assert s.code == "STORAGE_ERROR" and s.details["storageCode"] == "BadDigest"


def test_sources_read_ranges_from_their_position() -> None:
    f = io.BytesIO(b"HEADER" + bytes(range(256)) * 10)
    f.seek(6)
    src = core.Source(f)
    assert src.size == 2560
    assert src.read(0, 4) == bytes([0, 1, 2, 3])
    assert src.read(256, 2) == bytes([0, 1])
    assert b"".join(src.chunks(0, src.size)) == bytes(range(256)) * 10
    fp = src.fingerprint()
    assert fp.startswith("file:2560:-:") and len(fp) <= 256
    with pytest.raises(UploadBrokerError) as e:
        src.read(2550, 20)
    assert e.value.code == "SIZE_MISMATCH"
    with pytest.raises(TypeError):
        core.Source(object())


class Counting:
    def __init__(self, answers: List[httpx.Response]) -> None:
        self.answers = answers
        self.requests: List[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        return self.answers.pop(0)


def fast() -> RetryPolicy:
    return RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


def test_a_401_calls_the_credential_again_once() -> None:
    calls: List[int] = []

    def cred() -> str:
        calls.append(1)
        return f"key-{len(calls)}"

    t = Counting(
        [
            httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "expired"}}),
            httpx.Response(200, json={"status": "active"}),
        ]
    )
    b = UploadBroker("http://broker.test/", cred, retry=fast())
    b._http = httpx.Client(transport=httpx.MockTransport(t))
    assert b.status("tok") == {"status": "active"}
    assert [r.headers["authorization"] for r in t.requests] == ["Bearer key-1", "Bearer key-2"]
    # Two 401s in a row: raised after the one refresh.
    t.answers = [httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "no"}})] * 2
    with pytest.raises(UploadBrokerError) as e:
        b.status("tok")
    assert (e.value.status, e.value.code) == (401, "UNAUTHORIZED")
    assert len(calls) == 3
    # A plain string credential is not refreshed: one request.
    s = UploadBroker("http://broker.test", "k", retry=fast())
    t2 = Counting([httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "no"}})])
    s._http = httpx.Client(transport=httpx.MockTransport(t2))
    with pytest.raises(UploadBrokerError):
        s.status("tok")
    assert len(t2.requests) == 1


def test_4xx_raise_at_once_5xx_and_429_are_retried() -> None:
    t = Counting([httpx.Response(404, json={"error": {"code": "NOT_FOUND", "message": "unknown"}})])
    b = UploadBroker("http://broker.test", "k", retry=fast())
    b._http = httpx.Client(transport=httpx.MockTransport(t))
    with pytest.raises(UploadBrokerError) as e:
        b.status("tok")
    assert (e.value.status, e.value.code, len(t.requests)) == (404, "NOT_FOUND", 1)
    t.answers = [
        httpx.Response(503, json={"error": {"code": "UNAVAILABLE", "message": "db"}}),
        httpx.Response(429, headers={"retry-after": "0"}, json={"error": {"code": "RATE_LIMITED", "message": "x"}}),
        httpx.Response(204),
    ]
    t.requests.clear()
    b.abort("tok")
    assert [r.method for r in t.requests] == ["DELETE"] * 3
    t.answers = [httpx.Response(500)] * 4
    with pytest.raises(UploadBrokerError) as e:
        b.abort("tok")
    assert e.value.status == 500 and e.value.code == "UNAVAILABLE"


def test_async_credential_may_be_a_coroutine() -> None:
    calls: List[int] = []

    async def cred() -> str:
        calls.append(1)
        return "k1" if len(calls) == 1 else "k2"

    t = Counting(
        [
            httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "expired"}}),
            httpx.Response(200, json={"uploads": [{"id": "a"}], "next": "c1"}),
            httpx.Response(200, json={"uploads": [{"id": "b"}]}),
        ]
    )

    async def main() -> List[Dict[str, Any]]:
        async with AsyncUploadBroker("http://broker.test", cred, retry=fast()) as b:
            b._http = httpx.AsyncClient(transport=httpx.MockTransport(t))
            return await b.list_active()

    assert [u["id"] for u in asyncio.run(main())] == ["a", "b"]
    assert t.requests[-1].url.params["before"] == "c1"
    assert t.requests[-1].headers["authorization"] == "Bearer k2"
