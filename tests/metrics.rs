//! Prometheus metrics move with real work, are labelled by route template, and
//! never carry a token. One test in its own process: the recorder is global.

// A binary of its own: the metrics recorder is global to a process, so the
// counts asserted here must not see the other tests' work. The helpers are the
// suite's (not all of them are used here).
#[allow(dead_code)]
#[path = "api/common/mod.rs"]
mod common;

use chrono::Utc;
use common::*;
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// The value of a sample `name{labels}` (labels in any order), 0 if absent.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (n, lab) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let got: BTreeMap<&str, &str> = lab
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                (k, v.trim_matches('"'))
            })
            .collect();
        if got == want {
            return value.parse().unwrap();
        }
    }
    0.0
}

#[sqlx::test]
async fn metrics_move_after_real_work(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let metrics = || async {
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };

    // A webhook endpoint that fails once, then takes everything.
    let rx = common::receiver::Receiver::start().await;
    rx.script([common::receiver::Answer::Status(500)]);
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            "/v1/webhooks",
            Some(json!({"url": rx.url, "eventTypes": ["upload.completed"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let file = data(5 * MIB + 10, 5);
    let c = app
        .create_ok(json!({"filename": "m.bin", "size": file.len(), "partSize": 5 * MIB}))
        .await;
    app.put_parts(&c["parts"], &file, 5 * MIB).await;
    assert_eq!(app.complete(&token(&c), None).await.0, 200);
    let gone = app.create_ok(json!({"filename": "a", "size": 1})).await;
    assert_eq!(app.abort(&token(&gone)).await.0, 204);
    let swept = app.create_ok(json!({"filename": "s", "size": 1})).await;
    app.expire_now(&swept).await;
    app.sweeper(10)
        .await
        .run(Utc::now, &Default::default())
        .await
        .unwrap();
    let t = token(&c);
    app.http
        .get(app.url(&format!("/no/such/{t}")))
        .send()
        .await
        .unwrap();

    rx.wait_for(2, std::time::Duration::from_secs(20)).await;
    // The worker records the outcome just after the receiver answers.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let m = metrics().await;
    assert_eq!(
        sample(
            &m,
            "upload_broker_webhook_deliveries_total",
            &[("outcome", "retry")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "upload_broker_webhook_deliveries_total",
            &[("outcome", "delivered")]
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "upload_broker_webhook_delivery_lag_seconds_count", &[]),
        1.0
    );
    assert!(
        m.contains("upload_broker_events_oldest_undelivered_seconds"),
        "{m}"
    );
    assert_eq!(
        sample(&m, "upload_broker_uploads_created_total", &[]),
        3.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "upload_broker_uploads_completed_total", &[]),
        1.0
    );
    assert_eq!(sample(&m, "upload_broker_uploads_aborted_total", &[]), 1.0);
    assert_eq!(
        sample(
            &m,
            "upload_broker_uploads_expired_total",
            &[("reason", "sweep")]
        ),
        1.0
    );
    assert_eq!(
        sample(&m, "upload_broker_completed_bytes_total", &[]),
        file.len() as f64
    );
    assert_eq!(sample(&m, "upload_broker_part_urls_signed_total", &[]), 4.0);
    assert_eq!(
        sample(
            &m,
            "upload_broker_sweep_uploads_total",
            &[("outcome", "aborted")]
        ),
        1.0
    );
    assert_eq!(sample(&m, "upload_broker_sweep_runs_total", &[]), 1.0);
    let complete = [
        ("method", "POST"),
        ("route", "/v1/uploads/{token}/complete"),
        ("status", "200"),
    ];
    assert_eq!(
        sample(&m, "upload_broker_http_requests_total", &complete),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "upload_broker_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/v1/uploads"),
                ("status", "201")
            ]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &m,
            "upload_broker_http_requests_total",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "upload_broker_http_request_duration_seconds_count",
            &[
                ("method", "POST"),
                ("route", "/v1/uploads/{token}/complete")
            ]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "upload_broker_storage_requests_total",
            &[("operation", "CompleteMultipartUpload"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "upload_broker_storage_requests_total",
            &[("operation", "CreateMultipartUpload"), ("outcome", "ok")]
        ),
        3.0
    );
    assert!(
        sample(
            &m,
            "upload_broker_storage_request_duration_seconds_count",
            &[("operation", "ListParts")]
        ) >= 1.0
    );
    assert!(sample(&m, "upload_broker_db_pool_max_connections", &[]) >= 1.0);
    assert!(
        m.contains("upload_broker_db_pool_connections{state=\"idle\"}"),
        "{m}"
    );
    assert!(
        !m.contains(&t) && !m.contains(KEY_A),
        "no token or key in metrics"
    );

    // METRICS_LISTEN: /metrics moves to its own port.
    let own = TestApp::spawn_with(
        app.pool.clone(),
        Options {
            metrics_listen: true,
            ..Default::default()
        },
    )
    .await;
    let elsewhere = own.metrics_base.clone().unwrap();
    let res = own
        .http
        .get(format!("{elsewhere}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("upload_broker_http_requests_total"));
    assert_eq!(
        own.http
            .get(own.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}
