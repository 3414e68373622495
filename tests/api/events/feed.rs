//! The event record and its feed: one event per status change however
//! completes and the sweep race; a feed that never skips an event whose
//! transaction commits late; retention that keeps what is still undelivered.

use super::{add_webhook, feed_caught_up, read_feed, read_pages, WAIT};
use crate::common::receiver::{Answer, Receiver};
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn sweep(s: &upload_broker::sweep::Sweeper) {
    s.run(chrono::Utc::now, &Default::default()).await.unwrap();
}

fn types_of(events: &[Value], upload_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["data"]["id"] == upload_id)
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

#[sqlx::test]
async fn concurrent_completes_and_a_racing_sweep_make_one_completed_event(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let c = app.create_ok(json!({"filename": "c.bin", "size": 5})).await;
    app.put_part(&c["parts"][0], b"hello").await;
    let t = token(&c);
    let mut calls = Vec::new();
    for _ in 0..10 {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/uploads/{t}/complete")),
        );
        calls.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY_A)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for c in calls {
        assert!([200, 409, 503].contains(&c.await.unwrap()));
    }

    // Completed at the provider behind the broker's back, then expired: the
    // sweep and a complete race for it.
    let d = app.create_ok(json!({"filename": "d.bin", "size": 5})).await;
    let etag = app.put_part(&d["parts"][0], b"world").await;
    app.complete_at_provider(&d, &etag).await;
    let sweeper = app.sweeper(10).await;
    let racing = {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/uploads/{}/complete", token(&d))),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY_A)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    app.expire_now(&d).await;
    sweep(&sweeper).await;
    let _ = racing.await.unwrap();

    // Aborted, and expired by the sweep.
    let e = app.create_ok(json!({"filename": "e.bin", "size": 5})).await;
    assert_eq!(app.abort(&token(&e)).await.0, 204);
    assert_eq!(app.abort(&token(&e)).await.0, 204);
    let f = app.create_ok(json!({"filename": "f.bin", "size": 5})).await;
    app.expire_now(&f).await;
    sweep(&sweeper).await;
    sweep(&sweeper).await;

    let feed = read_feed(&app, 3).await;
    assert_eq!(
        types_of(&feed, c["id"].as_str().unwrap()),
        ["upload.created", "upload.completed"]
    );
    let d_types = types_of(&feed, d["id"].as_str().unwrap());
    assert_eq!(
        d_types,
        ["upload.created", "upload.completed"],
        "the object exists: completed, once"
    );
    assert_eq!(
        types_of(&feed, e["id"].as_str().unwrap()),
        ["upload.created", "upload.aborted"]
    );
    assert_eq!(
        types_of(&feed, f["id"].as_str().unwrap()),
        ["upload.created", "upload.expired"]
    );
    // And the table agrees with the feed: one row per event.
    let n: i64 = sqlx::query_scalar("select count(*) from events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n as usize, feed.len());
}

#[sqlx::test]
async fn the_feed_never_skips_an_event_whose_transaction_commits_late(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    app.create_ok(json!({"filename": "1.bin", "size": 1})).await;
    feed_caught_up(&app).await;
    // A writer that took its transaction id first and commits last.
    let mut slow = pool.begin().await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *slow)
        .await
        .unwrap();
    let late_upload = uuid::Uuid::new_v4();
    // Events written after it began (and committed before it).
    for i in 0..3 {
        app.create_ok(json!({"filename": format!("{i}.bin"), "size": 1}))
            .await;
    }
    let first = read_pages(&app, 2).await;
    // What the slow writer writes now gets a later seq than the three above.
    let late: uuid::Uuid = sqlx::query_scalar(
        "insert into events (id, tenant, upload_id, type, data, created_at) \
         select gen_random_uuid(), tenant, $1, type, data, now() from events order by seq limit 1 \
         returning id",
    )
    .bind(late_upload)
    .fetch_one(&mut *slow)
    .await
    .unwrap();
    // A reader that stopped here must not have passed the late one.
    let (_, v) = app.call(Method::GET, "/v1/events?limit=100", None).await;
    let cursor = v["next"].as_str().unwrap().to_string();
    slow.commit().await.unwrap();
    feed_caught_up(&app).await;
    let mut rest = Vec::new();
    let mut after = cursor;
    loop {
        let (s, v) = app
            .call(
                Method::GET,
                &format!("/v1/events?limit=2&after={after}"),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let page = v["events"].as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        rest.extend(page);
        after = v["next"].as_str().unwrap().to_string();
    }
    let seen: Vec<Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .chain(rest)
        .collect();
    let ids: Vec<&str> = seen.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice: {ids:?}");
    assert_eq!(ids.len(), 5, "every event once, the late one included");
    assert!(
        ids.contains(&format!("evt_{}", late.simple()).as_str()),
        "the late event: {ids:?}"
    );
    // While the slow writer was open, readers saw only what came before it began.
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
    // Junk cursors are a 400, not a 500.
    for bad in ["zzz", "MTIz", "-1"] {
        let (s, v) = app
            .call(Method::GET, &format!("/v1/events?after={bad}"), None)
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{bad}");
    }
    let (s, _) = app.call(Method::GET, "/v1/events?limit=0", None).await;
    assert_eq!(s, 400);
}

#[sqlx::test]
async fn retention_deletes_old_delivered_events_but_keeps_undelivered_ones(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let rx = Receiver::start().await;
    *rx.otherwise.lock().unwrap() = Answer::Status(500);
    add_webhook(&app, &rx.url, Some(&["upload.aborted"])).await;
    let c = app.create_ok(json!({"filename": "a.bin", "size": 1})).await;
    assert_eq!(app.abort(&token(&c)).await.0, 204);
    rx.wait_for(1, WAIT).await;
    sqlx::query("update events set created_at = now() - interval '60 days'")
        .execute(&pool)
        .await
        .unwrap();
    sweep(&app.sweeper(10).await).await;
    let kinds: Vec<String> = sqlx::query_scalar("select type from events order by seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    // The created event (no endpoint wanted it) is gone; the aborted one still
    // waits for its endpoint.
    assert_eq!(kinds, ["upload.aborted"]);
}
