//! Upload grants end to end: minted by the broker or signed by a tenant with a
//! registered key (Ed25519, ES256, RS256, HS256 over a JWKS served by the test),
//! held to their subject on every route and to their limits, and every way a
//! token can be wrong refused.

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use upload_broker::domain::token::TokenKey;

const PART: usize = 5 * MIB;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The broker's grant key in tests (derived from the test token secret).
fn broker_key() -> Vec<u8> {
    TokenKey::new(&[42u8; 32])
        .unwrap()
        .derive("grant-key")
        .to_vec()
}

fn claims(iss: &str, sub: &str, tenant: Option<&str>) -> Value {
    let mut c = json!({"iss": iss, "aud": "upload-broker", "sub": sub, "iat": now(),
        "exp": now() + 600, "jti": uuid::Uuid::new_v4().to_string()});
    if let Some(t) = tenant {
        c["tenant"] = json!(t);
    }
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn own_grant(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(&broker_key()),
    )
}

#[sqlx::test]
async fn a_grant_uploads_resumes_and_completes_with_forced_metadata(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (s, minted) = app
        .call(
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "user-42", "metadata": {"user-id": "42"}, "ttlSeconds": 600})),
        )
        .await;
    assert_eq!(s, 201, "{minted}");
    assert_eq!(minted["subject"], "user-42");
    let expires =
        chrono::DateTime::parse_from_rfc3339(minted["expiresAt"].as_str().unwrap()).unwrap();
    assert!((expires.timestamp() - now() - 600).abs() <= 2);
    let g = minted["grant"].as_str().unwrap().to_string();

    let file = data(PART + 100, 80);
    let (s, c) = app
        .call_as(
            &g,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "g.bin",
            "size": file.len(), "partSize": PART, "metadata": {"user-id": "666", "note": "mine"}})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["subject"], "user-42");
    assert_eq!(
        c["metadata"],
        json!({"user-id": "42", "note": "mine"}),
        "the grant's value wins"
    );
    app.put_part(&c["parts"][0], slice(&file, PART, 1)).await;
    let t = token(&c);
    // A fresh grant of the same subject resumes it.
    let g2 = app.grant(json!({"subject": "user-42"})).await;
    let (s, r) = app
        .call_as(&g2, Method::POST, &format!("/v1/uploads/{t}/resume"), None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["missingParts"], json!([2]));
    app.put_part(&r["parts"][0], slice(&file, PART, 2)).await;
    let (s, done) = app
        .call_as(
            &g2,
            Method::POST,
            &format!("/v1/uploads/{t}/complete"),
            None,
        )
        .await;
    assert_eq!(
        (s, done["status"].as_str()),
        (200, Some("completed")),
        "{done}"
    );
    let (bytes, _, meta) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
    assert_eq!(meta["user-id"], "42", "forced metadata is on the object");
    assert_eq!(meta["note"], "mine");
    // API-key uploads say so.
    let k = app
        .create_ok(json!({"filename": "k.bin", "size": 10}))
        .await;
    assert_eq!(k["subject"], Value::Null);
    assert!(k.as_object().unwrap().contains_key("subject"));
}

