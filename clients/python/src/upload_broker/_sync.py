"""The blocking client: ``httpx.Client``, parts sent from a thread pool."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from typing import IO, Any, BinaryIO, Callable, Dict, List, Mapping, Optional, Union

import httpx

from . import _core as core
from ._errors import UploadBrokerError
from ._types import DownloadResult, Progress, RetryPolicy, UploadResult
from ._version import USER_AGENT

#: An API key or a grant, or a callable returning one (called once, and again after a 401).
Credential = Union[str, Callable[[], str]]
#: What ``upload`` reads: a path, or a seekable binary file object.
SourceLike = Union[str, "os.PathLike[str]", BinaryIO, IO[bytes]]


class _Cancelled(Exception):
    """A part job stopped because another one failed."""


class UploadBroker:
    """A client of one broker with one credential. Thread-safe; use it as a
    context manager (``with UploadBroker(...) as broker:``) or call ``close()``.

    ``credential`` is an API key or an upload grant, or a callable returning
    one: it is called on first use and again after a 401 (the request is then
    retried once). ``timeout`` (seconds) bounds each broker call and each
    connect/read/write of a transfer; ``complete`` gets four times as long.
    """

    def __init__(
        self,
        endpoint: str,
        credential: Credential,
        *,
        timeout: float = 30.0,
        retry: Optional[RetryPolicy] = None,
    ) -> None:
        if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
            raise ValueError("endpoint must be the broker's http:// or https:// URL")
        if not credential:
            raise ValueError("credential is required")
        self._base = endpoint.rstrip("/")
        self._credential = credential
        self._cred: Optional[str] = None
        self._cred_lock = threading.Lock()
        self._settings = core.Settings(retry or RetryPolicy(), float(timeout), callable(credential))
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    # ---------------------------------------------------------------- public

    def __enter__(self) -> "UploadBroker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def upload(
        self,
        source: SourceLike,
        *,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        checksum: Optional[str] = "crc32c",
        concurrency: int = 4,
        part_size: Optional[int] = None,
        on_progress: Optional[Callable[[Progress], None]] = None,
        fingerprint: Union[bool, str] = True,
        auto_complete: bool = False,
    ) -> UploadResult:
        """Uploads ``source`` (a path or a seekable binary file object) and
        completes the upload. With ``fingerprint`` (the default) an unfinished
        upload of the same file is found and only its missing parts are sent.
        ``checksum`` (``"crc32c"``, ``"sha256"`` or ``None``) binds each part's
        checksum into its URL, so storage refuses altered bytes. ``on_progress``
        gets a ``Progress`` after each stored part and once at 100 %; it is
        called from the worker threads, one call at a time."""
        opts = core.UploadOptions(
            filename, content_type, metadata, checksum, concurrency, part_size, on_progress, fingerprint, auto_complete
        )
        src = core.Source(source)
        try:
            result: UploadResult = self._run(core.upload(self._settings, src, opts), src)
            return result
        finally:
            src.close()

    def resume_upload(
        self,
        resume_token: str,
        source: SourceLike,
        *,
        filename: Optional[str] = None,
        content_type: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        checksum: Optional[str] = "crc32c",
        concurrency: int = 4,
        part_size: Optional[int] = None,
        on_progress: Optional[Callable[[Progress], None]] = None,
        fingerprint: Union[bool, str] = True,
        auto_complete: bool = False,
    ) -> UploadResult:
        """Continues the upload of ``resume_token`` from ``source`` (the same
        file): asks storage what it holds and sends only the rest. The upload's
        own part size and checksum algorithm apply."""
        opts = core.UploadOptions(
            filename, content_type, metadata, checksum, concurrency, part_size, on_progress, fingerprint, auto_complete
        )
        src = core.Source(source)
        try:
            result: UploadResult = self._run(core.upload(self._settings, src, opts, token=resume_token), src)
            return result
        finally:
            src.close()

    def status(self, token: str) -> Dict[str, Any]:
        """``GET /v1/uploads/{token}``: the upload with ``uploadedParts`` and ``progress``."""
        r: Dict[str, Any] = self._run(core.api(self._settings, "GET", core.token_path(token)))
        return r

    def abort(self, token: str) -> None:
        """Aborts the upload (its stored parts are deleted). Idempotent."""
        self._run(core.api(self._settings, "DELETE", core.token_path(token)))

    def list_active(self) -> List[Dict[str, Any]]:
        """Every active upload the credential may see (every page), newest first."""
        r: List[Dict[str, Any]] = self._run(core.list_active(self._settings))
        return r

    def download(
        self,
        token: str,
        destination: "Union[str, os.PathLike[str]]",
        *,
        on_progress: Optional[Callable[[Progress], None]] = None,
    ) -> DownloadResult:
        """Downloads the completed upload to ``destination``, resumably through
        ``destination + ".part"`` (``Range`` and ``If-Match``); an object that
        changed since (412) is downloaded again from the start."""
        r: DownloadResult = self._run(core.download(self._settings, token, core.fspath(destination), on_progress))
        return r

    # ---------------------------------------------------------------- driver

    def _credential_value(self, stale: Optional[str]) -> str:
        with self._cred_lock:
            if self._cred is None or (stale is not None and self._cred == stale):
                c = self._credential
                try:
                    v = c() if callable(c) else c
                except Exception as e:
                    raise UploadBrokerError(f"the credential callable failed: {e!r}", code="CREDENTIAL_ERROR") from e
                if not isinstance(v, str) or not v.strip():
                    raise UploadBrokerError("the credential is not a non-empty string", code="CREDENTIAL_ERROR")
                self._cred = v.strip()
            return self._cred

    def _run(self, flow: "core.Flow[Any]", src: Optional[core.Source] = None, stop: Optional[threading.Event] = None) -> Any:
        value: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                if error is not None:
                    effect = flow.throw(error)
                else:
                    effect = flow.send(value)
            except StopIteration as done:
                return done.value
            error = None
            value = None
            try:
                if stop is not None and stop.is_set():
                    raise _Cancelled()
                value = self._do(effect, src, stop)
            except (Exception, KeyboardInterrupt) as e:
                error = e

    def _do(self, e: core.Effect, src: Optional[core.Source], stop: Optional[threading.Event]) -> Any:
        if isinstance(e, core.GetCredential):
            return self._credential_value(e.stale)
        if isinstance(e, core.Call):
            try:
                res = self._http.request(
                    e.method,
                    self._base + e.path,
                    params=e.params,
                    json=e.body,
                    headers={"authorization": f"Bearer {e.credential}"},
                    timeout=e.timeout,
                )
            except httpx.TransportError as err:
                return core.Failed(err)
            return core.Reply(res.status_code, res.headers, res.content)
        if isinstance(e, core.Digest):
            assert src is not None
            return src.digest(e.algorithm, e.offset, e.size)
        if isinstance(e, core.PutPart):
            assert src is not None
            headers = dict(e.headers)
            headers["content-length"] = str(e.size)
            try:
                res = self._http.put(e.url, content=src.chunks(e.offset, e.size), headers=headers)
            except httpx.TransportError as err:
                return core.Failed(err)
            return core.Reply(res.status_code, res.headers, res.content)
        if isinstance(e, core.Sleep):
            if stop is None:
                time.sleep(e.seconds)
            elif stop.wait(e.seconds):
                raise _Cancelled()
            return None
        if isinstance(e, core.Parallel):
            return self._parallel(e, src)
        if isinstance(e, core.Fetch):
            return self._fetch(e)
        raise TypeError(f"unknown effect {e!r}")  # pragma: no cover

    def _parallel(self, e: core.Parallel, src: Optional[core.Source]) -> None:
        stop = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=e.limit, thread_name_prefix="upload-broker")
        futures = [pool.submit(self._run, job, src, stop) for job in e.jobs]
        try:
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            for f in futures:
                if f.done() and not f.cancelled() and f.exception() is not None:
                    raise f.exception()  # type: ignore[misc]
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, e: core.Fetch) -> core.Fetched:
        try:
            with self._http.stream("GET", e.url, headers=e.headers) as res:
                sink = e.open_sink(res.status_code, res.headers)
                if sink is None:
                    body = b""
                    for chunk in res.iter_raw():
                        body += chunk
                        if len(body) > 65536:
                            break
                    return core.Fetched(res.status_code, res.headers, body, None)
                error: Optional[BaseException] = None
                try:
                    for chunk in res.iter_raw(core.CHUNK):
                        sink.write(chunk)
                        e.on_bytes(len(chunk))
                except httpx.TransportError as err:
                    error = err
                finally:
                    sink.close()
                return core.Fetched(res.status_code, res.headers, b"", error)
        except httpx.TransportError as err:
            return core.Fetched(0, {}, b"", err)

