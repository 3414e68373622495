"""AsyncUploadBroker: three uploads at once on one event loop (each object read
back and hashed, their part PUTs overlapping at the proxy), then the other
coroutines: status, list_active, download, abort, resume by token."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Any, Dict, List, Tuple

from conftest import KEY, MiB, Broker, object_digest, random_file, sha256_file
from faultproxy import FaultProxy

from upload_broker import AsyncUploadBroker, Progress, UploadResult

PART = 5 * MiB


def test_three_concurrent_async_uploads(broker: Broker, storage_proxy: FaultProxy, tmp: Path) -> None:
    files: List[Tuple[Path, str, int]] = []
    for i, size in enumerate((17 * MiB + 1, 12 * MiB, 21 * MiB + 999)):
        p = tmp / f"async-{i}.bin"
        files.append((p, random_file(p, size), size))
    # Slow each PUT a little so that the three uploads are surely in flight together.
    storage_proxy.add(lambda r: r.part is not None, "delay", times=-1, seconds=0.2)
    progress: Dict[int, List[Progress]] = {0: [], 1: [], 2: []}
    loop_thread: List[bool] = []

    async def main() -> List[UploadResult]:
        async with AsyncUploadBroker(broker.url, KEY) as b:
            checksums = ["crc32c", "sha256", None]

            def reporter(i: int) -> Any:
                def report(p: Progress) -> None:
                    loop_thread.append(asyncio.get_running_loop() is not None)
                    progress[i].append(p)

                return report

            return list(
                await asyncio.gather(
                    *(
                        b.upload(path, part_size=PART, concurrency=2, checksum=checksums[i], on_progress=reporter(i))
                        for i, (path, _, _) in enumerate(files)
                    )
                )
            )

    results = asyncio.run(main())
    for (path, sha, size), r, i in zip(files, results, range(3)):
        assert r.status == "completed" and r.size == size
        assert object_digest(r.key) == (sha, size), f"upload {i}: the object has the file's bytes"
        assert progress[i][-1].percent == 100
    assert all(loop_thread), "on_progress runs on the event loop"
    assert len({r.key for r in results}) == 3
    assert storage_proxy.max_inflight >= 4, f"the uploads overlapped (at most {storage_proxy.max_inflight} at once)"
    assert len(storage_proxy.part_puts()) == 4 + 3 + 5


def test_async_status_list_download_abort_and_resume(broker: Broker, storage_proxy: FaultProxy, tmp: Path) -> None:
    path = tmp / "a.bin"
    sha = random_file(path, 11 * MiB)

    async def main() -> None:
        async def credential() -> str:
            await asyncio.sleep(0)
            return KEY

        async with AsyncUploadBroker(broker.url, credential) as b:
            r = await b.upload(path, part_size=PART, fingerprint=False)
            st = await b.status(r.resume_token)
            assert st["status"] == "completed" and len(st["uploadedParts"]) == 3
            d = await b.download(r.resume_token, tmp / "a.copy")
            assert d.size == 11 * MiB and sha256_file(tmp / "a.copy") == sha

            created = broker.api("POST", "/v1/uploads", {"filename": "b.bin", "size": 6 * MiB}).json()
            token = created["resumeToken"]
            assert token in {u["resumeToken"] for u in await b.list_active()}
            data = bytes(6 * MiB)
            resumed = await b.resume_upload(token, io.BytesIO(data))
            assert resumed.resume_token == token
            assert object_digest(resumed.key) == (hashlib.sha256(data).hexdigest(), len(data))

            doomed = broker.api("POST", "/v1/uploads", {"filename": "c.bin", "size": 6 * MiB}).json()
            await b.abort(doomed["resumeToken"])
            assert (await b.status(doomed["resumeToken"]))["status"] == "aborted"

    asyncio.run(main())
