//! What can go wrong at the storage provider, read from the SDK's errors once.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// What went wrong at the storage provider.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The multipart upload does not exist (aborted, expired or completed).
    #[error("the storage provider has no such multipart upload")]
    NoSuchUpload,
    /// The provider answered with an error code.
    #[error("{operation} failed at the storage provider: {code}")]
    Provider {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// The provider could not be reached or did not answer in time.
    #[error("{operation} could not reach the storage provider: {detail}")]
    Unreachable {
        operation: &'static str,
        detail: String,
    },
    /// Presigning was refused by the SDK (bad expiry).
    #[error("could not presign {operation}: {detail}")]
    Presign {
        operation: &'static str,
        detail: String,
    },
}

impl StorageError {
    pub(super) fn from_sdk<E, R>(operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                let code = e.code().unwrap_or("Unknown").to_string();
                if code == "NoSuchUpload" {
                    return Self::NoSuchUpload;
                }
                Self::Provider {
                    operation,
                    message: e.message().unwrap_or("").to_string(),
                    code,
                }
            }
            SdkError::TimeoutError(_) => Self::Unreachable {
                operation,
                detail: "timed out".into(),
            },
            SdkError::DispatchFailure(d) => Self::Unreachable {
                operation,
                detail: if d.is_timeout() {
                    "timed out".into()
                } else if d.is_io() {
                    "connection failed".into()
                } else {
                    "request could not be sent".into()
                },
            },
            SdkError::ResponseError(_) => Self::Unreachable {
                operation,
                detail: "unreadable response".into(),
            },
            other => {
                // Construction failures (e.g. no credentials): the code only.
                let code = other.code().unwrap_or("ClientError").to_string();
                Self::Provider {
                    operation,
                    code,
                    message: String::new(),
                }
            }
        }
    }
}
