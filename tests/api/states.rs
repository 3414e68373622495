//! Abort, expiry, concurrent completion, and failures of the database or the
//! storage provider.

use crate::common::proxy::{Call, FaultProxy};
use crate::common::*;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::Duration;

const PART: usize = 5 * MIB;

async fn all_routes(app: &TestApp, t: &str) -> Vec<(String, u16, Value)> {
    let mut out = Vec::new();
    for (name, m, path, body) in [
        ("get", Method::GET, format!("/v1/uploads/{t}"), None),
        (
            "parts",
            Method::POST,
            format!("/v1/uploads/{t}/parts"),
            Some(json!({"partNumbers": [1]})),
        ),
        (
            "resume",
            Method::POST,
            format!("/v1/uploads/{t}/resume"),
            None,
        ),
        (
            "complete",
            Method::POST,
            format!("/v1/uploads/{t}/complete"),
            None,
        ),
        ("delete", Method::DELETE, format!("/v1/uploads/{t}"), None),
    ] {
        let (s, v) = app.call(m, &path, body).await;
        out.push((name.to_string(), s, v));
    }
    out
}

#[sqlx::test]
async fn abort_then_every_route_answers_as_the_contract_says(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let t = token(&c);
    app.put_part(&c["parts"][0], &data(10, 1)).await;
    assert_eq!(app.in_progress_uploads().await.len(), 1);

    let (s, v) = app.abort(&t).await;
    assert_eq!(s, 204, "{v}");
    assert!(
        app.in_progress_uploads().await.is_empty(),
        "aborted at the provider"
    );

    for (name, s, v) in all_routes(&app, &t).await {
        match name.as_str() {
            "get" => {
                assert_eq!(s, 200);
                assert_eq!(v["status"], "aborted");
            }
            "delete" => assert_eq!(s, 204, "abort is idempotent"),
            _ => assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"), "{name}"),
        }
    }
    let (s, _) = app.abort(&t).await;
    assert_eq!(s, 204);
}

#[sqlx::test]
async fn completed_uploads_refuse_changes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let t = token(&c);
    app.put_part(&c["parts"][0], &data(10, 1)).await;
    let (s, first) = app.complete(&t, None).await;
    assert_eq!(s, 200);
    for (name, s, v) in all_routes(&app, &t).await {
        match name.as_str() {
            "get" => assert_eq!((s, v["status"].as_str()), (200, Some("completed"))),
            "complete" => assert_eq!((s, &v), (200, &first), "complete is idempotent"),
            _ => assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"), "{name}"),
        }
    }
}

