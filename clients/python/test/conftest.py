"""Shared by the integration tests: the real broker binary, Postgres, LocalStack
(read back with boto3), the fault proxy. The environment comes from
clients/python/test/run.sh (or scripts/test.sh): S3_ENDPOINT,
PYCLIENT_DATABASE_URL, PYCLIENT_BUCKET, BROKER_BIN."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faultproxy import FaultProxy  # noqa: E402

MiB = 1024 * 1024
KEY = "py-client-test-key"
TENANT = "py"
HERE = Path(__file__).parent

HOW = (
    "Run these tests with clients/python/test/run.sh from scripts/test.sh, which starts "
    "Postgres (127.0.0.1:5432) and LocalStack and sets S3_ENDPOINT, DATABASE_URL and BROKER_BIN; "
    "by hand: start Postgres (pg_ctlcluster 15 main start), LocalStack (scripts/localstack.sh), "
    "build the broker (cargo build --bin upload-broker), then "
    "S3_ENDPOINT=… DATABASE_URL=postgres://postgres@127.0.0.1:5432/upload_broker_test "
    "BROKER_BIN=target/debug/upload-broker bash clients/python/test/run.sh"
)


def need(name: str) -> str:
    v = os.environ.get(name)
    if not v:
        pytest.fail(f"{name} is not set. {HOW}", pytrace=False)
    return v


@pytest.fixture(scope="session")
def services() -> Dict[str, str]:
    """Checks once that every service is there; fails (never skips) when one is not."""
    env = {n: need(n) for n in ("S3_ENDPOINT", "PYCLIENT_DATABASE_URL", "PYCLIENT_BUCKET", "BROKER_BIN")}
    if not os.access(env["BROKER_BIN"], os.X_OK):
        pytest.fail(f"BROKER_BIN={env['BROKER_BIN']} is not an executable. {HOW}", pytrace=False)
    try:
        httpx.get(env["S3_ENDPOINT"] + "/_localstack/health", timeout=5).raise_for_status()
    except httpx.HTTPError as e:
        pytest.fail(f"LocalStack is not answering at {env['S3_ENDPOINT']} ({e!r}). {HOW}", pytrace=False)
    return env


def s3() -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def object_digest(key: str) -> Tuple[str, int]:
    """SHA-256 (hex) and size of an object, read back from LocalStack with boto3."""
    h = hashlib.sha256()
    n = 0
    body = s3().get_object(Bucket=os.environ["PYCLIENT_BUCKET"], Key=key)["Body"]
    for chunk in body.iter_chunks(MiB):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def random_file(path: Path, size: int) -> str:
    """Writes ``size`` random bytes; returns their SHA-256 (hex)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(8 * MiB, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


class Broker:
    """The real broker (``serve``) on a free port, logging at debug level to
    $UPLOAD_BROKER_TEST_LOG_DIR (checked for secrets by scripts/test.sh)."""

    def __init__(self, name: str, services: Dict[str, str], s3_endpoint: Optional[str] = None, **env: str) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        log_dir = os.environ.get("UPLOAD_BROKER_TEST_LOG_DIR")
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            self.log_path = Path(log_dir) / f"python-client-{name}-broker.log"
        else:
            self.log_path = Path(tempfile.gettempdir()) / f"python-client-{name}-{port}-broker.log"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": services["PYCLIENT_DATABASE_URL"],
            "S3_BUCKET": services["PYCLIENT_BUCKET"],
            "S3_ENDPOINT": s3_endpoint or services["S3_ENDPOINT"],
            "S3_FORCE_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "BROKER_LISTEN": f"127.0.0.1:{port}",
            "BROKER_API_KEYS": f"{TENANT}:{KEY}",
            "BROKER_TOKEN_SECRET": "python-client-token-secret-of-at-least-32-bytes",
            "S3_KEY_PREFIX": f"py-{name}-{uuid.uuid4().hex[:8]}/",
            "SWEEP_INTERVAL": "0",
            "RATE_LIMIT": "0",
            "RUST_LOG": "debug",
            "LOG_FORMAT": "json",
            **env,
        }
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [services["BROKER_BIN"], "serve"], env=self.env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_bytes()[-4000:].decode("utf-8", "replace")
                raise RuntimeError(f"the broker did not start:\n{tail}")
            time.sleep(0.1)

    def command(self, *args: str, stdin: Optional[str] = None) -> subprocess.CompletedProcess[str]:
        """Runs ``upload-broker ARGS`` (an operator's command) with this broker's settings."""
        return subprocess.run(
            [os.environ["BROKER_BIN"], *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )

    def api(self, method: str, path: str, body: Any = None, credential: str = KEY) -> httpx.Response:
        return httpx.request(
            method, self.url + path, json=body, headers={"authorization": f"Bearer {credential}"}, timeout=30
        )

    def grant(self, subject: str, **limits: Any) -> str:
        r = self.api("POST", "/v1/grants", {"subject": subject, **limits})
        assert r.status_code == 201, r.text
        g: str = r.json()["grant"]
        return g

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="module")
def storage_proxy(services: Dict[str, str]) -> Iterator[FaultProxy]:
    p = FaultProxy(services["S3_ENDPOINT"])
    yield p
    p.close()


@pytest.fixture(scope="module")
def broker(request: pytest.FixtureRequest, services: Dict[str, str], storage_proxy: FaultProxy) -> Iterator[Broker]:
    """A broker whose storage calls, and so every part URL it signs, go through the proxy."""
    b = Broker(Path(str(request.fspath)).stem.replace("test_", ""), services, s3_endpoint=storage_proxy.url)
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _fresh_proxy(request: pytest.FixtureRequest) -> None:
    if "storage_proxy" in request.fixturenames:
        request.getfixturevalue("storage_proxy").clear()


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def jsonl(line: bytes) -> Dict[str, Any]:
    v: Dict[str, Any] = json.loads(line)
    return v
