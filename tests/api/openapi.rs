//! The OpenAPI document matches the routes actually served.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn the_document_describes_exactly_the_served_routes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // Bodies the broker takes optionally are documented as optional.
    for path in [
        "/v1/uploads/{token}/complete",
        "/v1/uploads/{token}/resume",
        "/v1/uploads/{token}/download",
    ] {
        let body = &doc["paths"][path]["post"]["requestBody"];
        assert!(body.is_object(), "{path} documents its body");
        assert_ne!(
            body["required"],
            json!(true),
            "{path}: the body is optional"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/uploads"]["post"]["requestBody"]["required"],
        json!(true),
        "create's body is required"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "ErrorBody",
        "ErrorCode",
        "CreateBody",
        "UploadResource",
        "PartResource",
        "Progress",
        "ResumeResponse",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    for code in [
        "INVALID_REQUEST",
        "UNAUTHORIZED",
        "NOT_FOUND",
        "METHOD_NOT_ALLOWED",
        "UPLOAD_NOT_ACTIVE",
        "PARTS_MISSING",
        "PART_MISMATCH",
        "UPLOAD_EXPIRED",
        "TOO_LARGE",
        "BODY_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "STORAGE_ERROR",
        "UNAVAILABLE",
        "FORBIDDEN",
        "QUOTA_EXCEEDED",
        "RATE_LIMITED",
    ] {
        assert!(codes.contains(&json!(code)), "error code {code} documented");
    }

    // The contract's routes are all there...
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = [
        ("POST", "/v1/uploads"),
        ("GET", "/v1/uploads"),
        ("GET", "/v1/uploads/{token}"),
        ("DELETE", "/v1/uploads/{token}"),
        ("POST", "/v1/uploads/{token}/parts"),
        ("POST", "/v1/uploads/{token}/resume"),
        ("POST", "/v1/uploads/{token}/complete"),
        ("POST", "/v1/uploads/{token}/download"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/s3/multipart"),
        ("GET", "/s3/multipart/{uploadId}/batch"),
        ("GET", "/s3/multipart/{uploadId}/{partNumber}"),
        ("GET", "/s3/multipart/{uploadId}"),
        ("DELETE", "/s3/multipart/{uploadId}"),
        ("POST", "/s3/multipart/{uploadId}/complete"),
        ("GET", "/s3/params"),
        ("POST", "/v1/grants"),
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks"),
        ("DELETE", "/v1/webhooks/{id}"),
        ("GET", "/v1/webhooks/{id}/deliveries"),
        ("POST", "/v1/webhooks/{id}/deliveries/{eventId}/retry"),
        ("GET", "/v1/events"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // ...and every documented operation is served (not the router's fallback).
    let c = app.create_ok(json!({"filename": "o", "size": 10})).await;
    let t = token(&c);
    for (method, path) in &documented {
        let url = path
            .replace("{token}", &t)
            .replace("{uploadId}", "some-id")
            .replace("{partNumber}", "1")
            .replace("{id}", "wh_x")
            .replace("{eventId}", "evt_x");
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let res = app
            .req(m, &format!("{url}?fingerprint=x&key=k&partNumbers=1"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{method} {path} is documented but not served");
        assert!(
            !body.contains("no such route"),
            "{method} {path} is documented but not served: {body}"
        );
    }
    // The fallback does say so for a route that does not exist.
    let res = app.req(Method::GET, "/v1/nothing").send().await.unwrap();
    assert!(res.text().await.unwrap().contains("no such route"));
}
