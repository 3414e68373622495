//! Tenants isolated in every resource, not only in their rows: no tenant can
//! make the broker connect into its own network (webhooks, JWKS), a grant dies
//! with the key that minted it, and the quotas on webhooks and grant uses hold
//! exactly.

mod auth_failures;
mod egress;
mod fairness;
mod jwks;
mod keys_and_quotas;
