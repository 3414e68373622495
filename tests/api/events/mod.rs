//! Events, webhooks and the feed: every status change is one event, written
//! with the change; deliveries are signed (checked with the Standard Webhooks
//! reference library), retried through faults, ordered per upload, delivered
//! once by two instances; the feed never skips an event that commits late.
//!
//! The helpers every part of the area uses are here: registering a webhook, a
//! completed upload, reading the whole feed.

mod delivery;
mod feed;
mod signatures;
mod webhooks;

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
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

/// Waits until every event written so far can be shown by the feed. The feed
/// shows only events older than every write transaction still running in the
/// whole Postgres cluster, and the other tests' databases share it: a test
/// elsewhere holding a transaction open delays (never hides) what is shown.
async fn feed_caught_up(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let shown: bool = sqlx::query_scalar(
            "select coalesce(max(xid), 0) < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             from events",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if shown {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a write transaction somewhere in the Postgres cluster stayed open for {WAIT:?}: \
             the feed could not show the events already written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every event of tenant A, read from the feed page by page, once every event
/// written so far can be shown.
async fn read_feed(app: &TestApp, limit: usize) -> Vec<Value> {
    feed_caught_up(app).await;
    read_pages(app, limit).await
}

/// What the feed shows now, read page by page.
async fn read_pages(app: &TestApp, limit: usize) -> Vec<Value> {
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
