//! `GET /metrics`: Prometheus text format.

use super::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::response::IntoResponse;
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics (text format)",
    description = "Private to operators: with METRICS_TOKEN set it needs `Authorization: Bearer <METRICS_TOKEN>`; or serve it on a private METRICS_LISTEN address.",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, description = "UNAUTHORIZED: METRICS_TOKEN is set and the request does not carry it", body = super::openapi::ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(want) = &state.metrics_token {
        let given = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(want.expose().as_bytes())) {
            return Err(ApiError::Unauthorized);
        }
    }
    crate::metrics::db_pool(state.broker.db());
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    ))
}
