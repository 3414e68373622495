//! The storage provider failing mid-completion: S3 can answer 200 with an error
//! in the body. The upload must stay completable, never stuck in `completing`.

use crate::common::*;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    fail_complete: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
}

/// Forwards every request to LocalStack, except that while `fail_complete` is
/// set, CompleteMultipartUpload answers 200 with an `<Error>` body.
async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str())
        .unwrap_or("/");
    let is_complete = parts.method == http::Method::POST && pq.contains("uploadId=");
    if is_complete && p.fail_complete.load(Ordering::SeqCst) {
        p.failed.fetch_add(1, Ordering::SeqCst);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                   <Message>We encountered an internal error. Please try again.</Message></Error>";
        return (
            http::StatusCode::OK,
            [("content-type", "application/xml")],
            xml,
        )
            .into_response();
    }
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut r = p
        .http
        .request(parts.method.clone(), format!("{}{}", p.upstream, pq))
        .body(body);
    // The Host header goes through unchanged: the broker's SigV4 signature
    // covers it (LocalStack does not check it; AWS and s3s-fs do).
    for (k, v) in &parts.headers {
        r = r.header(k, v);
    }
    let res = r.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let mut out = (status, bytes).into_response();
    let is_head = parts.method == http::Method::HEAD;
    for (k, v) in &headers {
        // A HEAD response's Content-Length describes the object: keep it.
        if (k != http::header::CONTENT_LENGTH || is_head) && k != http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

async fn start_proxy() -> (String, Proxy) {
    let proxy = Proxy {
        upstream: endpoint(),
        http: reqwest::Client::new(),
        fail_complete: Arc::new(AtomicBool::new(true)),
        failed: Arc::new(AtomicUsize::new(0)),
    };
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, proxy)
}

#[sqlx::test]
async fn an_error_inside_a_200_leaves_the_upload_completable(pool: PgPool) {
    let direct = TestApp::spawn(pool.clone()).await;
    let (proxy_url, proxy) = start_proxy().await;
    // The same broker state, but talking to storage through the faulty proxy.
    let faulty = TestApp::spawn_with(
        pool,
        Options {
            endpoint: Some(proxy_url),
            ..Default::default()
        },
    )
    .await;

    let file = data(5 * MIB + 3, 11);
    let c = direct
        .create_ok(json!({"filename": "f.bin", "size": file.len(), "partSize": 5 * MIB}))
        .await;
    direct.put_parts(&c["parts"], &file, 5 * MIB).await;
    let t = token(&c);

    let (s, v) = faulty.complete(&t, None).await;
    assert!(
        proxy.failed.load(Ordering::SeqCst) >= 1,
        "the fault was injected"
    );
    assert_eq!((s, error_code(&v)), (502, "STORAGE_ERROR"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("InternalError"),
        "{v}"
    );
    let (s, st) = direct.get_status(&t).await;
    assert_eq!(
        (s, st["status"].as_str()),
        (200, Some("active")),
        "not stuck in completing"
    );

    proxy.fail_complete.store(false, Ordering::SeqCst);
    let (s, done) = faulty.complete(&t, None).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "completed");
    let (bytes, _, _) = direct.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn a_completion_that_got_through_before_a_crash_is_recorded(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let file = data(1000, 12);
    let c = app
        .create_ok(json!({"filename": "g.bin", "size": file.len()}))
        .await;
    let etag = app.put_part(&c["parts"][0], &file).await;
    // Completed at the provider behind the broker's back (as if the broker
    // crashed right after its CompleteMultipartUpload).
    app.complete_at_provider(&c, &etag).await;
    let (s, done) = app.complete(&token(&c), None).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "completed");
    let (bytes, _, _) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(bytes, file);
}
