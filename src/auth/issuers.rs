//! Issuers of tenant-signed grants: the JWKS each tenant registered, cached per
//! instance, reloaded from the database now and then (so `issuers add` and
//! `issuers remove` reach every instance), and refreshed from its source (a
//! file, or an http(s) URL) periodically and when a token names an unknown `kid`.

use crate::db;
use crate::domain::egress::EgressAllow;
use crate::error::ApiError;
use crate::outbound::{describe, Outbound};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an issuer's registration is trusted before it is read again.
const REGISTRY_TTL: Duration = Duration::from_secs(30);
/// How often keys are fetched from their source anyway.
const JWKS_REFRESH: Duration = Duration::from_secs(300);
/// The least time between two fetches of one issuer's keys (an unknown `kid`
/// must not let anyone make the broker fetch on every request).
const MIN_REFETCH: Duration = Duration::from_secs(10);
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;

/// A key a grant may be signed with: its algorithm comes from the key.
#[derive(Clone)]
pub struct IssuerKey {
    pub tenant: String,
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

/// The algorithm a registered key signs with, from its type (and its `alg`,
/// which must agree). `None`: a key type grants may not use.
pub fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => match jwk.common.key_algorithm {
            Some(KeyAlgorithm::RS384) => Algorithm::RS384,
            Some(KeyAlgorithm::RS512) => Algorithm::RS512,
            _ => Algorithm::RS256,
        },
        AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
        _ => return None,
    };
    let declared = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
    match declared {
        Some(a) if a != format!("{by_type:?}") => None,
        _ => Some(by_type),
    }
}

/// Reads a JWKS from a file or a URL, and checks that every key in it is one
/// grants can use. A URL keeps to the outbound policy: `https://` to a public
/// address (or one in `EGRESS_ALLOW`), `http://` only to addresses in
/// `EGRESS_ALLOW`; the answer is read as it comes, up to 1 MiB and within 5 s.
pub async fn load_jwks(outbound: &Outbound, source: &str) -> Result<serde_json::Value, String> {
    let text = if source.starts_with("https://") {
        let request = outbound
            .request(reqwest::Method::GET, source)
            .map_err(|e| format!("the JWKS URL is refused: {e}"))?;
        fetch(request).await?
    } else if source.starts_with("http://") {
        let client = outbound
            .listed_only(source, FETCH_TIMEOUT)
            .await
            .map_err(|e| format!("the JWKS URL is refused: {e}"))?;
        fetch(client.get(source)).await?
    } else {
        tokio::fs::read_to_string(source)
            .await
            .map_err(|e| format!("could not read the JWKS file: {e}"))?
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let set: JwkSet = serde_json::from_value(value.clone())
        .map_err(|e| format!("not a JWKS ({{\"keys\": [...]}}): {e}"))?;
    if set.keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    for k in &set.keys {
        if algorithm_of(k).is_none() {
            return Err(format!(
                "key {:?}: only Ed25519 (OKP), EC P-256, RSA and oct keys are accepted, with an alg that fits the key",
                k.common.key_id.as_deref().unwrap_or("(no kid)")
            ));
        }
    }
    Ok(value)
}

/// GETs a JWKS, reading at most [`MAX_JWKS_BYTES`] of it as it arrives.
async fn fetch(request: reqwest::RequestBuilder) -> Result<String, String> {
    let mut res = request
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("could not fetch the JWKS: {}", describe(&e)))?;
    if !res.status().is_success() {
        return Err(format!(
            "fetching the JWKS answered {}",
            res.status().as_u16()
        ));
    }
    let too_large = || "the JWKS is over 1 MiB".to_string();
    if res
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("could not read the JWKS: {}", describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the JWKS is not UTF-8".to_string())
}

/// A registered issuer's keys, decoded once per fetch.
#[derive(Clone)]
struct Entry {
    tenant: String,
    source: String,
    keys: Vec<(Option<String>, DecodingKey, Algorithm)>,
    read_at: Instant,
    fetched_at: Instant,
}

/// The keys of a JWKS that grants can use, decoded (others are left out).
fn decoded(keys: &JwkSet) -> Vec<(Option<String>, DecodingKey, Algorithm)> {
    keys.keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = algorithm_of(jwk)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((jwk.common.key_id.clone(), key, algorithm))
        })
        .collect()
}

