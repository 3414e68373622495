//! Every way a token can be wrong (expired, early, mis-signed, wrong audience,
//! unknown issuer, `alg: none`, tampered, ...) is a 401.

use super::{claims, now, own_grant, sign};
use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

#[sqlx::test]
async fn every_bad_token_is_refused_with_401(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let ok = claims("upload-broker", "u", Some("tenant-a"));
    assert_eq!(
        app.call_as(
            &own_grant(&ok),
            Method::GET,
            "/v1/uploads?fingerprint=x",
            None
        )
        .await
        .0,
        200,
        "the baseline works"
    );
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut c = ok.clone();
    c["exp"] = json!(now() - 31);
    c["iat"] = json!(now() - 600);
    cases.push(("expired 1 s past the leeway", own_grant(&c)));
    let mut c = ok.clone();
    c["nbf"] = json!(now() + 60);
    cases.push(("not valid yet", own_grant(&c)));
    cases.push((
        "signed with another key",
        sign(
            Algorithm::HS256,
            None,
            &ok,
            &EncodingKey::from_secret(&[7u8; 32]),
        ),
    ));
    let mut c = ok.clone();
    c["aud"] = json!("someone-else");
    cases.push(("wrong audience", own_grant(&c)));
    let mut c = ok.clone();
    c["exp"] = json!(now() + 86_400 + 60);
    cases.push(("exp more than 24 h after iat", own_grant(&c)));
    let mut c = ok.clone();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", own_grant(&c)));
    let mut c = ok.clone();
    c.as_object_mut().unwrap().remove("tenant");
    cases.push(("the broker's own without a tenant", own_grant(&c)));
    cases.push((
        "unknown issuer",
        own_grant(&claims("https://nobody.example", "u", Some("tenant-a"))),
    ));
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&ok)
        ),
    ));
    cases.push(("garbage", "eyJhbGciOi.garbage.x".to_string()));
    let token = own_grant(&ok);
    let mut tampered = token.clone();
    tampered.insert(token.find('.').unwrap() + 5, 'x');
    cases.push(("tampered", tampered));
    for (what, g) in cases {
        let (s, v) = app
            .call_as(&g, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await;
        assert_eq!((s, error_code(&v)), (401, "UNAUTHORIZED"), "{what}: {v}");
        if what.starts_with("expired") {
            assert!(
                v["error"]["message"].as_str().unwrap().contains("expired"),
                "{v}"
            );
        }
    }
    // An API key that does not exist, and a key-shaped one.
    for k in ["nope", "ubk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        assert_eq!(
            app.call_as(k, Method::GET, "/v1/uploads?fingerprint=x", None)
                .await
                .0,
            401
        );
    }
}
