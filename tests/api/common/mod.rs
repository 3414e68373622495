//! Test harness: the real application on port 0, a fresh database per test
//! (`#[sqlx::test]`), LocalStack with signature validation on (or, with
//! `S3_IMPL=s3s`, tools/s3s-compat), and a unique key prefix per test so tests
//! run in parallel. A missing service fails the test
//! with instructions; nothing is skipped.
pub mod proxy;
pub mod receiver;

use aws_sdk_s3::Client as S3;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::time::Duration;
use upload_broker::config::{parse_api_keys, Config, Provider, Secret, StorageConfig};
use upload_broker::domain::part_plan::PlanLimits;
use upload_broker::domain::token::TokenKey;
use upload_broker::startup::Application;
use upload_broker::storage::Storage;

pub const MIB: usize = 1024 * 1024;
pub const KEY_A: &str = "key-of-tenant-a";
pub const KEY_B: &str = "key-of-tenant-b";

const HOW_TO: &str = "run the suite with `scripts/test.sh` (it starts Postgres and LocalStack), \
or start LocalStack with `scripts/localstack.sh` and export S3_ENDPOINT and S3_BUCKET";

pub fn endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| panic!("S3_ENDPOINT is not set: {HOW_TO}"))
}

pub fn bucket() -> String {
    std::env::var("S3_BUCKET").unwrap_or_else(|_| panic!("S3_BUCKET is not set: {HOW_TO}"))
}

/// Settings a test may change.
#[derive(Clone)]
pub struct Options {
    pub bucket: Option<String>,
    /// Storage endpoint other than LocalStack's (a fault-injecting proxy).
    pub endpoint: Option<String>,
    pub upload_ttl: Duration,
    pub part_url_ttl: Duration,
    pub max_part_url_ttl: Duration,
    pub sign_window: u32,
    pub list_parts_page_size: i32,
    pub max_upload_size: u64,
    pub body_limit: usize,
    pub cors_origins: Vec<String>,
    pub sweep_interval: Duration,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// Serve /metrics on a port of its own.
    pub metrics_listen: bool,
    pub completion_lease: Duration,
    pub storage_timeout: Duration,
    pub max_background_tasks: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub metrics_token: Option<String>,
    pub quotas: upload_broker::db::Quotas,
    pub rate_limit: u32,
    pub api_key_rate_limit: u32,
    /// AUTH_FAILURE_LIMIT (the production default; tests that send many bad
    /// credentials on purpose stay under it, or set 0).
    pub auth_failure_limit: u32,
    pub deliveries: upload_broker::events::deliver::DeliverySettings,
    /// `Provider::R2` applies R2's rules (LocalStack still stores the bytes).
    pub provider: Provider,
    /// EGRESS_ALLOW: the tests' webhook receivers and JWKS sources listen on
    /// loopback (one test proves that the default refuses them).
    pub egress_allow: upload_broker::domain::egress::EgressAllow,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bucket: None,
            endpoint: None,
            upload_ttl: Duration::from_secs(7 * 86400),
            part_url_ttl: Duration::from_secs(3600),
            max_part_url_ttl: Duration::from_secs(86400),
            sign_window: 100,
            list_parts_page_size: 1000,
            max_upload_size: PlanLimits::default().max_upload_size,
            body_limit: 2 * MIB,
            cors_origins: vec!["http://app.example".into()],
            sweep_interval: Duration::ZERO,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 1024,
            metrics_listen: false,
            completion_lease: Duration::from_secs(300),
            storage_timeout: Duration::from_secs(30),
            max_background_tasks: 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            metrics_token: None,
            quotas: upload_broker::db::Quotas {
                tenant_max_active_uploads: 100_000,
                tenant_max_active_bytes: None,
                subject_max_active_uploads: 100,
            },
            rate_limit: 0,
            api_key_rate_limit: 0,
            auth_failure_limit: 20,
            // Fast retries and a short timeout, so fault tests take seconds.
            deliveries: upload_broker::events::deliver::DeliverySettings {
                timeout: Duration::from_secs(2),
                retry: upload_broker::domain::event::RetryPolicy {
                    first: Duration::from_millis(200),
                    max: Duration::from_secs(1),
                    give_up_after: Duration::from_secs(24 * 3600),
                },
                poll: Duration::from_millis(200),
                concurrency: 16,
                per_tenant: 4,
                per_endpoint: 2,
            },
            provider: Provider::S3,
            egress_allow: upload_broker::domain::egress::EgressAllow::parse("127.0.0.0/8,::1/128")
                .unwrap(),
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// Where /metrics is, when it has a port of its own.
    #[allow(dead_code)] // read by tests/metrics.rs, a binary of its own
    pub metrics_base: Option<String>,
    pub http: reqwest::Client,
    pub s3: S3,
    pub bucket: String,
    pub prefix: String,
    pub pool: PgPool,
    pub config: Config,
    /// The instance's signing cache.
    pub cache: std::sync::Arc<upload_broker::broker::cache::UploadCache>,
}

