//! Webhook delivery is fair between tenants: tenant A's 50 endpoints that
//! accept and never answer hold at most A's share of the slots, and tenant B's
//! deliveries keep their unloaded latency (within 1 s at p99).

use crate::common::receiver::{Answer, Receiver};
use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use std::time::{Duration, Instant};

/// Creates one upload as tenant B and returns how long its `upload.created`
/// took to reach B's receiver.
async fn one_delivery(app: &TestApp, rx: &Receiver) -> Duration {
    let before = rx.received().len();
    let start = Instant::now();
    let (s, v) = app
        .call_as(
            KEY_B,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "b.bin", "size": 10})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    rx.wait_for(before + 1, Duration::from_secs(30)).await;
    start.elapsed()
}

fn p99(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[(d.len() * 99).div_ceil(100) - 1]
}

#[sqlx::test]
async fn a_tenant_whose_receivers_hang_does_not_delay_another_tenants_events(pool: PgPool) {
    let mut opts = Options::default();
    opts.deliveries.timeout = Duration::from_secs(8);
    opts.deliveries.retry.first = Duration::from_secs(30);
    opts.deliveries.concurrency = 16;
    opts.deliveries.per_tenant = 4;
    opts.deliveries.per_endpoint = 2;
    let app = TestApp::spawn_with(pool, opts).await;

    let hanging = Receiver::start().await;
    *hanging.otherwise.lock().unwrap() = Answer::Stall(Duration::from_secs(60));
    for n in 0..50 {
        let (s, v) = app
            .call(
                Method::POST,
                "/v1/webhooks",
                Some(json!({"url": format!("{}?endpoint={n}", hanging.url)})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let fast = Receiver::start().await;
    let (s, v) = app
        .call_as(
            KEY_B,
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": fast.url, "eventTypes": ["upload.created"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let mut unloaded = Vec::new();
    for _ in 0..10 {
        unloaded.push(one_delivery(&app, &fast).await);
    }

    // Tenant A: 3 uploads, 150 deliveries to receivers that never answer.
    for _ in 0..3 {
        app.create_ok(json!({"filename": "a.bin", "size": 10}))
            .await;
    }
    hanging.wait_for(4, Duration::from_secs(10)).await;
    let mut loaded = Vec::new();
    for _ in 0..10 {
        loaded.push(one_delivery(&app, &fast).await);
    }
    let (unloaded, loaded) = (p99(unloaded), p99(loaded));
    eprintln!("tenant B's delivery p99: {unloaded:?} unloaded, {loaded:?} with tenant A's 50 hanging endpoints");
    assert!(
        loaded <= unloaded + Duration::from_secs(1),
        "tenant B's p99 went from {unloaded:?} to {loaded:?} while tenant A's receivers hung"
    );
    // Tenant A held its share and no more (4 attempts in flight, each endpoint
    // at most 2).
    let in_flight = hanging.received().len();
    assert!(
        (4..=4 + 4).contains(&in_flight),
        "tenant A's hanging receivers got {in_flight} requests"
    );
}
