//! Who gets anywhere: only the owner with the right key, never through a
//! native upload's id and key; and browsers may call the routes (CORS).

use super::{create, enc};
use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test]
async fn only_the_owner_with_the_right_key_gets_anywhere(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (id, key) = create(&app, "o.bin").await;
    let url =
        |id: &str, key: &str| app.url(&format!("/s3/multipart/{}/1?key={}", enc(id), enc(key)));
    // No credential; another tenant's; the wrong key; an unknown upload id; no key.
    assert_eq!(
        app.http.get(url(&id, &key)).send().await.unwrap().status(),
        401
    );
    assert_eq!(
        app.http
            .get(url(&id, &key))
            .bearer_auth(KEY_B)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/s3/multipart/{}/1?key={}", enc(&id), enc("uploads/other")),
            None,
        )
        .await;
    assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"));
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/s3/multipart/nope/1?key={}", enc(&key)),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = app
        .call(Method::GET, &format!("/s3/multipart/{}/1", enc(&id)), None)
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"));
    for bad in ["0", "10001", "abc", "-1"] {
        let (s, _) = app
            .call(
                Method::GET,
                &format!("/s3/multipart/{}/{bad}?key={}", enc(&id), enc(&key)),
                None,
            )
            .await;
        assert_eq!(s, 400, "part {bad}");
    }
    let (s, _) = app
        .call(Method::POST, "/s3/multipart", Some(json!({"type": "x/y"})))
        .await;
    assert_eq!(s, 400, "filename is required");
    let (s, v) = app
        .call(Method::GET, "/s3/params?type=text/plain", None)
        .await;
    assert_eq!(
        (s, error_code(&v)),
        (400, "INVALID_REQUEST"),
        "filename is required"
    );
    assert_eq!(
        app.http
            .get(app.url("/s3/params?filename=a"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[sqlx::test]
async fn browsers_may_call_the_companion_routes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let res = app
        .http
        .request(Method::OPTIONS, app.url("/s3/multipart"))
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
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://app.example"
    );
}

#[sqlx::test]
async fn native_uploads_do_not_answer_to_the_companion_routes(pool: PgPool) {
    // (uploadId, key) is visible in every part URL of a native upload: it must
    // not let anyone abort, list, sign or complete it through these routes.
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "n.bin", "size": 10}))
        .await;
    app.put_part(&c["parts"][0], &data(10, 70)).await;
    let (id, key) = (
        c["uploadId"].as_str().unwrap().to_string(),
        c["key"].as_str().unwrap().to_string(),
    );
    let q = format!("?key={}", enc(&key));
    for (method, path, body) in [
        (
            Method::DELETE,
            format!("/s3/multipart/{}{q}", enc(&id)),
            None,
        ),
        (Method::GET, format!("/s3/multipart/{}{q}", enc(&id)), None),
        (
            Method::GET,
            format!("/s3/multipart/{}/1{q}", enc(&id)),
            None,
        ),
        (
            Method::POST,
            format!("/s3/multipart/{}/complete{q}", enc(&id)),
            Some(json!({"parts": [{"PartNumber": 1, "ETag": "x"}]})),
        ),
    ] {
        let (s, v) = app.call(method.clone(), &path, body).await;
        assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{method} {path}");
    }
    let (s, v) = app.get_status(&token(&c)).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("active")),
        "untouched"
    );
    assert_eq!(app.in_progress_uploads().await, vec![id]);
}

#[sqlx::test]
async fn a_grants_size_limit_stops_part_urls_for_an_upload_that_reached_it(pool: PgPool) {
    use super::put;
    let app = TestApp::spawn(pool).await;
    let grant = app
        .grant(serde_json::json!({"subject": "u1", "maxUploadSize": 6 * MIB}))
        .await;
    let (s, v) = app
        .call_as(
            &grant,
            Method::POST,
            "/s3/multipart",
            Some(serde_json::json!({"filename": "g.bin", "type": "application/octet-stream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (id, key) = (
        v["uploadId"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    );
    let sign = |n: u32| {
        let (app, grant, path) = (
            &app,
            grant.clone(),
            format!("/s3/multipart/{}/{n}?key={}", enc(&id), enc(&key)),
        );
        async move { app.call_as(&grant, Method::GET, &path, None).await }
    };
    let (s, v) = sign(1).await;
    assert_eq!(s, 200, "{v}");
    put(&app, v["url"].as_str().unwrap(), &data(5 * MIB, 1)).await;
    let (s, v) = sign(2).await;
    assert_eq!(s, 200, "5 MiB held, under 6: {v}");
    put(&app, v["url"].as_str().unwrap(), &data(2 * MIB, 2)).await;
    // 7 MiB held: no URL for another part.
    let (s, v) = sign(3).await;
    assert_eq!((s, error_code(&v)), (413, "TOO_LARGE"), "{v}");
    // Part 2 again (a retry replaces it): the others hold 5 MiB.
    let (s, v) = sign(2).await;
    assert_eq!(s, 200, "{v}");
}
