//! Health, readiness and request limits.

use crate::common::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.http.get(app.url(path)).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[sqlx::test]
async fn health_and_readiness(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    assert_eq!(
        get(&app, "/healthz").await,
        (200, json!({"status": "ok"})),
        "no credential needed"
    );
    let (s, v) = get(&app, "/readyz").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["checks"], json!({"database": "ok", "storage": "ok"}));
}

#[sqlx::test]
async fn readiness_names_what_failed(pool: PgPool) {
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let no_db = TestApp::spawn(dead).await;
    assert_eq!(
        get(&no_db, "/healthz").await.0,
        200,
        "liveness needs no database"
    );
    let (s, v) = get(&no_db, "/readyz").await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
    assert_eq!(v["error"]["checks"]["database"], "unreachable");
    assert_eq!(v["error"]["checks"]["storage"], "ok");
    assert!(v["error"]["message"].as_str().unwrap().contains("database"));

    let no_bucket = TestApp::spawn_with(
        pool,
        Options {
            bucket: Some(format!("missing-{}", uuid::Uuid::new_v4())),
            ..Default::default()
        },
    )
    .await;
    let (s, v) = get(&no_bucket, "/readyz").await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["checks"]["database"], "ok");
    assert!(
        v["error"]["checks"]["storage"]
            .as_str()
            .unwrap()
            .starts_with("failed"),
        "{v}"
    );
}

#[sqlx::test]
async fn slow_requests_answer_408_and_their_work_still_lands(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool.clone(),
        Options {
            request_timeout: Duration::from_millis(1),
            ..Default::default()
        },
    )
    .await;
    let res = app
        .create(json!({"filename": "slow.bin", "size": 10}))
        .await;
    assert_eq!(res.status(), 408);
    let v: Value = res.json().await.unwrap();
    assert_eq!(error_code(&v), "REQUEST_TIMEOUT");
    // The create itself ran to the end: one record, one provider upload.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: i64 = sqlx::query_scalar("select count(*) from uploads")
            .fetch_one(&pool)
            .await
            .unwrap();
        if rows == 1 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows, 1, "the create landed");
    assert_eq!(
        app.in_progress_uploads().await.len(),
        1,
        "and its provider upload"
    );

    // A completion, too, finishes after its request has timed out.
    let normal = TestApp::spawn(pool.clone()).await;
    let c = normal
        .create_ok(json!({"filename": "c.bin", "size": 10}))
        .await;
    normal.put_part(&c["parts"][0], &data(10, 5)).await;
    let (s, v) = app.complete(&token(&c), None).await;
    assert_eq!((s, error_code(&v)), (408, "REQUEST_TIMEOUT"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, st) = normal.get_status(&token(&c)).await;
        if st["status"] == "completed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the completion never landed: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (bytes, _, _) = normal.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(bytes, data(10, 5));
    assert_eq!(
        get(&app, "/healthz").await.0,
        200,
        "health checks are not limited"
    );
}

#[sqlx::test]
async fn too_many_requests_in_flight_answer_503(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            max_concurrent_requests: 1,
            ..Default::default()
        },
    )
    .await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (http, url) = (app.http.clone(), app.url("/v1/uploads"));
        set.spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(KEY_A)
                .json(&json!({"filename": format!("c{i}"), "size": 10}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let (mut created, mut shed) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            (201, _) => created += 1,
            (503, v) => {
                assert_eq!(error_code(&v), "UNAVAILABLE");
                shed += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(created >= 1 && shed >= 1, "created {created}, shed {shed}");
}
