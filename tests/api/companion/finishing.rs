//! How a Companion upload ends: completion verified against storage, the size
//! limit held at completion, and abort, expiry and the sweep.

use super::{create, enc, put, sign, PART};
use crate::common::*;
use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn completion_is_verified_against_storage(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (id, key) = create(&app, "v.bin").await;
    let complete = |parts: Value| {
        let path = format!("/s3/multipart/{}/complete?key={}", enc(&id), enc(&key));
        let app = &app;
        async move {
            app.call(Method::POST, &path, Some(json!({"parts": parts})))
                .await
        }
    };
    let mut etags = Vec::new();
    for (n, len) in [(1u32, PART), (2, PART + 1), (3, 10)] {
        let (_, v) = sign(&app, &id, &key, n).await;
        etags.push(put(&app, v["url"].as_str().unwrap(), &data(len, n as u64)).await);
    }
    let e = |i: usize| etags[i].trim_matches('"').to_string();
    // A part storage does not have.
    let (s, v) =
        complete(json!([{"PartNumber": 1, "ETag": e(0)}, {"PartNumber": 4, "ETag": "x"}])).await;
    assert_eq!((s, error_code(&v)), (409, "PARTS_MISSING"));
    assert_eq!(v["error"]["missingParts"], json!([4]));
    // A wrong ETag.
    let (s, v) = complete(json!([{"PartNumber": 1, "ETag": "0123"}])).await;
    assert_eq!((s, error_code(&v)), (409, "PART_MISMATCH"));
    // A gap.
    let (s, _) =
        complete(json!([{"PartNumber": 1, "ETag": e(0)}, {"PartNumber": 3, "ETag": e(2)}])).await;
    assert_eq!(s, 400);
    // Unequal part sizes (R2 refuses them; S3 too when under 5 MiB).
    let (s, v) = complete(json!([{"PartNumber": 1, "ETag": e(0)}, {"PartNumber": 2, "ETag": e(1)}, {"PartNumber": 3, "ETag": e(2)}])).await;
    assert_eq!((s, error_code(&v)), (409, "PART_MISMATCH"), "{v}");
    // Still active: fix part 2 and complete.
    let (_, v) = sign(&app, &id, &key, 2).await;
    let fixed = put(&app, v["url"].as_str().unwrap(), &data(PART, 2)).await;
    let (s, v) = complete(json!([{"PartNumber": 1, "ETag": e(0)}, {"PartNumber": 2, "ETag": fixed}, {"PartNumber": 3, "ETag": e(2)}])).await;
    assert_eq!(s, 200, "{v}");
}

#[sqlx::test]
async fn abort_expiry_and_the_sweep_apply(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (id, key) = create(&app, "a.bin").await;
    let path = format!("/s3/multipart/{}?key={}", enc(&id), enc(&key));
    let (s, v) = app.call(Method::DELETE, &path, None).await;
    assert_eq!((s, v), (200, json!({})));
    let (s, v) = sign(&app, &id, &key, 1).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));
    assert_eq!(
        app.call(Method::DELETE, &path, None).await.0,
        200,
        "idempotent"
    );
    assert!(app.in_progress_uploads().await.is_empty());

    let (id, key) = create(&app, "e.bin").await;
    sqlx::query(
        "update uploads set expires_at = now() - interval '1 minute' where provider_upload_id = $1",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    let (s, v) = sign(&app, &id, &key, 1).await;
    assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"));
    let r = app
        .sweeper(10)
        .await
        .run(Utc::now, &Default::default())
        .await
        .unwrap();
    assert_eq!(r.aborted, 1, "{r:?}");
    assert!(app.in_progress_uploads().await.is_empty());
}

#[sqlx::test]
async fn a_companion_upload_over_the_maximum_is_refused_and_stays_abortable(pool: PgPool) {
    // Companion uploads declare no size: the limit is applied to the parts at
    // completion, before the provider call.
    let app = TestApp::spawn_with(
        pool,
        Options {
            max_upload_size: 12 * MIB as u64,
            ..Default::default()
        },
    )
    .await;
    let (id, key) = create(&app, "big.bin").await;
    let mut parts = Vec::new();
    for n in 1..=3u32 {
        let (s, v) = sign(&app, &id, &key, n).await;
        assert_eq!(s, 200, "{v}");
        let etag = put(&app, v["url"].as_str().unwrap(), &data(PART, n as u64)).await;
        parts.push(json!({"PartNumber": n, "ETag": etag}));
    }
    let path = format!("/s3/multipart/{}/complete?key={}", enc(&id), enc(&key));
    let (s, v) = app
        .call(Method::POST, &path, Some(json!({"parts": parts})))
        .await;
    assert_eq!((s, error_code(&v)), (413, "TOO_LARGE"), "{v}");
    let head = app
        .s3
        .head_object()
        .bucket(&app.bucket)
        .key(&key)
        .send()
        .await;
    assert!(head.is_err(), "no object was made");
    // Still active: the client (or the sweep) can abort it.
    let path = format!("/s3/multipart/{}?key={}", enc(&id), enc(&key));
    let (s, v) = app.call(Method::DELETE, &path, None).await;
    assert!(s == 200 || s == 204, "{s} {v}");
    assert!(
        app.in_progress_uploads().await.is_empty(),
        "nothing left at the provider"
    );
}
