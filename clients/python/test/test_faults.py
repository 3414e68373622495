"""Faults: resets and error statuses on part PUTs (injected at the storage
proxy), part URLs that expired before use (signed again), a grant that expires
during the upload (a callable credential gives a new one), and errors that
must not be retried (413 TOO_LARGE from a grant's maxUploadSize)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest
from conftest import KEY, TENANT, MiB, Broker, object_digest, random_file
from faultproxy import FaultProxy

from upload_broker import Progress, RetryPolicy, UploadBroker, UploadBrokerError

PART = 5 * MiB
QUICK = RetryPolicy(attempts=6, base_delay=0.2, max_delay=2.0)


def test_resets_and_error_statuses_on_part_puts(broker: Broker, storage_proxy: FaultProxy, tmp: Path) -> None:
    size = 36 * MiB + 5  # 8 parts
    path = tmp / "faulty.bin"
    sha = random_file(path, size)
    storage_proxy.add(lambda r: r.part == 1, "reset", after=256 * 1024)
    storage_proxy.add(lambda r: r.part == 2, "status", status=503)
    storage_proxy.add(lambda r: r.part == 3, "status", status=429, retry_after=1)
    storage_proxy.add(lambda r: r.part == 4, "status", status=500)
    storage_proxy.add(lambda r: r.part == 5, "reset", after=3 * MiB)
    storage_proxy.add(lambda r: r.part == 6, "status", status=503, times=2)
    with UploadBroker(broker.url, KEY, retry=QUICK) as b:
        r = b.upload(path, part_size=PART, concurrency=4, checksum="crc32c", fingerprint=False)
    assert r.status == "completed"
    assert object_digest(r.key) == (sha, size), "the object has the file's exact bytes"
    puts = storage_proxy.part_puts()
    by_part = {n: [x for x in puts if x.part == n] for n in range(1, 9)}
    # Each fault was met, then the part was sent again until stored. (On a loaded
    # machine LocalStack may drop a connection of its own now and then: one more
    # try or two are allowed, never a part stored twice or left out.)
    expected = {1: [0], 2: [503], 3: [429], 4: [500], 5: [0], 6: [503, 503], 7: [], 8: []}
    for n, faults in expected.items():
        statuses = [x.status for x in by_part[n]]
        assert statuses[: len(faults)] == faults and statuses[-1] == 200, (n, statuses, [x.fault for x in by_part[n]])
        assert statuses.count(200) == 1 and len(statuses) <= len(faults) + 3, (n, statuses, [x.fault for x in by_part[n]])
    assert by_part[3][1].started - by_part[3][0].ended >= 0.9, "Retry-After: 1 was honoured"


def test_storage_refusing_a_part_for_good_is_not_retried_forever(
    broker: Broker, storage_proxy: FaultProxy, tmp: Path
) -> None:
    path = tmp / "refused.bin"
    random_file(path, 6 * MiB)
    storage_proxy.add(lambda r: r.part == 2, "status", status=400, times=-1)
    with UploadBroker(broker.url, KEY, retry=QUICK) as b:
        with pytest.raises(UploadBrokerError) as e:
            b.upload(path, part_size=PART, concurrency=1, fingerprint=False)
    assert (e.value.status, e.value.code) == (400, "STORAGE_ERROR")
    assert len([x for x in storage_proxy.part_puts() if x.part == 2]) == 1, "a 400 from storage is not retried"


@pytest.fixture(scope="module")
def short_urls(services: dict, storage_proxy: FaultProxy) -> Iterator[Broker]:  # type: ignore[type-arg]
    b = Broker("faults-short-urls", services, s3_endpoint=storage_proxy.url, PART_URL_TTL="2s")
    yield b
    b.stop()


def test_expired_part_urls_are_signed_again(short_urls: Broker, storage_proxy: FaultProxy, tmp: Path) -> None:
    size = 12 * MiB  # 3 parts
    path = tmp / "slow.bin"
    sha = random_file(path, size)
    # Part 2's first PUT reaches storage after its URL (2 s) expired.
    storage_proxy.add(lambda r: r.part == 2, "delay", seconds=3.5)
    with UploadBroker(short_urls.url, KEY, retry=QUICK) as b:
        r = b.upload(path, part_size=PART, concurrency=1, checksum=None, fingerprint=False)
    assert object_digest(r.key) == (sha, size)
    part2 = [x for x in storage_proxy.part_puts() if x.part == 2]
    assert [x.status for x in part2] == [403, 200], "storage refused the expired URL; a new one worked"
    assert part2[0].query["X-Amz-Signature"] != part2[1].query["X-Amz-Signature"], "signed again"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256(claims: dict, secret: bytes, kid: str) -> str:  # type: ignore[type-arg]
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64u(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64u(sig)}"


def test_a_grant_that_expires_during_the_upload_is_renewed_by_the_callable(
    broker: Broker, storage_proxy: FaultProxy, tmp: Path
) -> None:
    # A tenant-signed grant (HS256, its key registered with `issuers add`) that
    # expires 3 s from now: the broker allows 30 s of leeway, so exp is 27 s ago.
    issuer = f"https://py-client-{uuid.uuid4().hex[:8]}.test"
    secret = hashlib.sha256(issuer.encode()).digest()
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": b64u(secret), "kid": "k1", "alg": "HS256"}]}))
    added = broker.command("issuers", "add", "--tenant", TENANT, "--issuer", issuer, "--jwks", str(jwks))
    assert added.returncode == 0, added.stderr[-2000:]
    try:
        short = ""
        for back in (27, -3):  # 30 s of leeway; without it, exp 3 s ahead
            now = int(time.time())
            short = hs256(
                {"iss": issuer, "aud": "upload-broker", "sub": "user-exp", "iat": now - 40, "exp": now - back,
                 "jti": uuid.uuid4().hex},
                secret,
                "k1",
            )
            if broker.api("GET", "/v1/uploads?status=active", credential=short).status_code == 200:
                break
        assert broker.api("GET", "/v1/uploads?status=active", credential=short).status_code == 200
        issued: List[str] = []

        def credential() -> str:
            issued.append("short" if not issued else "fresh")
            return short if len(issued) == 1 else broker.grant("user-exp")

        size = 16 * MiB  # 4 parts; checksum-bound, so each part is signed when it is sent
        path = tmp / "granted.bin"
        sha = random_file(path, size)

        def slow_first_part(p: Progress) -> None:
            if p.uploaded_parts == 1 and p.uploaded_bytes == PART:
                time.sleep(4)  # the grant expires meanwhile

        with UploadBroker(broker.url, credential, retry=QUICK) as b:
            r = b.upload(path, part_size=PART, concurrency=1, checksum="crc32c", fingerprint=False,
                         on_progress=slow_first_part)
        assert r.status == "completed"
        assert issued == ["short", "fresh"], "called again after the 401, once"
        assert broker.api("GET", "/v1/uploads?status=active", credential=short).status_code == 401
        assert r.upload["subject"] == "user-exp"
        assert object_digest(r.key) == (sha, size)
    finally:
        broker.command("issuers", "remove", issuer)


def test_4xx_are_raised_at_once_without_retries(broker: Broker, tmp: Path) -> None:
    api = FaultProxy(broker.url)  # counts the broker calls
    try:
        path = tmp / "big.bin"
        random_file(path, 6 * MiB)
        small = broker.grant("user-413", maxUploadSize=MiB)
        with UploadBroker(api.url, small, retry=QUICK) as b:
            with pytest.raises(UploadBrokerError) as e:
                b.upload(path)
        assert (e.value.status, e.value.code) == (413, "TOO_LARGE")
        creates = [x for x in api.records if x.method == "POST" and x.path == "/v1/uploads"]
        assert [x.status for x in creates] == [413], "one request, no retry"

        api.clear()
        images = broker.grant("user-403", contentTypes=["image/*"])
        with UploadBroker(api.url, images, retry=QUICK) as b:
            with pytest.raises(UploadBrokerError) as e:
                b.upload(path, content_type="video/mp4", fingerprint=False)
        assert (e.value.status, e.value.code) == (403, "FORBIDDEN")
        assert len(api.records) == 1

        # A 503 of the broker, by contrast, is retried.
        api.clear()
        api.add(lambda x: x.method == "POST" and x.path == "/v1/uploads", "status", status=503)
        with UploadBroker(api.url, KEY, retry=QUICK) as b:
            r = b.upload(path, part_size=PART, fingerprint=False)
        assert r.status == "completed"
        creates = [x for x in api.records if x.method == "POST" and x.path == "/v1/uploads"]
        assert [x.status for x in creates] == [503, 201]
    finally:
        api.close()
