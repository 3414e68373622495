//! Prometheus metrics, through the `metrics` facade and its Prometheus exporter.
//! Labels are fixed vocabularies (route templates, operation names, outcomes):
//! never a token, key or raw path.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The process-wide recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("the only metrics recorder of the process")
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets, for ever. The exporter
/// keeps every sample until then (or until a scrape): without this, an
/// instance nobody scrapes would grow by every request it served.
pub async fn upkeep() {
    let handle = handle();
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

/// The `method` label: the methods the API knows, anything else `other` (a
/// client must not be able to invent label values, each a new series).
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::PATCH => "PATCH",
        _ => "other",
    }
}

pub fn http_request(method: &http::Method, route: &str, status: u16, took: Duration) {
    let (method, route) = (method_label(method), route.to_string());
    counter!("upload_broker_http_requests_total", "method" => method, "route" => route.clone(), "status" => status.to_string()).increment(1);
    histogram!("upload_broker_http_request_duration_seconds", "method" => method, "route" => route)
        .record(took.as_secs_f64());
}

pub fn storage_call(operation: &'static str, outcome: &'static str, took: Duration) {
    counter!("upload_broker_storage_requests_total", "operation" => operation, "outcome" => outcome).increment(1);
    histogram!("upload_broker_storage_request_duration_seconds", "operation" => operation)
        .record(took.as_secs_f64());
}

pub fn upload_created() {
    counter!("upload_broker_uploads_created_total").increment(1);
}

pub fn upload_completed(bytes: u64) {
    counter!("upload_broker_uploads_completed_total").increment(1);
    counter!("upload_broker_completed_bytes_total").increment(bytes);
}

pub fn upload_aborted() {
    counter!("upload_broker_uploads_aborted_total").increment(1);
}

/// `reason`: `sweep` (past its expiry) or `provider_gone` (aborted behind our back).
pub fn upload_expired(reason: &'static str) {
    counter!("upload_broker_uploads_expired_total", "reason" => reason).increment(1);
}

pub fn part_urls_signed(n: usize) {
    counter!("upload_broker_part_urls_signed_total").increment(n as u64);
}

/// One sweep run: uploads by outcome (`aborted`, `already_gone`,
/// `recovered_completed`, `aborts_finished`, `failed`), records deleted, and
/// orphans by outcome (`found`, `aborted`, `failed`).
pub fn sweep_run(uploads: &[(&'static str, u64)], deleted: u64, orphans: &[(&'static str, u64)]) {
    counter!("upload_broker_sweep_runs_total").increment(1);
    for (outcome, n) in uploads {
        counter!("upload_broker_sweep_uploads_total", "outcome" => *outcome).increment(*n);
    }
    counter!("upload_broker_sweep_records_deleted_total").increment(deleted);
    for (outcome, n) in orphans {
        counter!("upload_broker_sweep_orphans_total", "outcome" => *outcome).increment(*n);
    }
}

/// One webhook delivery attempt's outcome (`delivered`, `retry`, `failed`);
/// for a delivery, the time from the event to its receiver's 2xx.
pub fn webhook_delivery(outcome: &'static str, lag: Option<Duration>) {
    counter!("upload_broker_webhook_deliveries_total", "outcome" => outcome).increment(1);
    if let Some(lag) = lag {
        histogram!("upload_broker_webhook_delivery_lag_seconds").record(lag.as_secs_f64());
    }
}

/// Age of the oldest event still waiting for a delivery (0 when none waits).
pub fn events_oldest_undelivered(age: Option<Duration>) {
    gauge!("upload_broker_events_oldest_undelivered_seconds")
        .set(age.map_or(0.0, |a| a.as_secs_f64()));
}

pub fn db_pool(pool: &sqlx::PgPool) {
    let size = pool.size() as f64;
    let idle = pool.num_idle() as f64;
    gauge!("upload_broker_db_pool_connections", "state" => "idle").set(idle);
    gauge!("upload_broker_db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    gauge!("upload_broker_db_pool_max_connections")
        .set(pool.options().get_max_connections() as f64);
}
