//! `upb upload` killed (SIGKILL) or interrupted (SIGINT) halfway, then run
//! again: it resumes by fingerprint, sends only the parts storage does not
//! hold (counted at a proxy in front of LocalStack), and the object matches.

mod common;

use common::proxy::{Fault, Kind, Proxy};
use common::*;
use serde_json::Value;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upload_broker_client::{Error, Event, Fingerprint, Source, UploadOptions};

const LEN: u64 = 80 * MIB; // 16 parts of 5 MiB

/// Starts `upb upload` throttled and waits until `parts` parts are stored.
fn start_and_wait(
    broker: &Broker,
    proxy: &Proxy,
    dir: &Scratch,
    file: &std::path::Path,
    parts: usize,
) -> std::process::Child {
    let mut child = broker
        .upb(&dir.0)
        .args(["upload", "--part-size", "5MiB", "--concurrency", "4"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.count(Kind::PutPart, 200) < parts {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "upb ended ({status}) before {parts} parts were stored: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{parts} parts were not stored within 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn token_from(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("upload ").and_then(|r| r.split(':').next()))
        .unwrap_or_else(|| panic!("no upload token in upb's output: {stderr}"))
        .to_string()
}

async fn stored_parts(broker: &Broker, token: &str) -> usize {
    let status = broker.client().status(token).await.unwrap();
    assert_eq!(status.status, "active");
    status.uploaded_parts.unwrap().len()
}

/// Runs the same command again, unthrottled, and checks what it sent.
async fn finish_and_check(
    broker: &Broker,
    proxy: &Proxy,
    dir: &Scratch,
    file: &std::path::Path,
    sha: &str,
    stored: usize,
) {
    proxy.throttle_put(0);
    proxy.reset_counts();
    let (code, out, err) = run(broker
        .upb(&dir.0)
        .args([
            "upload",
            "--json",
            "--part-size",
            "5MiB",
            "--concurrency",
            "4",
        ])
        .arg(file));
    assert_eq!(code, 0, "the second run failed: {err}");
    assert!(
        err.contains(&format!("resuming: {stored} of 16 parts stored")),
        "{err}"
    );
    assert_eq!(
        proxy.requests(Kind::PutPart),
        16 - stored,
        "parts stored before the interruption were sent again: {:?}",
        proxy
            .seen()
            .iter()
            .map(|s| s.target.split("partNumber=").nth(1).map(|t| t
                .split('&')
                .next()
                .unwrap()
                .to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(proxy.count(Kind::PutPart, 200), 16 - stored);
    let done: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(done["status"], "completed");
    let (object_sha, len) = object_sha256(done["key"].as_str().unwrap()).await;
    assert_eq!(len, LEN);
    assert_eq!(object_sha, sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upb_killed_at_half_resumes_without_resending_stored_parts() {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    let dir = Scratch::new("kill9");
    let file = dir.path("resume.bin");
    let sha = random_file(&file, LEN);
    proxy.throttle_put(4 * MIB);

    let mut child = start_and_wait(&broker, &proxy, &dir, &file, 8);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "upb was not killed by the signal");
    let token = token_from(&String::from_utf8_lossy(&out.stderr));
    // Parts in flight at the kill were cut: storage holds what it holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = stored_parts(&broker, &token).await;
    assert!(
        (8..16).contains(&stored),
        "{stored} parts stored at the kill"
    );

    finish_and_check(&broker, &proxy, &dir, &file, &sha, stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upb_interrupted_exits_3_and_resumes() {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    let dir = Scratch::new("sigint");
    let file = dir.path("interrupted.bin");
    let sha = random_file(&file, LEN);
    proxy.throttle_put(4 * MIB);

    let child = start_and_wait(&broker, &proxy, &dir, &file, 5);
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "Ctrl-C must exit 3 (resumable): {err}"
    );
    assert!(
        err.contains("interrupted; run the same command again to resume"),
        "{err}"
    );
    let token = token_from(&err);
    assert!(err.contains(&token));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = stored_parts(&broker, &token).await;
    assert!(
        (5..16).contains(&stored),
        "{stored} parts stored at the interruption"
    );

    // `upb ls` (no files) lists it from this machine's journal, with the file's fingerprint too.
    let (code, ls, err) = run(broker.upb(&dir.0).args(["ls"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        ls.contains(&token) && ls.contains("interrupted.bin"),
        "{ls}"
    );
    let (code, ls, err) = run(broker.upb(&dir.0).args(["ls", "--json"]).arg(&file));
    assert_eq!(code, 0, "{err}");
    let found: Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(found[0]["upload"]["resumeToken"], token.as_str());

    finish_and_check(&broker, &proxy, &dir, &file, &sha, stored).await;
    // Completed uploads leave the list.
    let (_, ls, _) = run(broker.upb(&dir.0).args(["ls"]));
    assert!(!ls.contains(&token), "{ls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_resumes_by_token_after_a_refused_part() {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    let dir = Scratch::new("by-token");
    let file = dir.path("by-token.bin");
    let len = 23 * MIB; // 5 parts: 4 of 5 MiB, the last 3 MiB
    let sha = random_file(&file, len);
    // A 4xx other than 403 is not retried: the upload stops there.
    proxy.fault(Kind::PutPart, 4, Fault::Status(400));
    let token = Arc::new(Mutex::new(None));
    let t = token.clone();
    let client = broker.client();
    let err = client
        .upload(
            Source::from_path(&file).unwrap(),
            UploadOptions {
                concurrency: 1,
                part_size: Some(5 * MIB),
                fingerprint: Fingerprint::Off,
                progress: Some(Arc::new(move |e| {
                    if let Event::Created { upload } = e {
                        *t.lock().unwrap() = Some(upload.resume_token.clone());
                    }
                })),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Storage { status: 400, .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(proxy.requests(Kind::PutPart), 4);
    assert_eq!(proxy.count(Kind::PutPart, 200), 3);
    let token = token.lock().unwrap().clone().expect("no Created event");

    // Another file (another size) is refused before anything is sent.
    let other = client
        .resume(&token, Source::from_bytes(vec![1u8; 1000], "other.bin"))
        .await
        .unwrap_err();
    assert!(other.to_string().contains("not the same file"), "{other}");

    proxy.reset_counts();
    let done = client
        .resume(&token, Source::from_path(&file).unwrap())
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(
        proxy.requests(Kind::PutPart),
        2,
        "only parts 4 and 5 are sent"
    );
    let (object_sha, object_len) = object_sha256(&done.key).await;
    assert_eq!(object_len, len);
    assert_eq!(object_sha, sha);
}
