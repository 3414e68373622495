//! Longer part URLs for background transfers: `urlTtlSeconds` on create and on
//! `POST …/parts`, 1 to MAX_PART_URL_TTL (400 beyond), cut to the upload's
//! expiry; the URLs signed for that long work at storage.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

/// (X-Amz-Expires, the URL's expiry, the answer's expiresAt) of a signed part.
fn expiry_of(
    part: &Value,
) -> (
    i64,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
) {
    let url = reqwest::Url::parse(part["url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let date = chrono::NaiveDateTime::parse_from_str(&q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let expires: i64 = q["X-Amz-Expires"].parse().unwrap();
    let said = chrono::DateTime::parse_from_rfc3339(part["expiresAt"].as_str().unwrap())
        .unwrap()
        .to_utc();
    (expires, date + chrono::Duration::seconds(expires), said)
}

#[sqlx::test]
async fn part_urls_live_as_long_as_asked_within_the_maximum(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = data(6 * MIB, 7);
    let c = app
        .create_ok(
            json!({"filename": "m.bin", "size": file.len(), "partSize": 5 * MIB,
            "urlTtlSeconds": 7200}),
        )
        .await;
    for p in c["parts"].as_array().unwrap() {
        let (expires, url_expiry, said) = expiry_of(p);
        assert_eq!(expires, 7200, "{p}");
        assert_eq!(url_expiry, said, "URL expiry equals expiresAt");
    }
    // POST …/parts: up to MAX_PART_URL_TTL (24 h here).
    let path = format!("/v1/uploads/{}/parts", token(&c));
    let (s, v) = app
        .call(
            Method::POST,
            &path,
            Some(json!({"partNumbers": [1, 2], "urlTtlSeconds": 86400})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for p in v["parts"].as_array().unwrap() {
        assert_eq!(expiry_of(p).0, 86400, "{p}");
    }
    // The day-long URLs work at storage: PUT, complete, read back.
    app.put_parts(&v["parts"], &file, 5 * MIB).await;
    let (s, done) = app.complete(&token(&c), None).await;
    assert_eq!(s, 200, "{done}");
    let (bytes, _, _) = app.read_object(done["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
    // Without it: PART_URL_TTL (1 h here).
    let c = app
        .create_ok(json!({"filename": "d.bin", "size": 10}))
        .await;
    assert_eq!(expiry_of(&c["parts"][0]).0, 3600);
}

#[sqlx::test]
async fn a_url_life_out_of_range_is_refused_and_the_upload_expiry_cuts_it(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            upload_ttl: std::time::Duration::from_secs(600),
            ..Default::default()
        },
    )
    .await;
    for ttl in [json!(0), json!(86401), json!(-5), json!("long")] {
        let res = app
            .create(json!({"filename": "x.bin", "size": 10, "urlTtlSeconds": ttl}))
            .await;
        let status = res.status().as_u16();
        let v: Value = res.json().await.unwrap();
        assert_eq!(
            (status, error_code(&v)),
            (400, "INVALID_REQUEST"),
            "urlTtlSeconds {ttl}: {v}"
        );
    }
    let c = app
        .create_ok(json!({"filename": "x.bin", "size": 10, "urlTtlSeconds": 7200}))
        .await;
    let (expires, _, said) = expiry_of(&c["parts"][0]);
    let upload_expires = chrono::DateTime::parse_from_rfc3339(c["expiresAt"].as_str().unwrap())
        .unwrap()
        .to_utc();
    assert_eq!(said, upload_expires, "cut to the upload's expiry, exactly");
    assert!(expires <= 600, "{expires}");
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/v1/uploads/{}/parts", token(&c)),
            Some(json!({"partNumbers": [1], "urlTtlSeconds": 86401})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("urlTtlSeconds"),
        "{v}"
    );
}
