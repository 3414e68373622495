//! The contract's errors: auth, bad input, unknown routes, limits, CORS.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

async fn raw(r: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    (status, v, headers)
}

#[sqlx::test]
async fn authentication_and_tenants(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let body = json!({"filename": "a.bin", "size": 10});
    let (s, v, _) = raw(app.http.post(app.url("/v1/uploads")).json(&body)).await;
    assert_eq!((s, error_code(&v)), (401, "UNAUTHORIZED"));
    let (s, v, _) = raw(app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth("nope")
        .json(&body))
    .await;
    assert_eq!((s, error_code(&v)), (401, "UNAUTHORIZED"));
    let (s, v, _) = raw(app
        .http
        .post(app.url("/v1/uploads"))
        .basic_auth("x", Some(KEY_A))
        .json(&body))
    .await;
    assert_eq!((s, error_code(&v)), (401, "UNAUTHORIZED"));

    let created = app.create_ok(body).await;
    let t = token(&created);
    // Another tenant's token is a 404 on every route, exactly like an unknown one.
    let routes = [
        (Method::GET, format!("/v1/uploads/{t}"), None),
        (
            Method::POST,
            format!("/v1/uploads/{t}/parts"),
            Some(json!({"partNumbers": [1]})),
        ),
        (Method::POST, format!("/v1/uploads/{t}/resume"), None),
        (Method::POST, format!("/v1/uploads/{t}/complete"), None),
        (Method::DELETE, format!("/v1/uploads/{t}"), None),
    ];
    for (m, path, b) in &routes {
        let mut r = app
            .http
            .request(m.clone(), app.url(path))
            .bearer_auth(KEY_B);
        if let Some(b) = b {
            r = r.json(b);
        }
        let (s, v, _) = raw(r).await;
        assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{m} {path}");
        // And without a credential: 401 before anything else.
        let (s, _, _) = raw(app.http.request(m.clone(), app.url(path))).await;
        assert_eq!(s, 401);
    }
    // Unknown and malformed tokens.
    for bad in [
        "x",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &t[..t.len() - 1],
    ] {
        let (s, v) = app.get_status(bad).await;
        assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{bad}");
    }
    // The upload survived all that.
    let (s, v) = app.get_status(&t).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("active")));
}

#[sqlx::test]
async fn invalid_create_requests(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            max_upload_size: 100 * MIB as u64,
            ..Default::default()
        },
    )
    .await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "INVALID_REQUEST"),
        (json!({"size": 10}), 400, "INVALID_REQUEST"),
        (json!({"filename": "a"}), 400, "INVALID_REQUEST"),
        (json!({"filename": "", "size": 10}), 400, "INVALID_REQUEST"),
        (json!({"filename": 7, "size": 10}), 400, "INVALID_REQUEST"),
        (
            json!({"filename": "a", "size": "10"}),
            400,
            "INVALID_REQUEST",
        ),
        (json!({"filename": "a", "size": -1}), 400, "INVALID_REQUEST"),
        (
            json!({"filename": "a", "size": 1.5}),
            400,
            "INVALID_REQUEST",
        ),
        (json!({"filename": "a", "size": 0}), 400, "INVALID_REQUEST"),
        (json!({"filename": "a", "size": 1e30}), 413, "TOO_LARGE"),
        (
            json!({"filename": "a", "size": 100 * MIB + 1}),
            413,
            "TOO_LARGE",
        ),
        (json!({"filename": "a", "size": u64::MAX}), 413, "TOO_LARGE"),
        (
            json!({"filename": "a", "size": 10, "partSize": 1024}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "partSize": 6u64 << 30}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "partSize": "big"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "contentType": "not a type"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "contentType": 5}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "metadata": {"Upper": "x"}}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "metadata": {"k": 1}}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "metadata": {"k": "x".repeat(3000)}}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "metadata": ["x"]}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a", "size": 10, "fingerprint": "f".repeat(257)}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a\u{0}b", "size": 10}),
            400,
            "INVALID_REQUEST",
        ),
        (
            json!({"filename": "a".repeat(1025), "size": 10}),
            400,
            "INVALID_REQUEST",
        ),
        (json!([1, 2]), 400, "INVALID_REQUEST"),
    ];
    for (body, status, code) in cases {
        let (s, v) = app
            .call(Method::POST, "/v1/uploads", Some(body.clone()))
            .await;
        assert_eq!((s, error_code(&v)), (status, code), "{body}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        if code == "TOO_LARGE" {
            // Every size refusal names the limit, even for sizes beyond 64 bits.
            let limit = (100 * MIB).to_string();
            assert!(
                v["error"]["message"].as_str().unwrap().contains(&limit),
                "{body}: {v}"
            );
        }
    }
    // Nothing was created at the provider by any of them.
    assert!(app.in_progress_uploads().await.is_empty());

    // Garbage, wrong content type, oversized body.
    let (s, v, _) = raw(app
        .req(Method::POST, "/v1/uploads")
        .header("content-type", "application/json")
        .body("{nope"))
    .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"));
    let (s, v, _) = raw(app
        .req(Method::POST, "/v1/uploads")
        .header("content-type", "text/plain")
        .body("{}"))
    .await;
    assert_eq!((s, error_code(&v)), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let (s, v, _) = raw(app.req(Method::POST, "/v1/uploads").body("{}")).await;
    assert_eq!((s, error_code(&v)), (415, "UNSUPPORTED_MEDIA_TYPE"));
    let huge = format!("{{\"filename\": \"{}\", \"size\": 1}}", "a".repeat(3 * MIB));
    let (s, v, _) = raw(app
        .req(Method::POST, "/v1/uploads")
        .header("content-type", "application/json")
        .body(huge))
    .await;
    assert_eq!((s, error_code(&v)), (413, "BODY_TOO_LARGE"));

    // A cleaned key, the name echoed as given.
    let c = app
        .create_ok(json!({"filename": "../../etc/pass wd", "size": 3}))
        .await;
    assert_eq!(c["filename"], "../../etc/pass wd");
    assert!(
        c["key"].as_str().unwrap().ends_with("/pass_wd"),
        "{}",
        c["key"]
    );
}

