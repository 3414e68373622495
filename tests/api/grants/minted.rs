//! A grant the broker mints: it creates, resumes (with a fresh grant of the
//! same subject) and completes an upload, and its metadata wins.

use super::{now, PART};
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn a_grant_uploads_resumes_and_completes_with_forced_metadata(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (s, minted) = app
        .call(
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "user-42", "metadata": {"user-id": "42"}, "ttlSeconds": 600})),
        )
        .await;
    assert_eq!(s, 201, "{minted}");
    assert_eq!(minted["subject"], "user-42");
    let expires =
        chrono::DateTime::parse_from_rfc3339(minted["expiresAt"].as_str().unwrap()).unwrap();
    assert!((expires.timestamp() - now() - 600).abs() <= 2);
    let g = minted["grant"].as_str().unwrap().to_string();

    let file = data(PART + 100, 80);
    let (s, c) = app
        .call_as(
            &g,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "g.bin",
            "size": file.len(), "partSize": PART, "metadata": {"user-id": "666", "note": "mine"}})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["subject"], "user-42");
    assert_eq!(
        c["metadata"],
        json!({"user-id": "42", "note": "mine"}),
        "the grant's value wins"
    );
    app.put_part(&c["parts"][0], slice(&file, PART, 1)).await;
    let t = token(&c);
    // A fresh grant of the same subject resumes it.
    let g2 = app.grant(json!({"subject": "user-42"})).await;
    let (s, r) = app
        .call_as(&g2, Method::POST, &format!("/v1/uploads/{t}/resume"), None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["missingParts"], json!([2]));
    app.put_part(&r["parts"][0], slice(&file, PART, 2)).await;
    let (s, done) = app
        .call_as(
            &g2,
            Method::POST,
            &format!("/v1/uploads/{t}/complete"),
            None,
        )
        .await;
    assert_eq!(
        (s, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    let (bytes, _, meta) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
    assert_eq!(meta["user-id"], "42", "forced metadata is on the object");
    assert_eq!(meta["note"], "mine");
    // API-key uploads say so.
    let k = app
        .create_ok(json!({"filename": "k.bin", "size": 10}))
        .await;
    assert_eq!(k["subject"], Value::Null);
    assert!(k.as_object().unwrap().contains_key("subject"));
}