pub fn test_config(opts: &Options) -> Config {
    let prefix = format!("test-{}/", uuid::Uuid::new_v4());
    Config {
        database_url: Secret::new(String::new()),
        database_max_connections: 10,
        storage: StorageConfig {
            bucket: opts.bucket.clone().unwrap_or_else(bucket),
            region: "us-east-1".into(),
            endpoint: Some(opts.endpoint.clone().unwrap_or_else(endpoint)),
            force_path_style: true,
            provider: opts.provider,
            key_prefix: prefix.clone(),
            list_parts_page_size: opts.list_parts_page_size,
            operation_timeout: opts.storage_timeout,
            complete_timeout: opts.completion_lease * 4 / 5,
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: opts.metrics_listen.then(|| "127.0.0.1:0".parse().unwrap()),
        companion_mount: Some("/s3".into()),
        api_keys: parse_api_keys(&format!("tenant-a:{KEY_A},tenant-b:{KEY_B}")).unwrap(),
        token_secret: None,
        token_secret_file: None,
        cors_origins: opts.cors_origins.clone(),
        plan_limits: PlanLimits {
            max_part_size: upload_broker::domain::part_plan::MAX_PART_SIZE,
            default_part_size: 16 * MIB as u64,
            max_upload_size: opts.max_upload_size,
        },
        upload_ttl: opts.upload_ttl,
        part_url_ttl: opts.part_url_ttl,
        max_part_url_ttl: opts.max_part_url_ttl,
        sign_window: opts.sign_window,
        body_limit: opts.body_limit,
        request_timeout: opts.request_timeout,
        max_concurrent_requests: opts.max_concurrent_requests,
        shutdown_timeout: Duration::from_secs(5),
        drain_delay: Duration::ZERO,
        completion_lease: opts.completion_lease,
        max_background_tasks: opts.max_background_tasks,
        upload_cache: 10_000,
        header_read_timeout: opts.header_read_timeout,
        max_connections: opts.max_connections,
        metrics_token: opts.metrics_token.clone().map(Secret::new),
        grant_key: None,
        quotas: opts.quotas,
        rate_limit: opts.rate_limit,
        api_key_rate_limit: opts.api_key_rate_limit,
        auth_failure_limit: opts.auth_failure_limit,
        migrate: false,
        sweep_interval: opts.sweep_interval,
        sweep: upload_broker::sweep::SweepSettings {
            batch_size: 100,
            lease: Duration::from_secs(600),
            retention: Duration::from_secs(30 * 86400),
            key_prefix: prefix.clone(),
        },
        deliveries: opts.deliveries.clone(),
        r2_sha256_checksums: false,
        egress_allow: opts.egress_allow.clone(),
    }
}

/// The SDK client the tests use to look at the bucket directly.
pub async fn s3_client() -> S3 {
    refuse_localstack_only();
    // The credentials come from the environment, as in production (no
    // `set_var` in a multi-threaded test binary): scripts/test.sh sets them.
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set (LocalStack takes `test`): {HOW_TO}"
        );
    }
    let cfg = test_config(&Options::default());
    Storage::connect(&cfg.storage).await.sdk_client().clone()
}

