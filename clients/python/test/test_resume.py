"""kill -9 of the uploading process at ~50 %, and a new process that finds the
upload by its fingerprint and sends only the missing parts (counted at the
storage proxy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import urlencode

from conftest import HERE, KEY, MiB, Broker, object_digest, random_file
from faultproxy import FaultProxy

from upload_broker import UploadBroker
from upload_broker import _core as core


def run_child(broker: Broker, path: Path, kill_at: float = 101.0) -> Dict[str, Any]:
    """Runs child_upload.py; kills it with SIGKILL once it reports `kill_at` percent."""
    env = {**os.environ, "UPLOAD_BROKER_KEY": KEY}
    p = subprocess.Popen(
        [sys.executable, str(HERE / "child_upload.py"), broker.url, str(path), "crc32c", str(5 * MiB), "2"],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert p.stdout is not None
    lines: List[Dict[str, Any]] = []
    killed_at = None
    for raw in p.stdout:
        m = json.loads(raw)
        lines.append(m)
        if m["type"] == "progress" and m["percent"] >= kill_at and killed_at is None:
            killed_at = m["percent"]
            p.send_signal(signal.SIGKILL)
            break
    code = p.wait(120)
    return {"lines": lines, "code": code, "killed_at": killed_at}


def test_kill_9_at_half_then_a_new_process_sends_only_missing_parts(
    broker: Broker, storage_proxy: FaultProxy, tmp: Path
) -> None:
    size = 40 * MiB + 17  # 9 parts of 5 MiB
    path = tmp / "big.bin"
    sha = random_file(path, size)
    # Pace the first process so that it is mid-upload when killed.
    storage_proxy.add(lambda r: r.part is not None, "delay", times=-1, seconds=0.3)
    first = run_child(broker, path, kill_at=50.0)
    assert first["code"] == -signal.SIGKILL, "the first process was killed"
    assert 50 <= first["killed_at"] < 100
    storage_proxy.wait_idle()
    # What storage holds now, through the broker (found by the same fingerprint).
    fp = core.Source(path).fingerprint()
    found = broker.api("GET", "/v1/uploads?" + urlencode({"fingerprint": fp})).json()
    assert len(found["uploads"]) == 1
    stored = sorted(p["partNumber"] for p in found["uploads"][0]["uploadedParts"])
    assert 4 <= len(stored) < 9, f"killed mid-upload ({len(stored)} of 9 parts stored)"
    first_puts = len(storage_proxy.part_puts())

    storage_proxy.clear()
    second = run_child(broker, path)
    assert second["code"] == 0
    done = second["lines"][-1]
    assert done["type"] == "done" and done["status"] == "completed"
    sent = sorted(r.part for r in storage_proxy.part_puts())  # type: ignore[type-var]
    assert not set(sent) & set(stored), f"stored parts sent again: {set(sent) & set(stored)}"
    assert sorted(stored + sent) == list(range(1, 10)), "every missing part sent exactly once"
    assert len(sent) + first_puts >= 9
    first_progress = next(m for m in second["lines"] if m["type"] == "progress")
    assert first_progress["parts"] == len(stored), "the second process starts from what storage holds"
    assert object_digest(done["key"]) == (sha, size)
    with UploadBroker(broker.url, KEY) as b:
        assert b.status(found["uploads"][0]["resumeToken"])["status"] == "completed", "the same upload, finished"
