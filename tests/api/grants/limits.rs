//! A grant's limits: size, number of uploads and content types, no downloads
//! or minting unless allowed, bad mint requests refused; and the size limit
//! held on uploads that declare no size.

use super::PART;
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn a_grant_is_held_to_its_limits(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let g = app
        .grant(
            json!({"subject": "u", "maxUploadSize": 1000, "maxUploads": 2,
            "contentTypes": ["image/*", "video/mp4"]}),
        )
        .await;
    let create = |body: Value| app.call_as(&g, Method::POST, "/v1/uploads", Some(body));
    let (s, v) = create(json!({"filename": "a", "size": 1001, "contentType": "image/png"})).await;
    assert_eq!((s, error_code(&v)), (413, "TOO_LARGE"), "{v}");
    let (s, v) = create(json!({"filename": "a", "size": 10})).await;
    assert_eq!(
        (s, error_code(&v)),
        (403, "FORBIDDEN"),
        "the default type is not allowed: {v}"
    );
    let (s, v) = create(json!({"filename": "a", "size": 10, "contentType": "text/plain"})).await;
    assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{v}");
    let (s, c) = create(json!({"filename": "a", "size": 10, "contentType": "image/png"})).await;
    assert_eq!(s, 201, "{c}");
    let (s, _) = create(json!({"filename": "b", "size": 1000, "contentType": "video/mp4"})).await;
    assert_eq!(s, 201);
    let (s, v) = create(json!({"filename": "c", "size": 10, "contentType": "video/mp4"})).await;
    assert_eq!((s, error_code(&v)), (429, "QUOTA_EXCEEDED"), "{v}");
    assert_eq!(
        (
            &v["error"]["quota"],
            &v["error"]["limit"],
            &v["error"]["current"]
        ),
        (&json!("grantUploads"), &json!(2), &json!(2))
    );
    assert_eq!(
        app.in_progress_uploads().await.len(),
        2,
        "refused creates leave nothing at the provider"
    );
    // No downloads without allowDownload; no minting with a grant.
    app.put_part(&c["parts"][0], &data(10, 2)).await;
    let t = token(&c);
    assert_eq!(
        app.call_as(&g, Method::POST, &format!("/v1/uploads/{t}/complete"), None)
            .await
            .0,
        200
    );
    let (s, v) = app
        .call_as(&g, Method::POST, &format!("/v1/uploads/{t}/download"), None)
        .await;
    assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{v}");
    let (s, v) = app
        .call_as(
            &g,
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "v"})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{v}");
    // Bad mint requests.
    for body in [
        json!({}),
        json!({"subject": ""}),
        json!({"subject": "x".repeat(129)}),
        json!({"subject": "u", "ttlSeconds": 86401}),
        json!({"subject": "u", "ttlSeconds": 0}),
        json!({"subject": "u", "contentTypes": ["not a type"]}),
        json!({"subject": "u", "metadata": {"Bad Key": "x"}}),
    ] {
        let (s, v) = app
            .call(Method::POST, "/v1/grants", Some(body.clone()))
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}: {v}");
    }
}

#[sqlx::test]
async fn a_grants_size_limit_holds_on_uploads_without_a_declared_size(pool: PgPool) {
    // The Companion-compatible routes declare no size: the grant's limit is
    // applied to the parts at completion.
    let app = TestApp::spawn(pool).await;
    let g = app
        .grant(json!({"subject": "u", "maxUploadSize": 8 * MIB}))
        .await;
    let (s, v) = app
        .call_as(
            &g,
            Method::POST,
            "/s3/multipart",
            Some(json!({"filename": "big.bin", "type": "application/octet-stream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (id, key) = (
        v["uploadId"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    );
    let enc = |s: &str| {
        s.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let mut parts = Vec::new();
    for n in 1..=2u32 {
        let (s, v) = app
            .call_as(
                &g,
                Method::GET,
                &format!("/s3/multipart/{}/{n}?key={}", enc(&id), enc(&key)),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let res = app
            .http
            .put(v["url"].as_str().unwrap())
            .body(data(PART, n as u64))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        parts.push(json!({"PartNumber": n, "ETag": res.headers()["etag"].to_str().unwrap()}));
    }
    let path = format!("/s3/multipart/{}/complete?key={}", enc(&id), enc(&key));
    // Refused for the grant and for the tenant's API key alike: the limit is the upload's.
    for cred in [g.as_str(), KEY_A] {
        let (s, v) = app
            .call_as(cred, Method::POST, &path, Some(json!({"parts": parts})))
            .await;
        assert_eq!((s, error_code(&v)), (413, "TOO_LARGE"), "{v}");
    }
    let (s, _) = app
        .call_as(
            &g,
            Method::DELETE,
            &format!("/s3/multipart/{}?key={}", enc(&id), enc(&key)),
            None,
        )
        .await;
    assert_eq!(s, 200, "still abortable");
}
