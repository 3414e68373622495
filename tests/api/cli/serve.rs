//! The server's life: migrate, serve, a health check, SIGTERM draining a
//! request in flight and exiting 0, clean logs, and tokens that survive a
//! restart on the same key file.

use super::{
    broker, drop_database, fresh_database, run, serve_on, test_database_url, wait_exit, SERVE_KEY,
};
use crate::common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn migrate_then_serve_then_stop_on_sigterm_with_clean_logs() {
    let db = fresh_database().await;
    let (code, _, err) = run(broker().arg("migrate").env("DATABASE_URL", &db));
    assert_eq!(code, 0, "{err}");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let state_dir = std::env::temp_dir().join(format!("ub-state-{}", uuid::Uuid::new_v4()));
    let api_key = "cli-secret-api-key-0123456789";
    let mut child = broker()
        .arg("serve")
        .env("DATABASE_URL", &db)
        .env("S3_BUCKET", bucket())
        .env("S3_ENDPOINT", endpoint())
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_KEY_PREFIX", format!("cli-{}/", uuid::Uuid::new_v4()))
        .env("BROKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("BROKER_API_KEYS", format!("acme:{api_key}"))
        .env("STATE_DIRECTORY", &state_dir)
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the logs as they come, or a full pipe would block the broker.
    let mut stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).unwrap();
        logs
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http.get(format!("{base}/nope")).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broker did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(api_key)
        .json(&json!({"filename": "cli.bin", "size": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let c: Value = res.json().await.unwrap();
    let url = c["parts"][0]["url"].as_str().unwrap().to_string();
    assert!(http
        .put(&url)
        .body("data")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let t = token(&c);
    let res = http
        .post(format!("{base}/v1/uploads/{t}/complete"))
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A failing request too (its log line must not leak either).
    let res = http
        .get(format!("{base}/v1/uploads/{t}x"))
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The key file made the token durable: it is there, private.
    let meta = std::fs::metadata(state_dir.join("token-secret")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    // The container health check.
    let (code, out, err) = run(broker()
        .arg("healthcheck")
        .env("BROKER_LISTEN", format!("0.0.0.0:{port}")));
    assert_eq!((code, out.trim()), (0, "healthy"), "{err}");

    // SIGTERM: drains and exits 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let (code, _, err) = run(broker()
        .arg("healthcheck")
        .env("BROKER_LISTEN", format!("127.0.0.1:{port}")));
    assert_eq!(code, 1, "a stopped broker is unhealthy: {err}");
    let logs = log_reader.join().unwrap();

    assert!(
        logs.contains("upload created") && logs.contains("upload completed"),
        "{logs}"
    );
    assert!(
        logs.contains(c["id"].as_str().unwrap()),
        "upload id in the logs"
    );
    assert!(
        logs.contains("/v1/uploads/{token}"),
        "route templates in the logs"
    );
    let sig = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Signature")
        .unwrap()
        .1
        .to_string();
    for (what, secret) in [
        ("resume token", t.as_str()),
        ("API key", api_key),
        ("URL signature", sig.as_str()),
        ("presigned URL", url.as_str()),
        ("credential", "X-Amz-Credential"),
    ] {
        assert!(!logs.contains(secret), "the logs hold a {what}");
    }
    let _ = std::fs::remove_dir_all(state_dir);
    // Leave no database behind.
    let name = reqwest::Url::parse(&db)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let admin = sqlx::PgPool::connect(&test_database_url()).await.unwrap();
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn sigterm_drains_a_request_in_flight_and_tokens_survive_a_restart() {
    let db = fresh_database().await;
    let state_dir = std::env::temp_dir().join(format!("ub-state-{}", uuid::Uuid::new_v4()));
    let prefix = format!("cli-{}/", uuid::Uuid::new_v4());
    // Storage through a proxy that holds the completion 2 s.
    let proxy = crate::common::proxy::FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_secs(2)));
    let (mut child, base) = serve_on(&db, &state_dir, &proxy.url, &prefix).await;
    let http = reqwest::Client::new();
    let key = SERVE_KEY;
    let c = one_part_uploaded(&http, &base, key, "d.bin", "data").await;
    let t = token(&c);
    let completing = {
        let r = http
            .post(format!("{base}/v1/uploads/{t}/complete"))
            .bearer_auth(key);
        tokio::spawn(async move { r.send().await.unwrap().status().as_u16() })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.count(crate::common::proxy::Call::CompleteMultipartUpload) == 0 {
        assert!(
            Instant::now() < deadline,
            "the completion never reached storage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM while the completion is in flight: it is answered, then the broker exits 0.
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert_eq!(
        completing.await.unwrap(),
        200,
        "the request in flight was drained"
    );
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());

    // A new process on the same key file knows the token.
    let (mut again, base) = serve_on(&db, &state_dir, &endpoint(), &prefix).await;
    let res = http
        .get(format!("{base}/v1/uploads/{t}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the token survived the restart");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "completed");
    assert!(Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(&mut again, Duration::from_secs(20)).success());
    let _ = std::fs::remove_dir_all(state_dir);
    drop_database(&db).await;
}

#[tokio::test]
async fn after_sigterm_readiness_turns_false_while_requests_are_still_served() {
    let db = fresh_database().await;
    let state_dir = std::env::temp_dir().join(format!("ub-state-{}", uuid::Uuid::new_v4()));
    let prefix = format!("cli-{}/", uuid::Uuid::new_v4());
    let (mut child, base) = super::serve_env(
        &db,
        &state_dir,
        &endpoint(),
        &prefix,
        false,
        &[("BROKER_DRAIN_DELAY", "3s")],
    )
    .await;
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let signalled = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    // Within a moment readiness says no, while liveness and the API go on.
    let readiness = loop {
        let res = http.get(format!("{base}/readyz")).send().await.unwrap();
        if res.status() == 503 {
            break res.json::<Value>().await.unwrap();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "readiness still 200 after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(readiness["error"]["code"], "UNAVAILABLE", "{readiness}");
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let created = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(SERVE_KEY)
        .json(&json!({"filename": "late.bin", "size": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "served during the drain delay");
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "the checks took too long"
    );
    // Then it stops accepting and exits 0, once the delay has passed.
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited before the drain delay ({:?})",
        signalled.elapsed()
    );
    let _ = std::fs::remove_dir_all(state_dir);
    drop_database(&db).await;
}