/// With UPLOAD_BROKER_TEST_LOG_DIR set (scripts/test.sh sets it), every test
/// process writes the broker's logs, JSON at debug level, to a file there; the
/// script then checks the logs of the whole run for secrets.
fn init_test_logging() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let Ok(dir) = std::env::var("UPLOAD_BROKER_TEST_LOG_DIR") else { return };
        std::fs::create_dir_all(&dir).unwrap();
        let exe = std::env::current_exe().unwrap();
        let name = format!("{}-{}.log", exe.file_name().unwrap().to_string_lossy(), std::process::id());
        let file = std::fs::File::create(std::path::Path::new(&dir).join(name)).unwrap();
        // The broker's own crates and the SDK and HTTP layers it runs on; not the
        // test's HTTP client, which handles the secrets on purpose.
        let filter = tracing_subscriber::EnvFilter::new(
            "info,upload_broker=trace,aws_smithy_runtime=debug,aws_sdk_s3=debug,aws_config=debug,tower_http=debug,sqlx=debug,reqwest=off,hyper_util=off",
        );
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    });
}

async fn check_localstack() {
    let url = format!("{}/_localstack/health", endpoint());
    let res = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("LocalStack is not reachable at {url} ({e}): {HOW_TO}"));
    let body = res.text().await.unwrap_or_default();
    assert!(
        body.contains("\"s3\": \"running\"") || body.contains("\"s3\": \"available\""),
        "LocalStack at {url} does not report S3 running ({body}): {HOW_TO}"
    );
}

/// Which S3 implementation the suite runs against, from `S3_IMPL`: `localstack`
/// (the default) or `s3s`, tools/s3s-compat (s3s-fs plus the multipart
/// behaviours it lacks), which `scripts/test.sh` runs the suite against second.
fn s3_impl() -> String {
    std::env::var("S3_IMPL").unwrap_or_else(|_| "localstack".into())
}

/// The tests that need a storage feature only LocalStack has, one per line with
/// the reason after `#`; `scripts/test.sh` skips them against s3s.
const LOCALSTACK_ONLY: &str = include_str!("../localstack-only.txt");

/// A LocalStack-only test run against s3s fails here, naming why, instead of
/// passing or failing for a reason that is not the broker's. (libtest runs each
/// test on a thread named after it; `#[sqlx::test]` and `#[tokio::test]` poll
/// the test on that thread.)
fn refuse_localstack_only() {
    if s3_impl() != "s3s" {
        return;
    }
    let thread = std::thread::current();
    let Some(test) = thread.name() else { return };
    for line in LOCALSTACK_ONLY.lines() {
        let (name, reason) = line.split_once('#').unwrap_or((line, ""));
        assert!(
            name.trim() != test,
            "{test} is LocalStack-only ({}; tests/api/localstack-only.txt): \
             run it against LocalStack, or skip it against s3s as scripts/test.sh does",
            reason.trim()
        );
    }
}

/// The storage answers: LocalStack's health, or for s3s a signed HeadBucket.
async fn check_storage() {
    match s3_impl().as_str() {
        "localstack" => check_localstack().await,
        "s3s" => {
            let bucket = bucket();
            if let Err(e) = s3_client().await.head_bucket().bucket(&bucket).send().await {
                panic!(
                    "s3s at {} does not answer a signed HeadBucket of {bucket} ({e:?}): \
                     start it and create the bucket with scripts/s3s.sh, as scripts/test.sh does",
                    endpoint()
                );
            }
        }
        other => panic!("S3_IMPL={other}: expected localstack (the default) or s3s"),
    }
}

