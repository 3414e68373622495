//! The sweep racing others: two sweeps at once abort each upload once, and a
//! sweep racing clients' completes across the expiry instant never loses a
//! completion.

use super::status_in_db;
use crate::common::*;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::sweep::RunOptions;

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
