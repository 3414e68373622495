//! API keys: those configured in `BROKER_API_KEYS` (compared in constant time),
//! and those kept in Postgres (only a SHA-256 of each is stored). Lookups in
//! Postgres are cached for a few seconds, so a revocation reaches every instance
//! within [`KEY_CACHE_TTL`] without a query per request.

use crate::config::ApiKey;
use crate::db::{self, DbError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// How long a key lookup (found, revoked or unknown) is trusted.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// Prefix of the keys the broker makes, so that they are recognisable (and
/// found by secret scanners).
pub const KEY_PREFIX: &str = "ubk_";

/// The configured keys, kept as SHA-256 digests.
pub struct EnvKeys {
    keys: Vec<([u8; 32], String)>,
}

impl EnvKeys {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| (digest(k.key.expose()), k.tenant.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The tenant of a presented key. Every key is compared, in constant
    /// time, whatever matches.
    pub fn tenant_of(&self, presented: &str) -> Option<&str> {
        let d = digest(presented);
        let mut found = None;
        for (k, tenant) in &self.keys {
            if bool::from(k.ct_eq(&d)) && found.is_none() {
                found = Some(tenant.as_str());
            }
        }
        found
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new key (256 bits of randomness) and the digest to store.
pub fn generate() -> (String, [u8; 32]) {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).expect("the OS has randomness");
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    let d = digest(&key);
    (key, d)
}

type Found = Option<(Uuid, String)>;

/// Keys kept in Postgres, with a short cache.
pub struct KeyStore {
    db: PgPool,
    cache: Mutex<HashMap<[u8; 32], (Found, Instant)>>,
    /// Whether a key that minted grants is still active, by id.
    active: Mutex<HashMap<Uuid, (bool, Instant)>>,
    touched: Mutex<HashMap<Uuid, Instant>>,
}

impl KeyStore {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            cache: Mutex::default(),
            active: Mutex::default(),
            touched: Mutex::default(),
        }
    }

    /// A lookup still trusted from the cache, without a query.
    pub fn cached(&self, presented: &str) -> Option<Found> {
        let d = digest(presented);
        let cache = self.cache.lock().unwrap();
        let (found, at) = cache.get(&d)?;
        (at.elapsed() < KEY_CACHE_TTL).then(|| found.clone())
    }

    /// The key's id and tenant, if it exists and is not revoked.
    pub async fn lookup(&self, presented: &str) -> Result<Found, DbError> {
        let d = digest(presented);
        if let Some((found, at)) = self.cache.lock().unwrap().get(&d) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(found.clone());
            }
        }
        let found = db::api_key_by_hash(&self.db, &d).await?;
        {
            let mut cache = self.cache.lock().unwrap();
            if cache.len() > 100_000 {
                cache.clear(); // garbage keys must not grow it without bound
            }
            cache.insert(d, (found.clone(), Instant::now()));
        }
        if let Some((id, _)) = &found {
            self.note_use(*id);
        }
        Ok(found)
    }

    /// Whether the key `id` is still active (not revoked), trusted for
    /// [`KEY_CACHE_TTL`] like a lookup: a revocation stops its grants on every
    /// instance as soon as it stops the key.
    pub async fn is_active(&self, id: Uuid) -> Result<bool, DbError> {
        if let Some((active, at)) = self.active.lock().unwrap().get(&id) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(*active);
            }
        }
        let active = db::api_key_active(&self.db, id).await?;
        let mut cache = self.active.lock().unwrap();
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(id, (active, Instant::now()));
        Ok(active)
    }

    /// Records `last used` at most once a minute per key per instance, in the
    /// background.
    fn note_use(&self, id: Uuid) {
        let due = {
            let mut touched = self.touched.lock().unwrap();
            let due = touched
                .get(&id)
                .is_none_or(|t| t.elapsed() > Duration::from_secs(60));
            if due {
                touched.insert(id, Instant::now());
            }
            due
        };
        if due {
            let db = self.db.clone();
            tokio::spawn(async move {
                if let Err(e) = db::touch_api_key(&db, id).await {
                    tracing::debug!(error = %e, "could not record a key's last use");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_api_keys;

    #[test]
    fn maps_keys_to_tenants() {
        let c = EnvKeys::new(&parse_api_keys("acme:k1,globex:k2").unwrap());
        assert_eq!(c.tenant_of("k1"), Some("acme"));
        assert_eq!(c.tenant_of("k2"), Some("globex"));
        assert_eq!(c.tenant_of("k3"), None);
        assert_eq!(c.tenant_of(""), None);
    }

    #[test]
    fn generated_keys_are_prefixed_random_and_hashed() {
        let (a, da) = generate();
        let (b, _) = generate();
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(da, digest(&a));
    }
}
