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

pub const EXPIRED_MESSAGE: &str = "the upload has expired";
pub const GONE_AT_PROVIDER_MESSAGE: &str =
    "the upload has expired: the storage provider no longer has it";

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
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

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "INVALID_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::NotFound | Self::NoRoute => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::NotActive(_) => "UPLOAD_NOT_ACTIVE",
            Self::PartsMissing { .. } => "PARTS_MISSING",
            Self::PartMismatch { .. } => "PART_MISMATCH",
            Self::Expired(_) => "UPLOAD_EXPIRED",
            Self::TooLarge(_) => "TOO_LARGE",
            Self::BodyTooLarge(_) => "BODY_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::Storage(_) | Self::BadObject(_) => "STORAGE_ERROR",
            Self::Unavailable(_) | Self::Overloaded(_) => "UNAVAILABLE",
            Self::Timeout => "REQUEST_TIMEOUT",
            Self::Internal(_) => "INTERNAL",
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
