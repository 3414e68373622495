"""The one exception type the client raises."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional


class UploadBrokerError(Exception):
    """A failure of an upload, a download or a broker call.

    ``code`` is the API's error code when the broker answered with one
    (``TOO_LARGE``, ``UPLOAD_EXPIRED``, ``NOT_FOUND``, ...), otherwise one of the
    client's own: ``NETWORK_ERROR`` (no answer), ``STORAGE_ERROR`` (storage
    refused a part or a download; ``details["storageCode"]`` has its code),
    ``SIZE_MISMATCH``, ``CREDENTIAL_ERROR``, ``CANCELLED``, ``INVALID_RESPONSE``.
    ``status`` is the HTTP status of the answer that caused it, 0 when there was
    none. Messages name routes (``/v1/uploads/{token}``), never tokens or URLs.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        details: Optional[Mapping[str, Any]] = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or (f"HTTP_{status}" if status else "ERROR")
        self.details: Dict[str, Any] = dict(details or {})
        self.retryable = retryable

    def __str__(self) -> str:
        where = f"{self.status} " if self.status else ""
        return f"{where}{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"UploadBrokerError(status={self.status}, code={self.code!r}, message={self.message!r})"


def broker_error(status: int, content: bytes, route: str, retryable: bool) -> UploadBrokerError:
    """An error from the broker's JSON answer ``{"error": {"code", "message", ...}}``."""
    body: Any = None
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        details = {k: v for k, v in err.items() if k not in ("code", "message")}
        message = err.get("message")
        return UploadBrokerError(
            f"{route}: {message if isinstance(message, str) else err['code']}",
            status=status,
            code=err["code"],
            details=details,
            retryable=retryable,
        )
    return UploadBrokerError(
        f"{route}: the broker answered {status}",
        status=status,
        code="UNAVAILABLE" if status >= 500 else f"HTTP_{status}",
        retryable=retryable,
    )


def storage_error(status: int, content: bytes, what: str, retryable: bool) -> UploadBrokerError:
    """An error from storage's XML answer (``<Code>…</Code><Message>…</Message>``)."""
    text = content[:4096].decode("utf-8", "replace")

    def tag(name: str) -> Optional[str]:
        start = text.find(f"<{name}>")
        end = text.find(f"</{name}>")
        if start < 0 or end < start:
            return None
        return text[start + len(name) + 2 : end][:200]

    code = tag("Code")
    message = tag("Message")
    return UploadBrokerError(
        f"storage answered {status} to {what}" + (f" ({code}: {message})" if code else ""),
        status=status,
        code="STORAGE_ERROR",
        details={"storageCode": code} if code else {},
        retryable=retryable,
    )
