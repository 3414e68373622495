//! Credentials beyond the configured keys: API keys kept in Postgres (created,
//! used, revoked across instances), quotas that hold exactly under concurrency
//! across two instances, and rate limits per grant subject.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_upload-broker");

/// The test database's URL (the pool's options name it).
fn database_url(pool: &PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://postgres@{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap()
    )
}

fn admin(pool: &PgPool, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[sqlx::test]
async fn keys_in_postgres_work_and_revocation_reaches_every_instance(pool: PgPool) {
    let one = TestApp::spawn(pool.clone()).await;
    let two = TestApp::spawn(pool.clone()).await;
    let (code, out, err) = admin(
        &pool,
        &[
            "keys", "create", "--tenant", "tenant-a", "--name", "ci", "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("ubk_") && key.len() >= 40, "{key}");
    // It works on both instances, for tenant A's uploads.
    let c = one
        .create_ok(json!({"filename": "k.bin", "size": 10}))
        .await;
    for app in [&one, &two] {
        let (s, v) = app
            .call_as(
                &key,
                Method::GET,
                &format!("/v1/uploads/{}", token(&c)),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    // The database holds no usable key: not the key, nor anything it is a part of.
    let rows: Vec<String> = sqlx::query_scalar("select row_to_json(k)::text from api_keys k")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].contains(&key[4..20]), "{}", rows[0]);
    // Listed without the key, with its last use.
    let (code, out, _) = admin(&pool, &["keys", "list", "--json"]);
    assert_eq!(code, 0);
    assert!(!out.contains(&key));
    let listed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        listed[0]["lastUsedAt"].is_string(),
        "last use recorded: {listed}"
    );
    // Revoked: both instances refuse it within 10 s.
    let (code, _, err) = admin(&pool, &["keys", "revoke", created["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let start = Instant::now();
    for app in [&one, &two] {
        loop {
            let (s, _) = app
                .call_as(&key, Method::GET, "/v1/uploads?fingerprint=x", None)
                .await;
            if s == 401 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "still accepted after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // Revoking twice, or an unknown id, says so.
    let (code, _, _) = admin(&pool, &["keys", "revoke", created["id"].as_str().unwrap()]);
    assert_eq!(code, 1);
}

/// The statuses of some results (not the bodies: they hold tokens and URLs).
fn statuses(results: &[(u16, Value)]) -> Vec<u16> {
    results.iter().map(|(s, _)| *s).collect()
}

/// `n` concurrent creates, spread over `apps`, with `credential`.
async fn concurrent_creates(
    apps: &[&TestApp],
    credential: &str,
    n: usize,
    size: u64,
) -> Vec<(u16, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let app = apps[i % apps.len()];
        let (http, url, cred) = (
            app.http.clone(),
            app.url("/v1/uploads"),
            credential.to_string(),
        );
        set.spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(cred)
                .json(&json!({"filename": format!("q{i}.bin"), "size": size}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

fn quota_opts(uploads: u64, bytes: Option<u64>, subject: u64) -> Options {
    Options {
        quotas: upload_broker::db::Quotas {
            tenant_max_active_uploads: uploads,
            tenant_max_active_bytes: bytes,
            subject_max_active_uploads: subject,
        },
        ..Default::default()
    }
}

#[sqlx::test]
async fn quotas_hold_exactly_under_concurrency_across_two_instances(pool: PgPool) {
    let one = TestApp::spawn_with(pool.clone(), quota_opts(5, None, 100)).await;
    let two = TestApp::spawn_with(pool.clone(), quota_opts(5, None, 100)).await;
    for i in 0..2 {
        one.create_ok(json!({"filename": format!("a{i}"), "size": 10}))
            .await;
    }
    let results = concurrent_creates(&[&one, &two], KEY_A, 20, 10).await;
    let ok = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(
        ok,
        3,
        "5 allowed, 2 already active: {:?}",
        statuses(&results)
    );
    for (s, v) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!((*s, error_code(v)), (429, "QUOTA_EXCEEDED"), "{v}");
        assert_eq!(v["error"]["quota"], "tenantActiveUploads");
        assert_eq!(v["error"]["limit"], 5);
        assert_eq!(v["error"]["current"], 5);
    }
    assert_eq!(
        one.in_progress_uploads().await.len() + two.in_progress_uploads().await.len(),
        5,
        "refused creates left nothing at the provider"
    );
    // Another tenant is not affected; a completed upload frees its place.
    let (s, _) = one
        .call_as(
            KEY_B,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "b", "size": 10})),
        )
        .await;
    assert_eq!(s, 201);
    let c = results.iter().find(|(s, _)| *s == 201).unwrap().1.clone();
    one.put_part(&c["parts"][0], &data(10, 1)).await;
    assert_eq!(one.complete(&token(&c), None).await.0, 200);
    assert_eq!(
        one.create(json!({"filename": "again", "size": 10}))
            .await
            .status(),
        201
    );
}

#[sqlx::test]
async fn the_bytes_quota_and_the_subject_quota_hold_too(pool: PgPool) {
    let one = TestApp::spawn_with(pool.clone(), quota_opts(1000, Some(100), 3)).await;
    let two = TestApp::spawn_with(pool.clone(), quota_opts(1000, Some(100), 3)).await;
    one.create_ok(json!({"filename": "a", "size": 30})).await;
    // 70 bytes left: exactly 7 creates of 10 fit.
    let results = concurrent_creates(&[&one, &two], KEY_A, 16, 10).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        7,
        "{:?}",
        statuses(&results)
    );
    let refused = results.iter().find(|(s, _)| *s == 429).unwrap();
    assert_eq!(refused.1["error"]["quota"], "tenantActiveBytes");
    assert_eq!(refused.1["error"]["limit"], 100);
    assert_eq!(refused.1["error"]["current"], 100);
    // Subjects: at most 3 active each (tenant B has room).
    let g = two
        .call_as(
            KEY_B,
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "s"})),
        )
        .await
        .1["grant"]
        .as_str()
        .unwrap()
        .to_string();
    let results = concurrent_creates(&[&one, &two], &g, 8, 10).await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == 201).count(),
        3,
        "{:?}",
        statuses(&results)
    );
    let refused = results.iter().find(|(s, _)| *s == 429).unwrap();
    assert_eq!(refused.1["error"]["quota"], "subjectActiveUploads");
}

