"""Downloads through the storage proxy: a body cut mid-way is continued with
Range and If-Match; an interrupted download continues in the next call from
``destination + ".part"``; and starts over when the object was replaced (412)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest
from conftest import KEY, MiB, Broker, random_file, s3, sha256_file
from faultproxy import FaultProxy

from upload_broker import Progress, RetryPolicy, UploadBroker, UploadBrokerError

QUICK = RetryPolicy(attempts=6, base_delay=0.2, max_delay=2.0)


class Interrupt(Exception):
    pass


def test_downloads_continue_after_a_cut_and_restart_when_the_object_changed(
    broker: Broker, storage_proxy: FaultProxy, tmp: Path
) -> None:
    size = 14 * MiB + 3
    src = tmp / "source.bin"
    sha = random_file(src, size)
    with UploadBroker(broker.url, KEY, retry=QUICK) as b:
        up = b.upload(src, fingerprint=False)
        token = up.resume_token

        # 1. The body is cut after 5 MiB: the client continues from there.
        storage_proxy.clear()
        storage_proxy.add(lambda r: r.is_download, "cut", after=5 * MiB)
        seen: List[Progress] = []
        dest = tmp / "copy.bin"
        r = b.download(token, dest, on_progress=seen.append)
        assert sha256_file(dest) == sha and r.size == size and r.etag
        gets = storage_proxy.downloads()
        assert [g.status for g in gets] == [200, 206]
        assert "range" not in gets[0].headers
        start = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
        assert 0 < start <= 5 * MiB, "continued from what had arrived"
        assert gets[1].headers["if-match"] == r.etag, "only from the same object"
        assert not os.path.exists(str(dest) + ".part")
        assert seen[-1].percent == 100 and seen[-1].uploaded_bytes == size

        # 2. Interrupted (the progress callback raises): the next call continues
        # from destination + ".part".
        storage_proxy.clear()
        dest2 = tmp / "copy2.bin"

        def stop_at_3mib(p: Progress) -> None:
            if p.uploaded_bytes >= 3 * MiB:
                raise Interrupt()

        with pytest.raises(Interrupt):
            b.download(token, dest2, on_progress=stop_at_3mib)
        part = Path(str(dest2) + ".part")
        have = part.stat().st_size
        assert have >= 3 * MiB and not dest2.exists()
        r2 = b.download(token, dest2)
        assert sha256_file(dest2) == sha
        assert r2.resumed_from == have and not r2.restarted
        gets = storage_proxy.downloads()
        assert gets[-1].headers["range"] == f"bytes={have}-" and gets[-1].status == 206
        assert not part.exists()

        # 3. Interrupted again, then the object is replaced in storage: If-Match
        # fails (412) and the download starts over with the new bytes.
        storage_proxy.clear()
        dest3 = tmp / "copy3.bin"
        with pytest.raises(Interrupt):
            b.download(token, dest3, on_progress=stop_at_3mib)
        new = os.urandom(9 * MiB + 11)
        s3().put_object(Bucket=os.environ["PYCLIENT_BUCKET"], Key=up.key, Body=new)
        r3 = b.download(token, dest3)
        import hashlib

        assert dest3.read_bytes() == new, "the new object, whole"
        assert r3.restarted and r3.resumed_from == 0 and r3.size == len(new)
        assert hashlib.sha256(new).hexdigest() == sha256_file(dest3)
        statuses = [g.status for g in storage_proxy.downloads()]
        assert 412 in statuses and statuses[-1] == 200, statuses

        # A download of an upload that is not completed is refused at once.
        other = broker.api("POST", "/v1/uploads", {"filename": "x.bin", "size": 6 * MiB}).json()
        with pytest.raises(UploadBrokerError) as e:
            b.download(other["resumeToken"], tmp / "never.bin")
        assert (e.value.status, e.value.code) == (409, "UPLOAD_NOT_ACTIVE")
        b.abort(other["resumeToken"])
