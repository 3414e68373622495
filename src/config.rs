//! Configuration: one typed struct read from the environment (or flags), with
//! secrets wrapped so that printing the configuration is safe.

use crate::domain::object_key::MAX_PREFIX_BYTES;
use crate::domain::part_plan::{PlanLimits, MAX_OBJECT_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};
use clap::Args;
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

/// Database settings (all subcommands).
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection string (required).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Most connections in the pool.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        value_name = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 20
    )]
    pub database_max_connections: u32,
}

impl DatabaseArgs {
    pub fn url(&self) -> Result<Secret<String>, ConfigError> {
        match &self.database_url {
            Some(u) if !u.trim().is_empty() => Ok(Secret::new(u.clone())),
            _ => Err(cfg_err(
                "DATABASE_URL",
                "is required (a Postgres connection string, e.g. postgres://postgres@127.0.0.1:5432/upload_broker)",
            )),
        }
    }
}

/// Storage settings.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Bucket for uploads (required).
    #[arg(long, env = "S3_BUCKET", value_name = "S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Region (`auto` for R2).
    #[arg(
        long,
        env = "S3_REGION",
        value_name = "S3_REGION",
        default_value = "us-east-1"
    )]
    pub s3_region: String,

    /// Custom endpoint (R2, LocalStack, MinIO); AWS when unset.
    #[arg(long, env = "S3_ENDPOINT", value_name = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Path-style addressing (needed by LocalStack and MinIO).
    #[arg(long, env = "S3_FORCE_PATH_STYLE", value_name = "S3_FORCE_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub s3_force_path_style: bool,

    /// `s3` or `r2`.
    #[arg(
        long,
        env = "STORAGE_PROVIDER",
        value_enum,
        default_value = "s3",
        ignore_case = true
    )]
    pub storage_provider: Provider,

    /// Prefix of every object key the broker creates.
    #[arg(
        long,
        env = "S3_KEY_PREFIX",
        value_name = "S3_KEY_PREFIX",
        default_value = "uploads/"
    )]
    pub s3_key_prefix: String,

    /// Page size for ListParts (at most 1000; smaller only for testing paging).
    #[arg(
        long,
        env = "S3_LIST_PARTS_PAGE_SIZE",
        default_value_t = 1000,
        hide = true
    )]
    pub s3_list_parts_page_size: i32,

    /// Longest one storage call may take, retries included (CompleteMultipartUpload
    /// has its own: four fifths of COMPLETION_LEASE).
    #[arg(long, env = "STORAGE_TIMEOUT", value_name = "STORAGE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub storage_timeout: Duration,
}

/// How the sweep works (serve's periodic sweep and the `sweep` command).
#[derive(Debug, Clone, Args)]
pub struct SweepTuning {
    /// Finished records (completed, aborted, expired) older than this are deleted.
    #[arg(long, env = "RETENTION", value_name = "RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub retention: Duration,

    /// Uploads the sweep claims per batch.
    #[arg(long, env = "SWEEP_BATCH_SIZE", value_name = "SWEEP_BATCH_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub sweep_batch_size: i64,
}

impl SweepTuning {
    pub fn settings(&self, key_prefix: &str) -> SweepSettings {
        SweepSettings {
            batch_size: self.sweep_batch_size,
            lease: Duration::from_secs(600),
            retention: self.retention,
            key_prefix: key_prefix.to_string(),
        }
    }
}

