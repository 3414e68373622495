//! Small files go up in one presigned POST, which storage holds to its
//! policy.

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

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
