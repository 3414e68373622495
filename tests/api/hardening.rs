//! Hardening: fenced claims with a provider that holds calls past their time,
//! verified objects, keyed fingerprints, aborts that cannot leak, HTTP hygiene,
//! bounded background work, and database failures at the connection level.

use crate::common::proxy::{Call, FaultProxy};
use crate::common::*;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PART: usize = 5 * MIB;

/// Creates an upload of `len` bytes in 5 MiB parts and PUTs every part.
async fn uploaded(app: &TestApp, len: usize, seed: u64) -> (Value, Vec<u8>) {
    let file = data(len, seed);
    let c = app
        .create_ok(json!({"filename": "h.bin", "size": len, "partSize": PART}))
        .await;
    app.put_parts(&c["parts"], &file, PART).await;
    (c, file)
}

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

/// A broker talking to storage through `proxy`, and one talking to it directly,
/// both on one database and one (versioned) bucket.
async fn faulty_and_direct(pool: PgPool, proxy: &FaultProxy, opts: Options) -> (TestApp, TestApp) {
    let bucket = versioned_bucket().await;
    let faulty = TestApp::spawn_with(
        pool.clone(),
        Options {
            bucket: Some(bucket.clone()),
            endpoint: Some(proxy.url.clone()),
            ..opts
        },
    )
    .await;
    let direct = TestApp::spawn_with(
        pool,
        Options {
            bucket: Some(bucket),
            ..Default::default()
        },
    )
    .await;
    (faulty, direct)
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
    // ListParts 1 s + CompleteMultipartUpload 2.2 s: longer than the 3 s lease,
    // each call within its own timeout. Waiters, started 90 ms apart so that
    // some look right after the first lease would have run out, must not take
    // over: renewal keeps the claim, and only one CompleteMultipartUpload is
    // ever sent. (Without renewal a waiter claims it and sends a second.)
    let proxy = FaultProxy::start().await;
    *proxy.faults.hold_list_parts.lock().unwrap() = Some(Duration::from_millis(1000));
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_millis(2200)));
    let opts = Options {
        completion_lease: Duration::from_secs(3),
        storage_timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let (faulty, direct) = faulty_and_direct(pool, &proxy, opts).await;
    let (c, file) = uploaded(&direct, PART + 5, 91).await;
    let t = token(&c);
    let started = std::time::Instant::now();
    let results = staggered_completes(&faulty, &t, 9, Duration::from_millis(90)).await;
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "the completion outlasted the lease"
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

#[sqlx::test]
async fn fingerprints_are_stored_only_as_keyed_hashes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let fp = "holiday.mp4:734003200:1700000000000:9f86d081884c7d65";
    let c = app
        .create_ok(json!({"filename": "holiday.mp4", "size": 10, "fingerprint": fp}))
        .await;
    assert_eq!(c["fingerprint"], fp, "the create response echoes it");
    let rows: Vec<String> = sqlx::query_scalar("select row_to_json(u)::text from uploads u")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].contains(fp) && !rows[0].contains("9f86d081884c7d65"),
        "{}",
        rows[0]
    );
    let (s, found) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(found["uploads"][0]["resumeToken"], c["resumeToken"]);
    assert_eq!(found["uploads"][0]["fingerprint"], fp);
    // Tenant B's lookup of the same fingerprint finds nothing.
    let res = app
        .http
        .get(app.url(&format!(
            "/v1/uploads?fingerprint={}",
            fp.replace(':', "%3A")
        )))
        .bearer_auth(KEY_B)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["uploads"], json!([]));
}

#[sqlx::test]
async fn an_abort_the_provider_refuses_is_retried_and_finished_by_the_sweep(pool: PgPool) {
    let proxy = FaultProxy::start().await;
    proxy.faults.fail_abort.store(true, Ordering::SeqCst);
    let (faulty, direct) = faulty_and_direct(pool, &proxy, Options::default()).await;
    let c = direct
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let t = token(&c);
    let (s, v) = faulty.abort(&t).await;
    assert_eq!((s, error_code(&v)), (502, "STORAGE_ERROR"), "{v}");
    assert!(
        proxy.count(Call::AbortMultipartUpload) >= 1,
        "the fault was injected"
    );
    assert_eq!(
        direct.row_status(&c).await,
        "aborting",
        "the row says what happened"
    );
    assert_eq!(
        direct.in_progress_uploads().await.len(),
        1,
        "still at the provider"
    );
    // Clients see it aborted; nothing can make it active again.
    let (s, v) = direct.get_status(&t).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("aborted")));
    let (s, v) = direct.complete(&t, None).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));
    let (s, v) = direct.sign(&t, &[1]).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));

    // The sweep finishes it once the claim's lease has run out.
    let sweeper = direct.sweeper(100).await;
    let report = sweeper
        .run(
            || chrono::Utc::now() + chrono::Duration::hours(1),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.aborts_finished, 1, "{report:?}");
    assert_eq!(direct.row_status(&c).await, "aborted");
    assert!(
        direct.in_progress_uploads().await.is_empty(),
        "nothing left at the provider"
    );
    // A client's retry is also fine: 204.
    let (s, _) = direct.abort(&t).await;
    assert_eq!(s, 204);
}

