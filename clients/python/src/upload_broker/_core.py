"""What the sync and the asyncio client share: every decision of an upload or a
download, written once as generators that yield *effects* (a broker call, a
part PUT, a sleep, ...) for a driver to carry out. ``_sync`` drives them with
threads and ``httpx.Client``, ``_async`` with tasks and ``httpx.AsyncClient``;
neither makes a decision of its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import (
    IO,
    Any,
    Callable,
    Dict,
    Generator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import quote

import google_crc32c

from ._errors import UploadBrokerError, broker_error, storage_error
from ._types import DownloadResult, Progress, RetryPolicy, UploadResult

log = logging.getLogger("upload_broker")

MiB = 1024 * 1024
#: Bytes read from the source (or written to a download) at a time.
CHUNK = MiB
#: Part URLs signed per ``…/parts`` call for uploads without checksums.
SIGN_BATCH = 100
#: A part URL expiring within this many seconds is signed again before use.
URL_MARGIN = 30.0
#: Uploads per page of ``list_active``.
LIST_PAGE = 1000

T = TypeVar("T")

# ------------------------------------------------------------------ effects


@dataclass
class Call:
    """One HTTP request to the broker. Answers ``Reply`` or ``Failed``."""

    method: str
    path: str
    params: Optional[Dict[str, str]]
    body: Optional[Any]
    credential: str
    timeout: float


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    content: bytes


@dataclass
class Failed:
    """No answer: the connection failed, was reset, or timed out."""

    error: BaseException


@dataclass
class GetCredential:
    """The bearer credential; ``stale`` (the one a 401 refused) makes a callable
    credential be called again. Answers ``str``."""

    stale: Optional[str] = None


@dataclass
class PutPart:
    """PUT ``size`` bytes of the source from ``offset`` to ``url``, read from the
    source as they are sent. Answers ``Reply`` or ``Failed``."""

    url: str
    headers: Dict[str, str]
    offset: int
    size: int


@dataclass
class Digest:
    """The base64 checksum of the source's bytes [offset, offset+size). Answers ``str``."""

    algorithm: str
    offset: int
    size: int


@dataclass
class Sleep:
    seconds: float


@dataclass
class Parallel:
    """Runs the jobs, at most ``limit`` at a time; the first failure stops the rest
    and is raised. Answers ``None``."""

    jobs: List["Flow[None]"]
    limit: int


@dataclass
class Fetch:
    """A streamed GET. The driver calls ``open_sink(status, headers)``; when it
    returns a file, the body is written to it (``on_bytes`` after each chunk) and
    it is closed. Answers ``Fetched``."""

    url: str
    headers: Dict[str, str]
    open_sink: Callable[[int, Mapping[str, str]], Optional[IO[bytes]]]
    on_bytes: Callable[[int], None]


@dataclass
class Fetched:
    status: int
    headers: Mapping[str, str]
    content: bytes
    error: Optional[BaseException]


Effect = Union[Call, GetCredential, PutPart, Digest, Sleep, Parallel, Fetch]
Flow = Generator[Effect, Any, T]

# ------------------------------------------------------------------ policy


def backoff(attempt: int, policy: RetryPolicy, retry_after: Optional[float] = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry):
    "equal jitter", half of the capped exponential delay plus a random share of the
    other half. ``retry_after`` (seconds) is a lower bound, capped at ``max_delay``."""
    d = min(policy.max_delay, policy.base_delay * 2.0 ** min(attempt, 30))
    jittered = d / 2 + random.random() * (d / 2)
    if retry_after is not None and retry_after > 0:
        return max(jittered, min(retry_after, policy.max_delay))
    return jittered


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``Retry-After`` (seconds or an HTTP date) in seconds, if present and valid."""
    if not value:
        return None
    v = value.strip()
    try:
        s = float(v)
        return s if s >= 0 else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retryable_status(status: int) -> bool:
    """Statuses worth another try: 408, 429 and every 5xx."""
    return status in (408, 429) or status >= 500


def route_of(path: str) -> str:
    """A path for messages: the token in it replaced by ``{token}``."""
    if path.startswith("/v1/uploads/"):
        rest = path[len("/v1/uploads/") :]
        tail = rest[rest.find("/") :] if "/" in rest else ""
        return "/v1/uploads/{token}" + tail
    return path


