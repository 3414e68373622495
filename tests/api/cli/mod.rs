//! The binary: configuration errors, help, migrate, serve with graceful
//! shutdown, and logs that never hold a secret.
//!
//! The helpers that run the binary are here: `broker` and `run`, a database of
//! its own (`fresh_database`, `drop_database`), and `serve_env` and friends,
//! which the events area uses too.

mod config;
mod logs;
mod serve;
mod sweep_command;

use crate::common::*;
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

/// As [`serve_with`], with more environment variables (with `LOG_FORMAT`
/// among them, stderr is piped too).
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
        // The tests' webhook receivers listen on loopback.
        .env("EGRESS_ALLOW", "127.0.0.0/8,::1/128")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(
            if json_logs || extra.iter().any(|(k, _)| *k == "LOG_FORMAT") {
                Stdio::piped()
            } else {
                Stdio::null()
            },
        )
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
