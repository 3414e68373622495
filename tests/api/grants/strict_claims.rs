//! A tenant-signed grant keeps the rules a minted one does: its life is at most
//! 24 h however `iat` is set (never in the future, no overflow), its subject,
//! id and upload limits pass the checks of `POST /v1/grants`, and whatever
//! breaks them is a 401, never a 500 or 502.

use super::tenant_signed::register;
use super::{claims, now, sign};
use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

const ISS: &str = "https://strict.example";

async fn setup(pool: &PgPool) -> (TestApp, EncodingKey) {
    let app = TestApp::spawn(pool.clone()).await;
    let secret = [7u8; 32];
    let jwks = std::env::temp_dir().join(format!("strict-{}.json", uuid::Uuid::new_v4()));
    use base64::Engine as _;
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    std::fs::write(
        &jwks,
        json!({"keys": [{"kty": "oct", "k": k, "kid": "s1", "alg": "HS256"}]}).to_string(),
    )
    .unwrap();
    register(pool, "tenant-a", ISS, jwks.to_str().unwrap()).await;
    (app, EncodingKey::from_secret(&secret))
}

async fn create(app: &TestApp, key: &EncodingKey, c: &Value) -> (u16, Value) {
    let g = sign(Algorithm::HS256, Some("s1"), c, key);
    app.call_as(
        &g,
        Method::POST,
        "/v1/uploads",
        Some(json!({"filename": "s.bin", "size": 10})),
    )
    .await
}

#[sqlx::test]
async fn a_grants_life_is_capped_however_iat_is_set(pool: PgPool) {
    let (app, key) = setup(&pool).await;
    let ok = claims(ISS, "u1", None);
    assert_eq!(create(&app, &key, &ok).await.0, 201);
    let ten_years = 10 * 365 * 86400;
    for (iat, exp) in [
        (now() + ten_years, now() + ten_years + 86400),
        (now() + 120, now() + 600),
        (i64::MIN, i64::MAX),
        (now() - 10, i64::MAX),
    ] {
        let mut c = claims(ISS, "u1", None);
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        let (s, v) = create(&app, &key, &c).await;
        assert_eq!(
            (s, error_code(&v)),
            (401, "UNAUTHORIZED"),
            "iat {iat}, exp {exp}: {v}"
        );
    }
}

#[sqlx::test]
async fn tenant_signed_claims_keep_the_rules_of_minting(pool: PgPool) {
    let (app, key) = setup(&pool).await;
    let mut cases: Vec<Value> = Vec::new();
    for sub in ["a\u{0}b", "tab\there", "line\nbreak", ""] {
        cases.push(claims(ISS, sub, None));
    }
    cases.push(claims(ISS, &"x".repeat(129), None));
    for jti in ["a\u{0}b", ""] {
        let mut c = claims(ISS, "u1", None);
        c["jti"] = json!(jti);
        cases.push(c);
    }
    for upload in [
        json!({"metadata": {"Bad Key": "v"}}),
        json!({"metadata": {"k": "v".repeat(5000)}}),
        json!({"contentTypes": ["not a type"]}),
        json!({"contentTypes": []}),
        json!({"maxUploadSize": 0}),
        json!({"maxUploads": 0}),
    ] {
        let mut c = claims(ISS, "u1", None);
        c["upload"] = upload;
        cases.push(c);
    }
    for c in cases {
        let (s, v) = create(&app, &key, &c).await;
        assert_eq!((s, error_code(&v)), (401, "UNAUTHORIZED"), "{c}: {v}");
    }
    // Within the rules, forced metadata is applied as for a minted grant.
    let mut c = claims(ISS, "u1", None);
    c["upload"] = json!({"metadata": {"user-id": "42"}});
    let (s, v) = create(&app, &key, &c).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["metadata"]["user-id"], "42", "{v}");
}
