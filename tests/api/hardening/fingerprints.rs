//! Fingerprints are stored only as keyed hashes, and found only by their
//! tenant.

use crate::common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn fingerprints_are_stored_only_as_keyed_hashes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let fp = "holiday.mp4:734003200:1700000000000:9f86d081884c7d65";
    let c = app
        .create_ok(json!({"filename": "holiday.mp4", "size": 10, "fingerprint": fp}))
        .await;
    assert_eq!(c["fingerprint"], fp, "the create response echoes it");
    let rows: Vec<String> = sqlx::query_scalar("select row_to_json(u)::text from uploads u")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].contains(fp) && !rows[0].contains("9f86d081884c7d65"),
        "{}",
        rows[0]
    );
    let (s, found) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(found["uploads"][0]["resumeToken"], c["resumeToken"]);
    assert_eq!(found["uploads"][0]["fingerprint"], fp);
    // Tenant B's lookup of the same fingerprint finds nothing.
    let res = app
        .http
        .get(app.url(&format!(
            "/v1/uploads?fingerprint={}",
            fp.replace(':', "%3A")
        )))
        .bearer_auth(KEY_B)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["uploads"], json!([]));
}
