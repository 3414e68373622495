//! A fault-injecting HTTP proxy in front of LocalStack: it forwards every
//! request, except where a rule says to hold it, fail it, or change its answer.
//! A held request is forwarded from a task of its own, so it reaches storage
//! even if the broker gave up on it (the worst case for exactly-once).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which S3 call a request is (for the calls the broker makes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    HeadObject,
    Other,
}

fn classify(method: &http::Method, pq: &str) -> Call {
    let has_upload_id = pq.contains("uploadId=");
    match *method {
        http::Method::POST if has_upload_id => Call::CompleteMultipartUpload,
        http::Method::DELETE if has_upload_id => Call::AbortMultipartUpload,
        http::Method::GET if has_upload_id => Call::ListParts,
        http::Method::HEAD => Call::HeadObject,
        _ => Call::Other,
    }
}

#[derive(Clone, Default)]
pub struct Faults {
    /// Hold the first N CompleteMultipartUpload requests this long, then forward them.
    pub hold_complete: Arc<Mutex<Option<(usize, Duration)>>>,
    /// Hold every ListParts request this long.
    pub hold_list_parts: Arc<Mutex<Option<Duration>>>,
    /// Hold every AbortMultipartUpload this long, then forward it.
    pub hold_abort: Arc<Mutex<Option<Duration>>>,
    /// Answer CompleteMultipartUpload with 500 (after any hold) while set.
    pub fail_complete: Arc<AtomicBool>,
    /// Answer the next N CompleteMultipartUpload requests with 429 SlowDown
    /// (R2's answer to more than one write per second to a key).
    pub throttle_complete: Arc<AtomicU64>,
    /// Answer AbortMultipartUpload with 500 while set.
    pub fail_abort: Arc<AtomicBool>,
    /// Report this Content-Length on HeadObject answers, when non-zero.
    pub head_size: Arc<AtomicU64>,
}

#[derive(Clone)]
pub struct FaultProxy {
    pub url: String,
    pub faults: Faults,
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Call>>>,
    /// Upstream statuses of held requests, once forwarded.
    pub held_outcomes: Arc<Mutex<Vec<u16>>>,
    held: Arc<AtomicUsize>,
}

impl FaultProxy {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            faults: Faults::default(),
            upstream: super::endpoint(),
            http: reqwest::Client::new(),
            seen: Arc::default(),
            held_outcomes: Arc::default(),
            held: Arc::default(),
        };
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        proxy
    }

    /// How many requests of a kind went through (held ones included).
    pub fn count(&self, call: Call) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|c| **c == call)
            .count()
    }

    /// Waits until every held request has been forwarded.
    pub async fn held_forwarded(&self, n: usize) -> Vec<u16> {
        for _ in 0..600 {
            let out = self.held_outcomes.lock().unwrap().clone();
            if out.len() >= n {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("held requests were never forwarded");
    }
}

async fn forward(State(p): State<FaultProxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|x| x.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let call = classify(&parts.method, &pq);
    p.seen.lock().unwrap().push(call);
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if call == Call::AbortMultipartUpload && p.faults.fail_abort.load(Ordering::SeqCst) {
        return (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>injected</Message></Error>",
        )
            .into_response();
    }
    let mut hold = None;
    let hold_complete = *p.faults.hold_complete.lock().unwrap();
    if let (Call::CompleteMultipartUpload, Some((n, d))) = (call, hold_complete) {
        if p.held.fetch_add(1, Ordering::SeqCst) < n {
            hold = Some(d);
        }
    }
    let hold_abort = *p.faults.hold_abort.lock().unwrap();
    if let (Call::AbortMultipartUpload, Some(d)) = (call, hold_abort) {
        tokio::time::sleep(d).await;
    }
    let hold_list = *p.faults.hold_list_parts.lock().unwrap();
    if let (Call::ListParts, Some(d)) = (call, hold_list) {
        tokio::time::sleep(d).await;
    }
    let send = {
        let p = p.clone();
        let (method, headers) = (parts.method.clone(), parts.headers.clone());
        async move {
            if let Some(d) = hold {
                tokio::time::sleep(d).await;
            }
            if call == Call::CompleteMultipartUpload
                && p.faults
                    .throttle_complete
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>";
                return (
                    http::StatusCode::TOO_MANY_REQUESTS,
                    http::HeaderMap::new(),
                    Bytes::from_static(xml.as_bytes()),
                );
            }
            if call == Call::CompleteMultipartUpload
                && p.faults.fail_complete.load(Ordering::SeqCst)
            {
                let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>injected</Message></Error>";
                if hold.is_some() {
                    p.held_outcomes.lock().unwrap().push(500);
                }
                return (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    http::HeaderMap::new(),
                    Bytes::from_static(xml.as_bytes()),
                );
            }
            let mut r = p
                .http
                .request(method, format!("{}{}", p.upstream, pq))
                .body(body);
            // The Host header goes through unchanged: presigned URLs sign it.
            for (k, v) in &headers {
                r = r.header(k, v);
            }
            let res = r.send().await.unwrap();
            let status = res.status();
            let headers = res.headers().clone();
            let bytes = res.bytes().await.unwrap();
            if hold.is_some() {
                p.held_outcomes.lock().unwrap().push(status.as_u16());
            }
            (status, headers, bytes)
        }
    };
    // Held requests go on in a task of their own: the broker hanging up does
    // not stop them reaching storage.
    let (status, headers, bytes) = if hold.is_some() {
        tokio::spawn(send).await.unwrap()
    } else {
        send.await
    };
    let mut out = (status, bytes).into_response();
    let is_head = parts.method == http::Method::HEAD;
    for (k, v) in &headers {
        // A HEAD response's Content-Length describes the object: keep it.
        if (k != http::header::CONTENT_LENGTH || is_head) && k != http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    let size = p.faults.head_size.load(Ordering::SeqCst);
    if is_head && size > 0 && status.is_success() {
        out.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            size.to_string().parse().unwrap(),
        );
    }
    out
}
