//! The checks that turn arguments into the typed configuration: every bad
//! value is refused here, naming its variable.

use super::*;
use crate::domain::object_key::MAX_PREFIX_BYTES;
use crate::domain::part_plan::{MAX_OBJECT_SIZE, MAX_PART_SIZE, MIN_PART_SIZE};

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
        if self.max_part_url_ttl < Duration::from_secs(1)
            || self.max_part_url_ttl > Duration::from_secs(7 * 86400)
        {
            return Err(cfg_err(
                "MAX_PART_URL_TTL",
                "must be 1s to 7d (the SigV4 limit)",
            ));
        }
        if self.drain_delay > Duration::from_secs(300) {
            return Err(cfg_err("BROKER_DRAIN_DELAY", "must be at most 5m"));
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
        let w = &self.webhooks;
        if w.webhook_timeout < Duration::from_millis(100)
            || w.webhook_timeout > Duration::from_secs(300)
        {
            return Err(cfg_err("WEBHOOK_TIMEOUT", "must be 100ms to 5m"));
        }
        if w.webhook_retry_delay < Duration::from_millis(10) {
            return Err(cfg_err("WEBHOOK_RETRY_DELAY", "must be at least 10ms"));
        }
        if w.webhook_poll < Duration::from_millis(10) {
            return Err(cfg_err("WEBHOOK_POLL", "must be at least 10ms"));
        }
        if w.webhook_tenant_concurrency
            .is_some_and(|t| t > w.webhook_concurrency)
        {
            return Err(cfg_err(
                "WEBHOOK_TENANT_CONCURRENCY",
                "must be at most WEBHOOK_CONCURRENCY (below it, so that one tenant cannot take every slot)",
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
                max_part_size: MAX_PART_SIZE,
            },
            upload_ttl: self.upload_ttl,
            part_url_ttl: self.part_url_ttl,
            max_part_url_ttl: self.max_part_url_ttl,
            sign_window: self.sign_window,
            body_limit: usize::try_from(self.body_limit).unwrap_or(usize::MAX),
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests as usize,
            shutdown_timeout: self.shutdown_timeout,
            drain_delay: self.drain_delay,
            completion_lease: self.completion_lease,
            max_background_tasks: self.max_background_tasks as usize,
            upload_cache: self.upload_cache as usize,
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
            auth_failure_limit: self.auth_failure_limit,
            migrate: !self.no_migrate,
            sweep_interval: self.sweep_interval,
            sweep: self.sweep.settings(&storage.key_prefix),
            deliveries: self.webhooks.settings(),
            r2_sha256_checksums: self.storage.r2_allow_sha256_checksums,
            egress_allow: self.egress.check()?,
            storage,
        })
    }
}
