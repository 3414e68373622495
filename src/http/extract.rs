//! Extractors whose rejections are the contract's JSON errors.

use crate::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use serde::de::DeserializeOwned;

/// `Json<T>` with contract errors: 415 without a JSON content type, 413 over the
/// body limit, 400 for anything malformed.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "the body must be JSON (Content-Type: application/json)".into(),
        ),
        JsonRejection::BytesRejection(b) if b.status() == http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::BodyTooLarge("the request body is over the limit".into())
        }
        JsonRejection::JsonDataError(e) => ApiError::InvalidRequest(e.body_text().replace(
            "Failed to deserialize the JSON body into the target type: ",
            "",
        )),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::InvalidRequest("the body is not valid JSON".into())
        }
        other => ApiError::InvalidRequest(other.body_text()),
    }
}

/// A JSON body that may be absent: no body (or an empty one) gives `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let has_content_type = req.headers().contains_key(http::header::CONTENT_TYPE);
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|b| {
                if b.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge("the request body is over the limit".into())
                } else {
                    ApiError::InvalidRequest(b.body_text())
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) && (!has_content_type || bytes.is_empty()) {
            return Ok(Self(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| Self(v))
    }
}

/// A path parameter with a JSON 404 for anything malformed.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::NotFound),
            Err(e) => Err(ApiError::Internal(e.body_text())),
        }
    }
}