impl TestApp {
    /// A sweeper over this app's database, bucket and prefix.
    pub async fn sweeper(&self, batch_size: i64) -> upload_broker::sweep::Sweeper {
        let storage = Storage::connect(&self.config.storage).await;
        let mut settings = self.config.sweep.clone();
        settings.batch_size = batch_size;
        upload_broker::sweep::Sweeper::new(self.pool.clone(), storage, settings)
    }

    /// Moves an upload's expiry into the past, as if its TTL had run out.
    pub async fn expire_now(&self, created: &Value) {
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        sqlx::query("update uploads set expires_at = now() - interval '1 minute' where id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
        self.until_forgotten(id).await;
    }

    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with(pool, Options::default()).await
    }

    pub async fn spawn_with(pool: PgPool, opts: Options) -> Self {
        init_test_logging();
        check_storage().await;
        let s3 = s3_client().await;
        let config = test_config(&opts);
        let tokens = TokenKey::new(&[42u8; 32]).unwrap();
        let app = Application::build(&config, pool.clone(), tokens)
            .await
            .expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let metrics_base = app.metrics_addr().map(|a| format!("http://{a}"));
        let cache = app.upload_cache();
        tokio::spawn(app.run_until(std::future::pending()));
        Self {
            base,
            metrics_base,
            http: reqwest::Client::new(),
            s3,
            bucket: config.storage.bucket.clone(),
            prefix: config.storage.key_prefix.clone(),
            pool,
            config,
            cache,
        }
    }

