//! Fenced completion: a call held past its timeout still completes exactly
//! once, the completer renews its lease while storage is slow, an object of the
//! wrong size is never recorded completed, and a completion nobody recorded is
//! recovered.

use super::{faulty_and_direct, uploaded, PART};
use crate::common::proxy::{Call, FaultProxy};
use crate::common::*;
use serde_json::Value;
use sqlx::PgPool;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `n` concurrent completes of one upload.
async fn concurrent_completes(app: &TestApp, t: &str, n: usize) -> Vec<(u16, Value)> {
    staggered_completes(app, t, n, Duration::ZERO).await
}

/// `n` completes of one upload, started `gap` apart (so that waiters look at
/// the record at every phase of their backoff).
async fn staggered_completes(app: &TestApp, t: &str, n: usize, gap: Duration) -> Vec<(u16, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let delay = gap * i as u32;
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/uploads/{t}/complete")),
        );
        set.spawn(async move {
            tokio::time::sleep(delay).await;
            let res = http.post(url).bearer_auth(KEY_A).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[sqlx::test]
async fn a_completion_held_past_its_timeout_still_completes_exactly_once(pool: PgPool) {
    // The first CompleteMultipartUpload is held 6 s and then forwarded anyway;
    // the broker's own call gives up at 4/5 of the 4 s lease.
    let proxy = FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_secs(6)));
    let opts = Options {
        completion_lease: Duration::from_secs(4),
        storage_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let (faulty, direct) = faulty_and_direct(pool, &proxy, opts).await;
    let (c, file) = uploaded(&direct, 2 * PART + 77, 90).await;
    let t = token(&c);

    let results = concurrent_completes(&faulty, &t, 5).await;
    let ok: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, v)| v)
        .collect();
    for (s, v) in &results {
        assert!(
            *s == 200 || (*s == 502 || *s == 503),
            "every caller gets 200 or a retryable error: {s} {v}"
        );
    }
    assert!(
        !ok.is_empty(),
        "a waiter took over and completed: {:?}",
        results.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert!(ok.iter().all(|v| *v == ok[0]), "one result for all");
    assert!(
        proxy.count(Call::CompleteMultipartUpload) >= 2,
        "the takeover overlapped the held call"
    );
    // The held call reaches storage after the completion: it must not make a
    // second object.
    let held = proxy.held_forwarded(1).await;
    assert_ne!(
        held[0], 200,
        "the late call was refused by storage: {held:?}"
    );
    let key = c["key"].as_str().unwrap();
    assert_eq!(direct.versions(key).await, 1, "one provider completion");
    assert_eq!(direct.row_status(&c).await, "completed");
    let (s, v) = direct.get_status(&t).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("completed")), "{v}");
    let (bytes, _, _) = direct.read_object(key).await;
    assert_eq!(sha256(&bytes), sha256(&file));
    // Completing again answers the same 200.
    let (s, again) = faulty.complete(&t, None).await;
    assert_eq!((s, &again), (200, ok[0]));
}

#[sqlx::test]
async fn the_completer_renews_its_lease_while_storage_is_slow(pool: PgPool) {
    // ListParts read one part per page, each page held 0.8 s (four parts:
    // 3.2 s), then CompleteMultipartUpload held 1.5 s: longer than the 4 s
    // lease, while each call stays well within its own timeout (2 s for
    // ListParts, 3.2 s for the completion), however slow the machine. Waiters,
    // started 90 ms apart so that some look right after the first lease would
    // have run out, must not take over: renewal keeps the claim, and only one
    // CompleteMultipartUpload is ever sent. (Without renewal a waiter claims
    // it and sends a second.)
    let proxy = FaultProxy::start().await;
    *proxy.faults.hold_list_parts.lock().unwrap() = Some(Duration::from_millis(800));
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_millis(1500)));
    let lease = Duration::from_secs(4);
    let opts = Options {
        completion_lease: lease,
        storage_timeout: Duration::from_secs(2),
        list_parts_page_size: 1,
        ..Default::default()
    };
    let (faulty, direct) = faulty_and_direct(pool, &proxy, opts).await;
    let (c, file) = uploaded(&direct, 3 * PART + 5, 91).await;
    let t = token(&c);
    let started = std::time::Instant::now();
    let results = staggered_completes(&faulty, &t, 9, Duration::from_millis(90)).await;
    assert!(
        started.elapsed() > lease,
        "the completion outlasted the lease"
    );
    assert!(
        proxy.count(Call::ListParts) >= 4,
        "the part list was read a page at a time"
    );
    for (s, v) in &results {
        assert_eq!(*s, 200, "{v}");
        assert_eq!(v, &results[0].1);
    }
    assert_eq!(
        proxy.count(Call::CompleteMultipartUpload),
        1,
        "no waiter took the claim over"
    );
    assert_eq!(direct.versions(c["key"].as_str().unwrap()).await, 1);
    let (bytes, _, _) = direct.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn an_object_of_the_wrong_size_is_not_recorded_completed(pool: PgPool) {
    let proxy = FaultProxy::start().await;
    let (faulty, direct) = faulty_and_direct(pool, &proxy, Options::default()).await;
    let (c, _) = uploaded(&direct, PART + 10, 92).await;
    // Storage answers HeadObject with another size than the upload declared.
    proxy
        .faults
        .head_size
        .store((PART + 11) as u64, Ordering::SeqCst);
    let t = token(&c);
    let (s, v) = faulty.complete(&t, None).await;
    assert_eq!((s, error_code(&v)), (502, "STORAGE_ERROR"), "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("{}", PART + 11)) && msg.contains("removed"),
        "{msg}"
    );
    assert_eq!(
        direct.row_status(&c).await,
        "expired",
        "never recorded completed"
    );
    let key = c["key"].as_str().unwrap();
    let head = direct
        .s3
        .head_object()
        .bucket(&direct.bucket)
        .key(key)
        .send()
        .await;
    assert!(
        head.is_err(),
        "the object was deleted: the bucket holds nothing unaccounted for"
    );
    assert!(direct.in_progress_uploads().await.is_empty());
    let (s, v) = direct.get_status(&t).await;
    assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"));
    let (s, _) = direct.complete(&t, None).await;
    assert_eq!(s, 410, "one truthful outcome, not a completion later");
}

#[sqlx::test]
async fn a_completion_recorded_by_nobody_is_recovered_not_expired(pool: PgPool) {
    // The reviewed failure: storage completed the upload, the row is `active`
    // (the completer lost its write). Reading it must record the completion.
    let app = TestApp::spawn(pool).await;
    let (c, file) = uploaded(&app, 1000, 93).await;
    let etag = app.resume(&token(&c)).await.1["uploadedParts"][0]["etag"]
        .as_str()
        .unwrap()
        .to_string();
    app.complete_at_provider(&c, &etag).await;
    let (s, v) = app.get_status(&token(&c)).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("completed")), "{v}");
    assert_eq!(v["objectSize"], 1000);
    let (bytes, _, _) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(bytes, file);
}
