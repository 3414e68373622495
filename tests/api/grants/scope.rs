//! What a grant can see: only its own subject's uploads, on every route (the
//! Companion-compatible ones too), and each credential its own when listing.

use super::{claims, own_grant};
use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test]
async fn a_grant_sees_only_its_subjects_uploads_on_every_route(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app
        .grant(json!({"subject": "alice", "allowDownload": true}))
        .await;
    let b = app
        .grant(json!({"subject": "bob", "allowDownload": true}))
        .await;
    // Tenant B's grant for a subject of the same name.
    let other_tenant = own_grant(&claims("upload-broker", "alice", Some("tenant-b")));
    let fp = "same-file:10:1700000000000:abc";
    let (s, c) = app
        .call_as(
            &a,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "a.bin", "size": 10, "fingerprint": fp})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let t = token(&c);
    for intruder in [&b, &other_tenant] {
        for (m, path, body) in [
            (Method::GET, format!("/v1/uploads/{t}"), None),
            (Method::POST, format!("/v1/uploads/{t}/resume"), None),
            (
                Method::POST,
                format!("/v1/uploads/{t}/parts"),
                Some(json!({"partNumbers": [1]})),
            ),
            (Method::POST, format!("/v1/uploads/{t}/complete"), None),
            (Method::POST, format!("/v1/uploads/{t}/download"), None),
            (Method::DELETE, format!("/v1/uploads/{t}"), None),
        ] {
            let (s, v) = app.call_as(intruder, m.clone(), &path, body).await;
            assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{m} {path}");
        }
        let (s, v) = app
            .call_as(
                intruder,
                Method::GET,
                &format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A")),
                None,
            )
            .await;
        assert_eq!(
            (s, &v["uploads"]),
            (200, &json!([])),
            "no one else's uploads by fingerprint"
        );
    }
    let (s, v) = app
        .call_as(
            &a,
            Method::GET,
            &format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["uploads"][0]["resumeToken"], c["resumeToken"]);
    // The tenant's API key sees it (and an upload made with the API key is not
    // the grant's, though it is the same tenant's).
    assert_eq!(app.get_status(&t).await.0, 200);
    let k = app
        .create_ok(json!({"filename": "k.bin", "size": 10}))
        .await;
    let (s, _) = app
        .call_as(&a, Method::GET, &format!("/v1/uploads/{}", token(&k)), None)
        .await;
    assert_eq!(s, 404);
    app.put_part(&c["parts"][0], &data(10, 1)).await;
    let (s, v) = app
        .call_as(&a, Method::POST, &format!("/v1/uploads/{t}/complete"), None)
        .await;
    assert_eq!(s, 200, "{v}");

    // The Companion-compatible routes, likewise.
    let (s, v) = app
        .call_as(
            &a,
            Method::POST,
            "/s3/multipart",
            Some(json!({"filename": "u.bin", "type": "application/octet-stream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (id, key) = (v["uploadId"].as_str().unwrap(), v["key"].as_str().unwrap());
    let enc = |s: &str| {
        s.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let q = format!("?key={}", enc(key));
    for intruder in [&b, &other_tenant] {
        for (m, path) in [
            (Method::GET, format!("/s3/multipart/{}/1{q}", enc(id))),
            (Method::GET, format!("/s3/multipart/{}{q}", enc(id))),
            (Method::DELETE, format!("/s3/multipart/{}{q}", enc(id))),
        ] {
            let (s, v) = app.call_as(intruder, m.clone(), &path, None).await;
            assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{m} {path}");
        }
    }
    let (s, v) = app
        .call_as(
            &a,
            Method::GET,
            &format!("/s3/multipart/{}/1{q}", enc(id)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = app
        .call_as(
            KEY_A,
            Method::DELETE,
            &format!("/s3/multipart/{}{q}", enc(id)),
            None,
        )
        .await;
    assert_eq!(s, 200, "the tenant's API key may act on it");
}

#[sqlx::test]
async fn listing_active_uploads_shows_each_credential_its_own_page_by_page(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let g = app.grant(json!({"subject": "lister"})).await;
    let mut keys = Vec::new();
    for i in 0..5 {
        let c = app
            .create_ok(json!({"filename": format!("{i}.bin"), "size": 3}))
            .await;
        keys.push(c["id"].as_str().unwrap().to_string());
    }
    let (s, mine) = app
        .call_as(
            &g,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "g.bin", "size": 3})),
        )
        .await;
    assert_eq!(s, 201);
    // Not listed: another tenant's, a completed one, an aborted one, an expired one.
    let (s, _) = app
        .call_as(
            KEY_B,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "b.bin", "size": 3})),
        )
        .await;
    assert_eq!(s, 201);
    let done = app
        .create_ok(json!({"filename": "done.bin", "size": 3}))
        .await;
    app.put_part(&done["parts"][0], b"abc").await;
    assert_eq!(app.complete(&token(&done), None).await.0, 200);
    let gone = app
        .create_ok(json!({"filename": "gone.bin", "size": 3}))
        .await;
    assert_eq!(app.abort(&token(&gone)).await.0, 204);
    let old = app
        .create_ok(json!({"filename": "old.bin", "size": 3}))
        .await;
    app.expire_now(&old).await;

    // The API key: all six of the tenant's active uploads, newest first, two a page.
    let mut seen = Vec::new();
    let mut path = "/v1/uploads?status=active&limit=2".to_string();
    loop {
        let (s, v) = app.call(Method::GET, &path, None).await;
        assert_eq!(s, 200, "{v}");
        for u in v["uploads"].as_array().unwrap() {
            assert!(u["resumeToken"].as_str().is_some());
            assert_eq!(u["status"], "active");
            seen.push(u["id"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(n) => path = format!("/v1/uploads?status=active&limit=2&before={n}"),
            None => break,
        }
    }
    let mut want: Vec<String> = keys.clone();
    want.push(mine["id"].as_str().unwrap().to_string());
    want.reverse();
    assert_eq!(seen, want);

    // The grant: only its subject's.
    let (s, v) = app
        .call_as(&g, Method::GET, "/v1/uploads?status=active", None)
        .await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = v["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()]);
    assert!(v["next"].is_null());

    // Bad listings are 400s; the fingerprint lookup is unchanged.
    for bad in [
        "/v1/uploads",
        "/v1/uploads?status=completed",
        "/v1/uploads?status=active&limit=0",
        "/v1/uploads?status=active&before=zzz",
    ] {
        let (s, v) = app.call(Method::GET, bad, None).await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{bad}");
    }
}