/// Everything `sweep` needs.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub tuning: SweepTuning,

    /// Print what would be done and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the summary as JSON (on stdout).
    #[arg(long)]
    pub json: bool,

    /// Also abort provider uploads under the key prefix that the database does not know.
    #[arg(long)]
    pub orphans: bool,

    /// With --orphans: only uploads initiated longer ago than this.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub older_than: Duration,
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub sweep: SweepTuning,

    /// How often `serve` sweeps (with ±10% jitter); 0 turns the periodic sweep off.
    #[arg(long, env = "SWEEP_INTERVAL", value_name = "SWEEP_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// Address to serve on.
    #[arg(
        long,
        env = "BROKER_LISTEN",
        value_name = "BROKER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// Path prefix of the Uppy Companion-compatible routes (`off` to disable).
    /// Uppy's `companionEndpoint` is this server's URL plus the prefix without
    /// its final `/s3`.
    #[arg(long, env = "BROKER_COMPANION_MOUNT", value_name = "BROKER_COMPANION_MOUNT", default_value = DEFAULT_COMPANION_MOUNT)]
    pub companion_mount: String,

    /// Serve /metrics on this address instead of the main one.
    #[arg(long, env = "METRICS_LISTEN", value_name = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Comma-separated `tenant:key` pairs; each key is a bearer credential of its tenant.
    #[arg(
        long,
        env = "BROKER_API_KEYS",
        value_name = "BROKER_API_KEYS",
        hide_env_values = true
    )]
    pub api_keys: Option<String>,

    /// Secret (at least 32 bytes) that resume tokens are derived from; the same on
    /// every instance. When unset, a key file is used (BROKER_TOKEN_SECRET_FILE).
    #[arg(
        long,
        env = "BROKER_TOKEN_SECRET",
        value_name = "BROKER_TOKEN_SECRET",
        hide_env_values = true
    )]
    pub token_secret: Option<String>,

    /// File holding the token secret, created with a random secret if missing.
    /// Default: $STATE_DIRECTORY, $XDG_STATE_HOME/upload-broker or
    /// ~/.local/state/upload-broker, file `token-secret`.
    #[arg(
        long,
        env = "BROKER_TOKEN_SECRET_FILE",
        value_name = "BROKER_TOKEN_SECRET_FILE"
    )]
    pub token_secret_file: Option<std::path::PathBuf>,

    /// Comma-separated origins allowed to call the API from a browser (`*` for any).
    #[arg(long, env = "BROKER_CORS_ORIGINS", value_name = "BROKER_CORS_ORIGINS")]
    pub cors_origins: Option<String>,

    /// Part size when the client gives none (raised as needed to stay within 10,000 parts).
    #[arg(long, env = "DEFAULT_PART_SIZE", value_name = "DEFAULT_PART_SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub default_part_size: u64,

    /// Life of an upload and its resume token (`7d`, `12h`, `30s`…).
    #[arg(long, env = "UPLOAD_TTL", value_name = "UPLOAD_TTL", default_value = "7d", value_parser = parse_duration)]
    pub upload_ttl: Duration,

    /// Largest `size` accepted.
    #[arg(long, env = "MAX_UPLOAD_SIZE", value_name = "MAX_UPLOAD_SIZE", default_value = "5TiB", value_parser = parse_size)]
    pub max_upload_size: u64,

    /// Life of a presigned part URL (at most 7d).
    #[arg(long, env = "PART_URL_TTL", value_name = "PART_URL_TTL", default_value = "1h", value_parser = parse_duration)]
    pub part_url_ttl: Duration,

    /// How many part URLs create and resume sign up front.
    #[arg(
        long,
        env = "BROKER_SIGN_WINDOW",
        value_name = "BROKER_SIGN_WINDOW",
        default_value_t = 100
    )]
    pub sign_window: u32,

    /// Largest request body accepted.
    #[arg(long, env = "BROKER_BODY_LIMIT", value_name = "BROKER_BODY_LIMIT", default_value = "2MiB", value_parser = parse_size)]
    pub body_limit: u64,

    /// Longest a request may take before it answers 408 (work already started,
    /// such as a completion, still finishes).
    #[arg(long, env = "BROKER_REQUEST_TIMEOUT", value_name = "BROKER_REQUEST_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Most API requests in flight at once; beyond it requests answer 503.
    #[arg(long, env = "BROKER_MAX_CONCURRENT_REQUESTS", value_name = "BROKER_MAX_CONCURRENT_REQUESTS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_concurrent_requests: u32,

    /// How long a completer (or an abort) holds an upload before another may take
    /// over; renewed while it works. STORAGE_TIMEOUT must be at most half of it.
    #[arg(long, env = "COMPLETION_LEASE", value_name = "COMPLETION_LEASE", default_value = "5m", value_parser = parse_duration)]
    pub completion_lease: Duration,

    /// Most completions and aborts running at once (they finish even when their
    /// client hangs up); beyond it, 503.
    #[arg(long, env = "BROKER_MAX_BACKGROUND_TASKS", value_name = "BROKER_MAX_BACKGROUND_TASKS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_background_tasks: u32,

    /// Longest a client may take to send a request's headers before the connection is closed.
    #[arg(long, env = "BROKER_HEADER_TIMEOUT", value_name = "BROKER_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Most open client connections; further ones wait to be accepted.
    #[arg(long, env = "BROKER_MAX_CONNECTIONS", value_name = "BROKER_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Key the broker signs its upload grants with (at least 32 bytes; the same on
    /// every instance). Default: derived from the token secret.
    #[arg(
        long,
        env = "BROKER_GRANT_KEY",
        value_name = "BROKER_GRANT_KEY",
        hide_env_values = true
    )]
    pub grant_key: Option<String>,

    /// Most `active` uploads a tenant may have at once.
    #[arg(
        long,
        env = "TENANT_MAX_ACTIVE_UPLOADS",
        value_name = "TENANT_MAX_ACTIVE_UPLOADS",
        default_value_t = 100_000
    )]
    pub tenant_max_active_uploads: u64,

    /// Most bytes (sum of `size`) a tenant may have in `active` uploads (none by default).
    #[arg(long, env = "TENANT_MAX_ACTIVE_BYTES", value_name = "TENANT_MAX_ACTIVE_BYTES", value_parser = parse_size)]
    pub tenant_max_active_bytes: Option<u64>,

    /// Most `active` uploads one grant subject may have at once.
    #[arg(
        long,
        env = "SUBJECT_MAX_ACTIVE_UPLOADS",
        value_name = "SUBJECT_MAX_ACTIVE_UPLOADS",
        default_value_t = 100
    )]
    pub subject_max_active_uploads: u64,

    /// Requests per second per grant subject, burst twice that (0: off); per instance.
    #[arg(
        long,
        env = "RATE_LIMIT",
        value_name = "RATE_LIMIT",
        default_value_t = 50
    )]
    pub rate_limit: u32,

    /// Requests per second per API key, burst twice that (0: off); per instance.
    #[arg(
        long,
        env = "API_KEY_RATE_LIMIT",
        value_name = "API_KEY_RATE_LIMIT",
        default_value_t = 0
    )]
    pub api_key_rate_limit: u32,

    /// If set, /metrics answers only requests with `Authorization: Bearer <METRICS_TOKEN>`.
    #[arg(
        long,
        env = "METRICS_TOKEN",
        value_name = "METRICS_TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// How long a shutdown waits for requests in flight.
    #[arg(long, env = "BROKER_SHUTDOWN_TIMEOUT", value_name = "BROKER_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Do not apply pending database migrations at start-up.
    #[arg(long, env = "BROKER_NO_MIGRATE", default_value_t = false, action = clap::ArgAction::SetTrue)]
    pub no_migrate: bool,
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
    pub sign_window: u32,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub shutdown_timeout: Duration,
    /// See [`DEFAULT_COMPLETION_LEASE`]; also the lease of a client's abort.
    pub completion_lease: Duration,
    /// Most completions and aborts running at once, detached from their requests.
    pub max_background_tasks: usize,
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
    pub migrate: bool,
    /// Zero: no periodic sweep.
    pub sweep_interval: Duration,
    pub sweep: SweepSettings,
}

