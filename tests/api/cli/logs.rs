//! What the binary logs: plain text off a terminal, and the failure of a
//! completion whose client had already gone.

use super::{
    broker, drop_database, fresh_database, run, serve_env, serve_with, wait_exit, SERVE_KEY,
};
use crate::common::*;
use std::process::Command;
use std::time::{Duration, Instant};

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
    let c = one_part_uploaded(&http, &base, key, "d.bin", "data").await;
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

#[tokio::test]
async fn a_completion_that_waits_names_its_upload_once_in_its_log_line() {
    let db = fresh_database().await;
    let state_dir = std::env::temp_dir().join(format!("ub-state-{}", uuid::Uuid::new_v4()));
    // Storage holds the first completion 1.5 s: the second caller waits for
    // its outcome, loading the upload again and again.
    let proxy = crate::common::proxy::FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_millis(1500)));
    let prefix = format!("cli-{}/", uuid::Uuid::new_v4());
    let (mut child, base) = serve_env(
        &db,
        &state_dir,
        &proxy.url,
        &prefix,
        false,
        &[("LOG_FORMAT", "text"), ("NO_COLOR", "1")],
    )
    .await;
    let stderr = child.stderr.take().unwrap();
    let log_reader = std::thread::spawn(move || {
        let mut all = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut all).unwrap();
        all
    });
    let http = reqwest::Client::new();
    let c = one_part_uploaded(&http, &base, SERVE_KEY, "w.bin", "data").await;
    let complete = || {
        let (http, url) = (
            http.clone(),
            format!("{base}/v1/uploads/{}/complete", token(&c)),
        );
        async move {
            http.post(url)
                .bearer_auth(SERVE_KEY)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let first = tokio::spawn(complete());
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.count(crate::common::proxy::Call::CompleteMultipartUpload) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first completion never reached storage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = complete().await;
    assert_eq!((first.await.unwrap(), second), (200, 200));
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
    let logs = log_reader.join().unwrap();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("/complete") && l.contains("status=200"))
        .collect();
    assert_eq!(lines.len(), 2, "one line per completion:\n{logs}");
    for line in lines {
        assert_eq!(
            line.matches("upload_id=").count(),
            1,
            "the upload is named once: {line}"
        );
        assert!(line.contains(c["id"].as_str().unwrap()), "{line}");
    }
    let _ = std::fs::remove_dir_all(state_dir);
    drop_database(&db).await;
}
