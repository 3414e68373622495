//! The sweep and `completing` rows: it leaves one whose completer's lease
//! holds, recovers the completion of a completer that died after the
//! provider completed, and settles lapsed completions at once.

use super::status_in_db;
use crate::common::*;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::db;
use upload_broker::sweep::RunOptions;

#[sqlx::test]
async fn a_dead_completer_is_recovered_not_aborted(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let file = data(50, 7);
    let c = app
        .create_ok(json!({"filename": "d", "size": file.len()}))
        .await;
    let etag = app.put_part(&c["parts"][0], &file).await;
    // A completer claimed it, completed at the provider, and died before recording.
    let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
    db::claim_completion(&pool, id, Utc::now(), Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    app.complete_at_provider(&c, &etag).await;
    app.expire_now(&c).await;
    let r = app
        .sweeper(10)
        .await
        .run(
            || Utc::now() + chrono::Duration::seconds(5),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.recovered_completed, 1, "{r:?}");
    assert_eq!(status_in_db(&app, &c).await, "completed");
    let (bytes, _, _) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(bytes, file);
}

#[sqlx::test]
async fn the_sweep_leaves_a_completing_upload_whose_lease_holds(pool: PgPool) {
    // Past its expiry, but a completer holds it (its lease runs 10 more
    // minutes): the sweep must not abort it under the completer.
    let app = TestApp::spawn(pool.clone()).await;
    let c = app.create_ok(json!({"filename": "h", "size": 10})).await;
    app.put_part(&c["parts"][0], &data(10, 1)).await;
    let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
    db::claim_completion(&pool, id, Utc::now(), Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    app.expire_now(&c).await;
    let r = app
        .sweeper(10)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (r.aborted, r.already_gone, r.recovered_completed),
        (0, 0, 0),
        "{r:?}"
    );
    assert_eq!(status_in_db(&app, &c).await, "completing");
    assert_eq!(
        app.in_progress_uploads().await.len(),
        1,
        "still at the provider"
    );
    // Once the lease has run out, it is the sweep's.
    let r = app
        .sweeper(10)
        .await
        .run(
            || Utc::now() + chrono::Duration::minutes(11),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(r.aborted, 1, "{r:?}");
}

/// A `completing` row whose completer died before the upload expired: the
/// sweep settles it at once (not at expiry, days later).
#[sqlx::test]
async fn lapsed_completions_are_settled_by_the_next_sweep(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let lapse = |id: &str| {
        let id: uuid::Uuid = id.parse().unwrap();
        sqlx::query(
            "update uploads set status = 'completing', claim = gen_random_uuid(), \
             lease_until = now() - interval '1 minute' where id = $1",
        )
        .bind(id)
        .execute(&pool)
    };
    // One whose CompleteMultipartUpload got through before its completer died.
    let done = app.create_ok(json!({"filename": "a.bin", "size": 5})).await;
    let etag = app.put_part(&done["parts"][0], b"hello").await;
    app.complete_at_provider(&done, &etag).await;
    lapse(done["id"].as_str().unwrap()).await.unwrap();
    // One whose completer died before it reached storage.
    let open = app.create_ok(json!({"filename": "b.bin", "size": 5})).await;
    app.put_part(&open["parts"][0], b"world").await;
    lapse(open["id"].as_str().unwrap()).await.unwrap();

    let report = app
        .sweeper(10)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.recovered_completed, 1, "{report:?}");
    assert_eq!(report.completions_released, 1, "{report:?}");
    assert_eq!(app.row_status(&done).await, "completed");
    assert_eq!(app.row_status(&open).await, "active");
    let n: i64 = sqlx::query_scalar(
        "select count(*) from events where type = 'upload.completed' and upload_id = $1",
    )
    .bind(done["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1, "the recovered completion has its event");
    // The handed-back upload completes as usual.
    let (s, v) = app.complete(&token(&open), None).await;
    assert_eq!(s, 200, "{v}");
}
