//! The sweep: expired uploads aborted at the provider, concurrency and crash
//! safety, the race with complete, orphans, retention, the periodic sweep and
//! the CLI.

use crate::common::*;
use chrono::Utc;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::db;
use upload_broker::sweep::RunOptions;

async fn status_in_db(app: &TestApp, created: &Value) -> String {
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    sqlx::query_scalar("select status from uploads where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

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
async fn two_sweeps_at_once_abort_each_upload_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut all = Vec::new();
    for i in 0..30 {
        let c = app
            .create_ok(json!({"filename": format!("u{i}"), "size": 10}))
            .await;
        app.expire_now(&c).await;
        all.push(c);
    }
    let (s1, s2) = (app.sweeper(4).await, app.sweeper(4).await);
    let opts = RunOptions::default();
    let (r1, r2) = tokio::join!(s1.run(Utc::now, &opts), s2.run(Utc::now, &opts));
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.aborted + r2.aborted, 30, "{r1:?} {r2:?}");
    assert_eq!(
        r1.already_gone + r2.already_gone + r1.failed + r2.failed,
        0,
        "no upload handled twice"
    );
    assert!(app.in_progress_uploads().await.is_empty());
    for c in &all {
        assert_eq!(status_in_db(&app, c).await, "expired");
    }
}

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
async fn a_sweep_racing_complete_never_loses_a_completion(pool: PgPool) {
    // Clients complete uploads one after another across their expiry instant
    // while a sweep runs flat out on the real clock.
    let app = TestApp::spawn(pool).await;
    let mut uploads = Vec::new();
    for i in 0..20 {
        let file = data(100 + i, i as u64);
        let c = app
            .create_ok(json!({"filename": format!("r{i}"), "size": file.len()}))
            .await;
        app.put_part(&c["parts"][0], &file).await;
        uploads.push((c, file));
    }
    // One expiry instant for all, 1 s from now; start completing 500 ms before it,
    // one every ~50 ms or more, so that some land before it and some after.
    let expiry = Utc::now() + chrono::Duration::seconds(1);
    sqlx::query("update uploads set expires_at = $1")
        .bind(expiry)
        .execute(&app.pool)
        .await
        .unwrap();
    let wait = (expiry - Utc::now() - chrono::Duration::milliseconds(500))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;

    let sweeper = app.sweeper(1).await;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sweep = async {
        let mut r = upload_broker::sweep::SweepReport::default();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let (_, step) = sweeper.expire_step(Utc::now()).await.unwrap();
            r.aborted += step.aborted;
            r.already_gone += step.already_gone;
            r.recovered_completed += step.recovered_completed;
            r.failed += step.failed;
        }
        r
    };
    let completes = async {
        let mut out = Vec::new();
        for (c, _) in &uploads {
            out.push(app.complete(&token(c), None).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    let (mut report, results) = tokio::join!(sweep, completes);
    // Whatever expired after its failed complete and was not swept yet.
    let rest = sweeper
        .run(
            || Utc::now() + chrono::Duration::seconds(1),
            &RunOptions::default(),
        )
        .await
        .unwrap();
    report.aborted += rest.aborted;
    assert_eq!(
        report.failed + report.already_gone + report.recovered_completed,
        0,
        "{report:?}"
    );

    let mut completed = 0;
    for ((c, file), (s, v)) in uploads.iter().zip(results) {
        let db_status = status_in_db(&app, c).await;
        match s {
            200 => {
                completed += 1;
                assert_eq!(db_status, "completed", "{v}");
                let (bytes, _, _) = app.read_object(c["key"].as_str().unwrap()).await;
                assert_eq!(&bytes, file, "a completed upload's object is intact");
            }
            410 => {
                assert_eq!(db_status, "expired");
                let head = app
                    .s3
                    .head_object()
                    .bucket(&app.bucket)
                    .key(c["key"].as_str().unwrap())
                    .send()
                    .await;
                assert!(head.is_err(), "an expired upload has no object");
            }
            other => panic!("complete answered {other}: {v}"),
        }
    }
    assert_eq!(
        completed + report.aborted as usize,
        20,
        "every upload has exactly one winner: {report:?}"
    );
    assert!(
        completed > 0 && completed < 20,
        "the race straddled the expiry ({completed} completed)"
    );
    assert!(app.in_progress_uploads().await.is_empty());
}

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
async fn retention_deletes_only_old_finished_rows(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut made = Vec::new();
    for name in [
        "old-completed",
        "old-aborted",
        "new-completed",
        "old-active",
    ] {
        let c = app.create_ok(json!({"filename": name, "size": 10})).await;
        app.put_part(&c["parts"][0], &data(10, 3)).await;
        made.push(c);
    }
    assert_eq!(app.complete(&token(&made[0]), None).await.0, 200);
    assert_eq!(app.abort(&token(&made[1])).await.0, 204);
    assert_eq!(app.complete(&token(&made[2]), None).await.0, 200);
    for c in [&made[0], &made[1], &made[3]] {
        let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
        sqlx::query("update uploads set updated_at = now() - interval '31 days' where id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let dry = app
        .sweeper(100)
        .await
        .run(
            Utc::now,
            &RunOptions {
                dry_run: true,
                orphans_older_than: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(dry.deleted, 2);
    let r = app
        .sweeper(1)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.deleted, 2, "{r:?}");
    for (c, status) in made.iter().zip([404, 404, 200, 200]) {
        assert_eq!(
            app.get_status(&token(c)).await.0,
            status,
            "{}",
            c["filename"]
        );
    }
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

// ------------------------------------------------------------------ safety nets

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
