//! `GET /metrics`: Prometheus text format.

use super::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::db_pool(state.broker.db());
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
}
