"""The values the client hands back."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, TypedDict


class _UploadResourceFields(TypedDict):
    id: str
    resumeToken: str
    status: str
    bucket: str
    key: str
    uploadId: str
    filename: str
    contentType: str
    size: int
    partSize: int
    partCount: int
    metadata: Dict[str, str]
    createdAt: str
    expiresAt: str


class UploadResource(_UploadResourceFields, total=False):
    """The broker's upload resource (api-v1), as ``UploadResult.upload`` holds it.
    The fields from ``checksumAlgorithm`` on may be absent or null.
    ``scripts/check-client-types.py`` checks it against the OpenAPI document."""

    checksumAlgorithm: Optional[str]
    fingerprint: Optional[str]
    subject: Optional[str]
    """The grant subject the upload belongs to; None for uploads created with an API key."""
    etag: Optional[str]
    """Completed uploads: the object's ETag, composite checksum and type, and size in storage."""
    checksum: Optional[str]
    checksumType: Optional[str]
    objectSize: Optional[int]


@dataclass(frozen=True)
class Progress:
    """Where a transfer stands. ``percent`` is ``uploaded_bytes / total_bytes × 100``.

    For downloads the byte fields count received bytes and the parts fields are
    0 of 1 until the file is complete.
    """

    uploaded_bytes: int
    total_bytes: int
    uploaded_parts: int
    total_parts: int
    percent: float


@dataclass(frozen=True)
class UploadResult:
    """A completed upload. ``resume_token`` is a credential-like handle: keep it private
    (it is left out of ``repr``). ``upload`` holds the broker's whole upload resource
    (its fields: :class:`UploadResource`)."""

    status: str
    resume_token: str = field(repr=False)
    key: str
    bucket: str
    etag: Optional[str]
    size: int
    checksum: Optional[str] = None
    upload: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_resource(cls, r: Dict[str, Any]) -> "UploadResult":
        size = r.get("objectSize")
        return cls(
            status=str(r.get("status", "")),
            resume_token=str(r.get("resumeToken", "")),
            key=str(r.get("key", "")),
            bucket=str(r.get("bucket", "")),
            etag=r.get("etag"),
            size=int(size if isinstance(size, int) else r.get("size", 0)),
            checksum=r.get("checksum"),
            upload=dict(r),
        )


@dataclass(frozen=True)
class DownloadResult:
    """A finished download: the file, its size, the ETag of the object it holds,
    the bytes an earlier interrupted run had already received, and whether a
    partial file was thrown away because the object had changed."""

    path: str
    size: int
    etag: str
    resumed_from: int
    restarted: bool


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of broker calls, part PUTs and download GETs: ``attempts`` tries in
    all, capped exponential backoff with "equal jitter" (half the delay fixed,
    half random), ``Retry-After`` honoured up to ``max_delay``."""

    attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 20.0

    def replace(self, **changes: Any) -> "RetryPolicy":
        return dataclasses.replace(self, **changes)
