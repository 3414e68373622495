//! What a receiver gets: a full upload delivered as `upload.created` then
//! `upload.completed`, signed as the Standard Webhooks reference library
//! checks, with the upload resource as its data; and the README's example
//! Node receiver verifying and logging those deliveries.

use super::{add_webhook, read_feed, upload, WAIT};
use crate::common::receiver::{verify_with_reference_library, Receiver};
use crate::common::*;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test]
async fn a_full_upload_is_delivered_as_created_then_completed_signed_as_the_standard_says(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    let (_, secret) = add_webhook(&app, &rx.url, None).await;
    let bytes = data(1234, 7);
    let c = upload(&app, &bytes).await;
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    let kinds: Vec<_> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(
        kinds,
        vec![json!("upload.created"), json!("upload.completed")]
    );

    // The reference library accepts both, as the events they say they are.
    let verified = verify_with_reference_library(&secret, &got);
    let ids: Vec<String> = got
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(verified, ids);
    assert!(ids.iter().all(|i| i.starts_with("evt_")));
    for r in &got {
        assert_eq!(r.json()["id"], r.header("webhook-id"));
        assert!(r.header("webhook-signature").starts_with("v1,"));
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        assert_eq!(r.header("content-type"), "application/json");
    }
    // Tampered, it is refused: the check can fail.
    let mut bent = got[1].clone();
    bent.body = bent.body.replace("e.bin", "f.bin");
    assert!(verify_with_reference_library(&secret, &[bent])[0].starts_with("invalid"));
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(verify_with_reference_library(other, &got[..1])[0].starts_with("invalid"));

    // The completed event's data is the upload resource without its token, with
    // the object's facts.
    let (_, resource) = app.get_status(&token(&c)).await;
    let done = got[1].json();
    let data = done["data"].as_object().unwrap();
    assert!(!data.contains_key("resumeToken"));
    for (k, v) in resource.as_object().unwrap() {
        if k != "resumeToken" && k != "progress" && k != "uploadedParts" && k != "missingParts" {
            assert_eq!(data.get(k), Some(v), "data.{k}");
        }
    }
    assert_eq!(data["status"], "completed");
    assert_eq!(data["objectSize"], 1234);
    assert_eq!(
        data["completedBy"], "client",
        "a complete call completed it"
    );
    assert_eq!(data["metadata"], json!({"k": "v"}));
    assert!(data["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(data.contains_key("checksum"));
    assert!(data.contains_key("subject"));
    let created = got[0].json();
    assert_eq!(created["data"]["status"], "active");
    assert!(!created["data"].as_object().unwrap().contains_key("etag"));
    assert!(!created["data"]
        .as_object()
        .unwrap()
        .contains_key("completedBy"));

    // The feed holds the same events.
    let feed = read_feed(&app, 10).await;
    assert_eq!(feed, vec![got[0].json(), got[1].json()]);
}

#[sqlx::test]
async fn the_readmes_node_receiver_verifies_and_logs_a_completed_upload(pool: PgPool) {
    use std::io::BufRead;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/webhook-receiver");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/standardwebhooks")
            .exists(),
        "the example receiver's dependencies are not installed: run the suite with \
         scripts/test.sh, or `npm ci` in examples/webhook-receiver"
    );
    let app = TestApp::spawn(pool).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, secret) = add_webhook(&app, &format!("http://127.0.0.1:{port}/"), None).await;
    let mut node = std::process::Command::new("node")
        .arg("receiver.mjs")
        .current_dir(dir)
        .env("WEBHOOK_SECRET", &secret)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (Node.js is needed for the webhook tests)");
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let out = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(next_line(&mut lines).await, "listening");
    let c = upload(&app, &data(4321, 3)).await;
    let id = c["id"].as_str().unwrap();
    assert_eq!(
        next_line(&mut lines).await,
        format!("upload.created {id} {}", c["key"].as_str().unwrap())
    );
    assert_eq!(
        next_line(&mut lines).await,
        format!("upload.completed {id} {} 4321", c["key"].as_str().unwrap())
    );
    // A forged delivery is refused.
    let forged = app
        .http
        .post(format!("http://127.0.0.1:{port}/"))
        .header("webhook-id", "evt_forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    let _ = node.kill();
    let _ = node.wait();
}

async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, lines.recv())
        .await
        .expect("the receiver printed nothing")
        .expect("the receiver exited")
}
