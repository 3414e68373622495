//! A grant minted with a key kept in Postgres dies with that key, on every
//! instance, within 10 s; the webhook quota holds exactly under concurrent
//! creates; a grant's upload count outlives its acceptance.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_upload-broker");

fn admin(pool: &PgPool, args: &[&str]) -> (i32, String) {
    let o = pool.connect_options();
    let url = format!(
        "postgres://postgres@{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap()
    );
    let out = Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (0, String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn mint(app: &TestApp, credential: &str) -> String {
    let (s, v) = app
        .call_as(
            credential,
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "u1", "ttlSeconds": 86400})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["grant"].as_str().unwrap().to_string()
}

async fn create_with(app: &TestApp, grant: &str) -> u16 {
    app.call_as(
        grant,
        Method::POST,
        "/v1/uploads",
        Some(json!({"filename": "g.bin", "size": 10})),
    )
    .await
    .0
}

#[sqlx::test]
async fn grants_die_with_the_key_that_minted_them(pool: PgPool) {
    let one = TestApp::spawn(pool.clone()).await;
    let two = TestApp::spawn(pool.clone()).await;
    let (_, out) = admin(&pool, &["keys", "create", "--tenant", "tenant-a", "--json"]);
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let from_stored = mint(&one, &key).await;
    let from_configured = mint(&one, KEY_A).await;
    for app in [&one, &two] {
        assert_eq!(create_with(app, &from_stored).await, 201);
    }
    admin(&pool, &["keys", "revoke", created["id"].as_str().unwrap()]);
    let start = Instant::now();
    for app in [&one, &two] {
        loop {
            let (s, v) = app
                .call_as(&from_stored, Method::GET, "/v1/uploads", None)
                .await;
            if s == 401 {
                assert_eq!(error_code(&v), "UNAUTHORIZED");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the grant still works 10 s after its key was revoked"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(create_with(app, &from_stored).await, 401);
        // A grant minted with a configured key lives until it expires.
        assert_eq!(create_with(app, &from_configured).await, 201);
    }
}

#[sqlx::test]
async fn the_webhook_quota_is_exact_under_concurrent_creates(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool.clone()).await);
    let creates = (0..150).map(|n| {
        let app = app.clone();
        tokio::spawn(async move {
            app.call(
                Method::POST,
                "/v1/webhooks",
                Some(json!({"url": format!("http://127.0.0.1:9/h{n}")})),
            )
            .await
            .0
        })
    });
    let statuses: Vec<u16> = futures_join(creates).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        50,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        100,
        "{statuses:?}"
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from webhooks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 50);
}

async fn futures_join(tasks: impl Iterator<Item = tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.unwrap());
    }
    out
}

#[sqlx::test]
async fn max_uploads_holds_while_the_grant_is_still_accepted(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "u1", "ttlSeconds": 1, "maxUploads": 1})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let grant = v["grant"].as_str().unwrap().to_string();
    assert_eq!(create_with(&app, &grant).await, 201);
    // Past exp, within the 30 s leeway the grant is still accepted with; a
    // sweep runs meanwhile.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.sweeper(100)
        .await
        .run(
            chrono::Utc::now,
            &upload_broker::sweep::RunOptions::default(),
        )
        .await
        .unwrap();
    let (s, v) = app
        .call_as(
            &grant,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "g.bin", "size": 10})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (429, "QUOTA_EXCEEDED"), "{v}");
    let kept: i64 = sqlx::query_scalar("select count(*) from grant_uses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1, "the grant's count outlives its leeway");
}

#[sqlx::test]
async fn single_request_uploads_count_towards_max_uploads_and_the_quotas(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            quotas: upload_broker::db::Quotas {
                tenant_max_active_uploads: 100_000,
                tenant_max_active_bytes: None,
                subject_max_active_uploads: 1,
            },
            ..Default::default()
        },
    )
    .await;
    let params = |credential: String| {
        let app = &app;
        async move {
            app.call_as(
                &credential,
                Method::GET,
                "/s3/params?filename=a.txt&type=text/plain",
                None,
            )
            .await
        }
    };
    // maxUploads 2: two POST policies, then none, and no create either.
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "u1", "maxUploads": 2})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let grant = v["grant"].as_str().unwrap().to_string();
    for _ in 0..2 {
        let (s, v) = params(grant.clone()).await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = params(grant.clone()).await;
    assert_eq!((s, error_code(&v)), (429, "QUOTA_EXCEEDED"), "{v}");
    assert_eq!(v["error"]["quota"], "grantUploads", "{v}");
    assert_eq!(create_with(&app, &grant).await, 429);
    // A subject at its active quota gets no POST policy either.
    let other = mint(&app, KEY_A).await; // subject u1, no maxUploads
    let (s, v) = app
        .call(Method::POST, "/v1/grants", Some(json!({"subject": "u2"})))
        .await;
    assert_eq!(s, 201, "{v}");
    let u2 = v["grant"].as_str().unwrap().to_string();
    assert_eq!(create_with(&app, &u2).await, 201);
    let (s, v) = params(u2).await;
    assert_eq!((s, error_code(&v)), (429, "QUOTA_EXCEEDED"), "{v}");
    assert_eq!(v["error"]["quota"], "subjectActiveUploads", "{v}");
    let (s, _) = params(other).await;
    assert_eq!(s, 200, "another subject is not held to u2's quota");
}
