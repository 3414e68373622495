//! The caller, from `Authorization: Bearer <credential>`: an API key or a grant.

use super::AppState;
use crate::domain::access::Access;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use http::request::Parts;

/// Who is calling (see [`Access`]).
#[derive(Debug, Clone)]
pub struct Caller(pub Access);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, credential) = header
            .trim()
            .split_once(' ')
            .ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let access = state.auth.authenticate(credential.trim(), peer).await?;
        tracing::Span::current().record("tenant", access.tenant.as_str());
        Ok(Caller(access))
    }
}
