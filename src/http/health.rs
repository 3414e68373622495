//! Liveness and readiness, without authentication.

use super::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// How long readiness waits for each dependency.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up and serving; no dependency is checked.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Postgres and the bucket are reachable, each within a short timeout.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
