//! Liveness and readiness, without authentication.

use super::AppState;
use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long readiness waits for each dependency.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The process is up and serving; no dependency is checked.
#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness (no dependencies, no credential)",
    responses((status = 200, description = "{\"status\": \"ok\"}")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Postgres and the bucket are reachable, each within a short timeout.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness: Postgres and the bucket (no credential)",
    responses((status = 200, description = "{\"status\": \"ready\", \"checks\": {\"database\": \"ok\", \"storage\": \"ok\"}}"),
        (status = 503, description = "UNAVAILABLE, with checks naming what failed", body = super::openapi::ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        // Shutting down: the load balancer takes this instance out while it
        // still serves (BROKER_DRAIN_DELAY), before it stops accepting.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {
                "code": "UNAVAILABLE",
                "message": "not ready: shutting down",
                "checks": {"shutdown": "draining"},
            }})),
        );
    }
    let broker = &state.broker;
    let (db, storage) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, crate::db::ping(broker.db())),
        tokio::time::timeout(CHECK_TIMEOUT, broker.storage().check_bucket()),
    );
    let db = match db {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            "unreachable".to_string()
        }
        Err(_) => "timed out".to_string(),
    };
    let storage = match storage {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: storage check failed");
            format!("failed: {}", public_storage_detail(&e))
        }
        Err(_) => "timed out".to_string(),
    };
    let checks = json!({"database": db, "storage": storage});
    if db == "ok" && storage == "ok" {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks})),
        )
    } else {
        let failed: Vec<&str> = [("database", &db), ("storage", &storage)]
            .iter()
            .filter(|(_, v)| v.as_str() != "ok")
            .map(|(k, _)| *k)
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {
                "code": "UNAVAILABLE",
                "message": format!("not ready: {} failed", failed.join(" and ")),
                "checks": checks,
            }})),
        )
    }
}

fn public_storage_detail(e: &crate::storage::StorageError) -> String {
    match e {
        crate::storage::StorageError::Provider { code, .. } => code.clone(),
        crate::storage::StorageError::Unreachable { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}