#[sqlx::test]
async fn a_retried_delete_finishes_an_abort_the_provider_refused(pool: PgPool) {
    let proxy = FaultProxy::start().await;
    proxy.faults.fail_abort.store(true, Ordering::SeqCst);
    let (faulty, direct) = faulty_and_direct(pool, &proxy, Options::default()).await;
    let c = direct
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let t = token(&c);
    assert_eq!(faulty.abort(&t).await.0, 502);
    proxy.faults.fail_abort.store(false, Ordering::SeqCst);
    let (s, _) = faulty.abort(&t).await;
    assert_eq!(s, 204);
    assert_eq!(direct.row_status(&c).await, "aborted");
    assert!(direct.in_progress_uploads().await.is_empty());
}

#[sqlx::test]
async fn background_work_is_bounded(pool: PgPool) {
    // One permit: a completion held at the provider takes it; an abort of
    // another upload meanwhile answers 503 (retryable), and works after.
    let proxy = FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((1, Duration::from_secs(2)));
    let opts = Options {
        max_background_tasks: 1,
        ..Default::default()
    };
    let (faulty, direct) = faulty_and_direct(pool, &proxy, opts).await;
    let (a, _) = uploaded(&direct, 100, 94).await;
    let b = direct
        .create_ok(json!({"filename": "b.bin", "size": 10}))
        .await;
    let ta = token(&a);
    let completing = {
        let (http, url) = (
            faulty.http.clone(),
            faulty.url(&format!("/v1/uploads/{ta}/complete")),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(KEY_A)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    while proxy.count(Call::CompleteMultipartUpload) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = faulty.abort(&token(&b)).await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
    assert_eq!(completing.await.unwrap(), 200);
    let (s, _) = faulty.abort(&token(&b)).await;
    assert_eq!(s, 204, "the permit came back");
}

#[sqlx::test]
async fn a_database_that_drops_connections_answers_503(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    // Accepts every connection and closes it at once (a proxy or failover in
    // between: Postgres never answers the SSLRequest).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/x"))
        .unwrap();
    let broken = TestApp::spawn(dead).await;
    let (s, v) = broken.get_status(&token(&c)).await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
    let (s, v) = broken
        .call(
            reqwest::Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "a.bin", "size": 10})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"), "{v}");
}

// ------------------------------------------------------------------ HTTP hygiene

#[sqlx::test]
async fn invented_methods_do_not_become_metric_labels(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for i in 0..20 {
        let m = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let res = app
            .http
            .request(m, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405);
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("INVENTED"), "no invented label values");
    assert!(
        metrics.contains(r#"method="other",route="/healthz",status="405"} 20"#),
        "counted under `other`"
    );
}

#[sqlx::test]
async fn metrics_can_ask_for_a_token(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            metrics_token: Some("metrics-token-0123456789".into()),
            ..Default::default()
        },
    )
    .await;
    let get = |auth: Option<&'static str>| {
        let mut r = app.http.get(app.url("/metrics"));
        if let Some(a) = auth {
            r = r.bearer_auth(a);
        }
        r.send()
    };
    let res = get(None).await.unwrap();
    assert_eq!(res.status(), 401);
    let v: Value = res.json().await.unwrap();
    assert_eq!(error_code(&v), "UNAUTHORIZED");
    assert_eq!(
        get(Some("metrics-token-wrong")).await.unwrap().status(),
        401
    );
    assert_eq!(
        get(Some(KEY_A)).await.unwrap().status(),
        401,
        "an API key is not the metrics token"
    );
    let res = get(Some("metrics-token-0123456789")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("upload_broker_"));
    // Health checks stay open.
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Whether the server closed the connection within `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 answer before the close is fine
        }
    }
}

#[sqlx::test]
async fn half_sent_headers_time_out_and_connections_are_limited(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            header_read_timeout: Duration::from_secs(1),
            max_connections: 3,
            ..Default::default()
        },
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    // Three slow clients take every connection...
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // ...so a fourth waits: it is not served while they hold them.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        http.get(app.url("/healthz")).send().await.is_err(),
        "served beyond the connection limit"
    );
    // The header deadline closes them, and the server is free again.
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(5)).await,
            "a half-sent request was kept open"
        );
    }
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(res.status(), 200);
}
