//! Upload grants end to end: minted by the broker or signed by a tenant with a
//! registered key (Ed25519, ES256, RS256, HS256 over a JWKS served by the test),
//! held to their subject on every route and to their limits, and every way a
//! token can be wrong refused.
//!
//! The claims and signing helpers the parts share are here.

mod bad_tokens;
mod limits;
mod minted;
mod scope;
mod strict_claims;
mod tenant_signed;

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
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
