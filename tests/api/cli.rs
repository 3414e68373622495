//! The binary: configuration errors, help, migrate, serve with graceful
//! shutdown, and logs that never hold a secret.

use crate::common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_upload-broker");

fn broker() -> Command {
    let mut c = Command::new(BIN);
    // Start from a clean slate: only what each test sets.
    for (k, _) in std::env::vars() {
        if k.starts_with("S3_")
            || k.starts_with("BROKER_")
            || k == "DATABASE_URL"
            || k.ends_with("_TTL")
        {
            c.env_remove(k);
        }
    }
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_configuration_is_one_line_naming_the_variable_and_exit_2() {
    let db = "postgres://postgres@127.0.0.1:5432/postgres";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "DATABASE_URL"),
        (vec![("DATABASE_URL", db)], "S3_BUCKET"),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("UPLOAD_TTL", "forever"),
            ],
            "UPLOAD_TTL",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("PART_URL_TTL", "8d"),
            ],
            "PART_URL_TTL",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("DEFAULT_PART_SIZE", "1MiB"),
            ],
            "DEFAULT_PART_SIZE",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("MAX_UPLOAD_SIZE", "lots"),
            ],
            "MAX_UPLOAD_SIZE",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_API_KEYS", "no-colon"),
            ],
            "BROKER_API_KEYS",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_TOKEN_SECRET", "short"),
            ],
            "BROKER_TOKEN_SECRET",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_LISTEN", "nowhere"),
            ],
            "BROKER_LISTEN",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("STORAGE_PROVIDER", "gcs"),
            ],
            "STORAGE_PROVIDER",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("S3_ENDPOINT", "localhost:4566"),
            ],
            "S3_ENDPOINT",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("STORAGE_TIMEOUT", "60s"),
                ("COMPLETION_LEASE", "90s"),
            ],
            "COMPLETION_LEASE",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("METRICS_TOKEN", "short"),
            ],
            "METRICS_TOKEN",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_GRANT_KEY", "too-short"),
            ],
            "BROKER_GRANT_KEY",
        ),
    ];
    for (env, variable) in cases {
        let mut c = broker();
        c.arg("serve").envs(env.iter().copied());
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 2, "{variable}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {variable}: {err}");
        assert!(lines[0].contains(variable), "{variable} named in: {err}");
    }
}

#[tokio::test]
async fn text_logs_carry_no_colour_codes_off_a_terminal() {
    let db = fresh_database().await;
    // stderr is a pipe and there is no TERM: plain text, as in a log file.
    let (code, _, err) = run(broker()
        .arg("migrate")
        .env("DATABASE_URL", &db)
        .env_remove("TERM")
        .env_remove("NO_COLOR")
        .env_remove("LOG_FORMAT"));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("migrations applied"),
        "a log line was written: {err}"
    );
    assert!(!err.contains('\u{1b}'), "no ANSI escape codes: {err:?}");
    drop_database(&db).await;
}

pub(crate) async fn drop_database(db: &str) {
    let name = reqwest::Url::parse(db)
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

#[test]
fn help_documents_every_option_and_its_variable() {
    let (code, out, _) = run(broker().args(["serve", "--help"]));
    assert_eq!(code, 0);
    for var in [
        "DATABASE_URL",
        "BROKER_LISTEN",
        "BROKER_API_KEYS",
        "S3_BUCKET",
        "S3_REGION",
        "S3_ENDPOINT",
        "S3_FORCE_PATH_STYLE",
        "STORAGE_PROVIDER",
        "S3_KEY_PREFIX",
        "BROKER_CORS_ORIGINS",
        "DEFAULT_PART_SIZE",
        "UPLOAD_TTL",
        "MAX_UPLOAD_SIZE",
        "PART_URL_TTL",
        "BROKER_TOKEN_SECRET",
        "BROKER_SIGN_WINDOW",
        "STORAGE_TIMEOUT",
        "COMPLETION_LEASE",
        "BROKER_MAX_BACKGROUND_TASKS",
        "BROKER_HEADER_TIMEOUT",
        "BROKER_MAX_CONNECTIONS",
        "METRICS_TOKEN",
        "WEBHOOK_TIMEOUT",
        "WEBHOOK_RETRY_FOR",
        "WEBHOOK_POLL",
    ] {
        assert!(out.contains(&format!("env: {var}")), "--help names {var}");
    }
    let (code, out, _) = run(broker().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("migrate"));
}

fn test_database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL is not set: run the suite with scripts/test.sh")
}

