//! The API's one error type, with the contract's stable codes. Database and
//! storage errors are converted here, once.

use crate::db::DbError;
use crate::domain::part_plan::PlanError;
use crate::domain::request::FieldError;
use crate::domain::upload::{UploadStatus, WrongSizePart};
use crate::storage::StorageError;
use http::StatusCode;
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("a valid bearer credential is required")]
    Unauthorized,
    /// A credential that was valid once but is no longer (an expired grant).
    #[error("{0}")]
    UnauthorizedBecause(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{quota} quota exceeded: {current} of {limit}")]
    QuotaExceeded {
        quota: &'static str,
        limit: u64,
        current: u64,
    },
    #[error("too many requests; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("not found")]
    NotFound,
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the upload is {}", .0.api_name())]
    NotActive(UploadStatus),
    #[error("parts are missing")]
    PartsMissing {
        missing: Vec<u32>,
        wrong_size: Vec<WrongSizePart>,
    },
    #[error("{message}")]
    PartMismatch {
        message: String,
        wrong_size: Vec<WrongSizePart>,
        etag_mismatch: Vec<u32>,
    },
    #[error("{0}")]
    Expired(&'static str),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error(transparent)]
    Storage(StorageError),
    /// Storage made something other than what was uploaded (502).
    #[error("{0}")]
    BadObject(String),
    #[error(transparent)]
    Unavailable(DbError),
    #[error("{0}")]
    Overloaded(&'static str),
    #[error("the request took longer than the server allows")]
    Timeout,
    #[error("internal error: {0}")]
    Internal(String),
}

/// The stable error codes: the one table, used by responses and by the
/// OpenAPI document alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    UploadNotActive,
    PartsMissing,
    PartMismatch,
    UploadExpired,
    TooLarge,
    BodyTooLarge,
    UnsupportedMediaType,
    RequestTimeout,
    QuotaExceeded,
    RateLimited,
    StorageError,
    Unavailable,
    Internal,
}

pub const EXPIRED_MESSAGE: &str = "the upload has expired";
pub const GONE_AT_PROVIDER_MESSAGE: &str =
    "the upload has expired: the storage provider no longer has it";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::UnauthorizedBecause(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::QuotaExceeded { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotActive(_) | Self::PartsMissing { .. } | Self::PartMismatch { .. } => {
                StatusCode::CONFLICT
            }
            Self::Expired(_) => StatusCode::GONE,
            Self::TooLarge(_) | Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Storage(_) | Self::BadObject(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::Unauthorized | Self::UnauthorizedBecause(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::NotFound | Self::NoRoute => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::NotActive(_) => ErrorCode::UploadNotActive,
            Self::PartsMissing { .. } => ErrorCode::PartsMissing,
            Self::PartMismatch { .. } => ErrorCode::PartMismatch,
            Self::Expired(_) => ErrorCode::UploadExpired,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::BodyTooLarge(_) => ErrorCode::BodyTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::Storage(_) | Self::BadObject(_) => ErrorCode::StorageError,
            Self::Unavailable(_) | Self::Overloaded(_) => ErrorCode::Unavailable,
            Self::Timeout => ErrorCode::RequestTimeout,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// What the client is told. Server-side failures say what failed, never
    /// internal detail (that goes to the log).
    pub fn public_message(&self) -> String {
        match self {
            Self::Storage(StorageError::Provider {
                operation, code, ..
            }) => {
                format!("the storage provider refused {operation}: {code}")
            }
            Self::Storage(StorageError::Unreachable { operation, detail }) => {
                format!("the storage provider could not be reached for {operation} ({detail})")
            }
            Self::Storage(_) => "the storage provider failed".into(),
            Self::Unavailable(_) => "the database is unavailable; try again shortly".into(),
            Self::Internal(_) => "internal error".into(),
            Self::PartsMissing { missing, .. } => {
                format!("{} part(s) are not uploaded yet", missing.len())
            }
            other => other.to_string(),
        }
    }

    /// The JSON body: `{"error": {"code", "message", ...extra}}`.
    pub fn body(&self) -> Value {
        let mut e = Map::new();
        e.insert("code".into(), json!(self.code()));
        e.insert("message".into(), json!(self.public_message()));
        match self {
            Self::NotActive(s) => {
                e.insert("status".into(), json!(s.api_name()));
            }
            Self::QuotaExceeded {
                quota,
                limit,
                current,
            } => {
                e.insert("quota".into(), json!(quota));
                e.insert("limit".into(), json!(limit));
                e.insert("current".into(), json!(current));
            }
            Self::PartsMissing {
                missing,
                wrong_size,
            } => {
                e.insert("missingParts".into(), json!(missing));
                if !wrong_size.is_empty() {
                    e.insert("wrongSizeParts".into(), json!(wrong_size));
                }
            }
            Self::PartMismatch {
                wrong_size,
                etag_mismatch,
                ..
            } => {
                if !wrong_size.is_empty() {
                    e.insert("wrongSizeParts".into(), json!(wrong_size));
                    let missing: Vec<u32> = wrong_size.iter().map(|p| p.part_number).collect();
                    e.insert("missingParts".into(), json!(missing));
                }
                if !etag_mismatch.is_empty() {
                    e.insert("mismatchedParts".into(), json!(etag_mismatch));
                }
            }
            _ => {}
        }
        json!({ "error": e })
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(_) => Self::Unavailable(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::domain::access::Refusal> for ApiError {
    fn from(e: crate::domain::access::Refusal) -> Self {
        use crate::domain::access::Refusal;
        match e {
            Refusal::Forbidden(m) => Self::Forbidden(m),
            Refusal::TooLarge { .. } => Self::TooLarge(e.to_string()),
        }
    }
}

impl From<crate::domain::parts::PartsError> for ApiError {
    fn from(e: crate::domain::parts::PartsError) -> Self {
        use crate::domain::parts::PartsError;
        match e {
            PartsError::Missing(missing) => Self::PartsMissing {
                missing,
                wrong_size: Vec::new(),
            },
            PartsError::Mismatch { message, parts } => Self::PartMismatch {
                message,
                wrong_size: Vec::new(),
                etag_mismatch: parts,
            },
            PartsError::Invalid(m) => Self::InvalidRequest(m.to_string()),
        }
    }
}

impl From<crate::domain::transitions::Refused> for ApiError {
    fn from(r: crate::domain::transitions::Refused) -> Self {
        use crate::domain::transitions::Refused;
        match r {
            Refused::NotActive(s) => Self::NotActive(s),
            Refused::Expired => Self::Expired(EXPIRED_MESSAGE),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self::InvalidRequest(e.to_string())
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            PlanError::Empty => Self::InvalidRequest(format!("size: {e}")),
            _ => Self::InvalidRequest(format!("partSize: {e}")),
        }
    }
}