def token_path(token: str, rest: str = "") -> str:
    if not isinstance(token, str) or not token:
        raise ValueError("a resume token is a non-empty string")
    return f"/v1/uploads/{quote(token, safe='')}{rest}"


CHECKSUMS = {"crc32c": "CRC32C", "sha256": "SHA256"}


def checksum_algorithm(checksum: Optional[str]) -> Optional[str]:
    """The API's name of a ``checksum`` option: ``"crc32c"``, ``"sha256"`` or ``None``."""
    if checksum is None:
        return None
    name = CHECKSUMS.get(str(checksum).lower().replace("-", ""))
    if name is None:
        raise ValueError(f"checksum must be 'crc32c', 'sha256' or None, not {checksum!r}")
    return name


def build_create_body(
    *,
    filename: str,
    size: int,
    content_type: Optional[str] = None,
    metadata: Optional[Mapping[str, str]] = None,
    checksum: Optional[str] = "crc32c",
    part_size: Optional[int] = None,
    fingerprint: Optional[str] = None,
    auto_complete: bool = False,
) -> Dict[str, Any]:
    """The body of ``POST /v1/uploads``. ``autoComplete`` is sent only when asked for."""
    body: Dict[str, Any] = {"filename": filename, "size": size}
    if content_type:
        body["contentType"] = content_type
    if part_size:
        body["partSize"] = int(part_size)
    if metadata:
        body["metadata"] = dict(metadata)
    if fingerprint:
        body["fingerprint"] = fingerprint
    alg = checksum_algorithm(checksum)
    if alg:
        body["checksumAlgorithm"] = alg
    if auto_complete:
        body["autoComplete"] = True
    return body


def expires_in(part: Mapping[str, Any], now: Optional[float] = None) -> float:
    """Seconds until a presigned URL's ``expiresAt`` (negative: expired; unknown: 0)."""
    v = part.get("expiresAt")
    if not isinstance(v, str):
        return 0.0
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp() - (time.time() if now is None else now)


# Headers the HTTP stack sets from the request itself.
_OWN_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "expect"}


