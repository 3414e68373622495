//! Bearer credentials → tenants, compared in constant time.

use crate::config::ApiKey;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured credentials, kept as SHA-256 digests.
pub struct Credentials {
    keys: Vec<([u8; 32], String)>,
}

impl Credentials {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self {
            keys: keys
                .iter()
                .map(|k| {
                    (
                        Sha256::digest(k.key.expose().as_bytes()).into(),
                        k.tenant.clone(),
                    )
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The tenant of a presented credential. Every key is compared, in constant
    /// time, whatever matches.
    pub fn tenant_of(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (k, tenant) in &self.keys {
            if bool::from(k.ct_eq(&digest)) && found.is_none() {
                found = Some(tenant.as_str());
            }
        }
        found
    }
}

/// The calling tenant, from `Authorization: Bearer <credential>`.
#[derive(Debug, Clone)]
pub struct Tenant(pub String);

pub trait HasCredentials {
    fn credentials(&self) -> &Credentials;
}

impl<S: HasCredentials + Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, credential) = header
            .trim()
            .split_once(' ')
            .ok_or(ApiError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        let tenant = state
            .credentials()
            .tenant_of(credential.trim())
            .ok_or(ApiError::Unauthorized)?;
        tracing::Span::current().record("tenant", tenant);
        Ok(Tenant(tenant.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_api_keys;

    #[test]
    fn maps_keys_to_tenants() {
        let c = Credentials::new(&parse_api_keys("acme:k1,globex:k2").unwrap());
        assert_eq!(c.tenant_of("k1"), Some("acme"));
        assert_eq!(c.tenant_of("k2"), Some("globex"));
        assert_eq!(c.tenant_of("k3"), None);
        assert_eq!(c.tenant_of(""), None);
    }
}
