"""The asyncio client: ``httpx.AsyncClient``, parts sent as tasks. Every
decision comes from ``_core``, as for the blocking client."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import IO, Any, AsyncIterator, Awaitable, BinaryIO, Callable, Dict, List, Mapping, Optional, Union

import httpx

from . import _core as core
from ._errors import UploadBrokerError
from ._types import DownloadResult, Progress, RetryPolicy, UploadResult
from ._version import USER_AGENT

#: An API key or a grant, or a callable (plain or async) returning one.
AsyncCredential = Union[str, Callable[[], Union[str, Awaitable[str]]]]
SourceLike = Union[str, "os.PathLike[str]", BinaryIO, IO[bytes]]


class AsyncUploadBroker:
    """The same client as ``UploadBroker``, with coroutines: ``async with
    AsyncUploadBroker(...) as broker: await broker.upload(...)``. File reads and
    checksums run in worker threads so the event loop stays free."""

    def __init__(
        self,
        endpoint: str,
        credential: AsyncCredential,
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
        self._cred_lock: Optional[asyncio.Lock] = None
        self._settings = core.Settings(retry or RetryPolicy(), float(timeout), callable(credential))
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    # ---------------------------------------------------------------- public

    async def __aenter__(self) -> "AsyncUploadBroker":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def close(self) -> None:
        await self.aclose()

    async def upload(
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
        """See ``UploadBroker.upload``; ``on_progress`` is called on the event loop."""
        opts = core.UploadOptions(
            filename, content_type, metadata, checksum, concurrency, part_size, on_progress, fingerprint, auto_complete
        )
        src = await asyncio.to_thread(core.Source, source)
        try:
            result: UploadResult = await self._run(core.upload(self._settings, src, opts), src)
            return result
        finally:
            src.close()

    async def resume_upload(
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
        """See ``UploadBroker.resume_upload``."""
        opts = core.UploadOptions(
            filename, content_type, metadata, checksum, concurrency, part_size, on_progress, fingerprint, auto_complete
        )
        src = await asyncio.to_thread(core.Source, source)
        try:
            result: UploadResult = await self._run(core.upload(self._settings, src, opts, token=resume_token), src)
            return result
        finally:
            src.close()

    async def status(self, token: str) -> Dict[str, Any]:
        r: Dict[str, Any] = await self._run(core.api(self._settings, "GET", core.token_path(token)))
        return r

    async def abort(self, token: str) -> None:
        await self._run(core.api(self._settings, "DELETE", core.token_path(token)))

    async def list_active(self) -> List[Dict[str, Any]]:
        r: List[Dict[str, Any]] = await self._run(core.list_active(self._settings))
        return r

    async def download(
        self,
        token: str,
        destination: "Union[str, os.PathLike[str]]",
        *,
        on_progress: Optional[Callable[[Progress], None]] = None,
    ) -> DownloadResult:
        r: DownloadResult = await self._run(
            core.download(self._settings, token, core.fspath(destination), on_progress)
        )
        return r

    # ---------------------------------------------------------------- driver

    async def _credential_value(self, stale: Optional[str]) -> str:
        if self._cred_lock is None:
            self._cred_lock = asyncio.Lock()
        async with self._cred_lock:
            if self._cred is None or (stale is not None and self._cred == stale):
                c = self._credential
                try:
                    v: Any = c() if callable(c) else c
                    if inspect.isawaitable(v):
                        v = await v
                except Exception as e:
                    raise UploadBrokerError(f"the credential callable failed: {e!r}", code="CREDENTIAL_ERROR") from e
                if not isinstance(v, str) or not v.strip():
                    raise UploadBrokerError("the credential is not a non-empty string", code="CREDENTIAL_ERROR")
                self._cred = v.strip()
            return self._cred

    async def _run(self, flow: "core.Flow[Any]", src: Optional[core.Source] = None) -> Any:
        value: Any = None
        error: Optional[BaseException] = None
        try:
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
                    value = await self._do(effect, src)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    error = e
        finally:
            flow.close()

    async def _do(self, e: core.Effect, src: Optional[core.Source]) -> Any:
        if isinstance(e, core.GetCredential):
            return await self._credential_value(e.stale)
        if isinstance(e, core.Call):
            try:
                res = await self._http.request(
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
            return await asyncio.to_thread(src.digest, e.algorithm, e.offset, e.size)
        if isinstance(e, core.PutPart):
            assert src is not None
            headers = dict(e.headers)
            headers["content-length"] = str(e.size)
            try:
                res = await self._http.put(e.url, content=_chunks(src, e.offset, e.size), headers=headers)
            except httpx.TransportError as err:
                return core.Failed(err)
            return core.Reply(res.status_code, res.headers, res.content)
        if isinstance(e, core.Sleep):
            await asyncio.sleep(e.seconds)
            return None
        if isinstance(e, core.Parallel):
            await self._parallel(e, src)
            return None
        if isinstance(e, core.Fetch):
            return await self._fetch(e)
        raise TypeError(f"unknown effect {e!r}")  # pragma: no cover

    async def _parallel(self, e: core.Parallel, src: Optional[core.Source]) -> None:
        gate = asyncio.Semaphore(e.limit)

        async def one(job: "core.Flow[None]") -> None:
            async with gate:
                await self._run(job, src)

        tasks = [asyncio.ensure_future(one(job)) for job in e.jobs]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, e: core.Fetch) -> core.Fetched:
        try:
            async with self._http.stream("GET", e.url, headers=e.headers) as res:
                sink = e.open_sink(res.status_code, res.headers)
                if sink is None:
                    body = b""
                    async for chunk in res.aiter_raw():
                        body += chunk
                        if len(body) > 65536:
                            break
                    return core.Fetched(res.status_code, res.headers, body, None)
                error: Optional[BaseException] = None
                try:
                    async for chunk in res.aiter_raw(core.CHUNK):
                        sink.write(chunk)
                        e.on_bytes(len(chunk))
                except httpx.TransportError as err:
                    error = err
                finally:
                    sink.close()
                return core.Fetched(res.status_code, res.headers, b"", error)
        except httpx.TransportError as err:
            return core.Fetched(0, {}, b"", err)


async def _chunks(src: core.Source, offset: int, size: int) -> AsyncIterator[bytes]:
    end = offset + size
    pos = offset
    while pos < end:
        n = min(core.CHUNK, end - pos)
        yield await asyncio.to_thread(src.read, pos, n)
        pos += n
