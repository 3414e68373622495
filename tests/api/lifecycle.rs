//! Create → PUT real bytes → resume → complete → read back, against LocalStack.

use crate::common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const PART: usize = 5 * MIB;

/// 3 × 5 MiB + a small tail.
fn file() -> Vec<u8> {
    data(3 * PART + 12_345, 1)
}

#[sqlx::test]
async fn happy_path_multipart_upload(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = file();
    let created = app
        .create_ok(json!({
            "filename": "movie.mp4", "size": file.len(), "contentType": "video/mp4",
            "partSize": PART, "metadata": {"camera-id": "cam-7", "take": "3"},
        }))
        .await;
    assert_eq!(created["status"], "active");
    assert_eq!(created["partCount"], 4);
    assert_eq!(created["partSize"], PART);
    assert_eq!(created["size"], file.len());
    assert_eq!(created["filename"], "movie.mp4");
    assert_eq!(created["contentType"], "video/mp4");
    assert_eq!(created["bucket"], app.bucket.as_str());
    let key = created["key"].as_str().unwrap();
    assert!(
        key.starts_with(&app.prefix) && key.ends_with("/movie.mp4"),
        "{key}"
    );
    assert!(key.contains(created["id"].as_str().unwrap()));
    let parts = created["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 4);
    assert_eq!(parts[3]["size"], 12_345);

    for p in parts {
        let n = p["partNumber"].as_u64().unwrap();
        app.put_part(p, slice(&file, PART, n)).await;
    }
    let (status, done) = app.complete(&token(&created), None).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert!(
        done["etag"].as_str().unwrap().contains("-4"),
        "multipart ETag: {}",
        done["etag"]
    );

    let (bytes, ct, meta) = app.read_object(key).await;
    assert_eq!(bytes.len(), file.len());
    assert_eq!(sha256(&bytes), sha256(&file));
    assert_eq!(ct, "video/mp4");
    assert_eq!(meta.get("camera-id").map(String::as_str), Some("cam-7"));
    assert_eq!(meta.get("take").map(String::as_str), Some("3"));

    // Completed uploads stay readable.
    let (status, got) = app.get_status(&token(&created)).await;
    assert_eq!(status, 200);
    assert_eq!(got["status"], "completed");
    assert_eq!(got["progress"]["percent"], 100.0);
    assert_eq!(got["uploadedParts"].as_array().unwrap().len(), 4);
    assert!(app.in_progress_uploads().await.is_empty());
}

#[sqlx::test]
async fn interrupted_upload_resumes_with_the_token_alone(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = file();
    let created = app
        .create_ok(json!({"filename": "big.bin", "size": file.len(), "partSize": PART}))
        .await;
    let parts = created["parts"].as_array().unwrap().clone();
    // Parts 1 and 3 arrive; then the client is lost.
    app.put_part(&parts[0], slice(&file, PART, 1)).await;
    app.put_part(&parts[2], slice(&file, PART, 3)).await;
    let token = token(&created);
    drop(created);

    let (status, resumed) = app.resume(&token).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["missingParts"], json!([2, 4]));
    let uploaded: Vec<u64> = resumed["uploadedParts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(uploaded, vec![1, 3]);
    let signed: Vec<u64> = resumed["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partNumber"].as_u64().unwrap())
        .collect();
    assert_eq!(signed, vec![2, 4], "exactly the missing parts are signed");
    let p = &resumed["progress"];
    assert_eq!(p["uploadedBytes"], 2 * PART);
    assert_eq!(p["totalBytes"], file.len());
    assert_eq!(p["uploadedParts"], 2);
    assert_eq!(p["totalParts"], 4);
    let pct = p["percent"].as_f64().unwrap();
    assert!((pct - (2 * PART) as f64 / file.len() as f64 * 100.0).abs() < 1e-9);

    for part in resumed["parts"].as_array().unwrap() {
        let n = part["partNumber"].as_u64().unwrap();
        app.put_part(part, slice(&file, PART, n)).await;
    }
    let (status, done) = app.complete(&token, Some(json!({}))).await;
    assert_eq!(status, 200, "{done}");
    let (bytes, _, _) = app.read_object(done["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn a_reuploaded_part_replaces_the_earlier_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut file = data(PART + 100, 2);
    let created = app
        .create_ok(json!({"filename": "r.bin", "size": file.len(), "partSize": PART}))
        .await;
    let parts = created["parts"].as_array().unwrap().clone();
    let wrong = data(PART, 99);
    let first = app.put_part(&parts[0], &wrong).await;
    let second = app.put_part(&parts[0], slice(&file, PART, 1)).await;
    assert_ne!(first, second);
    app.put_part(&parts[1], slice(&file, PART, 2)).await;

    let (_, st) = app.get_status(&token(&created)).await;
    let listed = &st["uploadedParts"][0];
    assert_eq!(listed["partNumber"], 1);
    assert_eq!(
        listed["etag"].as_str().unwrap().trim_matches('"'),
        second.trim_matches('"')
    );

    // The client's list with the later ETag completes; the object has the later bytes.
    let (status, done) = app
        .complete(
            &token(&created),
            Some(json!({"parts": [
                {"partNumber": 1, "etag": second.trim_matches('"')},
                {"partNumber": 2, "etag": st["uploadedParts"][1]["etag"]},
            ]})),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    let (bytes, _, _) = app.read_object(done["key"].as_str().unwrap()).await;
    file.truncate(PART + 100);
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn complete_refuses_missing_parts_and_wrong_etags(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = file();
    let created = app
        .create_ok(json!({"filename": "m.bin", "size": file.len(), "partSize": PART}))
        .await;
    let token = token(&created);
    let parts = created["parts"].as_array().unwrap().clone();
    let e1 = app.put_part(&parts[0], slice(&file, PART, 1)).await;
    app.put_part(&parts[2], slice(&file, PART, 3)).await;

    let (status, err) = app.complete(&token, None).await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&err), "PARTS_MISSING");
    assert_eq!(err["error"]["missingParts"], json!([2, 4]));

    let (status, err) = app
        .complete(
            &token,
            Some(json!({"parts": [{"partNumber": 1, "etag": "\"0000\""}]})),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&err), "PART_MISMATCH");

    // Still active and completable.
    app.put_part(&parts[1], slice(&file, PART, 2)).await;
    app.put_part(&parts[3], slice(&file, PART, 4)).await;
    let (status, done) = app
        .complete(
            &token,
            Some(json!({"parts": [{"partNumber": 1, "etag": e1}]})),
        )
        .await;
    assert_eq!(status, 200, "{done}");
}

#[sqlx::test]
async fn a_part_of_the_wrong_size_is_reported_missing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = data(2 * PART + 10, 3);
    let created = app
        .create_ok(json!({"filename": "w.bin", "size": file.len(), "partSize": PART}))
        .await;
    let token = token(&created);
    let parts = created["parts"].as_array().unwrap().clone();
    // The URL binds the part's length: storage refuses a short or a long PUT.
    assert_eq!(parts[0]["headers"]["content-length"], PART.to_string());
    for len in [MIB, PART + 4 * MIB] {
        let res = app.put_raw(&parts[0], data(len, 9)).await;
        assert_eq!(
            res.status(),
            403,
            "a {len}-byte PUT to a {PART}-byte part URL is refused"
        );
    }
    assert_eq!(app.resume(&token).await.1["missingParts"], json!([1, 2, 3]));
    // A short part stored behind the broker's back is still caught.
    app.upload_part_at_provider(&created, 1, &file[..MIB]).await;
    app.put_part(&parts[1], slice(&file, PART, 2)).await;
    app.put_part(&parts[2], slice(&file, PART, 3)).await;

    let (_, resumed) = app.resume(&token).await;
    assert_eq!(resumed["missingParts"], json!([1]));
    assert_eq!(resumed["parts"][0]["partNumber"], 1);
    let (status, err) = app.complete(&token, None).await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&err), "PART_MISMATCH");
    assert_eq!(err["error"]["wrongSizeParts"][0]["actualSize"], MIB);

    app.put_part(&resumed["parts"][0], slice(&file, PART, 1))
        .await;
    let (status, done) = app.complete(&token, None).await;
    assert_eq!(status, 200, "{done}");
    let (bytes, _, _) = app.read_object(done["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn list_parts_follows_every_page(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            list_parts_page_size: 2,
            ..Default::default()
        },
    )
    .await;
    let file = data(5 * PART + 7, 4);
    let created = app
        .create_ok(json!({"filename": "p.bin", "size": file.len(), "partSize": PART}))
        .await;
    let parts = created["parts"].as_array().unwrap().clone();
    for p in &parts[..5] {
        let n = p["partNumber"].as_u64().unwrap();
        app.put_part(p, slice(&file, PART, n)).await;
    }
    let (_, st) = app.get_status(&token(&created)).await;
    assert_eq!(st["uploadedParts"].as_array().unwrap().len(), 5, "{st}");
    let (_, resumed) = app.resume(&token(&created)).await;
    assert_eq!(resumed["missingParts"], json!([6]));
    app.put_part(&resumed["parts"][0], slice(&file, PART, 6))
        .await;
    let (status, done) = app.complete(&token(&created), None).await;
    assert_eq!(status, 200, "{done}");
    let (bytes, _, _) = app.read_object(done["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn the_sign_window_and_parts_route(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            sign_window: 2,
            ..Default::default()
        },
    )
    .await;
    let file = data(3 * PART + 1, 5);
    let created = app
        .create_ok(json!({"filename": "s.bin", "size": file.len(), "partSize": PART}))
        .await;
    assert_eq!(created["parts"].as_array().unwrap().len(), 2);
    let (status, signed) = app.sign(&token(&created), &[4, 3]).await;
    assert_eq!(status, 200, "{signed}");
    let ps = signed["parts"].as_array().unwrap();
    assert_eq!(ps[0]["partNumber"], 4);
    assert_eq!(ps[0]["size"], 1);
    assert_eq!(ps[1]["size"], PART);
    for p in created["parts"].as_array().unwrap().iter().chain(ps) {
        let n = p["partNumber"].as_u64().unwrap();
        app.put_part(p, slice(&file, PART, n)).await;
    }
    let (status, _) = app.complete(&token(&created), None).await;
    assert_eq!(status, 200);
}