pub struct Issuers {
    db: PgPool,
    http: Outbound,
    /// Known issuers. Never held across I/O: a slow JWKS source must not hold
    /// up the other tenants' grants.
    cache: Mutex<HashMap<String, Entry>>,
    /// Issuers found unregistered, not looked up again for [`MIN_REFETCH`].
    unknown: Mutex<HashMap<String, Instant>>,
}

impl Issuers {
    pub fn new(db: PgPool, egress: EgressAllow) -> Self {
        Self {
            db,
            http: Outbound::new(egress, FETCH_TIMEOUT),
            cache: Mutex::default(),
            unknown: Mutex::default(),
        }
    }

    /// The key `iss` signs with under `kid` (or its only key when the token
    /// names none). `None`: unknown issuer or key.
    /// `held`: answered instead of a database query or a fetch (a client
    /// over its limit of failed authentications).
    pub async fn key_for(
        &self,
        iss: &str,
        kid: Option<&str>,
        held: Option<ApiError>,
    ) -> Result<Option<IssuerKey>, ApiError> {
        if self
            .unknown
            .lock()
            .unwrap()
            .get(iss)
            .is_some_and(|t| t.elapsed() < MIN_REFETCH)
        {
            return Ok(None);
        }
        let cached = self.cache.lock().unwrap().get(iss).cloned();
        let mut entry = match cached {
            Some(e) if e.read_at.elapsed() <= REGISTRY_TTL => e,
            _ if held.is_some() => return Err(held.expect("checked")),
            old => match db::issuer_by_name(&self.db, iss).await? {
                None => {
                    let mut unknown = self.unknown.lock().unwrap();
                    if unknown.len() > 10_000 {
                        unknown.clear();
                    }
                    unknown.insert(iss.to_string(), Instant::now());
                    self.cache.lock().unwrap().remove(iss);
                    return Ok(None);
                }
                Some(r) => {
                    // Keys fetched since registration stay while the source does.
                    let (keys, fetched_at) = match old.filter(|e| e.source == r.jwks_source) {
                        Some(e) => (e.keys, e.fetched_at),
                        None => (
                            serde_json::from_value::<JwkSet>(r.jwks.0)
                                .map(|k| decoded(&k))
                                .unwrap_or_default(),
                            Instant::now(),
                        ),
                    };
                    Entry {
                        tenant: r.tenant,
                        source: r.jwks_source,
                        keys,
                        read_at: Instant::now(),
                        fetched_at,
                    }
                }
            },
        };
        let found = find(&entry.keys, kid).is_some();
        let due = entry.fetched_at.elapsed() > JWKS_REFRESH
            || (!found && entry.fetched_at.elapsed() > MIN_REFETCH && held.is_none());
        if due {
            // Noted before fetching, so that concurrent calls do not all fetch.
            entry.fetched_at = Instant::now();
            self.cache
                .lock()
                .unwrap()
                .insert(iss.to_string(), entry.clone());
            match load_jwks(&self.http, &entry.source).await {
                Ok(v) => match serde_json::from_value::<JwkSet>(v) {
                    Ok(keys) => {
                        tracing::info!(
                            issuer = iss,
                            keys = keys.keys.len(),
                            "refreshed an issuer's keys"
                        );
                        entry.keys = decoded(&keys);
                    }
                    Err(e) => {
                        tracing::warn!(issuer = iss, error = %e, "an issuer's JWKS did not parse")
                    }
                },
                Err(e) => {
                    tracing::warn!(issuer = iss, error = %e, "could not refresh an issuer's keys; keeping the old ones")
                }
            }
        }
        let key = find(&entry.keys, kid).map(|(_, key, algorithm)| IssuerKey {
            tenant: entry.tenant.clone(),
            key: key.clone(),
            algorithm: *algorithm,
        });
        self.cache.lock().unwrap().insert(iss.to_string(), entry);
        Ok(key)
    }
}

fn find<'a>(
    keys: &'a [(Option<String>, DecodingKey, Algorithm)],
    kid: Option<&str>,
) -> Option<&'a (Option<String>, DecodingKey, Algorithm)> {
    match kid {
        Some(kid) => keys.iter().find(|(k, _, _)| k.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
}
