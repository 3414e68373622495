//! 503s, not hangs: background work bounded by its permits, and a database
//! that drops every connection.

use super::{faulty_and_direct, uploaded};
use crate::common::proxy::{Call, FaultProxy};
use crate::common::*;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

#[sqlx::test]
async fn background_work_is_bounded(pool: PgPool) {
    // One permit: a completion held at the provider takes it; an abort of
    // another upload meanwhile answers 503 (retryable), and works after.
    let proxy = FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_secs(2)));
    let opts = Options {
        max_background_tasks: 1,
        ..Default::default()
    };
    let (faulty, direct) = faulty_and_direct(pool, &proxy, opts).await;
    let (a, _) = uploaded(&direct, 100, 94).await;
    let b = direct
        .create_ok(json!({"filename": "b.bin", "size": 10}))
        .await;
    let ta = token(&a);
    let completing = {
        let (http, url) = (
            faulty.http.clone(),
            faulty.url(&format!("/v1/uploads/{ta}/complete")),
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
    while proxy.count(Call::CompleteMultipartUpload) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = faulty.abort(&token(&b)).await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
    assert_eq!(completing.await.unwrap(), 200);
    let (s, _) = faulty.abort(&token(&b)).await;
    assert_eq!(s, 204, "the permit came back");
}

#[sqlx::test]
async fn a_database_that_drops_connections_answers_503(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    // Accepts every connection and closes it at once (a proxy or failover in
    // between: Postgres never answers the SSLRequest).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .unwrap();
    let broken = TestApp::spawn(dead).await;
    let (s, v) = broken.get_status(&token(&c)).await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
    let (s, v) = broken
        .call(
            reqwest::Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "a.bin", "size": 10})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
}
