//! Grants a tenant signs with a key it registered: every algorithm over a JWKS
//! served by the test, algorithm confusion and cross-tenant claims refused,
//! and key rotation without a restart.

use super::{claims, sign};
use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::{Arc, Mutex};

/// A JWKS served over HTTP by the test, replaceable (key rotation).
async fn serve_jwks(keys: Arc<Mutex<Value>>) -> String {
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let keys = keys.clone();
            async move { axum::Json(keys.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn b64u(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// (signing key, public JWK) for each algorithm.
fn keypairs() -> Vec<(Algorithm, &'static str, EncodingKey, Value)> {
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed_pub = Ed25519KeyPair::from_pkcs8(ed.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec_pub = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng)
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let rsa_pem = include_bytes!("../fixtures/grant-rsa-test-key.pem");
    let mut rsa_jwk: Value =
        serde_json::from_str(include_str!("../fixtures/grant-rsa-test-key.jwk.json")).unwrap();
    rsa_jwk["kid"] = json!("rsa-1");
    let secret = [9u8; 32];
    vec![
        (
            Algorithm::EdDSA,
            "ed-1",
            EncodingKey::from_ed_der(ed.as_ref()),
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(&ed_pub), "kid": "ed-1"}),
        ),
        (
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_der(ec.as_ref()),
            json!({"kty": "EC", "crv": "P-256", "x": b64u(&ec_pub[1..33]), "y": b64u(&ec_pub[33..]), "kid": "ec-1"}),
        ),
        (
            Algorithm::RS256,
            "rsa-1",
            EncodingKey::from_rsa_pem(rsa_pem).unwrap(),
            rsa_jwk,
        ),
        (
            Algorithm::HS256,
            "oct-1",
            EncodingKey::from_secret(&secret),
            json!({"kty": "oct", "k": b64u(&secret), "kid": "oct-1", "alg": "HS256"}),
        ),
    ]
}

pub(super) async fn register(pool: &PgPool, tenant: &str, issuer: &str, source: &str) {
    let http = upload_broker::outbound::Outbound::new(
        upload_broker::domain::egress::EgressAllow::parse("127.0.0.0/8,::1/128").unwrap(),
        std::time::Duration::from_secs(5),
    );
    let jwks = upload_broker::auth::issuers::load_jwks(&http, source)
        .await
        .unwrap();
    assert!(upload_broker::db::insert_issuer(
        pool,
        uuid::Uuid::new_v4(),
        tenant,
        issuer,
        source,
        &jwks
    )
    .await
    .unwrap());
}

#[sqlx::test]
async fn tenant_signed_grants_with_every_algorithm_and_key_rotation(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let pairs = keypairs();
    let jwks = Arc::new(Mutex::new(
        json!({"keys": pairs.iter().map(|p| p.3.clone()).collect::<Vec<_>>()}),
    ));
    let url = serve_jwks(jwks.clone()).await;
    register(&pool, "tenant-a", "https://app.example", &url).await;
    for (alg, kid, key, _) in &pairs {
        let g = sign(
            *alg,
            Some(kid),
            &claims("https://app.example", "carol", None),
            key,
        );
        let (s, c) = app
            .call_as(
                &g,
                Method::POST,
                "/v1/uploads",
                Some(json!({"filename": "t.bin", "size": 10})),
            )
            .await;
        assert_eq!(s, 201, "{alg:?}: {c}");
        assert_eq!(c["subject"], "carol");
        app.put_part(&c["parts"][0], &data(10, 3)).await;
        let (s, v) = app
            .call_as(
                &g,
                Method::POST,
                &format!("/v1/uploads/{}/complete", token(&c)),
                None,
            )
            .await;
        assert_eq!(s, 200, "{alg:?}: {v}");
    }
    // Algorithm confusion: HS256 "signed" with a registered public key's bytes.
    let rsa_pub = include_bytes!("../fixtures/grant-rsa-test-key.jwk.json");
    for (kid, bytes) in [
        ("rsa-1", rsa_pub.to_vec()),
        (
            "ed-1",
            pairs[0].3["x"].as_str().unwrap().as_bytes().to_vec(),
        ),
    ] {
        let g = sign(
            Algorithm::HS256,
            Some(kid),
            &claims("https://app.example", "carol", None),
            &EncodingKey::from_secret(&bytes),
        );
        let (s, _) = app
            .call_as(&g, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await;
        assert_eq!(s, 401, "HS256 with the public key of {kid}");
    }
    // A key used with another algorithm than its own.
    let (_, _, ec_key, _) = &pairs[1];
    let g = sign(
        Algorithm::ES256,
        Some("ed-1"),
        &claims("https://app.example", "carol", None),
        ec_key,
    );
    assert_eq!(
        app.call_as(&g, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await
            .0,
        401
    );
    // A token of this issuer that claims another tenant.
    let g = sign(
        pairs[0].0,
        Some("ed-1"),
        &claims("https://app.example", "carol", Some("tenant-b")),
        &pairs[0].2,
    );
    assert_eq!(
        app.call_as(&g, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await
            .0,
        401
    );
    // Tenant B's issuer's grant cannot see tenant A's uploads.
    register(&pool, "tenant-b", "https://b.example", &url).await;
    let c = app.create_ok(json!({"filename": "x", "size": 10})).await;
    let g = sign(
        pairs[0].0,
        Some("ed-1"),
        &claims("https://b.example", "carol", None),
        &pairs[0].2,
    );
    assert_eq!(
        app.call_as(&g, Method::GET, &format!("/v1/uploads/{}", token(&c)), None)
            .await
            .0,
        404
    );

    // Rotation: a new key, published under a new kid, works without a restart.
    let rng = ring::rand::SystemRandom::new();
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let new = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let new_pub = Ed25519KeyPair::from_pkcs8(new.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    jwks.lock().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(&new_pub), "kid": "ed-2"}));
    let g = sign(
        Algorithm::EdDSA,
        Some("ed-2"),
        &claims("https://app.example", "carol", None),
        &EncodingKey::from_ed_der(new.as_ref()),
    );
    let mut status = 0;
    for _ in 0..30 {
        status = app
            .call_as(&g, Method::GET, "/v1/uploads?fingerprint=x", None)
            .await
            .0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(
        status, 200,
        "the new kid was fetched on first sight (within the refetch interval)"
    );
}
