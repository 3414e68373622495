//! The Companion-compatible routes, as @uppy/aws-s3 calls them.

use crate::common::*;
use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

const PART: usize = 5 * MIB;

fn enc(s: &str) -> String {
    url_escape(s)
}

/// encodeURIComponent, as Uppy uses it.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn create(app: &TestApp, filename: &str) -> (String, String) {
    let (s, v) = app
        .call(Method::POST, "/s3/multipart", Some(json!({"filename": filename, "type": "application/octet-stream",
            "metadata": {"name": filename, "type": "application/octet-stream", "relativePath": null}})))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["bucket"], app.bucket.as_str());
    (
        v["uploadId"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

async fn sign(app: &TestApp, id: &str, key: &str, n: u32) -> (u16, Value) {
    app.call(
        Method::GET,
        &format!("/s3/multipart/{}/{n}?key={}", enc(id), enc(key)),
        None,
    )
    .await
}

async fn put(app: &TestApp, url: &str, bytes: &[u8]) -> String {
    let res = app.http.put(url).body(bytes.to_vec()).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.headers()["etag"].to_str().unwrap().to_string()
}

#[sqlx::test]
async fn an_uppy_style_upload_end_to_end(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = data(2 * PART + 1000, 61);
    let (id, key) = create(&app, "holiday vidéo.mp4").await;
    assert!(
        key.starts_with(&app.prefix) && key.ends_with("/holiday_vid_o.mp4"),
        "{key}"
    );

    let mut etags = Vec::new();
    for n in 1..=3u32 {
        let (s, v) = sign(&app, &id, &key, n).await;
        assert_eq!(s, 200, "{v}");
        let expires = v["expires"].as_u64().unwrap();
        assert!((3590..=3600).contains(&expires), "{v}");
        etags.push(
            put(
                &app,
                v["url"].as_str().unwrap(),
                slice(&file, PART, n as u64),
            )
            .await,
        );
    }
    let (s, listed) = app
        .call(
            Method::GET,
            &format!("/s3/multipart/{}?key={}", enc(&id), enc(&key)),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["PartNumber"], 1, "a JSON number");
    assert_eq!(listed[2]["Size"], 1000);
    assert_eq!(listed[1]["ETag"], etags[1].as_str());

    // Uppy 6 sends ETags bare.
    let parts: Vec<Value> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"PartNumber": i + 1, "ETag": e.trim_matches('"')}))
        .collect();
    let path = format!("/s3/multipart/{}/complete?key={}", enc(&id), enc(&key));
    let (s, done) = app
        .call(Method::POST, &path, Some(json!({"parts": parts})))
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["key"], key.as_str());
    assert_eq!(done["bucket"], app.bucket.as_str());
    assert!(
        done["location"]
            .as_str()
            .unwrap()
            .ends_with(&key.replace(' ', "%20")),
        "{done}"
    );
    let (bytes, ct, meta) = app.read_object(&key).await;
    assert_eq!(sha256(&bytes), sha256(&file));
    assert_eq!(ct, "application/octet-stream");
    assert_eq!(
        meta["name"], "=?UTF-8?B?aG9saWRheSB2aWTDqW8ubXA0?=",
        "non-ASCII metadata is RFC 2047-encoded"
    );
    // Idempotent.
    let (s, again) = app
        .call(Method::POST, &path, Some(json!({"parts": parts})))
        .await;
    assert_eq!((s, &again), (200, &done));
    // The record learned the plan.
    let row: (i64, i64, i32, String) = sqlx::query_as(
        "select size, part_size, part_count, origin from uploads where provider_upload_id = $1",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (file.len() as i64, PART as i64, 3, "companion".to_string())
    );
}

#[sqlx::test]
async fn batch_signing_and_quoted_etags(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = data(PART + 10, 62);
    let (id, key) = create(&app, "b.bin").await;
    let (s, v) = app
        .call(
            Method::GET,
            &format!(
                "/s3/multipart/{}/batch?key={}&partNumbers=1,2",
                enc(&id),
                enc(&key)
            ),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let urls = v["presignedUrls"].as_object().unwrap();
    assert_eq!(urls.len(), 2);
    for bad in ["", "x", "0", "1,10001", "1,,a"] {
        let (s, v) = app
            .call(
                Method::GET,
                &format!(
                    "/s3/multipart/{}/batch?key={}&partNumbers={bad}",
                    enc(&id),
                    enc(&key)
                ),
                None,
            )
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    let e1 = put(&app, urls["1"].as_str().unwrap(), slice(&file, PART, 1)).await;
    let e2 = put(&app, urls["2"].as_str().unwrap(), slice(&file, PART, 2)).await;
    // Uppy 5 sends them quoted.
    let (s, done) = app
        .call(
            Method::POST,
            &format!("/s3/multipart/{}/complete?key={}", enc(&id), enc(&key)),
            Some(json!({"parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})),
        )
        .await;
    assert_eq!(s, 200, "{done}");
}

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
async fn small_files_go_up_in_one_presigned_post(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (s, v) = app
        .call(Method::GET, "/s3/params?filename=notes%20%C3%A9t%C3%A9.txt&type=text/plain&metadata%5Bname%5D=notes%20%C3%A9t%C3%A9.txt", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["method"], "POST");
    assert!((3590..=3600).contains(&v["expires"].as_u64().unwrap()));
    let fields = v["fields"].as_object().unwrap().clone();
    let key = fields["key"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(&app.prefix) && key.ends_with("/notes_t_.txt"),
        "{key}"
    );
    let post = |fields: serde_json::Map<String, Value>, body: Vec<u8>| {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k, v.as_str().unwrap().to_string());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(body).file_name("notes.txt"),
        );
        app.http
            .post(v["url"].as_str().unwrap())
            .multipart(form)
            .send()
    };
    // A tampered form (another key) is refused by storage.
    let mut tampered = fields.clone();
    tampered.insert("key".into(), json!(format!("{}elsewhere.txt", app.prefix)));
    let res = post(tampered, b"x".to_vec()).await.unwrap();
    assert_eq!(res.status(), 403, "{}", res.text().await.unwrap());
    // The real one lands with its type and metadata.
    let body = data(300_000, 71);
    let res = post(fields, body.clone()).await.unwrap();
    assert!(
        res.status().is_success(),
        "{} {}",
        res.status(),
        res.text().await.unwrap()
    );
    let (bytes, ct, meta) = app.read_object(&key).await;
    assert_eq!(sha256(&bytes), sha256(&body));
    assert_eq!(ct, "text/plain");
    assert_eq!(meta["name"], "=?UTF-8?B?bm90ZXMgw6l0w6kudHh0?=");
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
