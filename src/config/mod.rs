//! Configuration: one typed struct read from the environment (or flags), with
//! secrets wrapped so that printing the configuration is safe.

mod args;
mod check;
pub use args::*;

use crate::domain::part_plan::PlanLimits;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Where the Companion-compatible routes are served by default.
pub const DEFAULT_COMPANION_MOUNT: &str = "/s3";

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(v: T) -> Self {
        Self(v)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which provider's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    S3,
    R2,
}

/// A configuration error: the variable and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn cfg_err(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// One API credential.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub tenant: String,
    pub key: Secret<String>,
}

/// Storage configuration, checked.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub provider: Provider,
    pub key_prefix: String,
    pub list_parts_page_size: i32,
    /// Longest one storage call may take.
    pub operation_timeout: Duration,
    /// Longest CompleteMultipartUpload may take (inside the completion lease).
    pub complete_timeout: Duration,
}

/// How the sweep works.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Uploads claimed per batch.
    pub batch_size: i64,
    /// How long a claim holds before another sweep may take the row over.
    pub lease: Duration,
    /// Finished records older than this are deleted.
    pub retention: Duration,
    /// Key prefix the orphan scan looks under.
    pub key_prefix: String,
}

/// The quotas a create is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub tenant_max_active_uploads: u64,
    pub tenant_max_active_bytes: Option<u64>,
    pub subject_max_active_uploads: u64,
}

/// How long a completer holds an upload before another caller may take over,
/// unless it renews its lease (it does, every third of it, while it works).
pub const DEFAULT_COMPLETION_LEASE: Duration = Duration::from_secs(300);

/// The broker's configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Secret<String>,
    pub database_max_connections: u32,
    pub storage: StorageConfig,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub companion_mount: Option<String>,
    pub api_keys: Vec<ApiKey>,
    pub token_secret: Option<Secret<String>>,
    pub token_secret_file: Option<std::path::PathBuf>,
    pub cors_origins: Vec<String>,
    pub plan_limits: PlanLimits,
    pub upload_ttl: Duration,
    pub part_url_ttl: Duration,
    /// Longest `urlTtlSeconds` a client may ask for.
    pub max_part_url_ttl: Duration,
    pub sign_window: u32,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub shutdown_timeout: Duration,
    /// How long SIGTERM keeps serving with readiness false (BROKER_DRAIN_DELAY).
    pub drain_delay: Duration,
    /// See [`DEFAULT_COMPLETION_LEASE`]; also the lease of a client's abort.
    pub completion_lease: Duration,
    /// Most completions and aborts running at once, detached from their requests.
    pub max_background_tasks: usize,
    /// Most active uploads kept in each instance's signing cache (0: off).
    pub upload_cache: usize,
    /// Longest a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Most open client connections on the API listener.
    pub max_connections: usize,
    /// Bearer token `/metrics` asks for, if set.
    pub metrics_token: Option<Secret<String>>,
    /// Key of the broker's own grants; `None`: derived from the token secret.
    pub grant_key: Option<Secret<String>>,
    pub quotas: Quotas,
    /// Requests per second per grant subject (0: off).
    pub rate_limit: u32,
    /// Requests per second per API key (0: off).
    pub api_key_rate_limit: u32,
    /// Failed authentications per second per client address (0: off).
    pub auth_failure_limit: u32,
    pub migrate: bool,
    /// Zero: no periodic sweep.
    pub sweep_interval: Duration,
    pub sweep: SweepSettings,
    /// With `STORAGE_PROVIDER=r2`: sign parts with SHA-256 checksums anyway.
    pub r2_sha256_checksums: bool,
    /// Non-public networks the broker may reach for tenants (EGRESS_ALLOW).
    pub egress_allow: crate::domain::egress::EgressAllow,
    /// How webhooks are delivered.
    pub deliveries: crate::events::deliver::DeliverySettings,
}

/// `tenant:key,tenant:key`.
pub fn parse_api_keys(s: &str) -> Result<Vec<ApiKey>, ConfigError> {
    let mut keys = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((tenant, key)) = pair.split_once(':') else {
            return Err(cfg_err("BROKER_API_KEYS", "each entry must be tenant:key"));
        };
        let (tenant, key) = (tenant.trim(), key.trim());
        if tenant.is_empty() || key.is_empty() {
            return Err(cfg_err(
                "BROKER_API_KEYS",
                "each entry must be tenant:key with both parts non-empty",
            ));
        }
        if tenant.len() > 128 || tenant.chars().any(|c| c.is_control()) {
            return Err(cfg_err(
                "BROKER_API_KEYS",
                "tenant names are at most 128 printable characters",
            ));
        }
        keys.push(ApiKey {
            tenant: tenant.to_string(),
            key: Secret::new(key.to_string()),
        });
    }
    Ok(keys)
}

/// `7d`, `12h`, `30s`, `1h 30m`…
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("expected a duration such as 7d, 12h or 30s ({e})"))
}

/// `16MiB`, `5 TiB`, `8388608`…
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| "expected a size in bytes such as 8388608, 16MiB or 5TiB".to_string())
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("16MiB").unwrap(), 16 * 1024 * 1024);
        assert_eq!(parse_size("5 TiB").unwrap(), 5 * 1024u64.pow(4));
        assert_eq!(parse_size("8388608").unwrap(), 8388608);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn api_keys() {
        let k = parse_api_keys("a:k1, b:k2").unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[1].tenant, "b");
        assert_eq!(k[1].key.expose(), "k2");
        assert!(parse_api_keys("nokey").is_err());
        assert!(parse_api_keys("a:").is_err());
        assert!(parse_api_keys("").unwrap().is_empty());
        assert!(!format!("{k:?}").contains("k1"));
    }
}
