//! The command-line and environment arguments of each command (clap), and
//! their checks into the typed configuration.

use super::*;
use clap::Args;

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

    /// With `STORAGE_PROVIDER=r2`: accept `checksumAlgorithm: SHA256` (refused by
    /// default: R2 answered 501 to part uploads carrying SHA-256 checksums).
    #[arg(long, env = "R2_ALLOW_SHA256_CHECKSUMS", value_name = "R2_ALLOW_SHA256_CHECKSUMS", default_value_t = false, action = clap::ArgAction::Set, value_parser = parse_bool)]
    pub r2_allow_sha256_checksums: bool,

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

/// How webhooks are delivered (serve's delivery worker).
#[derive(Debug, Clone, Args)]
pub struct WebhookTuning {
    /// Longest a webhook receiver may take to answer; anything slower is a failed attempt.
    #[arg(long, env = "WEBHOOK_TIMEOUT", value_name = "WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,

    /// Wait after a delivery's first failed attempt; it doubles with each failure
    /// (with jitter, at most WEBHOOK_RETRY_MAX_DELAY).
    #[arg(long, env = "WEBHOOK_RETRY_DELAY", value_name = "WEBHOOK_RETRY_DELAY", default_value = "10s", value_parser = parse_duration)]
    pub webhook_retry_delay: Duration,

    /// Longest wait between two attempts of a delivery.
    #[arg(long, env = "WEBHOOK_RETRY_MAX_DELAY", value_name = "WEBHOOK_RETRY_MAX_DELAY", default_value = "1h", value_parser = parse_duration)]
    pub webhook_retry_max_delay: Duration,

    /// How long after its event a delivery is retried before it is marked failed.
    #[arg(long, env = "WEBHOOK_RETRY_FOR", value_name = "WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = parse_duration)]
    pub webhook_retry_for: Duration,

    /// How often the worker looks for deliveries made due elsewhere (another
    /// instance's events, retries); events of this instance are sent at once.
    #[arg(long, env = "WEBHOOK_POLL", value_name = "WEBHOOK_POLL", default_value = "1s", value_parser = parse_duration)]
    pub webhook_poll: Duration,

    /// Most webhook deliveries in flight at once per instance.
    #[arg(long, env = "WEBHOOK_CONCURRENCY", value_name = "WEBHOOK_CONCURRENCY", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub webhook_concurrency: u16,

    /// Most deliveries in flight at once per instance for one tenant's
    /// endpoints (default: a quarter of WEBHOOK_CONCURRENCY, at least 1), so a
    /// tenant whose receivers hang cannot hold up the others'.
    #[arg(long, env = "WEBHOOK_TENANT_CONCURRENCY", value_name = "WEBHOOK_TENANT_CONCURRENCY",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub webhook_tenant_concurrency: Option<u16>,

    /// Most deliveries in flight at once per instance for one endpoint
    /// (default: half the tenant's, at least 1).
    #[arg(long, env = "WEBHOOK_ENDPOINT_CONCURRENCY", value_name = "WEBHOOK_ENDPOINT_CONCURRENCY",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub webhook_endpoint_concurrency: Option<u16>,
}

impl WebhookTuning {
    pub fn settings(&self) -> crate::events::deliver::DeliverySettings {
        use crate::events::deliver::DeliverySettings as D;
        let concurrency = self.webhook_concurrency as usize;
        let per_tenant = self
            .webhook_tenant_concurrency
            .map_or_else(|| D::default_per_tenant(concurrency), usize::from);
        let per_endpoint = self
            .webhook_endpoint_concurrency
            .map_or_else(|| D::default_per_endpoint(per_tenant), usize::from);
        crate::events::deliver::DeliverySettings {
            timeout: self.webhook_timeout,
            retry: crate::domain::event::RetryPolicy {
                first: self.webhook_retry_delay,
                max: self.webhook_retry_max_delay.max(self.webhook_retry_delay),
                give_up_after: self.webhook_retry_for,
            },
            poll: self.webhook_poll,
            concurrency,
            per_tenant,
            per_endpoint,
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

/// Where the broker may connect on a tenant's behalf (webhooks, JWKS).
#[derive(Debug, Clone, Args)]
pub struct EgressArgs {
    /// Comma-separated CIDRs the broker may reach although they are not public
    /// (loopback, private, link-local…): for webhook receivers and JWKS sources
    /// on your own network. Default: none, only public addresses.
    #[arg(
        long,
        env = "EGRESS_ALLOW",
        value_name = "EGRESS_ALLOW",
        default_value = ""
    )]
    pub egress_allow: String,
}

impl EgressArgs {
    pub fn check(&self) -> Result<crate::domain::egress::EgressAllow, ConfigError> {
        crate::domain::egress::EgressAllow::parse(&self.egress_allow)
            .map_err(|e| cfg_err("EGRESS_ALLOW", e))
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub egress: EgressArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    #[command(flatten)]
    pub sweep: SweepTuning,

    #[command(flatten)]
    pub webhooks: WebhookTuning,

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

    /// Longest life a client may ask for its part URLs (`urlTtlSeconds` on
    /// create and parts; for background transfers), at most 7d.
    #[arg(long, env = "MAX_PART_URL_TTL", value_name = "MAX_PART_URL_TTL", default_value = "24h", value_parser = parse_duration)]
    pub max_part_url_ttl: Duration,

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

    /// Most active uploads whose signing facts each instance keeps in memory,
    /// so that a part request costs no database read (kept right by change
    /// notifications from Postgres); 0 turns the cache off.
    #[arg(long, env = "BROKER_UPLOAD_CACHE", value_name = "BROKER_UPLOAD_CACHE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub upload_cache: u32,

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

    /// Failed authentications per second per client address, burst twice that
    /// (0: off); past it, credentials that would need a database query answer
    /// 429 for a while. Per instance.
    #[arg(
        long,
        env = "AUTH_FAILURE_LIMIT",
        value_name = "AUTH_FAILURE_LIMIT",
        default_value_t = 20
    )]
    pub auth_failure_limit: u32,

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

    /// After SIGTERM, how long the broker goes on serving with /readyz
    /// answering 503, so that a load balancer takes it out before it stops
    /// accepting connections (0: stop accepting at once).
    #[arg(long, env = "BROKER_DRAIN_DELAY", value_name = "BROKER_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// Do not apply pending database migrations at start-up.
    #[arg(long, env = "BROKER_NO_MIGRATE", default_value_t = false, action = clap::ArgAction::SetTrue)]
    pub no_migrate: bool,
}