/// The URL of a database of its own for the binary, which does not exist yet:
/// `migrate` creates it.
pub(crate) async fn fresh_database() -> String {
    let mut url = reqwest::Url::parse(&test_database_url()).unwrap();
    url.set_path(&format!("ub_cli_{}", uuid::Uuid::new_v4().simple()));
    url.to_string()
}

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

fn database_url_of(name: &str) -> String {
    let mut url = reqwest::Url::parse(&test_database_url()).unwrap();
    url.set_path(name);
    url.to_string()
}

fn sweep_cmd(app: &TestApp, db: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = broker();
    c.arg("sweep")
        .args(args)
        .env("DATABASE_URL", db)
        .env("S3_BUCKET", &app.bucket)
        .env("S3_ENDPOINT", endpoint())
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_KEY_PREFIX", &app.prefix);
    run(&mut c)
}

#[sqlx::test]
async fn the_sweep_command_end_to_end(pool: sqlx::PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let db = database_url_of(&name);
    let a = app.create_ok(json!({"filename": "a", "size": 10})).await;
    let b = app.create_ok(json!({"filename": "b", "size": 10})).await;
    let live = app.create_ok(json!({"filename": "live", "size": 10})).await;
    app.expire_now(&a).await;
    app.expire_now(&b).await;

    // Dry run: says what it would do, changes nothing.
    let (code, out, err) = sweep_cmd(&app, &db, &["--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("would abort expired upload"))
            .count(),
        2,
        "{out}"
    );
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["aborted"], 2);
    assert_eq!(app.in_progress_uploads().await.len(), 3);

    // For real, with the human summary.
    let (code, out, err) = sweep_cmd(&app, &db, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("sweep: 2 expired uploads aborted, 0 already gone"),
        "{out}"
    );
    assert_eq!(
        app.in_progress_uploads().await,
        vec![live["uploadId"].as_str().unwrap().to_string()]
    );
    for expired in [&a, &b] {
        let (s, _) = app.get_status(&token(expired)).await;
        assert_eq!(s, 410);
    }

    // Orphans under the prefix; --older-than 0s counts them as old.
    let key = format!("{}orphans/o.bin", app.prefix);
    app.s3
        .create_multipart_upload()
        .bucket(&app.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let (code, out, err) = sweep_cmd(&app, &db, &["--orphans", "--older-than", "0s", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            report["orphansFound"].as_u64(),
            report["orphansAborted"].as_u64()
        ),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(
        app.in_progress_uploads().await.len(),
        1,
        "only the live upload is left"
    );

    // Configuration errors: one line, exit 2.
    let (code, _, err) = run(broker()
        .args(["sweep", "--older-than", "soon"])
        .env("DATABASE_URL", &db)
        .env("S3_BUCKET", "b"));
    assert_eq!(code, 2, "{err}");
}

/// The API key of the brokers `serve_on` starts (tenant `acme`).
pub(crate) const SERVE_KEY: &str = "restart-key-0123456789";

/// Starts `serve` on a free port; returns the child and its base URL once it answers.
async fn serve_on(
    db: &str,
    state_dir: &std::path::Path,
    s3: &str,
    prefix: &str,
) -> (std::process::Child, String) {
    serve_with(db, state_dir, s3, prefix, false).await
}

/// As [`serve_on`]; with `json_logs`, the child logs JSON to a piped stderr
/// for the caller to read.
async fn serve_with(
    db: &str,
    state_dir: &std::path::Path,
    s3: &str,
    prefix: &str,
    json_logs: bool,
) -> (std::process::Child, String) {
    serve_env(db, state_dir, s3, prefix, json_logs, &[]).await
}

/// As [`serve_with`], with more environment variables.
pub(crate) async fn serve_env(
    db: &str,
    state_dir: &std::path::Path,
    s3: &str,
    prefix: &str,
    json_logs: bool,
    extra: &[(&str, &str)],
) -> (std::process::Child, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = broker()
        .arg("serve")
        .env("DATABASE_URL", db)
        .env("S3_BUCKET", bucket())
        .env("S3_ENDPOINT", s3)
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_KEY_PREFIX", prefix)
        .env("BROKER_LISTEN", format!("127.0.0.1:{port}"))
        .env("BROKER_API_KEYS", format!("acme:{SERVE_KEY}"))
        .env("STATE_DIRECTORY", state_dir)
        .env("LOG_FORMAT", if json_logs { "json" } else { "text" })
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(if json_logs {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "the broker did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, base)
}

pub(crate) fn wait_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < within, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let c: Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(key)
        .json(&json!({"filename": "d.bin", "size": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
async fn a_detached_completion_that_fails_after_its_client_left_is_logged() {
    let db = fresh_database().await;
    let state_dir = std::env::temp_dir().join(format!("ub-state-{}", uuid::Uuid::new_v4()));
    // Storage holds the completion 2 s, then fails it (and its retries).
    let proxy = crate::common::proxy::FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_secs(2)));
    proxy
        .faults
        .fail_complete
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let key = SERVE_KEY;
    let prefix = format!("cli-{}/", uuid::Uuid::new_v4());
    let (mut child, base) = serve_with(&db, &state_dir, &proxy.url, &prefix, true).await;
    // The log is read as it comes, so that the test can wait for the line.
    let stderr = child.stderr.take().unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log_reader = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let mut l = logs.lock().unwrap();
                l.push_str(&line.unwrap());
                l.push('\n');
            }
        })
    };
    let http = reqwest::Client::new();
    let c: Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(key)
        .json(&json!({"filename": "d.bin", "size": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = c["parts"][0]["url"].as_str().unwrap().to_string();
    assert!(http
        .put(&url)
        .body("data")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    // The client gives up after 300 ms and goes away.
    let gone = http
        .post(format!("{base}/v1/uploads/{}/complete", token(&c)))
        .bearer_auth(key)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err(), "the client left before the answer");
    proxy.held_forwarded(1).await;
    // The completion fails afterwards (the provider's 500, then the SDK's
    // retries): its error reaches the log, with the upload id.
    let wanted = "detached work failed after its request had gone";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !logs.lock().unwrap().contains(wanted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    log_reader.join().unwrap();
    let logs = logs.lock().unwrap().clone();
    let line = logs
        .lines()
        .find(|l| l.contains(wanted))
        .unwrap_or_else(|| panic!("no log line for the failed detached completion:\n{logs}"));
    assert!(
        line.contains(c["id"].as_str().unwrap()),
        "with the upload id: {line}"
    );
    assert!(
        line.contains("CompleteMultipartUpload"),
        "saying what failed: {line}"
    );
    assert!(!line.contains(&token(&c)), "never the token");
    // And the upload is completable again (released, not stuck).
    let status: String = sqlx::query_scalar("select status from uploads where id = $1::uuid")
        .bind(c["id"].as_str().unwrap())
        .fetch_one(&sqlx::PgPool::connect(&db).await.unwrap())
        .await
        .unwrap();
    assert_eq!(status, "active", "released for a retry");
    let _ = std::fs::remove_dir_all(state_dir);
    drop_database(&db).await;
}