def sendable_headers(headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    return {k: str(v) for k, v in (headers or {}).items() if k.lower() not in _OWN_HEADERS}


# ------------------------------------------------------------------ checksums


def crc32c_b64(data: bytes, crc: int = 0) -> str:
    c = google_crc32c.extend(crc, data)
    return base64.b64encode(c.to_bytes(4, "big")).decode()


class Hasher:
    """The running checksum of a part, as storage computes it (base64 of the digest)."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._crc = 0
        self._sha = hashlib.sha256() if algorithm == "SHA256" else None

    def update(self, chunk: bytes) -> None:
        if self._sha is not None:
            self._sha.update(chunk)
        else:
            self._crc = google_crc32c.extend(self._crc, chunk)

    def b64(self) -> str:
        if self._sha is not None:
            return base64.b64encode(self._sha.digest()).decode()
        return base64.b64encode(self._crc.to_bytes(4, "big")).decode()


# ------------------------------------------------------------------ sources


class Source:
    """The bytes to upload: a path (opened here, closed by ``close``) or a seekable
    binary file object (read from its position at the time of the call). Parts
    are read when they are sent, never the whole file; reads are safe from
    several threads (``os.pread`` where the file has a descriptor, else a lock
    around seek and read)."""

    def __init__(self, source: Any) -> None:
        self._lock = threading.Lock()
        self._own = False
        self.mtime_ms: Optional[int] = None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            self.file: IO[bytes] = open(path, "rb")
            self._own = True
            self.name = os.path.basename(path) or "file"
            self.base = 0
        else:
            if not hasattr(source, "read") or not hasattr(source, "seek"):
                raise TypeError("source must be a path or a seekable binary file object")
            if hasattr(source, "seekable") and not source.seekable():
                raise TypeError("the file object must be seekable")
            self.file = source
            n = getattr(source, "name", None)
            self.name = os.path.basename(n) if isinstance(n, str) and n else "file"
            self.base = source.tell()
        self._fd: Optional[int] = None
        try:
            fd = self.file.fileno()
            st = os.fstat(fd)
            self.mtime_ms = int(st.st_mtime * 1000)
            if hasattr(os, "pread"):
                self._fd = fd
        except (OSError, AttributeError, ValueError):
            pass
        with self._lock:
            end = self.file.seek(0, os.SEEK_END)
            self.file.seek(self.base)
        self.size = end - self.base
        if self.size < 0:
            raise ValueError("the file object's position is past its end")

    def read(self, offset: int, n: int) -> bytes:
        """Exactly ``n`` bytes from ``offset`` (relative to the start)."""
        pos = self.base + offset
        if self._fd is not None:
            out = os.pread(self._fd, n, pos)
            while len(out) < n:
                more = os.pread(self._fd, n - len(out), pos + len(out))
                if not more:
                    break
                out += more
        else:
            with self._lock:
                self.file.seek(pos)
                out = self.file.read(n)
                while len(out) < n:
                    more = self.file.read(n - len(out))
                    if not more:
                        break
                    out += more
        if len(out) != n:
            raise UploadBrokerError(
                f"the source ended at {offset + len(out)} bytes: it was shorter than {offset + n} (did it change?)",
                code="SIZE_MISMATCH",
            )
        return bytes(out)

    def chunks(self, offset: int, size: int) -> Generator[bytes, None, None]:
        end = offset + size
        pos = offset
        while pos < end:
            n = min(CHUNK, end - pos)
            yield self.read(pos, n)
            pos += n

    def digest(self, algorithm: str, offset: int, size: int) -> str:
        h = Hasher(algorithm)
        for chunk in self.chunks(offset, size):
            h.update(chunk)
        return h.b64()

    def fingerprint(self) -> str:
        """``name:size:mtime-ms:sha256(first MiB ‖ last MiB)``, as the API recommends
        (``-`` for the time of a file object without one): quick, and with the size
        it tells files apart in practice."""
        head = self.read(0, min(MiB, self.size))
        tail_at = max(0, self.size - MiB)
        tail = self.read(tail_at, self.size - tail_at)
        digest = hashlib.sha256(head + tail).hexdigest()
        name = self.name.replace("\0", "")[:100]
        mtime = str(self.mtime_ms) if self.mtime_ms is not None else "-"
        return f"{name}:{self.size}:{mtime}:{digest}"

    def close(self) -> None:
        if self._own:
            self.file.close()


# ------------------------------------------------------------------ progress


class Tracker:
    """Counts stored parts and calls ``on_progress`` (one call at a time)."""

    def __init__(self, total_bytes: int, total_parts: int, cb: Optional[Callable[[Progress], None]]) -> None:
        self.total_bytes = total_bytes
        self.total_parts = total_parts
        self.bytes = 0
        self.parts = 0
        self._cb = cb
        self._lock = threading.RLock()

    def add(self, size: int, parts: int = 1, emit: bool = True) -> None:
        with self._lock:
            self.bytes += size
            self.parts += parts
            if emit:
                self.emit()

    def emit(self) -> None:
        if self._cb is None:
            return
        with self._lock:
            total = self.total_bytes
            pct = self.bytes / total * 100 if total else 100.0
            self._cb(Progress(self.bytes, total, self.parts, self.total_parts, pct))


# ------------------------------------------------------------------ broker calls


@dataclass
class Settings:
    retry: RetryPolicy
    timeout: float
    refreshable: bool  # the credential is a callable: a 401 calls it again, once


def api(
    s: Settings,
    method: str,
    path: str,
    body: Optional[Any] = None,
    params: Optional[Dict[str, str]] = None,
    timeout: Optional[float] = None,
) -> Flow[Any]:
    """One broker call: the parsed JSON answer (``None`` for an empty one).
    Retried on no answer, 408, 429 (``Retry-After``) and 5xx; a 401 calls a
    callable credential again and retries once; any other 4xx raises at once."""
    route = f"{method} {route_of(path)}"
    refreshed = False
    attempt = 0
    while True:
        cred = yield GetCredential()
        r = yield Call(method, path, params, body, cred, timeout or s.timeout)
        retry_after: Optional[float] = None
        if isinstance(r, Failed):
            failure = UploadBrokerError(
                f"{route}: the broker could not be reached ({type(r.error).__name__})",
                code="NETWORK_ERROR",
                retryable=True,
            )
        else:
            assert isinstance(r, Reply)
            if 200 <= r.status < 300:
                if not r.content:
                    return None
                try:
                    return json.loads(r.content)
                except ValueError:
                    raise UploadBrokerError(f"{route}: the answer is not JSON", status=r.status, code="INVALID_RESPONSE")
            failure = broker_error(r.status, r.content, route, retryable_status(r.status))
            if r.status == 401 and s.refreshable and not refreshed:
                refreshed = True
                log.debug("%s: 401, asking the credential callable for a new one", route)
                yield GetCredential(stale=cred)
                continue
            if not failure.retryable:
                raise failure
            retry_after = parse_retry_after(r.headers.get("retry-after"))
        attempt += 1
        if attempt >= s.retry.attempts:
            raise failure
        delay = backoff(attempt - 1, s.retry, retry_after)
        log.debug("%s failed (%s); retry %d in %.2f s", route, failure.code, attempt, delay)
        yield Sleep(delay)


def list_active(s: Settings) -> Flow[List[Dict[str, Any]]]:
    out: List[Dict[str, Any]] = []
    before: Optional[str] = None
    while True:
        params = {"status": "active", "limit": str(LIST_PAGE)}
        if before:
            params["before"] = before
        page = yield from api(s, "GET", "/v1/uploads", params=params)
        out.extend(page.get("uploads") or [])
        nxt = page.get("next")
        if not nxt:
            return out
        before = str(nxt)


# ------------------------------------------------------------------ uploads


@dataclass
class UploadOptions:
    filename: Optional[str] = None
    content_type: Optional[str] = None
    metadata: Optional[Mapping[str, str]] = None
    checksum: Optional[str] = "crc32c"
    concurrency: int = 4
    part_size: Optional[int] = None
    on_progress: Optional[Callable[[Progress], None]] = None
    fingerprint: Union[bool, str] = True
    auto_complete: bool = False


def upload(s: Settings, src: Source, o: UploadOptions, token: Optional[str] = None) -> Flow[UploadResult]:
    """Finds (by fingerprint) or resumes (by token) or creates the upload, sends
    the parts storage lacks, and completes it."""
    if src.size == 0:
        raise ValueError("the source is empty: a multipart upload needs at least one byte")
    want = checksum_algorithm(o.checksum)
    if o.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    r: Optional[Dict[str, Any]] = None
    if token is not None:
        r = yield from api(s, "POST", token_path(token, "/resume"))
    else:
        fp: Optional[str] = None
        if isinstance(o.fingerprint, str) and o.fingerprint:
            fp = o.fingerprint
        elif o.fingerprint is True:
            fp = src.fingerprint()
        if fp:
            found = yield from api(s, "GET", "/v1/uploads", params={"fingerprint": fp})
            for u in (found or {}).get("uploads") or []:
                if (
                    u.get("size") == src.size
                    and u.get("status", "active") == "active"
                    and (u.get("checksumAlgorithm") or None) == want
                    and (not o.part_size or u.get("partSize") == o.part_size)
                ):
                    try:
                        r = yield from api(s, "POST", token_path(str(u["resumeToken"]), "/resume"))
                        log.debug("resuming the upload found by its fingerprint")
                        break
                    except UploadBrokerError as e:
                        # Finished or expired since the lookup: look further, then create.
                        if e.status not in (404, 409, 410):
                            raise
        if r is None:
            body = build_create_body(
                filename=o.filename or src.name,
                size=src.size,
                content_type=o.content_type,
                metadata=o.metadata,
                checksum=o.checksum,
                part_size=o.part_size,
                fingerprint=fp,
                auto_complete=o.auto_complete,
            )
            r = yield from api(s, "POST", "/v1/uploads", body=body)
            assert isinstance(r, dict)
            r.setdefault("uploadedParts", [])
    assert isinstance(r, dict)
    if r.get("status") != "active":
        raise UploadBrokerError(f"the upload is {r.get('status')}", code="UPLOAD_NOT_ACTIVE", status=409)
    if r.get("size") != src.size:
        raise UploadBrokerError(
            f"the source has {src.size} bytes, the upload {r.get('size')}: not the same file",
            code="SIZE_MISMATCH",
        )
    return (yield from _transfer(s, src, o, r))


@dataclass
class _Job:
    s: Settings
    src: Source
    token: str
    size: int
    part_size: int
    part_count: int
    algorithm: Optional[str]
    tracker: Tracker
    urls: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    done: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    remaining: List[int] = field(default_factory=list)

    def span(self, n: int) -> Tuple[int, int]:
        offset = (n - 1) * self.part_size
        size = self.part_size if n < self.part_count else self.size - offset
        return offset, size


def _transfer(s: Settings, src: Source, o: UploadOptions, r: Dict[str, Any]) -> Flow[UploadResult]:
    token = str(r["resumeToken"])
    job = _Job(
        s=s,
        src=src,
        token=token,
        size=int(r["size"]),
        part_size=int(r["partSize"]),
        part_count=int(r["partCount"]),
        algorithm=r.get("checksumAlgorithm") or None,  # the upload's own algorithm decides
        tracker=Tracker(int(r["size"]), int(r["partCount"]), o.on_progress),
    )
    for rounds in range(3):
        job.done = {}
        for p in r.get("uploadedParts") or []:
            job.done[int(p["partNumber"])] = p
        for p in r.get("parts") or []:
            job.urls[int(p["partNumber"])] = p
        job.remaining = [n for n in range(1, job.part_count + 1) if n not in job.done]
        job.tracker.bytes = sum(job.span(n)[1] for n in job.done)
        job.tracker.parts = len(job.done)
        job.tracker.emit()
        if job.remaining:
            limit = max(1, min(int(o.concurrency), len(job.remaining)))
            yield Parallel([_send_part(job, n) for n in list(job.remaining)], limit)
        parts = []
        for n in range(1, job.part_count + 1):
            p = job.done[n]
            entry: Dict[str, Any] = {"partNumber": n, "etag": p["etag"]}
            if p.get("checksum"):
                entry["checksum"] = p["checksum"]
            parts.append(entry)
        try:
            result = yield from api(
                s, "POST", token_path(token, "/complete"), body={"parts": parts}, timeout=s.timeout * 4
            )
        except UploadBrokerError as e:
            if e.code == "PARTS_MISSING" and rounds < 2:
                # A part stored earlier is gone (or was replaced): ask storage again.
                r = yield from api(s, "POST", token_path(token, "/resume"))
                continue
            raise
        assert isinstance(result, dict)
        if result.get("status") != "completed":
            raise UploadBrokerError(f"the upload is {result.get('status')}", code="UPLOAD_NOT_ACTIVE")
        obj = result.get("objectSize")
        if isinstance(obj, int) and obj != job.size:
            raise UploadBrokerError(
                f"the object has {obj} bytes, {job.size} were uploaded", code="SIZE_MISMATCH"
            )
        job.tracker.bytes = job.size
        job.tracker.parts = job.part_count
        job.tracker.emit()
        return UploadResult.from_resource(result)
    raise AssertionError("unreachable")  # pragma: no cover


def _url_for(job: _Job, n: int, checksum: Optional[str], fresh: bool) -> Flow[Dict[str, Any]]:
    """A usable URL for part ``n``: from the cache unless close to expiry or
    ``fresh`` is asked; else signed now (with the next parts that need one, for
    uploads without checksums)."""
    cached = job.urls.pop(n, None)
    if cached is not None and not fresh and expires_in(cached) > URL_MARGIN:
        return cached
    path = token_path(job.token, "/parts")
    body: Dict[str, Any]
    if checksum is not None:
        body = {"parts": [{"partNumber": n, "checksum": checksum}]}
    else:
        numbers = [n]
        for m in job.remaining:
            if len(numbers) >= SIGN_BATCH:
                break
            if m > n:
                u = job.urls.get(m)
                if u is None or expires_in(u) <= URL_MARGIN:
                    numbers.append(m)
        body = {"partNumbers": numbers}
    answer = yield from api(job.s, "POST", path, body=body)
    mine: Optional[Dict[str, Any]] = None
    for p in (answer or {}).get("parts") or []:
        if int(p["partNumber"]) == n:
            mine = p
        else:
            job.urls[int(p["partNumber"])] = p
    if mine is None:
        raise UploadBrokerError(f"the broker did not sign part {n}", code="INVALID_RESPONSE")
    return mine


def _send_part(job: _Job, n: int) -> Flow[None]:
    offset, size = job.span(n)
    checksum: Optional[str] = None
    if job.algorithm:
        checksum = yield Digest(job.algorithm, offset, size)
    policy = job.s.retry
    failures = 0
    resigns = 0
    fresh = False
    while True:
        part = yield from _url_for(job, n, checksum, fresh)
        fresh = False
        if int(part.get("size", size)) != size:
            raise UploadBrokerError(
                f"the broker signed part {n} for {part.get('size')} bytes, the plan says {size}",
                code="INVALID_RESPONSE",
            )
        res = yield PutPart(str(part["url"]), sendable_headers(part.get("headers")), offset, size)
        retry_after: Optional[float] = None
        if isinstance(res, Reply) and 200 <= res.status < 300:
            etag = res.headers.get("etag")
            if etag:
                job.done[n] = {"partNumber": n, "etag": etag, "checksum": checksum, "size": size}
                if n in job.remaining:
                    job.remaining.remove(n)
                job.tracker.add(size)
                return
            failure = UploadBrokerError(f"storage stored part {n} without an ETag", code="STORAGE_ERROR", retryable=True)
        elif isinstance(res, Failed):
            failure = UploadBrokerError(
                f"part {n}: storage could not be reached ({type(res.error).__name__})",
                code="NETWORK_ERROR",
                retryable=True,
            )
        else:
            assert isinstance(res, Reply)
            failure = storage_error(res.status, res.content, f"part {n}", res.status == 403 or retryable_status(res.status))
            retry_after = parse_retry_after(res.headers.get("retry-after"))
            if res.status == 403 and resigns < 3:
                # An expired (or otherwise refused) URL: sign again, at once.
                resigns += 1
                fresh = True
                log.debug("part %d: storage refused the URL (403); signing it again", n)
                continue
            if not failure.retryable:
                raise failure
        fresh = True  # whatever went wrong, the next try gets a fresh URL
        failures += 1
        if failures >= policy.attempts:
            raise failure
        delay = backoff(failures - 1, policy, retry_after)
        log.debug("part %d failed (%s); retry %d in %.2f s", n, failure, failures, delay)
        yield Sleep(delay)


# ------------------------------------------------------------------ downloads


def download(
    s: Settings, token: str, destination: str, on_progress: Optional[Callable[[Progress], None]]
) -> Flow[DownloadResult]:
    """Downloads a completed upload to ``destination``. Bytes land in
    ``destination + ".part"`` (and the object's ETag in ``.part.json`` beside it);
    an interrupted download continues from there with ``Range`` and
    ``If-Match``, and starts over when the object changed (412)."""
    part_path = destination + ".part"
    meta_path = part_path + ".json"
    dl_path = token_path(token, "/download")
    info = yield from api(s, "POST", dl_path)
    have: Optional[Dict[str, Any]] = None
    try:
        with open(meta_path, encoding="utf-8") as f:
            m = json.load(f)
        if (
            isinstance(m, dict)
            and m.get("token") == hashlib.sha256(token.encode()).hexdigest()
            and isinstance(m.get("etag"), str)
            and isinstance(m.get("size"), int)
        ):
            have = m
    except (OSError, ValueError):
        have = None
    offset = 0
    if have is not None:
        try:
            offset = os.path.getsize(part_path)
        except OSError:
            have = None
    if offset == 0:
        have = None
    resumed_from = offset
    restarted = False
    attempts = 0
    new_urls = 0
    restarts = 0
    def emit(final: bool = False) -> None:
        if on_progress is None or have is None:
            return
        total = int(have["size"])
        pct = offset / total * 100 if total else 100.0
        on_progress(Progress(offset, total, 1 if final else 0, 1, pct))

    while True:
        reason: Optional[str] = None
        if have is not None and offset == have["size"]:
            break
        if have is not None and offset > have["size"]:
            reason = "the partial file is longer than the object"
        failure: Optional[UploadBrokerError] = None
        retry_after: Optional[float] = None
        if reason is None:
            headers: Dict[str, str] = {}
            if have is not None:
                headers = {"range": f"bytes={offset}-", "if-match": str(have["etag"])}
            verdict: Dict[str, Any] = {}

            def open_sink(status: int, h: Mapping[str, str]) -> Optional[IO[bytes]]:
                nonlocal have, offset
                if have is not None and status == 206:
                    start = _range_start(h.get("content-range"))
                    if start != offset:
                        verdict["restart"] = f"storage answered another range than asked (from {offset})"
                        return None
                    return open(part_path, "ab")
                if status == 200 and have is None:
                    length = h.get("content-length")
                    if length is None or not length.isdigit():
                        verdict["error"] = "storage sent no Content-Length"
                        return None
                    # Record the object's version before any byte of it lands in the file.
                    meta = {
                        "token": hashlib.sha256(token.encode()).hexdigest(),
                        "etag": h.get("etag", ""),
                        "size": int(length),
                    }
                    with open(meta_path, "w", encoding="utf-8") as f:
                        json.dump(meta, f)
                    have = meta
                    offset = 0
                    return open(part_path, "wb")
                if status == 200:
                    verdict["restart"] = "storage ignored the range"
                return None

            def on_bytes(n: int) -> None:
                nonlocal offset
                offset += n
                emit()

            got = yield Fetch(str(info["url"]), headers, open_sink, on_bytes)
            assert isinstance(got, Fetched)
            if "restart" in verdict:
                reason = str(verdict["restart"])
            elif "error" in verdict:
                raise UploadBrokerError(str(verdict["error"]), status=got.status, code="INVALID_RESPONSE")
            elif got.status in (200, 206) and got.error is None and have is not None and offset >= have["size"]:
                continue  # checked at the top of the loop
            elif got.status == 412:
                reason = "the object changed since the partial download (its ETag differs)"
            elif got.status == 416:
                reason = "storage refused the range"
            elif got.status == 403:
                new_urls += 1
                if new_urls > 3:
                    raise storage_error(got.status, got.content, "the download", False)
                info = yield from api(s, "POST", dl_path)
                continue
            elif got.error is not None or got.status in (200, 206):
                what = type(got.error).__name__ if got.error is not None else "a short body"
                failure = UploadBrokerError(
                    f"the download was cut at {offset} bytes ({what})", code="NETWORK_ERROR", retryable=True
                )
            else:
                failure = storage_error(got.status, got.content, "the download", retryable_status(got.status))
                if not failure.retryable:
                    raise failure
                retry_after = parse_retry_after(got.headers.get("retry-after"))
        if reason is not None:
            restarts += 1
            if restarts > 3:
                raise UploadBrokerError(f"the object keeps changing: {reason}", code="STORAGE_ERROR")
            log.debug("download: starting over (%s)", reason)
            restarted = True
            have = None
            offset = 0
            for p in (meta_path, part_path):
                try:
                    os.remove(p)
                except FileNotFoundError:
                    pass
            continue
        assert failure is not None
        attempts += 1
        if attempts >= s.retry.attempts:
            raise failure
        yield Sleep(backoff(attempts - 1, s.retry, retry_after))
        # The presigned GET lives 5 minutes: take a fresh one after a pause.
        info = yield from api(s, "POST", dl_path)
    assert have is not None
    with open(part_path, "rb+") as done:
        os.fsync(done.fileno())
    os.replace(part_path, destination)
    try:
        os.remove(meta_path)
    except FileNotFoundError:
        pass
    emit(final=True)
    return DownloadResult(
        path=destination,
        size=int(have["size"]),
        etag=str(have["etag"]),
        resumed_from=0 if restarted else resumed_from,
        restarted=restarted,
    )


def _range_start(v: Optional[str]) -> Optional[int]:
    if not v or not v.startswith("bytes "):
        return None
    first = v[len("bytes ") :].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def fspath(p: Any) -> str:
    s = os.fspath(p)
    return s if isinstance(s, str) else s.decode()

