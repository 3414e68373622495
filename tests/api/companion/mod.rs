//! The Companion-compatible routes, as @uppy/aws-s3 calls them.
//!
//! The helpers the parts share are here: Uppy's URL encoding, and creating,
//! signing and PUTting parts as the plugin does.

mod access;
mod finishing;
mod multipart;
mod presigned_post;

use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};

const PART: usize = 5 * MIB;

pub(crate) fn enc(s: &str) -> String {
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
