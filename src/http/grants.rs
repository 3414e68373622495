//! `POST /v1/grants`: an API key mints an upload grant for one end user.

use super::extract::ApiJson;
use super::openapi::{BodyErrors, CallerErrors, ErrorBody};
use super::resources::rfc3339;
use super::AppState;
use crate::auth::grants::MAX_LIFETIME_SECONDS;
use crate::domain::access::{check_subject, GrantLimits};
use crate::error::ApiError;
use crate::http::auth::Caller;
use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// A grant's life when the request names none.
pub const DEFAULT_GRANT_TTL_SECONDS: i64 = 900;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_grant))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GrantBody {
    /// The end user, 1 to 128 characters.
    subject: String,
    /// Life of the grant: default 900, at most 86400.
    ttl_seconds: Option<i64>,
    /// Largest `size` the grant may create.
    max_upload_size: Option<u64>,
    /// Most uploads the grant may create in its life.
    max_uploads: Option<u32>,
    /// Allowed content types: exact (`video/mp4`) or a whole type (`image/*`).
    content_types: Option<Vec<String>>,
    /// Metadata forced onto every upload; wins over the client's.
    metadata: Option<BTreeMap<String, String>>,
    /// May the grant ask for download URLs (default false).
    allow_download: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct GrantResponse {
    /// The grant: a JWT to hand to the browser or app, as its bearer credential.
    grant: String,
    subject: String,
    expires_at: String,
}

impl GrantBody {
    fn limits(self) -> Result<(String, i64, GrantLimits), ApiError> {
        let subject = self.subject;
        check_subject(&subject)?;
        let ttl = self.ttl_seconds.unwrap_or(DEFAULT_GRANT_TTL_SECONDS);
        if !(1..=MAX_LIFETIME_SECONDS).contains(&ttl) {
            return Err(ApiError::InvalidRequest(format!(
                "ttlSeconds: must be 1 to {MAX_LIFETIME_SECONDS}"
            )));
        }
        let limits = GrantLimits {
            max_upload_size: self.max_upload_size,
            max_uploads: self.max_uploads,
            content_types: self.content_types,
            metadata: self.metadata.unwrap_or_default(),
            allow_download: self.allow_download.unwrap_or(false),
        }
        .checked()?;
        Ok((subject, ttl, limits))
    }
}
#[utoipa::path(post, path = "/v1/grants", security(("bearer" = [])), tag = "credentials",
    summary = "Mint an upload grant",
    description = "An API key mints a short-lived credential for one end user (a subject) of its tenant, to hand to a browser or an app. The grant acts only on its subject's uploads, within its limits.",
    request_body = GrantBody,
    responses((status = 201, description = "The grant", body = GrantResponse),
        (status = 403, description = "FORBIDDEN: a grant cannot mint grants", body = ErrorBody), CallerErrors, BodyErrors))]
async fn create_grant(
    State(state): State<AppState>,
    Caller(access): Caller,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<(StatusCode, Json<GrantResponse>), ApiError> {
    access.require_api_key("mint grants")?;
    let (subject, ttl, limits) = body.limits()?;
    let (grant, expires_at) =
        state
            .auth
            .grants
            .mint(&access.tenant, &subject, ttl, limits, access.key);
    Ok((
        StatusCode::CREATED,
        Json(GrantResponse {
            grant,
            subject,
            expires_at: rfc3339(&expires_at),
        }),
    ))
}
