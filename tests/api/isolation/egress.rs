//! The outbound policy on webhooks: with the default `EGRESS_ALLOW` (empty) no
//! spelling of the broker's own network can be registered, and an endpoint
//! that points there anyway (a row written before, a name that resolves
//! elsewhere now) is a failed attempt that makes no connection.

use crate::common::receiver::Receiver;
use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::domain::egress::EgressAllow;

fn default_policy() -> Options {
    Options {
        egress_allow: EgressAllow::default(),
        ..Default::default()
    }
}

fn port_of(url: &str) -> u16 {
    reqwest::Url::parse(url).unwrap().port().unwrap()
}

#[sqlx::test]
async fn the_default_policy_refuses_every_spelling_of_the_brokers_network(pool: PgPool) {
    let app = TestApp::spawn_with(pool, default_policy()).await;
    let rx = Receiver::start().await;
    let port = port_of(&rx.url);
    for host in [
        "127.0.0.1",
        "localhost",
        "2130706433",
        "0x7f000001",
        "127.1",
        "017700000001",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "0.0.0.0",
        "169.254.169.254",
        "10.0.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "[fd00::1]",
    ] {
        let url = format!("http://{host}:{port}/hooks/upload");
        let (s, v) = app
            .call(Method::POST, "/v1/webhooks", Some(json!({ "url": url })))
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{url}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("url:") && message.contains("not allowed"),
            "{url}: {v}"
        );
    }
    let (s, v) = app.call(Method::GET, "/v1/webhooks", None).await;
    assert_eq!((s, v["webhooks"].as_array().unwrap().len()), (200, 0));
    // A public address passes (nothing is sent until an event comes).
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"url": "https://93.184.216.34/hooks"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(rx.received().is_empty());
}

#[sqlx::test]
async fn an_endpoint_pointing_at_the_brokers_network_fails_without_a_connection(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), default_policy()).await;
    // A receiver that counts every connection made to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(c);
        }
    });
    // Two endpoints registered while their hosts were public; now one names
    // the loopback address and the other a name that resolves to it (as DNS
    // rebinding would make it).
    let mut ids = Vec::new();
    for (n, now) in [
        format!("http://127.0.0.1:{port}/hooks/upload"),
        format!("http://localhost:{port}/hooks/upload"),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, v) = app
            .call(
                Method::POST,
                "/v1/webhooks",
                Some(json!({"url": format!("https://93.184.216.{}/h", 30 + n)})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_string();
        sqlx::query("update webhooks set url = $1 where id = $2")
            .bind(&now)
            .bind(uuid::Uuid::parse_str(&id[3..]).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        ids.push(id);
    }
    app.create_ok(json!({"filename": "e.bin", "size": 10}))
        .await;
    for id in &ids {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let d = loop {
            let (s, v) = app
                .call(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), None)
                .await;
            assert_eq!(s, 200, "{v}");
            let d = v["deliveries"][0].clone();
            if d["attempts"].as_u64().unwrap_or(0) >= 1 && d["lastError"].is_string() {
                break d;
            }
            assert!(tokio::time::Instant::now() < deadline, "no attempt: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(d["lastStatus"].is_null(), "{d}");
        let error = d["lastError"].as_str().unwrap();
        assert!(error.contains("not allowed"), "{error}");
        assert!(
            !error.contains("refused"),
            "no connection was tried: {error}"
        );
    }
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the broker connected to its own network"
    );
}