    /// Waits until this instance's signing cache has dropped an upload changed
    /// behind its back (by a test's own SQL): it hears of it at the change's
    /// commit, a moment later. Fails after 5 s.
    pub async fn until_forgotten(&self, id: uuid::Uuid) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.cache.get(id).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the signing cache still holds upload {id} 5 s after it changed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with tenant A's credential.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(KEY_A)
    }

    pub async fn create(&self, body: Value) -> reqwest::Response {
        self.req(reqwest::Method::POST, "/v1/uploads")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates an upload and returns the 201 body.
    pub async fn create_ok(&self, body: Value) -> Value {
        let res = self.create(body).await;
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "create failed: {v}");
        v
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, v)
    }

    /// A request with any bearer credential (an API key or a grant).
    pub async fn call_as(
        &self,
        credential: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, self.url(path))
            .bearer_auth(credential);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, v)
    }

    /// Mints a grant with tenant A's API key.
    pub async fn grant(&self, body: Value) -> String {
        let (s, v) = self
            .call(reqwest::Method::POST, "/v1/grants", Some(body))
            .await;
        assert_eq!(s, 201, "minting a grant: {v}");
        v["grant"].as_str().unwrap().to_string()
    }

    pub async fn get_status(&self, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, &format!("/v1/uploads/{token}"), None)
            .await
    }
    pub async fn resume(&self, token: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/uploads/{token}/resume"),
            None,
        )
        .await
    }
    pub async fn sign(&self, token: &str, parts: &[u32]) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/uploads/{token}/parts"),
            Some(json!({"partNumbers": parts})),
        )
        .await
    }
    pub async fn complete(&self, token: &str, body: Option<Value>) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/uploads/{token}/complete"),
            body,
        )
        .await
    }
    pub async fn abort(&self, token: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/v1/uploads/{token}"),
            None,
        )
        .await
    }

    /// PUTs `bytes` to a presigned part (as a browser would) and returns the ETag.
    pub async fn put_part(&self, part: &Value, bytes: &[u8]) -> String {
        let res = self.put_raw(part, bytes.to_vec()).await;
        let status = res.status();
        let etag = res
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_string());
        let body = res.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "PUT part {} failed: {status} {body}",
            part["partNumber"]
        );
        etag.expect("storage returns an ETag")
    }

    /// PUTs each of `parts` (a JSON array of presigned parts) with its slice of
    /// `file` cut at `part_size`.
    pub async fn put_parts(&self, parts: &Value, file: &[u8], part_size: usize) {
        for p in parts.as_array().expect("an array of parts") {
            let n = p["partNumber"].as_u64().unwrap();
            self.put_part(p, slice(file, part_size, n)).await;
        }
    }

    pub async fn put_raw(&self, part: &Value, bytes: Vec<u8>) -> reqwest::Response {
        assert_eq!(part["method"], "PUT");
        let mut r = self.http.put(part["url"].as_str().unwrap()).body(bytes);
        for (k, v) in part["headers"].as_object().unwrap() {
            // The body sets Content-Length (as a browser's does: it may not set
            // the header itself); the URL signs the length the part must have.
            if k != "content-length" {
                r = r.header(k, v.as_str().unwrap());
            }
        }
        r.send().await.unwrap()
    }

    /// Reads the object back: (bytes, content type, metadata).
    pub async fn read_object(
        &self,
        key: &str,
    ) -> (Vec<u8>, String, std::collections::HashMap<String, String>) {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("object exists");
        let ct = out.content_type().unwrap_or_default().to_string();
        let meta = out.metadata().cloned().unwrap_or_default();
        let bytes = out.body.collect().await.unwrap().into_bytes().to_vec();
        (bytes, ct, meta)
    }

    /// Completes a one-part upload at the provider directly, behind the
    /// broker's back (as a completer that crashed right after it would have).
    pub async fn complete_at_provider(&self, created: &Value, etag: &str) {
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(created["key"].as_str().unwrap())
            .upload_id(created["uploadId"].as_str().unwrap())
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .parts(
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(1)
                            .e_tag(etag)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Stores a part at the provider directly, behind the broker's back (a
    /// client with storage credentials of its own, or another tool).
    pub async fn upload_part_at_provider(&self, created: &Value, n: i32, bytes: &[u8]) -> String {
        self.s3
            .upload_part()
            .bucket(&self.bucket)
            .key(created["key"].as_str().unwrap())
            .upload_id(created["uploadId"].as_str().unwrap())
            .part_number(n)
            .body(bytes.to_vec().into())
            .send()
            .await
            .unwrap()
            .e_tag
            .unwrap()
    }

    /// The provider's in-progress multipart uploads under this test's prefix.
    pub async fn in_progress_uploads(&self) -> Vec<String> {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .filter_map(|u| u.upload_id().map(str::to_string))
            .collect()
    }
}

/// A bucket of its own with versioning on: each CompleteMultipartUpload that
/// reaches storage adds a version, so versions count provider completions.
pub async fn versioned_bucket() -> String {
    let s3 = s3_client().await;
    let bucket = format!(
        "ub-versioned-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    bucket
}

impl TestApp {
    /// How many versions of `key` storage holds (see [`versioned_bucket`]).
    pub async fn versions(&self, key: &str) -> usize {
        self.s3
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .unwrap()
            .versions()
            .len()
    }

    /// The upload's row status, as the database holds it (not as clients see it).
    pub async fn row_status(&self, created: &Value) -> String {
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        sqlx::query_scalar("select status from uploads where id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// Deterministic bytes that do not compress or repeat.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Bytes of part `n` (1-based) of `file` cut at `part_size`.
pub fn slice(file: &[u8], part_size: usize, n: u64) -> &[u8] {
    let start = (n as usize - 1) * part_size;
    &file[start..(start + part_size).min(file.len())]
}

/// Creates a one-part upload of `body` on the broker at `base` (a broker
/// binary the test started, not a `TestApp`) and PUTs `body` to its part URL.
/// Returns the create response.
pub async fn one_part_uploaded(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    filename: &str,
    body: &'static str,
) -> Value {
    let c: Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(key)
        .json(&json!({"filename": filename, "size": body.len()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = c["parts"][0]["url"].as_str().unwrap().to_string();
    assert!(http
        .put(&url)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    c
}

pub fn token(v: &Value) -> String {
    v["resumeToken"].as_str().expect("resumeToken").to_string()
}

pub fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}
