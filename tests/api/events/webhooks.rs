//! The webhook API: endpoints belong to their tenant and no grant may touch
//! them; bad registrations are refused; a delivery given up on is listed as
//! failed and can be sent again.

use super::{add_webhook, upload, WAIT};
use crate::common::receiver::{verify_with_reference_library, Answer, Receiver};
use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

#[sqlx::test]
async fn webhooks_belong_to_their_tenant_and_grants_cannot_touch_them(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let rx = Receiver::start().await;
    let (id, _) = add_webhook(&app, &rx.url, Some(&["upload.completed"])).await;
    let (s, v) = app.call(Method::GET, "/v1/webhooks", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 1);
    assert_eq!(v["webhooks"][0]["id"], id.as_str());
    assert_eq!(v["webhooks"][0]["eventTypes"], json!(["upload.completed"]));
    assert!(
        v["webhooks"][0].get("secret").is_none(),
        "the secret is shown once"
    );

    // Another tenant sees none of it.
    let (s, v) = app.call_as(KEY_B, Method::GET, "/v1/webhooks", None).await;
    assert_eq!((s, v["webhooks"].as_array().unwrap().len()), (200, 0));
    for (m, path) in [
        (Method::DELETE, format!("/v1/webhooks/{id}")),
        (Method::GET, format!("/v1/webhooks/{id}/deliveries")),
        (
            Method::POST,
            format!(
                "/v1/webhooks/{id}/deliveries/evt_{}/retry",
                uuid::Uuid::new_v4().simple()
            ),
        ),
    ] {
        let (s, v) = app.call_as(KEY_B, m, &path, None).await;
        assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{path}");
    }

    // A grant may do none of it.
    let grant = app.grant(json!({"subject": "u1"})).await;
    for (m, path, body) in [
        (
            Method::POST,
            "/v1/webhooks".to_string(),
            Some(json!({"url": rx.url})),
        ),
        (Method::GET, "/v1/webhooks".to_string(), None),
        (Method::DELETE, format!("/v1/webhooks/{id}"), None),
        (Method::GET, format!("/v1/webhooks/{id}/deliveries"), None),
        (Method::GET, "/v1/events".to_string(), None),
    ] {
        let (s, v) = app.call_as(&grant, m, &path, body).await;
        assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{path}");
    }

    // Bad input is a 400 with the field named.
    for body in [
        json!({"url": "ftp://x.example/h"}),
        json!({"url": "https://x.example/h", "eventTypes": ["upload.deleted"]}),
        json!({"url": "https://x.example/h", "eventTypes": []}),
        json!({}),
    ] {
        let (s, v) = app
            .call(Method::POST, "/v1/webhooks", Some(body.clone()))
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}");
    }
    let (s, _) = app.call(Method::DELETE, "/v1/webhooks/wh_nope", None).await;
    assert_eq!(s, 404);

    // Removed, it gets nothing more.
    let (s, _) = app
        .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .call(Method::DELETE, &format!("/v1/webhooks/{id}"), None)
        .await;
    assert_eq!(s, 404);
    upload(&app, b"x").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.received().is_empty());
}

#[sqlx::test]
async fn a_delivery_given_up_on_is_listed_as_failed_and_can_be_sent_again(pool: PgPool) {
    let mut opts = Options::default();
    opts.deliveries.retry.give_up_after = Duration::from_secs(1);
    let app = TestApp::spawn_with(pool, opts).await;
    let rx = Receiver::start().await;
    *rx.otherwise.lock().unwrap() = Answer::Status(500);
    let (id, secret) = add_webhook(&app, &rx.url, Some(&["upload.created"])).await;
    let c = app.create_ok(json!({"filename": "f.bin", "size": 1})).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let failed = loop {
        let (s, v) = app
            .call(
                Method::GET,
                &format!("/v1/webhooks/{id}/deliveries?status=failed"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        if let Some(d) = v["deliveries"].as_array().unwrap().first() {
            break d.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never marked failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["lastStatus"], 500);
    assert_eq!(failed["upload"], c["id"]);
    assert!(failed["attempts"].as_i64().unwrap() >= 1);
    assert!(failed["nextAttemptAt"].is_null());
    let tries = rx.received().len();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rx.received().len(),
        tries,
        "a failed delivery is not tried again by itself"
    );

    // The receiver is fixed; the operator sends it again.
    *rx.otherwise.lock().unwrap() = Answer::Status(204);
    let event = failed["eventId"].as_str().unwrap();
    let (s, v) = app
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/{event}/retry"),
            None,
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let got = rx.wait_for(tries + 1, WAIT).await;
    assert_eq!(got.last().unwrap().header("webhook-id"), event);
    assert_eq!(
        verify_with_reference_library(&secret, &got[tries..]),
        [event]
    );
    let (_, v) = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?status=delivered"),
            None,
        )
        .await;
    assert_eq!(v["deliveries"][0]["eventId"], event);
    let (s, v) = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?status=lost"),
            None,
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"));
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/evt_nope/retry"),
            None,
        )
        .await;
    assert_eq!(s, 404);
}
