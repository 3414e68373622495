//! Cloudflare R2's rules, applied when `STORAGE_PROVIDER=r2` (LocalStack
//! stores the bytes; the broker's side of each rule is what is tested):
//! R2's largest object and part, no POST uploads, SHA-256 part checksums
//! refused, CRC32C ones taken, and a completion throttled with 429 (one write
//! per second per key) retried until it gets through.

use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::Ordering;
use upload_broker::config::Provider;
use upload_broker::domain::part_plan::{R2_MAX_OBJECT_SIZE, R2_MAX_PART_SIZE};

fn r2() -> Options {
    Options {
        provider: Provider::R2,
        ..Default::default()
    }
}

#[sqlx::test]
async fn r2_sizes_and_checksums_are_held_to_r2s_rules(pool: PgPool) {
    let app = TestApp::spawn_with(pool, r2()).await;
    // The largest R2 object is planned; one byte more is too large.
    let c = app
        .create_ok(json!({"filename": "huge.bin", "size": R2_MAX_OBJECT_SIZE}))
        .await;
    assert!(c["partSize"].as_u64().unwrap() <= R2_MAX_PART_SIZE);
    let res = app
        .create(json!({"filename": "huge.bin", "size": R2_MAX_OBJECT_SIZE + 1}))
        .await;
    assert_eq!(res.status(), 413);
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "p.bin", "size": 20u64 << 30, "partSize": 5u64 << 30})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&R2_MAX_PART_SIZE.to_string()));

    // SHA-256 part checksums: a clear 400 naming the way out, and no upload left behind.
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "s.bin", "size": 10, "checksumAlgorithm": "SHA256"})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("CRC32C"));
    let rows: i64 = sqlx::query_scalar("select count(*) from uploads where filename = 's.bin'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    // No POST-policy uploads: the Companion route says to use multipart.
    let (s, v) = app
        .call(
            Method::GET,
            "/s3/params?filename=a.txt&type=text/plain",
            None,
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shouldUseMultipart"));
}

#[sqlx::test]
async fn an_r2_upload_with_crc32c_completes_through_throttled_completions(pool: PgPool) {
    let proxy = crate::common::proxy::FaultProxy::start().await;
    // R2 answers 429 to a second write to a key within a second: twice here.
    proxy.faults.throttle_complete.store(2, Ordering::SeqCst);
    let app = TestApp::spawn_with(
        pool,
        Options {
            endpoint: Some(proxy.url.clone()),
            ..r2()
        },
    )
    .await;
    let file = data(5 * MIB + 1234, 9);
    let c = app
        .create_ok(json!({"filename": "c.bin", "size": file.len(), "partSize": 5 * MIB, "checksumAlgorithm": "CRC32C"}))
        .await;
    let t = token(&c);
    let nums: Vec<u32> = vec![1, 2];
    let parts: Vec<serde_json::Value> = nums
        .iter()
        .map(|n| {
            let bytes = slice(&file, 5 * MIB, u64::from(*n));
            let crc = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                crc32c::crc32c(bytes).to_be_bytes(),
            );
            json!({"partNumber": n, "checksum": crc})
        })
        .collect();
    let (s, signed) = app
        .call(
            Method::POST,
            &format!("/v1/uploads/{t}/parts"),
            Some(json!({"parts": parts})),
        )
        .await;
    assert_eq!(s, 200, "{signed}");
    app.put_parts(&signed["parts"], &file, 5 * MIB).await;
    let (s, v) = app.complete(&t, None).await;
    assert_eq!(s, 200, "the SDK's retries got past the 429s: {v}");
    assert_eq!(
        proxy.faults.throttle_complete.load(Ordering::SeqCst),
        0,
        "both 429s were answered"
    );
    assert_eq!(
        proxy.count(crate::common::proxy::Call::CompleteMultipartUpload),
        3,
        "two throttled, one through"
    );
    let (bytes, _, _) = app.read_object(v["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}