impl StorageArgs {
    pub fn check(&self) -> Result<StorageConfig, ConfigError> {
        let bucket = match &self.s3_bucket {
            Some(b) if !b.trim().is_empty() => b.trim().to_string(),
            _ => {
                return Err(cfg_err(
                    "S3_BUCKET",
                    "is required (the bucket uploads go to)",
                ))
            }
        };
        if self.s3_region.trim().is_empty() {
            return Err(cfg_err("S3_REGION", "must not be empty (`auto` for R2)"));
        }
        if let Some(e) = &self.s3_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(cfg_err("S3_ENDPOINT", "must be an http:// or https:// URL"));
            }
        }
        let p = &self.s3_key_prefix;
        if p.len() > MAX_PREFIX_BYTES || p.starts_with('/') || p.chars().any(|c| c.is_control()) {
            return Err(cfg_err(
                "S3_KEY_PREFIX",
                format!("must be at most {MAX_PREFIX_BYTES} bytes, not start with '/', and have no control characters"),
            ));
        }
        if !(1..=1000).contains(&self.s3_list_parts_page_size) {
            return Err(cfg_err("S3_LIST_PARTS_PAGE_SIZE", "must be 1 to 1000"));
        }
        if self.storage_timeout < Duration::from_secs(1)
            || self.storage_timeout > Duration::from_secs(300)
        {
            return Err(cfg_err("STORAGE_TIMEOUT", "must be 1s to 5m"));
        }
        Ok(StorageConfig {
            bucket,
            region: self.s3_region.trim().to_string(),
            endpoint: self.s3_endpoint.clone().filter(|e| !e.is_empty()),
            force_path_style: self.s3_force_path_style,
            provider: self.storage_provider,
            key_prefix: p.clone(),
            list_parts_page_size: self.s3_list_parts_page_size,
            operation_timeout: self.storage_timeout,
            complete_timeout: DEFAULT_COMPLETION_LEASE * 4 / 5,
        })
    }
}

