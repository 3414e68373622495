"""Resumable direct-to-S3 multipart uploads and downloads through upload-broker.

    from upload_broker import UploadBroker

    with UploadBroker("https://uploads.example.com", api_key) as broker:
        result = broker.upload("movie.mp4", content_type="video/mp4")

The bytes go straight to storage over presigned URLs; the broker only signs
and keeps track. An interrupted upload of the same file is found again by its
fingerprint and continued where storage says it stopped.
"""

from ._async import AsyncUploadBroker
from ._errors import UploadBrokerError
from ._sync import UploadBroker
from ._types import DownloadResult, Progress, RetryPolicy, UploadResource, UploadResult
from ._version import __version__

__all__ = [
    "AsyncUploadBroker",
    "DownloadResult",
    "Progress",
    "RetryPolicy",
    "UploadBroker",
    "UploadBrokerError",
    "UploadResource",
    "UploadResult",
    "__version__",
]