#[sqlx::test]
async fn invalid_part_requests(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a", "size": 20 * MIB, "partSize": 5 * MIB}))
        .await;
    let t = token(&c);
    let many: Vec<u32> = (1..=1001).collect();
    let cases: Vec<Value> = vec![
        json!({}),
        json!({"partNumbers": []}),
        json!({"partNumbers": [0]}),
        json!({"partNumbers": [10001]}),
        json!({"partNumbers": [5]}),
        json!({"partNumbers": [1, 1]}),
        json!({"partNumbers": [-1]}),
        json!({"partNumbers": [1.5]}),
        json!({"partNumbers": ["1"]}),
        json!({"partNumbers": [4294967296u64]}),
        json!({"partNumbers": 1}),
        json!({"partNumbers": many}),
    ];
    for body in cases {
        let (s, v) = app
            .call(
                Method::POST,
                &format!("/v1/uploads/{t}/parts"),
                Some(body.clone()),
            )
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}");
    }
    let (s, v) = app.sign(&t, &[1, 2, 3, 4]).await;
    assert_eq!(s, 200);
    assert_eq!(v["parts"].as_array().unwrap().len(), 4);

    // A complete body that makes no sense.
    for body in [
        json!({"parts": [{"partNumber": 9, "etag": "x"}]}),
        json!({"parts": [{"partNumber": 1}]}),
        json!({"parts": "x"}),
        json!({"parts": [{"partNumber": 1, "etag": "a"}, {"partNumber": 1, "etag": "a"}]}),
    ] {
        let (s, v) = app.complete(&t, Some(body.clone())).await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}");
    }
    // Empty body without content type is fine for complete (and says what is missing).
    let (s, v, _) = raw(app.req(Method::POST, &format!("/v1/uploads/{t}/complete"))).await;
    assert_eq!((s, error_code(&v)), (409, "PARTS_MISSING"));
    assert_eq!(v["error"]["missingParts"], json!([1, 2, 3, 4]));
}

#[sqlx::test]
async fn unknown_routes_and_methods(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (s, v, _) = raw(app.req(Method::GET, "/nope")).await;
    assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"));
    let (s, v, _) = raw(app.req(Method::GET, "/v1/uploads/x/y/z")).await;
    assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"));
    let (s, v, _) = raw(app.req(Method::PUT, "/v1/uploads")).await;
    assert_eq!((s, error_code(&v)), (405, "METHOD_NOT_ALLOWED"));
    let (s, v, _) = raw(app.req(Method::GET, "/v1/uploads/abc/complete")).await;
    assert_eq!((s, error_code(&v)), (405, "METHOD_NOT_ALLOWED"));
}

#[sqlx::test]
async fn cors_for_browsers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let res = app
        .http
        .request(Method::OPTIONS, app.url("/v1/uploads"))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "http://app.example");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("DELETE"));

    let res = app
        .http
        .request(Method::OPTIONS, app.url("/v1/uploads"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    // Actual responses, errors included, carry the header for allowed origins.
    let res = app
        .http
        .post(app.url("/v1/uploads"))
        .header("origin", "http://app.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    assert!(res.headers().contains_key("x-request-id"));
    // A browser may read the request id and Retry-After (rate limits).
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("retry-after"),
        "{exposed}"
    );
}
