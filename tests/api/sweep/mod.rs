//! The sweep: expired uploads aborted at the provider, concurrency and crash
//! safety, the race with complete, orphans, retention, the periodic sweep and
//! the CLI.
//!
//! (The `sweep` command itself is tested with the binary, in `cli`.)

mod completing;
mod concurrency;
mod crash_safety;
mod expiry;
mod orphans;
mod retention;
mod wrong_size;

use crate::common::*;
use serde_json::Value;

async fn status_in_db(app: &TestApp, created: &Value) -> String {
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    sqlx::query_scalar("select status from uploads where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}
