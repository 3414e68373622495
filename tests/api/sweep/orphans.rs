//! The orphan scan: it aborts only unknown, old multipart uploads under the
//! prefix, and follows every page of the provider's listing.

use crate::common::*;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::sweep::RunOptions;

#[sqlx::test]
async fn the_orphan_scan_aborts_only_unknown_old_in_prefix_uploads(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let known = app
        .create_ok(json!({"filename": "known", "size": 10}))
        .await;
    let orphan_key = format!("{}2026/01/01/orphan/x.bin", app.prefix);
    let orphan = app
        .s3
        .create_multipart_upload()
        .bucket(&app.bucket)
        .key(&orphan_key)
        .send()
        .await
        .unwrap();
    let outside_key = format!("elsewhere-{}/y.bin", uuid::Uuid::new_v4());
    let outside = app
        .s3
        .create_multipart_upload()
        .bucket(&app.bucket)
        .key(&outside_key)
        .send()
        .await
        .unwrap();
    let sweeper = app.sweeper(100).await;

    // Young: left alone.
    let r = sweeper
        .scan_orphans(Utc::now(), Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!(r.orphans_found, 0);
    // Old enough (clock a day ahead), dry run: reported, not aborted.
    let tomorrow = Utc::now() + chrono::Duration::hours(25);
    let r = sweeper
        .scan_orphans(tomorrow, Duration::from_secs(24 * 3600), true)
        .await
        .unwrap();
    assert_eq!((r.orphans_found, r.orphans_aborted), (1, 0));
    assert_eq!(app.in_progress_uploads().await.len(), 2);
    // For real.
    let r = sweeper
        .run(
            move || tomorrow,
            &RunOptions {
                dry_run: false,
                orphans_older_than: Some(Duration::from_secs(24 * 3600)),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (r.orphans_found, r.orphans_aborted, r.orphans_failed),
        (1, 1, 0),
        "{r:?}"
    );
    let left = app.in_progress_uploads().await;
    assert!(!left.contains(&orphan.upload_id().unwrap().to_string()));
    // The known upload expired by then (clock +25h is within 7 days: still active).
    assert!(left.contains(&known["uploadId"].as_str().unwrap().to_string()));
    // Outside the prefix: untouched.
    let out = app
        .s3
        .list_multipart_uploads()
        .bucket(&app.bucket)
        .prefix(&outside_key)
        .send()
        .await
        .unwrap();
    assert_eq!(out.uploads().len(), 1);
    app.s3
        .abort_multipart_upload()
        .bucket(&app.bucket)
        .key(&outside_key)
        .upload_id(outside.upload_id().unwrap())
        .send()
        .await
        .unwrap();
}

#[sqlx::test]
async fn the_orphan_scan_follows_every_page(pool: PgPool) {
    // Page size 2 (the same setting pages ListParts): five orphans take three pages.
    let app = TestApp::spawn_with(
        pool,
        Options {
            list_parts_page_size: 2,
            ..Default::default()
        },
    )
    .await;
    for i in 0..5 {
        app.s3
            .create_multipart_upload()
            .bucket(&app.bucket)
            .key(format!("{}orphans/o{i}.bin", app.prefix))
            .send()
            .await
            .unwrap();
    }
    let storage = upload_broker::storage::Storage::connect(&app.config.storage).await;
    let sweeper =
        upload_broker::sweep::Sweeper::new(app.pool.clone(), storage, app.config.sweep.clone());
    let r = sweeper
        .scan_orphans(
            Utc::now() + chrono::Duration::hours(1),
            Duration::ZERO,
            false,
        )
        .await
        .unwrap();
    assert_eq!((r.orphans_found, r.orphans_aborted), (5, 5), "{r:?}");
    assert!(app.in_progress_uploads().await.is_empty());
}