#[sqlx::test]
async fn part_urls_carry_no_checksum_and_expire_when_they_say(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .create_ok(json!({"filename": "c.bin", "size": 100}))
        .await;
    let p = &created["parts"][0];
    let url = reqwest::Url::parse(p["url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    for k in q.keys() {
        assert!(
            !k.to_ascii_lowercase().contains("checksum"),
            "checksum parameter {k} in a part URL"
        );
    }
    // The part's length is signed, and listed in `headers` as the contract
    // asks for every signed header but `host`.
    assert_eq!(q["X-Amz-SignedHeaders"], "content-length;host");
    assert_eq!(p["headers"], json!({"content-length": "100"}));
    let date = chrono::NaiveDateTime::parse_from_str(&q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let expires: i64 = q["X-Amz-Expires"].parse().unwrap();
    let said = chrono::DateTime::parse_from_rfc3339(p["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        date + chrono::Duration::seconds(expires),
        said,
        "URL expiry equals expiresAt"
    );
    assert_eq!(expires, 3600);
    // The upload's own expiry bounds the URL.
    let upload_expires =
        chrono::DateTime::parse_from_rfc3339(created["expiresAt"].as_str().unwrap()).unwrap();
    assert!(said <= upload_expires);
}

#[sqlx::test]
async fn part_url_expiry_is_capped_by_the_upload(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            upload_ttl: std::time::Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await;
    let created = app
        .create_ok(json!({"filename": "c.bin", "size": 100}))
        .await;
    let said =
        chrono::DateTime::parse_from_rfc3339(created["parts"][0]["expiresAt"].as_str().unwrap())
            .unwrap();
    let upload_expires =
        chrono::DateTime::parse_from_rfc3339(created["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(said, upload_expires, "the upload's expiry applies, exactly");
    // And the URL's own expiry (X-Amz-Date + X-Amz-Expires) says the same.
    let url = reqwest::Url::parse(created["parts"][0]["url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let date = chrono::NaiveDateTime::parse_from_str(&q["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let seconds: i64 = q["X-Amz-Expires"].parse().unwrap();
    assert!(seconds < 3600, "capped below PART_URL_TTL: {seconds}");
    assert_eq!(date + chrono::Duration::seconds(seconds), upload_expires);
}

#[sqlx::test]
async fn storage_rejects_tampered_and_expired_urls(pool: PgPool) {
    // A 3 s TTL: a URL starts at the current second rounded down, so it is
    // valid for 2 to 3 s, which leaves room for a round trip; then it is
    // waited out. (LocalStack allows no clock skew.)
    let app = TestApp::spawn_with(
        pool,
        Options {
            part_url_ttl: std::time::Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    let file = data(1000, 6);
    let created = app
        .create_ok(json!({"filename": "t.bin", "size": file.len()}))
        .await;
    let p = created["parts"][0].clone();
    let expires = chrono::DateTime::parse_from_rfc3339(p["expiresAt"].as_str().unwrap()).unwrap();

    // Tampered: another part number under the same signature.
    let mut tampered = p.clone();
    tampered["url"] = Value::String(
        p["url"]
            .as_str()
            .unwrap()
            .replace("partNumber=1", "partNumber=2"),
    );
    let res = app.put_raw(&tampered, file.clone()).await;
    assert_eq!(res.status(), 403, "a tampered URL must be refused");

    // Past its expiry (and a second more), the same URL is refused.
    let wait = (expires.timestamp_millis() - chrono::Utc::now().timestamp_millis() + 1500).max(0);
    tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
    let res = app.put_raw(&p, file.clone()).await;
    assert_eq!(res.status(), 403, "an expired URL must be refused");

    // Freshly signed, it works at once.
    let (_, signed) = app.sign(&token(&created), &[1]).await;
    app.put_part(&signed["parts"][0], &file).await;
}

#[sqlx::test]
async fn default_part_size_and_small_files(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let created = app
        .create_ok(json!({"filename": "tiny.txt", "size": 11, "contentType": "text/plain"}))
        .await;
    assert_eq!(created["partCount"], 1);
    assert_eq!(created["partSize"], 16 * MIB);
    assert_eq!(created["metadata"], json!({}));
    app.put_part(&created["parts"][0], b"hello world").await;
    let (status, done) = app.complete(&token(&created), None).await;
    assert_eq!(status, 200, "{done}");
    let (bytes, ct, _) = app.read_object(done["key"].as_str().unwrap()).await;
    assert_eq!(bytes, b"hello world");
    assert_eq!(ct, "text/plain");

    // Default content type.
    let c = app.create_ok(json!({"filename": "x", "size": 1})).await;
    assert_eq!(c["contentType"], "application/octet-stream");
}

#[sqlx::test]
async fn non_ascii_metadata_is_stored_rfc2047_encoded(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "m.txt", "size": 2, "metadata": {"title": "Café", "plain": "50% off"}}))
        .await;
    assert_eq!(c["metadata"]["title"], "=?UTF-8?B?Q2Fmw6k=?=");
    assert_eq!(c["metadata"]["plain"], "50% off");
    app.put_part(&c["parts"][0], b"ok").await;
    let (s, done) = app.complete(&token(&c), None).await;
    assert_eq!(s, 200, "{done}");
    let (_, _, meta) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(meta["title"], "=?UTF-8?B?Q2Fmw6k=?=");
    assert_eq!(meta["plain"], "50% off");
    // Completing again answers the same, whatever part list comes with it.
    let (s, again) = app
        .complete(
            &token(&c),
            Some(json!({"parts": [{"partNumber": 9, "etag": "x"}]})),
        )
        .await;
    assert_eq!((s, &again), (200, &done));
}

#[sqlx::test]
async fn status_while_a_completion_is_being_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let c = app.create_ok(json!({"filename": "w.bin", "size": 4})).await;
    let etag = app.put_part(&c["parts"][0], b"data").await;
    // A completer has claimed it and its CompleteMultipartUpload went through;
    // it has not recorded the outcome yet.
    let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
    let claimed = upload_broker::db::claim_completion(
        &pool,
        id,
        chrono::Utc::now(),
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap()
    .unwrap();
    app.complete_at_provider(&c, &etag).await;
    let recorder = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let object = upload_broker::db::FinishedObject {
            etag: etag.clone(),
            checksum: None,
            size: Some(4),
        };
        let done = upload_broker::db::record_completed(
            &pool,
            claimed.id,
            upload_broker::db::Fence::of(&claimed),
            &object,
            &[],
            chrono::Utc::now(),
            None,
        )
        .await
        .unwrap();
        assert!(done.is_some(), "the claimant's own write matches its fence");
    });
    // Not a 410: the status waits for the record and answers completed.
    let (s, v) = app.get_status(&token(&c)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "completed");
    recorder.await.unwrap();
}
