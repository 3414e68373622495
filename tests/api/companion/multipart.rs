//! A multipart upload as Uppy makes it: created, signed part by part or in a
//! batch, listed, completed with bare or quoted ETags.

use super::{create, enc, put, sign, PART};
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

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
