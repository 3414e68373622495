//! A sweep that does not finish: killed halfway, or refused by the provider,
//! it leaves its rows for the next run, which finishes them.

use super::status_in_db;
use crate::common::*;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::db;
use upload_broker::sweep::RunOptions;

#[sqlx::test]
async fn a_sweep_killed_halfway_is_finished_by_the_next(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let a = app.create_ok(json!({"filename": "a", "size": 10})).await;
    let b = app.create_ok(json!({"filename": "b", "size": 10})).await;
    app.expire_now(&a).await;
    app.expire_now(&b).await;
    // A sweep claims both, aborts b at the provider, and dies before recording anything.
    let lease = Duration::from_secs(600);
    let claimed = db::claim_expired(&pool, Utc::now(), lease, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    app.s3
        .abort_multipart_upload()
        .bucket(&app.bucket)
        .key(b["key"].as_str().unwrap())
        .upload_id(b["uploadId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(status_in_db(&app, &a).await, "expiring");
    let (s, v) = app.get_status(&token(&a)).await;
    assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"));

    let sweeper = app.sweeper(100).await;
    // While the dead sweep's lease holds, nobody takes the rows.
    let r = sweeper.run(Utc::now, &RunOptions::default()).await.unwrap();
    assert_eq!(r.aborted + r.already_gone, 0);
    // After it, the next run finishes them.
    let later = || Utc::now() + chrono::Duration::seconds(601);
    let r = sweeper.run(later, &RunOptions::default()).await.unwrap();
    assert_eq!((r.aborted, r.already_gone, r.failed), (1, 1, 0), "{r:?}");
    assert_eq!(status_in_db(&app, &a).await, "expired");
    assert_eq!(status_in_db(&app, &b).await, "expired");
    assert!(app.in_progress_uploads().await.is_empty());
}

#[sqlx::test]
async fn a_provider_that_refuses_aborts_makes_the_sweep_fail_and_say_so(pool: PgPool) {
    let proxy = crate::common::proxy::FaultProxy::start().await;
    proxy
        .faults
        .fail_abort
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let app = TestApp::spawn(pool.clone()).await;
    let c = app.create_ok(json!({"filename": "f", "size": 10})).await;
    app.expire_now(&c).await;
    let mut storage_cfg = app.config.storage.clone();
    storage_cfg.endpoint = Some(proxy.url.clone());
    let sweeper = upload_broker::sweep::Sweeper::new(
        pool.clone(),
        upload_broker::storage::Storage::connect(&storage_cfg).await,
        app.config.sweep.clone(),
    );
    let r = sweeper.run(Utc::now, &RunOptions::default()).await.unwrap();
    assert_eq!((r.failed, r.aborted), (1, 0), "{r:?}");
    assert!(!r.ok(), "a failed upload fails the run");
    assert_eq!(
        status_in_db(&app, &c).await,
        "expiring",
        "left for the next run"
    );
    // The next run after the lease, with a working provider, finishes it.
    let r = app
        .sweeper(10)
        .await
        .run(
            || Utc::now() + chrono::Duration::hours(1),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.aborted, 1, "{r:?}");
}
