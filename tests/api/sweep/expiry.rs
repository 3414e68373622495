//! Expiry: expired uploads are aborted at the provider and live or completed
//! ones left alone, on the injected clock, and periodically by `serve`.

use super::status_in_db;
use crate::common::*;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::sweep::RunOptions;

#[sqlx::test]
async fn expired_uploads_are_aborted_and_live_ones_untouched(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let e1 = app.create_ok(json!({"filename": "e1", "size": 10})).await;
    let e2 = app.create_ok(json!({"filename": "e2", "size": 10})).await;
    app.put_part(&e2["parts"][0], &data(10, 1)).await;
    let live = app.create_ok(json!({"filename": "live", "size": 10})).await;
    let done = app.create_ok(json!({"filename": "done", "size": 10})).await;
    app.put_part(&done["parts"][0], &data(10, 2)).await;
    assert_eq!(app.complete(&token(&done), None).await.0, 200);
    app.expire_now(&e1).await;
    app.expire_now(&e2).await;
    app.expire_now(&done).await; // completed uploads never expire

    let report = app
        .sweeper(100)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (report.aborted, report.already_gone, report.failed),
        (2, 0, 0),
        "{report:?}"
    );
    assert_eq!(
        app.in_progress_uploads().await,
        vec![live["uploadId"].as_str().unwrap().to_string()]
    );
    for e in [&e1, &e2] {
        assert_eq!(status_in_db(&app, e).await, "expired");
        let (s, v) = app.get_status(&token(e)).await;
        assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"));
    }
    assert_eq!(app.get_status(&token(&live)).await.1["status"], "active");
    assert_eq!(app.get_status(&token(&done)).await.1["status"], "completed");

    // Nothing left: a second run does nothing.
    let again = app
        .sweeper(100)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(again.aborted + again.already_gone + again.failed, 0);
}

#[sqlx::test]
async fn the_step_uses_the_injected_clock(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app.create_ok(json!({"filename": "a", "size": 10})).await;
    let sweeper = app.sweeper(100).await;
    let (claimed, _) = sweeper.expire_step(Utc::now()).await.unwrap();
    assert_eq!(claimed, 0, "not expired yet");
    let (claimed, r) = sweeper
        .expire_step(Utc::now() + chrono::Duration::days(8))
        .await
        .unwrap();
    assert_eq!((claimed, r.aborted), (1, 1));
    assert_eq!(status_in_db(&app, &a).await, "expired");
    assert!(app.in_progress_uploads().await.is_empty());
}

#[sqlx::test]
async fn serve_sweeps_periodically(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            upload_ttl: Duration::from_secs(3),
            sweep_interval: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;
    let c = app.create_ok(json!({"filename": "p", "size": 10})).await;
    assert_eq!(app.in_progress_uploads().await.len(), 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status_in_db(&app, &c).await != "expired" {
        assert!(
            std::time::Instant::now() < deadline,
            "the periodic sweep did not expire the upload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.in_progress_uploads().await.is_empty());
}