#[sqlx::test]
async fn a_burst_over_the_rate_limit_is_refused_then_recovers(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            rate_limit: 5,
            ..Default::default()
        },
    )
    .await;
    let g = app.grant(json!({"subject": "busy"})).await;
    let other = app.grant(json!({"subject": "calm"})).await;
    let mut limited = None;
    for _ in 0..40 {
        let res = app
            .http
            .get(app.url("/v1/uploads?fingerprint=x"))
            .bearer_auth(&g)
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("a burst of 40 at 5/s (burst 10) is limited");
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After in whole seconds, at least 1");
    let v: Value = res.json().await.unwrap();
    assert_eq!(error_code(&v), "RATE_LIMITED");
    // Another subject is not limited; API keys are not (API_KEY_RATE_LIMIT off);
    // health checks never are.
    assert_eq!(
        app.call_as(&other, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await
            .0,
        200
    );
    for _ in 0..30 {
        assert_eq!(
            app.call(Method::GET, "/v1/uploads?fingerprint=x", None)
                .await
                .0,
            200
        );
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
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        app.call_as(&g, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await
            .0,
        200,
        "recovered"
    );
}

#[sqlx::test]
async fn issuers_are_managed_with_the_command(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("ub-jwks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "k1", "alg": "HS256"}]}).to_string()).unwrap();
    let j = jwks.to_str().unwrap();
    let (code, _, err) = admin(
        &pool,
        &[
            "issuers",
            "add",
            "--tenant",
            "tenant-a",
            "--issuer",
            "https://app.example",
            "--jwks",
            j,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = admin(
        &pool,
        &[
            "issuers",
            "add",
            "--tenant",
            "tenant-b",
            "--issuer",
            "https://app.example",
            "--jwks",
            j,
        ],
    );
    assert_eq!(code, 1, "one issuer, one tenant: {err}");
    let (code, out, _) = admin(&pool, &["issuers", "list", "--json"]);
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(listed[0]["tenant"], "tenant-a");
    assert_eq!(listed[0]["keys"], 1);
    assert!(!out.contains("c2VjcmV0"), "no key material listed");
    // A JWKS with a key grants cannot use is refused.
    std::fs::write(
        dir.join("bad.json"),
        json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}).to_string(),
    )
    .unwrap();
    let (code, _, err) = admin(
        &pool,
        &[
            "issuers",
            "add",
            "--tenant",
            "t",
            "--issuer",
            "x",
            "--jwks",
            dir.join("bad.json").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    let (code, _, _) = admin(&pool, &["issuers", "remove", "https://app.example"]);
    assert_eq!(code, 0);
    let (_, out, _) = admin(&pool, &["issuers", "list", "--json"]);
    assert_eq!(out.trim(), "[]");
    let _ = std::fs::remove_dir_all(dir);
}
