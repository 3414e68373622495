//! Failed authentications cost little: past AUTH_FAILURE_LIMIT per client
//! address, credentials that would need a database query (an unknown `ubk_`
//! key, an unknown issuer) answer 429 `RATE_LIMITED` with `Retry-After`, while
//! what the instance knows in memory still works, and cheap failures still
//! answer 401.

use crate::common::*;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

fn random_key() -> String {
    format!("ubk_{}", uuid::Uuid::new_v4().simple())
}

/// A grant-shaped token from an issuer nobody registered.
fn unknown_issuer_token() -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": format!("https://{}.example", uuid::Uuid::new_v4()),
        "aud": "upload-broker", "sub": "u", "iat": now, "exp": now + 60});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(b"x")).unwrap()
}

async fn status_with(app: &TestApp, credential: &str) -> (u16, Option<String>) {
    let res = app
        .http
        .get(app.url("/v1/uploads?fingerprint=x"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (res.status().as_u16(), retry)
}

#[sqlx::test]
async fn unknown_credentials_past_the_limit_answer_429_without_a_lookup(pool: PgPool) {
    let app = TestApp::spawn_with(
        pool,
        Options {
            auth_failure_limit: 5,
            ..Default::default()
        },
    )
    .await;
    let grant = app.grant(json!({"subject": "u1"})).await;
    let mut statuses = Vec::new();
    for n in 0..40 {
        let credential = if n % 2 == 0 {
            random_key()
        } else {
            unknown_issuer_token()
        };
        let (s, retry) = status_with(&app, &credential).await;
        if s == 429 {
            let secs: u64 = retry.expect("a Retry-After header").parse().unwrap();
            assert!(secs >= 1, "{secs}");
        }
        statuses.push(s);
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(refused + limited, 40, "{statuses:?}");
    assert!(
        (10..=13).contains(&refused),
        "a burst of 10 failures, then 429: {statuses:?}"
    );
    // Held, the address still gets in with what the instance knows without a
    // query, and a bad token that costs nothing still answers 401.
    assert_eq!(status_with(&app, KEY_A).await.0, 200);
    assert_eq!(status_with(&app, &grant).await.0, 200);
    assert_eq!(status_with(&app, "not-a-key").await.0, 401);
    let (s, v) = app
        .call_as(
            &random_key(),
            Method::GET,
            "/v1/uploads?fingerprint=x",
            None,
        )
        .await;
    assert_eq!((s, error_code(&v)), (429, "RATE_LIMITED"), "{v}");
    // Once the bucket has room again, unknown keys are looked up (401).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status_with(&app, &random_key()).await.0, 401);
}