impl ServeArgs {
    pub fn check(&self) -> Result<Config, ConfigError> {
        let database_url = self.database.url()?;
        let mut storage = self.storage.check()?;
        storage.complete_timeout = self.completion_lease * 4 / 5;
        let api_keys = parse_api_keys(self.api_keys.as_deref().unwrap_or(""))?;
        if let Some(s) = &self.token_secret {
            if s.len() < 32 {
                return Err(cfg_err("BROKER_TOKEN_SECRET", "must be at least 32 bytes"));
            }
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.default_part_size) {
            return Err(cfg_err("DEFAULT_PART_SIZE", "must be 5MiB to 5GiB"));
        }
        if self.max_upload_size == 0 || self.max_upload_size > MAX_OBJECT_SIZE {
            return Err(cfg_err("MAX_UPLOAD_SIZE", "must be 1 byte to 5TiB"));
        }
        if self.upload_ttl < Duration::from_secs(1) {
            return Err(cfg_err("UPLOAD_TTL", "must be at least 1s"));
        }
        if self.part_url_ttl < Duration::from_secs(1)
            || self.part_url_ttl > Duration::from_secs(7 * 86400)
        {
            return Err(cfg_err(
                "PART_URL_TTL",
                "must be 1s to 7d (the SigV4 limit)",
            ));
        }
        if self.request_timeout < Duration::from_secs(1) {
            return Err(cfg_err("BROKER_REQUEST_TIMEOUT", "must be at least 1s"));
        }
        if self.completion_lease < Duration::from_secs(3) {
            return Err(cfg_err("COMPLETION_LEASE", "must be at least 3s"));
        }
        if storage.operation_timeout * 2 > self.completion_lease {
            return Err(cfg_err(
                "COMPLETION_LEASE",
                "must be at least twice STORAGE_TIMEOUT (no storage call may outlive a lease)",
            ));
        }
        if self.header_timeout < Duration::from_secs(1) {
            return Err(cfg_err("BROKER_HEADER_TIMEOUT", "must be at least 1s"));
        }
        if self.grant_key.as_deref().is_some_and(|k| k.len() < 32) {
            return Err(cfg_err("BROKER_GRANT_KEY", "must be at least 32 bytes"));
        }
        if self.tenant_max_active_uploads == 0 {
            return Err(cfg_err("TENANT_MAX_ACTIVE_UPLOADS", "must be at least 1"));
        }
        if self.subject_max_active_uploads == 0 {
            return Err(cfg_err("SUBJECT_MAX_ACTIVE_UPLOADS", "must be at least 1"));
        }
        if self
            .metrics_token
            .as_deref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            return Err(cfg_err("METRICS_TOKEN", "must be at least 16 characters"));
        }
        if !(1..=1000).contains(&self.sign_window) {
            return Err(cfg_err("BROKER_SIGN_WINDOW", "must be 1 to 1000"));
        }
        let companion_mount = match self.companion_mount.trim() {
            "" | "off" | "none" => None,
            m if m.starts_with('/') && !m.ends_with('/') && !m.starts_with("/v1") && !m.contains(['{', '}', '*']) => {
                Some(m.to_string())
            }
            _ => {
                return Err(cfg_err(
                    "BROKER_COMPANION_MOUNT",
                    "must be a path such as /s3 (starting with '/', not ending with '/', outside /v1), or off",
                ))
            }
        };
        let cors_origins = self
            .cors_origins
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>();
        for o in &cors_origins {
            if o != "*" && http::HeaderValue::from_str(o).is_err() {
                return Err(cfg_err(
                    "BROKER_CORS_ORIGINS",
                    format!("{o:?} is not a valid origin"),
                ));
            }
        }
        Ok(Config {
            database_url,
            database_max_connections: self.database.database_max_connections.max(1),
            listen: self.listen,
            metrics_listen: self.metrics_listen,
            companion_mount,
            api_keys,
            token_secret: self.token_secret.clone().map(Secret::new),
            token_secret_file: self.token_secret_file.clone(),
            cors_origins,
            plan_limits: PlanLimits {
                default_part_size: self.default_part_size,
                max_upload_size: self.max_upload_size,
            },
            upload_ttl: self.upload_ttl,
            part_url_ttl: self.part_url_ttl,
            sign_window: self.sign_window,
            body_limit: usize::try_from(self.body_limit).unwrap_or(usize::MAX),
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            shutdown_timeout: self.shutdown_timeout,
            completion_lease: self.completion_lease,
            max_background_tasks: self.max_background_tasks as usize,
            header_read_timeout: self.header_timeout,
            max_connections: self.max_connections as usize,
            metrics_token: self
                .metrics_token
                .clone()
                .map(|t| Secret::new(t.trim().to_string())),
            grant_key: self.grant_key.clone().map(Secret::new),
            quotas: Quotas {
                tenant_max_active_uploads: self.tenant_max_active_uploads,
                tenant_max_active_bytes: self.tenant_max_active_bytes,
                subject_max_active_uploads: self.subject_max_active_uploads,
            },
            rate_limit: self.rate_limit,
            api_key_rate_limit: self.api_key_rate_limit,
            migrate: !self.no_migrate,
            sweep_interval: self.sweep_interval,
            sweep: self.sweep.settings(&storage.key_prefix),
            storage,
        })
    }
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
