//! HTTP hygiene: invented methods are not metric labels, the metrics can ask
//! for a token, half-sent headers time out and connections are limited.

use crate::common::*;
use serde_json::Value;
use sqlx::PgPool;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[sqlx::test]
async fn invented_methods_do_not_become_metric_labels(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for i in 0..20 {
        let m = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let res = app
            .http
            .request(m, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("INVENTED"), "no invented label values");
    assert!(
        metrics.contains(r#"method="other",route="/healthz",status="405"} 20"#),
        "counted under `other`"
    );
}

#[sqlx::test]
async fn metrics_can_ask_for_a_token(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            metrics_token: Some("metrics-token-0123456789".into()),
            ..Default::default()
        },
    )
    .await;
    let get = |auth: Option<&'static str>| {
        let mut r = app.http.get(app.url("/metrics"));
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        r.send()
    };
    let res = get(None).await.unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(error_code(&v), "UNAUTHORIZED");
    assert_eq!(
        get(Some("metrics-token-wrong")).await.unwrap().status(),
        401
    );
    assert_eq!(
        get(Some(KEY_A)).await.unwrap().status(),
        401,
        "an API key is not the metrics token"
    );
    let res = get(Some("metrics-token-0123456789")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("upload_broker_"));
    // Health checks stay open.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Whether the server closed the connection within `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 answer before the close is fine
        }
    }
}

#[sqlx::test]
async fn half_sent_headers_time_out_and_connections_are_limited(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            header_read_timeout: Duration::from_secs(1),
            max_connections: 3,
            ..Default::default()
        },
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Three slow clients take every connection...
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // ...so a fourth waits: it is not served while they hold them.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        http.get(app.url("/healthz")).send().await.is_err(),
        "served beyond the connection limit"
    );
    // The header deadline closes them, and the server is free again.
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a half-sent request was kept open"
        );
    }
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
}