#[sqlx::test]
async fn a_grant_sees_only_its_subjects_uploads_on_every_route(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app
        .grant(json!({"subject": "alice", "allowDownload": true}))
        .await;
    let b = app
        .grant(json!({"subject": "bob", "allowDownload": true}))
        .await;
    // Tenant B's grant for a subject of the same name.
    let other_tenant = own_grant(&claims("upload-broker", "alice", Some("tenant-b")));
    let fp = "same-file:10:1700000000000:abc";
    let (s, c) = app
        .call_as(
            &a,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "a.bin", "size": 10, "fingerprint": fp})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let t = token(&c);
    for intruder in [&b, &other_tenant] {
        for (m, path, body) in [
            (Method::GET, format!("/v1/uploads/{t}"), None),
            (Method::POST, format!("/v1/uploads/{t}/resume"), None),
            (
                Method::POST,
                format!("/v1/uploads/{t}/parts"),
                Some(json!({"partNumbers": [1]})),
            ),
            (Method::POST, format!("/v1/uploads/{t}/complete"), None),
            (Method::POST, format!("/v1/uploads/{t}/download"), None),
            (Method::DELETE, format!("/v1/uploads/{t}"), None),
        ] {
            let (s, v) = app.call_as(intruder, m.clone(), &path, body).await;
            assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{m} {path}");
        }
        let (s, v) = app
            .call_as(
                intruder,
                Method::GET,
                &format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A")),
                None,
            )
            .await;
        assert_eq!(
            (s, &v["uploads"]),
            (200, &json!([])),
            "no one else's uploads by fingerprint"
        );
    }
    let (s, v) = app
        .call_as(
            &a,
            Method::GET,
            &format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["uploads"][0]["resumeToken"], c["resumeToken"]);
    // The tenant's API key sees it (and an upload made with the API key is not
    // the grant's, though it is the same tenant's).
    assert_eq!(app.get_status(&t).await.0, 200);
    let k = app
        .create_ok(json!({"filename": "k.bin", "size": 10}))
        .await;
    let (s, _) = app
        .call_as(&a, Method::GET, &format!("/v1/uploads/{}", token(&k)), None)
        .await;
    assert_eq!(s, 404);
    app.put_part(&c["parts"][0], &data(10, 1)).await;
    let (s, v) = app
        .call_as(&a, Method::POST, &format!("/v1/uploads/{t}/complete"), None)
        .await;
    assert_eq!(s, 200, "{v}");

    // The Companion-compatible routes, likewise.
    let (s, v) = app
        .call_as(
            &a,
            Method::POST,
            "/s3/multipart",
            Some(json!({"filename": "u.bin", "type": "application/octet-stream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (id, key) = (v["uploadId"].as_str().unwrap(), v["key"].as_str().unwrap());
    let enc = |s: &str| {
        s.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let q = format!("?key={}", enc(key));
    for intruder in [&b, &other_tenant] {
        for (m, path) in [
            (Method::GET, format!("/s3/multipart/{}/1{q}", enc(id))),
            (Method::GET, format!("/s3/multipart/{}{q}", enc(id))),
            (Method::DELETE, format!("/s3/multipart/{}{q}", enc(id))),
        ] {
            let (s, v) = app.call_as(intruder, m.clone(), &path, None).await;
            assert_eq!((s, error_code(&v)), (404, "NOT_FOUND"), "{m} {path}");
        }
    }
    let (s, v) = app
        .call_as(
            &a,
            Method::GET,
            &format!("/s3/multipart/{}/1{q}", enc(id)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = app
        .call_as(
            KEY_A,
            Method::DELETE,
            &format!("/s3/multipart/{}{q}", enc(id)),
            None,
        )
        .await;
    assert_eq!(s, 200, "the tenant's API key may act on it");
}

#[sqlx::test]
async fn a_grant_is_held_to_its_limits(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let g = app
        .grant(
            json!({"subject": "u", "maxUploadSize": 1000, "maxUploads": 2,
            "contentTypes": ["image/*", "video/mp4"]}),
        )
        .await;
    let create = |body: Value| app.call_as(&g, Method::POST, "/v1/uploads", Some(body));
    let (s, v) = create(json!({"filename": "a", "size": 1001, "contentType": "image/png"})).await;
    assert_eq!((s, error_code(&v)), (413, "TOO_LARGE"), "{v}");
    let (s, v) = create(json!({"filename": "a", "size": 10})).await;
    assert_eq!(
        (s, error_code(&v)),
        (403, "FORBIDDEN"),
        "the default type is not allowed: {v}"
    );
    let (s, v) = create(json!({"filename": "a", "size": 10, "contentType": "text/plain"})).await;
    assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{v}");
    let (s, c) = create(json!({"filename": "a", "size": 10, "contentType": "image/png"})).await;
    assert_eq!(s, 201, "{c}");
    let (s, _) = create(json!({"filename": "b", "size": 1000, "contentType": "video/mp4"})).await;
    assert_eq!(s, 201);
    let (s, v) = create(json!({"filename": "c", "size": 10, "contentType": "video/mp4"})).await;
    assert_eq!((s, error_code(&v)), (429, "QUOTA_EXCEEDED"), "{v}");
    assert_eq!(
        (
            &v["error"]["quota"],
            &v["error"]["limit"],
            &v["error"]["current"]
        ),
        (&json!("grantUploads"), &json!(2), &json!(2))
    );
    assert_eq!(
        app.in_progress_uploads().await.len(),
        2,
        "refused creates leave nothing at the provider"
    );
    // No downloads without allowDownload; no minting with a grant.
    app.put_part(&c["parts"][0], &data(10, 2)).await;
    let t = token(&c);
    assert_eq!(
        app.call_as(&g, Method::POST, &format!("/v1/uploads/{t}/complete"), None)
            .await
            .0,
        200
    );
    let (s, v) = app
        .call_as(&g, Method::POST, &format!("/v1/uploads/{t}/download"), None)
        .await;
    assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{v}");
    let (s, v) = app
        .call_as(
            &g,
            Method::POST,
            "/v1/grants",
            Some(json!({"subject": "v"})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (403, "FORBIDDEN"), "{v}");
    // Bad mint requests.
    for body in [
        json!({}),
        json!({"subject": ""}),
        json!({"subject": "x".repeat(129)}),
        json!({"subject": "u", "ttlSeconds": 86401}),
        json!({"subject": "u", "ttlSeconds": 0}),
        json!({"subject": "u", "contentTypes": ["not a type"]}),
        json!({"subject": "u", "metadata": {"Bad Key": "x"}}),
    ] {
        let (s, v) = app
            .call(Method::POST, "/v1/grants", Some(body.clone()))
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}: {v}");
    }
}

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

// ------------------------------------------------------------------ tenant-signed grants

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
    let rsa_pem = include_bytes!("fixtures/grant-rsa-test-key.pem");
    let mut rsa_jwk: Value =
        serde_json::from_str(include_str!("fixtures/grant-rsa-test-key.jwk.json")).unwrap();
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

async fn register(pool: &PgPool, tenant: &str, issuer: &str, source: &str) {
    let http = reqwest::Client::new();
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
    let rsa_pub = include_bytes!("fixtures/grant-rsa-test-key.jwk.json");
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

#[sqlx::test]
async fn a_grants_size_limit_holds_on_uploads_without_a_declared_size(pool: PgPool) {
    // The Companion-compatible routes declare no size: the grant's limit is
    // applied to the parts at completion.
    let app = TestApp::spawn(pool).await;
    let g = app
        .grant(json!({"subject": "u", "maxUploadSize": 8 * MIB}))
        .await;
    let (s, v) = app
        .call_as(
            &g,
            Method::POST,
            "/s3/multipart",
            Some(json!({"filename": "big.bin", "type": "application/octet-stream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (id, key) = (
        v["uploadId"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    );
    let enc = |s: &str| {
        s.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    };
    let mut parts = Vec::new();
    for n in 1..=2u32 {
        let (s, v) = app
            .call_as(
                &g,
                Method::GET,
                &format!("/s3/multipart/{}/{n}?key={}", enc(&id), enc(&key)),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let res = app
            .http
            .put(v["url"].as_str().unwrap())
            .body(data(PART, n as u64))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        parts.push(json!({"PartNumber": n, "ETag": res.headers()["etag"].to_str().unwrap()}));
    }
    let path = format!("/s3/multipart/{}/complete?key={}", enc(&id), enc(&key));
    // Refused for the grant and for the tenant's API key alike: the limit is the upload's.
    for cred in [g.as_str(), KEY_A] {
        let (s, v) = app
            .call_as(cred, Method::POST, &path, Some(json!({"parts": parts})))
            .await;
        assert_eq!((s, error_code(&v)), (413, "TOO_LARGE"), "{v}");
    }
    let (s, _) = app
        .call_as(
            &g,
            Method::DELETE,
            &format!("/s3/multipart/{}?key={}", enc(&id), enc(&key)),
            None,
        )
        .await;
    assert_eq!(s, 200, "still abortable");
}

#[sqlx::test]
async fn listing_active_uploads_shows_each_credential_its_own_page_by_page(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let g = app.grant(json!({"subject": "lister"})).await;
    let mut keys = Vec::new();
    for i in 0..5 {
        let c = app
            .create_ok(json!({"filename": format!("{i}.bin"), "size": 3}))
            .await;
        keys.push(c["id"].as_str().unwrap().to_string());
    }
    let (s, mine) = app
        .call_as(
            &g,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "g.bin", "size": 3})),
        )
        .await;
    assert_eq!(s, 201);
    // Not listed: another tenant's, a completed one, an aborted one, an expired one.
    let (s, _) = app
        .call_as(
            KEY_B,
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "b.bin", "size": 3})),
        )
        .await;
    assert_eq!(s, 201);
    let done = app
        .create_ok(json!({"filename": "done.bin", "size": 3}))
        .await;
    app.put_part(&done["parts"][0], b"abc").await;
    assert_eq!(app.complete(&token(&done), None).await.0, 200);
    let gone = app
        .create_ok(json!({"filename": "gone.bin", "size": 3}))
        .await;
    assert_eq!(app.abort(&token(&gone)).await.0, 204);
    let old = app
        .create_ok(json!({"filename": "old.bin", "size": 3}))
        .await;
    app.expire_now(&old).await;

    // The API key: all six of the tenant's active uploads, newest first, two a page.
    let mut seen = Vec::new();
    let mut path = "/v1/uploads?status=active&limit=2".to_string();
    loop {
        let (s, v) = app.call(Method::GET, &path, None).await;
        assert_eq!(s, 200, "{v}");
        for u in v["uploads"].as_array().unwrap() {
            assert!(u["resumeToken"].as_str().is_some());
            assert_eq!(u["status"], "active");
            seen.push(u["id"].as_str().unwrap().to_string());
        }
        match v["next"].as_str() {
            Some(n) => path = format!("/v1/uploads?status=active&limit=2&before={n}"),
            None => break,
        }
    }
    let mut want: Vec<String> = keys.clone();
    want.push(mine["id"].as_str().unwrap().to_string());
    want.reverse();
    assert_eq!(seen, want);

    // The grant: only its subject's.
    let (s, v) = app
        .call_as(&g, Method::GET, "/v1/uploads?status=active", None)
        .await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = v["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()]);
    assert!(v["next"].is_null());

    // Bad listings are 400s; the fingerprint lookup is unchanged.
    for bad in [
        "/v1/uploads",
        "/v1/uploads?status=completed",
        "/v1/uploads?status=active&limit=0",
        "/v1/uploads?status=active&before=zzz",
    ] {
        let (s, v) = app.call(Method::GET, bad, None).await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{bad}");
    }
}
