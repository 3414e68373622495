//! Upload grants: short-lived JWTs for one end user of a tenant. The broker
//! mints its own (HS256 with the grant key, issuer `upload-broker`); a tenant
//! may sign its own with a key it registered (see [`super::issuers`]). JWS is
//! the `jsonwebtoken` crate's; this module decides which key and algorithm a
//! token must be checked with, and which claims it must carry.

use super::issuers::Issuers;
use crate::domain::access::{check_grant_id, check_subject, Grant, GrantLimits};
use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `iss` of the broker's own grants.
pub const BROKER_ISSUER: &str = "upload-broker";
/// The `aud` every grant must carry.
pub const AUDIENCE: &str = "upload-broker";
/// Clock leeway for `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: u64 = crate::domain::access::GRANT_LEEWAY_SECONDS;
/// Longest life of a grant (`exp − iat`).
pub const MAX_LIFETIME_SECONDS: i64 = 86_400;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default)]
    upload: GrantLimits,
    /// A broker grant minted with a key kept in Postgres: that key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<uuid::Uuid>,
}

/// Only `iss`, read before the signature is checked, to pick the key.
#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

pub struct Grants {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuers: Issuers,
}

fn refused(why: &'static str) -> ApiError {
    ApiError::UnauthorizedBecause(why)
}

impl Grants {
    /// `key`: the broker's grant key (at least 32 bytes), the same on every instance.
    pub fn new(key: &[u8], issuers: Issuers) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            issuers,
        }
    }

    /// Mints a grant for `subject` of `tenant`, valid `ttl_seconds` from now;
    /// `key`: the key kept in Postgres that asks for it, whose revocation
    /// ends the grant too.
    pub fn mint(
        &self,
        tenant: &str,
        subject: &str,
        ttl_seconds: i64,
        limits: GrantLimits,
        key: Option<uuid::Uuid>,
    ) -> (String, DateTime<Utc>) {
        let now = Utc::now().timestamp();
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).expect("the OS has randomness");
        let claims = Claims {
            iss: BROKER_ISSUER.into(),
            sub: subject.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + ttl_seconds,
            nbf: None,
            jti: Some(URL_SAFE_NO_PAD.encode(id)),
            tenant: Some(tenant.into()),
            upload: limits,
            key,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing does not fail");
        let expires = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .unwrap_or_else(Utc::now);
        (token, expires)
    }

    /// The tenant and grant a token stands for, if it is genuine and valid now.
    /// `held`: answered instead of a database query (a client over its limit
    /// of failed authentications); keys already known still verify.
    pub async fn verify(
        &self,
        token: &str,
        held: Option<ApiError>,
    ) -> Result<(String, Grant), ApiError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| refused("not a valid grant"))?;
        let iss = token
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Unverified>(&b).ok())
            .and_then(|u| u.iss)
            .ok_or(refused("not a valid grant"))?;
        // The key, and with it the one algorithm the token may use.
        let (tenant, key, algorithm) = if iss == BROKER_ISSUER {
            (None, self.decoding.clone(), Algorithm::HS256)
        } else {
            let k = self
                .issuers
                .key_for(&iss, header.kid.as_deref(), held)
                .await?
                .ok_or(refused("the grant's issuer or key is not registered"))?;
            (Some(k.tenant), k.key, k.algorithm)
        };
        if header.alg != algorithm {
            return Err(refused("the grant is not signed with its key's algorithm"));
        }
        let mut v = Validation::new(algorithm);
        v.leeway = LEEWAY_SECONDS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_audience(&[AUDIENCE]);
        v.set_issuer(&[iss.as_str()]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => refused("the grant has expired"),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                refused("the grant is not valid yet")
            }
            _ => refused("not a valid grant"),
        })?;
        let c = data.claims;
        let now = Utc::now().timestamp();
        if c.iat > now.saturating_add(LEEWAY_SECONDS as i64) {
            return Err(refused("the grant was issued in the future"));
        }
        if c.exp
            .checked_sub(c.iat)
            .is_none_or(|life| life > MAX_LIFETIME_SECONDS)
        {
            return Err(refused("the grant lives longer than 24 hours"));
        }
        // The rules of POST /v1/grants hold for every grant, whoever signed it.
        if check_subject(&c.sub).is_err() {
            return Err(refused(
                "the grant's subject must be 1 to 128 printable characters",
            ));
        }
        if c.jti.as_deref().is_some_and(|j| check_grant_id(j).is_err()) {
            return Err(refused(
                "the grant's jti must be 1 to 128 printable characters",
            ));
        }
        let limits = c
            .upload
            .checked()
            .map_err(|_| refused("the grant's upload claim breaks the rules of POST /v1/grants"))?;
        if c.key.is_some() && tenant.is_some() {
            return Err(refused("only the broker's own grants name a key"));
        }
        let tenant = match (tenant, c.tenant) {
            // The broker's own: the tenant it was minted for.
            (None, Some(t)) => t,
            (None, None) => return Err(refused("not a valid grant")),
            // A tenant's: the issuer's tenant, and no other.
            (Some(t), Some(claimed)) if claimed != t => {
                return Err(refused("the grant names another tenant than its issuer's"))
            }
            (Some(t), _) => t,
        };
        let id = c.jti.unwrap_or_else(|| {
            // Without a jti, the token itself identifies the grant.
            use sha2::Digest;
            URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(token.as_bytes()))
        });
        Ok((
            tenant,
            Grant {
                subject: c.sub,
                id,
                expires_at: Utc
                    .timestamp_opt(c.exp, 0)
                    .single()
                    .unwrap_or_else(Utc::now),
                limits,
                minted_by: c.key,
            },
        ))
    }
}

/// Whether a bearer credential is a JWT (and not an API key).
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.matches('.').count() == 2
}
