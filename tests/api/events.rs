//! Events, webhooks and the feed: every status change is one event, written
//! with the change; deliveries are signed (checked with the Standard Webhooks
//! reference library), retried through faults, ordered per upload, delivered
//! once by two instances; the feed never skips an event that commits late.

use crate::common::receiver::{verify_with_reference_library, Answer, Receiver};
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Registers `url` for tenant A (all event types unless given) and returns
/// (id, secret).
pub async fn add_webhook(app: &TestApp, url: &str, types: Option<&[&str]>) -> (String, String) {
    let mut body = json!({ "url": url });
    if let Some(t) = types {
        body["eventTypes"] = json!(t);
    }
    let (s, v) = app.call(Method::POST, "/v1/webhooks", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{v}");
    (v["id"].as_str().unwrap().to_string(), secret)
}

/// A one-part upload of `bytes`, completed.
async fn upload(app: &TestApp, bytes: &[u8]) -> Value {
    let c = app
        .create_ok(json!({"filename": "e.bin", "size": bytes.len(), "metadata": {"k": "v"}}))
        .await;
    app.put_part(&c["parts"][0], bytes).await;
    let (s, v) = app.complete(&token(&c), None).await;
    assert_eq!(s, 200, "{v}");
    c
}

/// Every event of tenant A, read from the feed page by page.
async fn read_feed(app: &TestApp, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(c) => format!("/v1/events?limit={limit}&after={c}"),
            None => format!("/v1/events?limit={limit}"),
        };
        let (s, v) = app.call(Method::GET, &path, None).await;
        assert_eq!(s, 200, "{v}");
        let page = v["events"].as_array().unwrap().clone();
        assert!(page.len() <= limit);
        let next = v["next"].as_str().unwrap().to_string();
        if page.is_empty() {
            assert_eq!(
                Some(&next),
                after.as_ref().or(Some(&next)),
                "an empty page keeps its cursor"
            );
            return all;
        }
        all.extend(page);
        after = Some(next);
    }
}

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
async fn a_full_upload_is_delivered_as_created_then_completed_signed_as_the_standard_says(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    let (_, secret) = add_webhook(&app, &rx.url, None).await;
    let bytes = data(1234, 7);
    let c = upload(&app, &bytes).await;
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let kinds: Vec<_> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        kinds,
        vec![json!("upload.created"), json!("upload.completed")]
    );

    // The reference library accepts both, as the events they say they are.
    let verified = verify_with_reference_library(&secret, &got);
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(verified, ids);
    assert!(ids.iter().all(|i| i.starts_with("evt_")));
    for r in &got {
        assert_eq!(r.json()["id"], r.header("webhook-id"));
        assert!(r.header("webhook-signature").starts_with("v1,"));
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        assert_eq!(r.header("content-type"), "application/json");
    }
    // Tampered, it is refused: the check can fail.
    let mut bent = got[1].clone();
    bent.body = bent.body.replace("e.bin", "f.bin");
    assert!(verify_with_reference_library(&secret, &[bent])[0].starts_with("invalid"));
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(verify_with_reference_library(other, &got[..1])[0].starts_with("invalid"));

    // The completed event's data is the upload resource without its token, with
    // the object's facts.
    let (_, resource) = app.get_status(&token(&c)).await;
    let done = got[1].json();
    let data = done["data"].as_object().unwrap();
    assert!(!data.contains_key("resumeToken"));
    for (k, v) in resource.as_object().unwrap() {
        if k != "resumeToken" && k != "progress" && k != "uploadedParts" && k != "missingParts" {
            assert_eq!(data.get(k), Some(v), "data.{k}");
        }
    }
    assert_eq!(data["status"], "completed");
    assert_eq!(data["objectSize"], 1234);
    assert_eq!(data["metadata"], json!({"k": "v"}));
    assert!(data["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(data.contains_key("checksum"));
    assert!(data.contains_key("subject"));
    let created = got[0].json();
    assert_eq!(created["data"]["status"], "active");
    assert!(!created["data"].as_object().unwrap().contains_key("etag"));

    // The feed holds the same events.
    let feed = read_feed(&app, 10).await;
    assert_eq!(feed, vec![got[0].json(), got[1].json()]);
}

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
            let c: Value = http
                .post(format!("{app}/v1/uploads"))
                .bearer_auth(KEY_A)
                .json(&json!({"filename": "t.bin", "size": 3}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let url = c["parts"][0]["url"].as_str().unwrap().to_string();
            assert!(http
                .put(url)
                .body("abc")
                .send()
                .await
                .unwrap()
                .status()
                .is_success());
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
    let first = read_feed(&app, 2).await;
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
async fn webhooks_belong_to_their_tenant_and_grants_cannot_touch_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    let (id, _) = add_webhook(&app, &rx.url, Some(&["upload.completed"])).await;
    let (s, v) = app.call(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(v["webhooks"][0]["id"], id.as_str());
    assert_eq!(v["webhooks"][0]["eventTypes"], json!(["upload.completed"]));
    assert!(
        v["webhooks"][0].get("secret").is_none(),
        "the secret is shown once"
    );

    // Another tenant sees none of it.
    let (s, v) = app.call_as(KEY_B, Method::GET, "/v1/webhooks", None).await;
    assert_eq!((s, v["webhooks"].as_array().unwrap().len()), (200, 0));
    for (m, path) in [
        (Method::DELETE, format!("/v1/webhooks/{id}")),
        (Method::GET, format!("/v1/webhooks/{id}/deliveries")),
        (
            Method::POST,
            format!(
                "/v1/webhooks/{id}/deliveries/evt_{}/retry",
                uuid::Uuid::new_v4().simple()
            ),
        ),
    ] {
        let (s, v) = app.call_as(KEY_B, m, &path, None).await;
        assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{path}");
    }

    // A grant may do none of it.
    let grant = app.grant(json!({"subject": "u1"})).await;
    for (m, path, body) in [
        (
            Method::POST,
            "/v1/webhooks".to_string(),
            Some(json!({"url": rx.url})),
        ),
        (Method::GET, "/v1/webhooks".to_string(), None),
        (Method::DELETE, format!("/v1/webhooks/{id}"), None),
        (Method::GET, format!("/v1/webhooks/{id}/deliveries"), None),
        (Method::GET, "/v1/events".to_string(), None),
    ] {
        let (s, v) = app.call_as(&grant, m, &path, body).await;
        assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{path}");
    }

    // Bad input is a 400 with the field named.
    for body in [
        json!({"url": "ftp://x.example/h"}),
        json!({"url": "https://x.example/h", "eventTypes": ["upload.deleted"]}),
        json!({"url": "https://x.example/h", "eventTypes": []}),
        json!({}),
    ] {
        let (s, v) = app
            .call(Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}");
    }
    let (s, _) = app.call(Method::DELETE, "/v1/webhooks/wh_nope", None).await;
    assert_eq!(s, 404);

    // Removed, it gets nothing more.
    let (s, _) = app
        .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(s, 404);
    upload(&app, b"x").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.received().is_empty());
}

#[sqlx::test]
async fn a_delivery_given_up_on_is_listed_as_failed_and_can_be_sent_again(pool: PgPool) {
    let mut opts = Options::default();
    opts.deliveries.retry.give_up_after = Duration::from_secs(1);
    let app = TestApp::spawn_with(pool, opts).await;
    let rx = Receiver::start().await;
    *rx.otherwise.lock().unwrap() = Answer::Status(500);
    let (id, secret) = add_webhook(&app, &rx.url, Some(&["upload.created"])).await;
    let c = app.create_ok(json!({"filename": "f.bin", "size": 1})).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let failed = loop {
        let (s, v) = app
            .call(
                Method::GET,
                &format!("/v1/webhooks/{id}/deliveries?status=failed"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        if let Some(d) = v["deliveries"].as_array().unwrap().first() {
            break d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["lastStatus"], 500);
    assert_eq!(failed["upload"], c["id"]);
    assert!(failed["attempts"].as_i64().unwrap() >= 1);
    assert!(failed["nextAttemptAt"].is_null());
    let tries = rx.received().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.received().len(),
        tries,
        "a failed delivery is not tried again by itself"
    );

    // The receiver is fixed; the operator sends it again.
    *rx.otherwise.lock().unwrap() = Answer::Status(204);
    let event = failed["eventId"].as_str().unwrap();
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/{event}/retry"),
            None,
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let got = rx.wait_for(tries + 1, WAIT).await;
    assert_eq!(got.last().unwrap().header("webhook-id"), event);
    assert_eq!(
        verify_with_reference_library(&secret, &got[tries..]),
        [event]
    );
    let (_, v) = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?status=delivered"),
            None,
        )
        .await;
    assert_eq!(v["deliveries"][0]["eventId"], event);
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?status=lost"),
            None,
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"));
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/evt_nope/retry"),
            None,
        )
        .await;
    assert_eq!(s, 404);
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
    let c: Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(SERVE_KEY)
        .json(&json!({"filename": "k.bin", "size": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = c["parts"][0]["url"].as_str().unwrap().to_string();
    assert!(http
        .put(url)
        .body("kill")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
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

#[sqlx::test]
async fn the_readmes_node_receiver_verifies_and_logs_a_completed_upload(pool: PgPool) {
    use std::io::BufRead;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhook-receiver");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/standardwebhooks")
            .exists(),
        "the example receiver's dependencies are not installed: run the suite with \
         scripts/test.sh, or `npm ci` in examples/webhook-receiver"
    );
    let app = TestApp::spawn(pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, secret) = add_webhook(&app, &format!("http://127.0.0.1:{port}/"), None).await;
    let mut node = std::process::Command::new("node")
        .arg("receiver.mjs")
        .current_dir(dir)
        .env("WEBHOOK_SECRET", &secret)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (Node.js is needed for the webhook tests)");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let out = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(next_line(&mut lines).await, "listening");
    let c = upload(&app, &data(4321, 3)).await;
    let id = c["id"].as_str().unwrap();
    assert_eq!(
        next_line(&mut lines).await,
        format!("upload.created {id} {}", c["key"].as_str().unwrap())
    );
    assert_eq!(
        next_line(&mut lines).await,
        format!("upload.completed {id} {} 4321", c["key"].as_str().unwrap())
    );
    // A forged delivery is refused.
    let forged = app
        .http
        .post(format!("http://127.0.0.1:{port}/"))
        .header("webhook-id", "evt_forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let _ = node.kill();
    let _ = node.wait();
}

async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, lines.recv())
        .await
        .expect("the receiver printed nothing")
        .expect("the receiver exited")
}