#[sqlx::test]
async fn expired_uploads_answer_410_everywhere(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            upload_ttl: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let created = chrono::DateTime::parse_from_rfc3339(c["createdAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(c["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, chrono::Duration::seconds(3));
    let t = token(&c);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for (name, s, v) in all_routes(&app, &t).await {
        assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"), "{name}");
    }
}

#[sqlx::test]
async fn ten_concurrent_completes_make_one_object(pool: PgPool) {
    // The provider holds the completion 1.5 s, so all ten calls are in flight
    // together: the overlap is forced, and checked.
    let proxy = FaultProxy::start().await;
    *proxy.faults.hold_complete.lock().unwrap() = Some((10, Duration::from_millis(1500)));
    let bucket = versioned_bucket().await;
    let app = TestApp::spawn_with(
        pool,
        Options {
            bucket: Some(bucket.clone()),
            endpoint: Some(proxy.url.clone()),
            ..Default::default()
        },
    )
    .await;
    let file = data(2 * PART + 5, 9);
    let c = app
        .create_ok(json!({"filename": "c.bin", "size": file.len(), "partSize": PART}))
        .await;
    app.put_parts(&c["parts"], &file, PART).await;
    let t = token(&c);
    let started = std::time::Instant::now();
    let results = futures_join(&app, &t, 10).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the calls waited on the held completion"
    );
    let first = &results[0];
    for (s, v) in &results {
        assert_eq!(*s, 200, "{v}");
        assert_eq!(v, &first.1, "every caller sees the same result");
    }
    assert_eq!(first.1["status"], "completed");
    assert_eq!(
        proxy.count(Call::CompleteMultipartUpload),
        1,
        "ten callers overlapped, one CompleteMultipartUpload was sent"
    );
    let key = c["key"].as_str().unwrap();
    assert_eq!(
        app.versions(key).await,
        1,
        "exactly one CompleteMultipartUpload reached the provider"
    );
    let (bytes, _, _) = app.read_object(key).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

async fn futures_join(app: &TestApp, t: &str, n: usize) -> Vec<(u16, Value)> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (http, url) = (
            app.http.clone(),
            app.url(&format!("/v1/uploads/{t}/complete")),
        );
        set.spawn(async move {
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

/// Waits until the proxy has seen a call of a kind.
async fn seen(proxy: &FaultProxy, call: Call) {
    for _ in 0..200 {
        if proxy.count(call) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the proxy never saw {call:?}");
}

#[sqlx::test]
async fn complete_racing_delete_has_one_winner(pool: PgPool) {
    // Each order is forced: the provider holds the first call while the other
    // arrives, and the test checks that the second answered while the first
    // was still in flight.
    for complete_first in [true, false] {
        let proxy = FaultProxy::start().await;
        let hold = Duration::from_millis(1000);
        if complete_first {
            *proxy.faults.hold_complete.lock().unwrap() = Some((1, hold));
        } else {
            *proxy.faults.hold_abort.lock().unwrap() = Some(hold);
        }
        let app = TestApp::spawn_with(
            pool.clone(),
            Options {
                endpoint: Some(proxy.url.clone()),
                ..Default::default()
            },
        )
        .await;
        let c = app
            .create_ok(json!({"filename": "r.bin", "size": 10}))
            .await;
        app.put_part(&c["parts"][0], &data(10, 7)).await;
        let t = token(&c);
        let (first_call, first_method, first_path) = if complete_first {
            (
                Call::CompleteMultipartUpload,
                reqwest::Method::POST,
                format!("/v1/uploads/{t}/complete"),
            )
        } else {
            (
                Call::AbortMultipartUpload,
                reqwest::Method::DELETE,
                format!("/v1/uploads/{t}"),
            )
        };
        let first = {
            let r = app.req(first_method, &first_path);
            tokio::spawn(async move {
                let res = r.send().await.unwrap();
                (res.status().as_u16(), std::time::Instant::now())
            })
        };
        seen(&proxy, first_call).await;
        let (second, second_done) = if complete_first {
            let (s, v) = app.abort(&t).await;
            assert_eq!(error_code(&v), "UPLOAD_NOT_ACTIVE", "{v}");
            (s, std::time::Instant::now())
        } else {
            let (s, v) = app.complete(&t, None).await;
            assert_eq!(error_code(&v), "UPLOAD_NOT_ACTIVE", "{v}");
            (s, std::time::Instant::now())
        };
        let (first_status, first_done) = first.await.unwrap();
        assert!(second_done < first_done, "the two overlapped");
        assert_eq!(second, 409);
        let (st, final_state) = app.get_status(&t).await;
        assert_eq!(st, 200);
        if complete_first {
            assert_eq!(first_status, 200);
            assert_eq!(final_state["status"], "completed");
        } else {
            assert_eq!(first_status, 204);
            assert_eq!(final_state["status"], "aborted");
            assert!(app.in_progress_uploads().await.is_empty());
        }
    }
}

#[sqlx::test]
async fn an_unreachable_database_answers_503(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    // The same app, pointed at a database that is not there.
    let dead = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .unwrap();
    let broken = TestApp::spawn(dead).await;
    let (s, v) = broken.get_status(&token(&c)).await;
    assert_eq!((s, error_code(&v)), (503, "UNAVAILABLE"));
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1"),
        "no internals in messages"
    );
    let res = broken
        .create(json!({"filename": "a.bin", "size": 10}))
        .await;
    assert_eq!(res.status(), 503);
    let v: Value = res.json().await.unwrap();
    assert_eq!(error_code(&v), "UNAVAILABLE");
    assert!(
        broken.in_progress_uploads().await.is_empty(),
        "the provider upload was aborted: no orphan"
    );
}

#[sqlx::test]
async fn a_failed_insert_leaves_no_orphan_at_the_provider(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    sqlx::query("alter table uploads rename to uploads_gone")
        .execute(&pool)
        .await
        .unwrap();
    let res = app.create(json!({"filename": "a.bin", "size": 10})).await;
    assert_eq!(res.status(), 500);
    let v: Value = res.json().await.unwrap();
    assert_eq!(error_code(&v), "INTERNAL");
    assert!(
        !v["error"]["message"].as_str().unwrap().contains("uploads"),
        "no SQL in messages: {v}"
    );
    assert!(
        app.in_progress_uploads().await.is_empty(),
        "the provider upload was aborted"
    );
}

#[sqlx::test]
async fn storage_gone_behind_our_back_is_expired_not_502(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    app.s3
        .abort_multipart_upload()
        .bucket(&app.bucket)
        .key(c["key"].as_str().unwrap())
        .upload_id(c["uploadId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let t = token(&c);
    let (s, v) = app.resume(&t).await;
    assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"));
    assert!(v["error"]["message"].as_str().unwrap().contains("storage"));
    for (name, s, v) in all_routes(&app, &t).await {
        assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"), "{name}");
    }
}
