//! An object of the wrong size, completed behind the broker's back: found by a
//! route or by the sweep, it is removed, never recorded as completed.

use super::status_in_db;
use crate::common::*;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;
use upload_broker::sweep::RunOptions;

/// A two-part upload whose provider upload was completed behind the broker's
/// back with only its first part: an object of the wrong size.
async fn completed_short(app: &TestApp) -> Value {
    let part = 5 * MIB;
    let file = data(part + 10, 2);
    let c = app
        .create_ok(json!({"filename": "w", "size": file.len(), "partSize": part}))
        .await;
    let etag = app.put_part(&c["parts"][0], &file[..part]).await;
    app.put_part(&c["parts"][1], &file[part..]).await;
    app.complete_at_provider(&c, &etag).await;
    c
}

async fn object_exists(app: &TestApp, key: &str) -> bool {
    app.s3
        .head_object()
        .bucket(&app.bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

#[sqlx::test]
async fn a_wrong_size_object_found_by_a_route_is_removed_not_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = completed_short(&app).await;
    let key = c["key"].as_str().unwrap();
    assert!(object_exists(&app, key).await);
    let (s, v) = app.get_status(&token(&c)).await;
    assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"), "{v}");
    assert_eq!(status_in_db(&app, &c).await, "expired");
    assert!(
        !object_exists(&app, key).await,
        "the bucket holds nothing the records do not account for"
    );
}

#[sqlx::test]
async fn a_wrong_size_object_found_by_the_sweep_is_removed_not_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = completed_short(&app).await;
    app.expire_now(&c).await;
    let r = app
        .sweeper(10)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!((r.already_gone, r.recovered_completed), (1, 0), "{r:?}");
    assert_eq!(status_in_db(&app, &c).await, "expired");
    assert!(!object_exists(&app, c["key"].as_str().unwrap()).await);
}
