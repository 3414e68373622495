"""Uploads against the real broker and LocalStack: from a path and from file
objects, with each checksum mode, read back with boto3 and hashed; progress;
resume by token; status, abort and list_active (every page)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import KEY, MiB, Broker, object_digest, random_file
from faultproxy import FaultProxy

from upload_broker import Progress, UploadBroker, UploadBrokerError
from upload_broker import _core as core

PART = 5 * MiB


@pytest.mark.parametrize("checksum", ["crc32c", "sha256", None])
def test_upload_from_a_path_and_from_file_objects(
    checksum: Any, broker: Broker, storage_proxy: FaultProxy, tmp: Path
) -> None:
    size = 21 * MiB + 1234  # 5 parts of 5 MiB, the last 1 MiB and a bit
    path = tmp / "data.bin"
    sha = random_file(path, size)
    seen: List[Progress] = []
    with UploadBroker(broker.url, KEY) as b:
        r = b.upload(
            path,
            checksum=checksum,
            part_size=PART,
            concurrency=3,
            content_type="application/x-test",
            metadata={"origin": "py-test"},
            on_progress=seen.append,
        )
        assert r.status == "completed"
        assert r.size == size
        assert r.bucket and r.key.endswith("/data.bin") and r.etag
        assert object_digest(r.key) == (sha, size), "the object has the file's exact bytes"
        assert r.upload["contentType"] == "application/x-test"
        assert r.upload["metadata"] == {"origin": "py-test"}
        if checksum:
            assert r.upload["checksumAlgorithm"] == checksum.upper()
            assert r.checksum and r.checksum.endswith("-5"), "a composite checksum of 5 parts"
        else:
            assert "checksumAlgorithm" not in r.upload and r.checksum is None
        # Progress: every stored part, in order, ending at 100 %.
        done = [p for p in seen if p.uploaded_parts > 0]
        assert [p.uploaded_parts for p in done][:5] == [1, 2, 3, 4, 5]
        assert all(a.uploaded_bytes <= b.uploaded_bytes for a, b in zip(seen, seen[1:]))
        assert seen[-1] == Progress(size, size, 5, 5, 100.0)
        assert sorted(p.part for p in storage_proxy.part_puts()) == [1, 2, 3, 4, 5], "each part sent once"
        st = b.status(r.resume_token)
        assert st["status"] == "completed" and st["progress"]["percent"] == 100

        # An open file object positioned past a header, and an in-memory one.
        storage_proxy.clear()
        header = b"#header#"
        with open(tmp / "with-header.bin", "wb") as f:
            f.write(header)
            f.write(path.read_bytes())
        with open(tmp / "with-header.bin", "rb") as f:
            f.seek(len(header))
            r2 = b.upload(f, checksum=checksum, part_size=PART, fingerprint=False)
        assert r2.key.endswith("/with-header.bin")
        assert object_digest(r2.key) == (sha, size)
        small = bytes(range(256)) * (6 * MiB // 256) + b"tail"
        r3 = b.upload(io.BytesIO(small), filename="memory.bin", checksum=checksum, fingerprint=False)
        assert r3.key.endswith("/memory.bin")
        assert object_digest(r3.key) == (hashlib.sha256(small).hexdigest(), len(small))


def test_resume_by_token_sends_only_missing_parts(broker: Broker, storage_proxy: FaultProxy, tmp: Path) -> None:
    size = 20 * MiB
    path = tmp / "half.bin"
    sha = random_file(path, size)
    # Parts 1 and 3 stored by hand through the broker's URLs: 2 and 4 are missing.
    created = broker.api("POST", "/v1/uploads", {"filename": "half.bin", "size": size, "partSize": PART}).json()
    token = created["resumeToken"]
    import httpx

    data = path.read_bytes()
    for p in created["parts"]:
        if p["partNumber"] in (1, 3):
            n = p["partNumber"]
            assert httpx.put(p["url"], content=data[(n - 1) * PART : n * PART], timeout=60).status_code == 200
    storage_proxy.clear()
    seen: List[Progress] = []
    with UploadBroker(broker.url, KEY) as b:
        st = b.status(token)
        assert sorted(p["partNumber"] for p in st["uploadedParts"]) == [1, 3]
        r = b.resume_upload(token, path, on_progress=seen.append)
    assert r.status == "completed"
    assert sorted(p.part for p in storage_proxy.part_puts()) == [2, 4], "only the missing parts"
    assert seen[0].uploaded_parts == 2 and seen[0].uploaded_bytes == 2 * PART, "progress starts from what is stored"
    assert seen[-1].percent == 100
    assert object_digest(r.key) == (sha, size)
    # A file of another size is refused before anything is sent; a completed upload cannot be resumed.
    with UploadBroker(broker.url, KEY) as b:
        with pytest.raises(UploadBrokerError) as e:
            b.resume_upload(token, io.BytesIO(b"x" * 10))
        assert (e.value.status, e.value.code) == (409, "UPLOAD_NOT_ACTIVE")


def test_status_abort_and_list_active_every_page(
    broker: Broker, storage_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with UploadBroker(broker.url, KEY) as b:
        before = {u["resumeToken"] for u in b.list_active()}
        tokens = []
        for i in range(5):
            r = broker.api("POST", "/v1/uploads", {"filename": f"l{i}.bin", "size": 6 * MiB}).json()
            tokens.append(r["resumeToken"])
        # Pages of 2: list_active follows `next` to the end.
        monkeypatch.setattr(core, "LIST_PAGE", 2)
        listed = b.list_active()
        got = {u["resumeToken"] for u in listed}
        assert set(tokens) <= got and got - before == set(tokens), "5 uploads in pages of 2: every page followed"
        assert len(listed) == len(got), "no upload twice across pages"
        st = b.status(tokens[0])
        assert st["status"] == "active"
        assert st["progress"] == {
            "uploadedBytes": 0,
            "totalBytes": 6 * MiB,
            "uploadedParts": 0,
            "totalParts": st["partCount"],
            "percent": 0,
        }
        for t in tokens:
            b.abort(t)
        b.abort(tokens[0])  # idempotent
        assert b.status(tokens[0])["status"] == "aborted"
        assert not set(tokens) & {u["resumeToken"] for u in b.list_active()}
        with pytest.raises(UploadBrokerError) as e:
            b.status("AQGnot-a-token-at-all")
        assert (e.value.status, e.value.code) == (404, "NOT_FOUND")
        # The storage side of the abort: the multipart upload is gone.
        st0: Dict[str, Any] = broker.api("GET", f"/v1/uploads/{tokens[0]}").json()
        assert st0["status"] == "aborted"
