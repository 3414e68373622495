//! Authentication: a bearer credential becomes an [`Access`] (a tenant, and for
//! a grant its subject and limits), or 401. API keys come from configuration or
//! from Postgres; grants are JWTs, the broker's own or a tenant's. Rate limits
//! apply to what was authenticated.

pub mod grants;
pub mod issuers;
pub mod keys;
pub mod rate;

use crate::domain::access::Access;
use crate::error::ApiError;

pub struct Authenticator {
    pub env_keys: keys::EnvKeys,
    pub keys: keys::KeyStore,
    pub grants: grants::Grants,
    pub rate: rate::RateLimits,
}

impl Authenticator {
    /// The caller a credential stands for, presented from `peer` (the
    /// client's address, when known). A peer over its limit of failed
    /// authentications gets 429 for any credential that would need a database
    /// query (an unknown `ubk_` key, an issuer not looked up lately); what is
    /// known in memory (configured keys, keys and issuers looked up lately, the
    /// broker's own grants) still works, and still fails with 401.
    pub async fn authenticate(
        &self,
        credential: &str,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Access, ApiError> {
        let held = self.rate.held(peer);
        let result = self.check(credential, held).await;
        if matches!(
            result,
            Err(ApiError::Unauthorized | ApiError::UnauthorizedBecause(_))
        ) {
            self.rate.failed(peer);
        }
        result
    }

    /// `held`: the answer when a database query would be needed.
    async fn check(&self, credential: &str, held: Option<ApiError>) -> Result<Access, ApiError> {
        if grants::looks_like_jwt(credential) {
            let (tenant, grant) = self.grants.verify(credential, held).await?;
            // A grant minted with a key kept in Postgres dies with the key.
            if let Some(key) = grant.minted_by {
                if !self.keys.is_active(key).await? {
                    return Err(ApiError::UnauthorizedBecause(
                        "the API key that minted this grant has been revoked",
                    ));
                }
            }
            self.rate.check_subject(&tenant, &grant.subject)?;
            return Ok(Access {
                tenant,
                key: None,
                grant: Some(grant),
            });
        }
        if let Some(tenant) = self.env_keys.tenant_of(credential) {
            let tenant = tenant.to_string();
            self.rate.check_key(|| format!("env:{tenant}"))?;
            return Ok(Access::api_key(tenant));
        }
        if credential.starts_with(keys::KEY_PREFIX) {
            let found = match (self.keys.cached(credential), held) {
                (Some(found), _) => found,
                (None, Some(held)) => return Err(held),
                (None, None) => self.keys.lookup(credential).await?,
            };
            if let Some((id, tenant)) = found {
                self.rate.check_key(|| id.to_string())?;
                return Ok(Access::stored_key(tenant, id));
            }
        }
        Err(ApiError::Unauthorized)
    }
}
