//! Getting each event to its receiver: retried through a failing receiver
//! under one webhook-id, in order per upload, once across two instances, and
//! after a kill -9 by the next instance on the same database.

use super::{add_webhook, upload, WAIT};
use crate::common::receiver::{verify_with_reference_library, Answer, Receiver};
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;

#[sqlx::test]
async fn a_receiver_that_fails_three_ways_gets_the_event_on_the_fourth_attempt(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    // 500, then silence past the 2 s timeout, then a reset connection, then 200.
    rx.script([
        Answer::Status(500),
        Answer::Stall(Duration::from_secs(4)),
        Answer::Reset,
    ]);
    let (id, secret) = add_webhook(&app, &rx.url, Some(&["upload.created"])).await;
    app.create_ok(json!({"filename": "r.bin", "size": 10}))
        .await;
    let got = rx.wait_for(4, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_now = rx.received();
    assert_eq!(
        got_now.len(),
        4,
        "delivered once it got through: {got_now:#?}"
    );
    let first = got[0].header("webhook-id");
    assert!(
        got.iter().all(|r| r.header("webhook-id") == first),
        "the same webhook-id every time"
    );
    assert_eq!(got[3].answered, Some(200));
    assert!(verify_with_reference_library(&secret, &got)
        .iter()
        .all(|v| v == first));

    let (s, v) = app
        .call(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    let d = &v["deliveries"][0];
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["eventId"], first);
    assert_eq!(d["lastStatus"], 200);
}

#[sqlx::test]
async fn an_uploads_events_arrive_in_order_even_when_the_first_is_retried(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    rx.script([Answer::Status(503), Answer::Status(503)]);
    add_webhook(&app, &rx.url, None).await;
    let c = upload(&app, b"ordered").await;
    let got = rx.wait_for(4, WAIT).await;
    let delivered: Vec<String> = rx
        .delivered()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, vec!["upload.created", "upload.completed"]);
    // The completed event was not sent before the created one got through.
    let first_completed = got
        .iter()
        .position(|r| r.json()["type"] == "upload.completed")
        .unwrap();
    assert!(got[..first_completed]
        .iter()
        .any(|r| r.answered == Some(200) && r.json()["type"] == "upload.created"));
    assert_eq!(
        got.iter()
            .filter(|r| r.json()["data"]["id"] == c["id"])
            .count(),
        4
    );
}

#[sqlx::test]
async fn two_instances_deliver_each_event_once(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    add_webhook(&a, &rx.url, None).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let http = a.http.clone();
        tasks.push(tokio::spawn(async move {
            let c = one_part_uploaded(&http, &app, KEY_A, "t.bin", "abc").await;
            let s = http
                .post(format!("{app}/v1/uploads/{}/complete", token(&c)))
                .bearer_auth(KEY_A)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(s, 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    rx.wait_for(24, WAIT).await;
    // Both workers had time to send anything twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rx.received();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *per_id
            .entry(r.header("webhook-id").to_string())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 24);
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
}

#[tokio::test]
async fn events_committed_before_a_kill_9_are_delivered_after_the_restart() {
    use crate::cli::{drop_database, fresh_database, serve_env, wait_exit, SERVE_KEY};
    let db = fresh_database().await;
    let state_dir = std::env::temp_dir().join(format!("ub-state-{}", uuid::Uuid::new_v4()));
    let prefix = format!("events-{}/", uuid::Uuid::new_v4());
    // A 3 s timeout leases each attempt for 8 s.
    let env = [
        ("WEBHOOK_TIMEOUT", "3s"),
        ("WEBHOOK_RETRY_DELAY", "200ms"),
        ("WEBHOOK_POLL", "200ms"),
    ];
    let (mut first, base) = serve_env(&db, &state_dir, &endpoint(), &prefix, false, &env).await;
    let http = reqwest::Client::new();
    let rx = Receiver::start().await;
    // The receiver holds every request: the first attempt is in flight when the broker dies.
    *rx.otherwise.lock().unwrap() = Answer::Stall(Duration::from_secs(30));
    let hook: Value = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(SERVE_KEY)
        .json(&json!({"url": rx.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = hook["secret"].as_str().unwrap().to_string();
    let c = one_part_uploaded(&http, &base, SERVE_KEY, "k.bin", "kill").await;
    let done = http
        .post(format!("{base}/v1/uploads/{}/complete", token(&c)))
        .bearer_auth(SERVE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200, "the completion is committed");
    rx.wait_for(1, WAIT).await;
    assert!(std::process::Command::new("kill")
        .args(["-9", &first.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait_exit(&mut first, Duration::from_secs(10));
    assert!(
        rx.delivered().is_empty(),
        "nothing was delivered before the kill"
    );

    // A new instance on the same database delivers both, in order, once the
    // dead one's lease has run out.
    *rx.otherwise.lock().unwrap() = Answer::Status(200);
    let (mut second, _) = serve_env(&db, &state_dir, &endpoint(), &prefix, false, &env).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rx.delivered().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered after the restart: {:#?}",
            rx.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = rx.delivered();
    let kinds: Vec<_> = delivered.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(kinds, [json!("upload.created"), json!("upload.completed")]);
    assert!(delivered.iter().all(|r| r.json()["data"]["id"] == c["id"]));
    // The attempt cut off by the kill was the created event's: the same id again.
    assert_eq!(
        rx.received()[0].header("webhook-id"),
        delivered[0].header("webhook-id")
    );
    let ids: Vec<String> = delivered
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(verify_with_reference_library(&secret, &delivered), ids);

    let _ = std::process::Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    wait_exit(&mut second, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(state_dir);
    drop_database(&db).await;
}
