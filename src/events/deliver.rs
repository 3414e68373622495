//! The delivery worker: runs in every `serve`; takes due deliveries with
//! `FOR UPDATE SKIP LOCKED` and a fenced lease (no delivery runs twice at
//! once, on any instance), POSTs each as Standard Webhooks has it, and records
//! the outcome: delivered, retried with backoff and jitter, or failed once the
//! retry window has passed. A worker that dies mid-attempt leaves its claims to
//! be taken again when their leases run out: at least once, never lost.

use super::secret::SecretBox;
use crate::db::{self, Attempted, Busy, DueDelivery};
use crate::domain::egress::EgressAllow;
use crate::domain::event::{AfterFailure, RetryPolicy};
use crate::outbound::Outbound;
use chrono::Utc;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use uuid::Uuid;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Longest a receiver may take to answer (the contract's 10 s).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How often the database is looked at for deliveries other instances'
    /// events (or retries) made due.
    pub poll: Duration,
    /// Most attempts in flight at once in this process.
    pub concurrency: usize,
    /// Most of them for one tenant's endpoints, and for one endpoint: a tenant
    /// whose receivers hang holds these and no more, so other tenants'
    /// deliveries always find a slot.
    pub per_tenant: usize,
    pub per_endpoint: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            poll: Duration::from_secs(1),
            concurrency: 16,
            per_tenant: 4,
            per_endpoint: 2,
        }
    }
}

impl DeliverySettings {
    /// The default share of one tenant: a quarter of the slots (at least one).
    pub fn default_per_tenant(concurrency: usize) -> usize {
        (concurrency / 4).max(1)
    }

    /// The default share of one endpoint: half its tenant's (at least one).
    pub fn default_per_endpoint(per_tenant: usize) -> usize {
        (per_tenant / 2).max(1)
    }

    /// A claim outlives the longest attempt with room to record it.
    pub fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(5)
    }
}

/// Most of a receiver's answer that is read (the rest is dropped unread).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What this process has in flight, per tenant and per endpoint.
#[derive(Default)]
struct InFlight {
    tenants: HashMap<String, i64>,
    endpoints: HashMap<Uuid, i64>,
}

/// One delivery in flight; its slot is given back when this is dropped.
struct Slot {
    inflight: Arc<Mutex<InFlight>>,
    tenant: String,
    endpoint: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut f = self.inflight.lock().unwrap();
        if let Some(n) = f.tenants.get_mut(&self.tenant) {
            *n -= 1;
            if *n <= 0 {
                f.tenants.remove(&self.tenant);
            }
        }
        if let Some(n) = f.endpoints.get_mut(&self.endpoint) {
            *n -= 1;
            if *n <= 0 {
                f.endpoints.remove(&self.endpoint);
            }
        }
    }
}

#[derive(Clone)]
pub struct Deliverer {
    db: PgPool,
    /// Keeps to the outbound policy: a receiver's host must be public or in
    /// `EGRESS_ALLOW`, checked on the addresses connected to.
    http: Outbound,
    secrets: SecretBox,
    settings: DeliverySettings,
    inflight: Arc<Mutex<InFlight>>,
}

impl Deliverer {
    pub fn new(
        db: PgPool,
        secrets: SecretBox,
        settings: DeliverySettings,
        egress: EgressAllow,
    ) -> Self {
        let http = Outbound::new(egress, settings.timeout);
        Self {
            db,
            http,
            secrets,
            settings,
            inflight: Arc::default(),
        }
    }

    /// What is in flight now, and the caps, for the claim.
    fn busy(&self) -> Busy {
        let f = self.inflight.lock().unwrap();
        Busy {
            tenants: f.tenants.iter().map(|(t, n)| (t.clone(), *n)).collect(),
            endpoints: f.endpoints.iter().map(|(e, n)| (*e, *n)).collect(),
            per_tenant: self.settings.per_tenant.max(1) as i64,
            per_endpoint: self.settings.per_endpoint.max(1) as i64,
        }
    }

    /// Counts a claimed delivery in flight until its slot is dropped.
    fn hold(&self, d: &DueDelivery) -> Slot {
        let mut f = self.inflight.lock().unwrap();
        *f.tenants.entry(d.tenant.clone()).or_default() += 1;
        *f.endpoints.entry(d.webhook_id).or_default() += 1;
        Slot {
            inflight: self.inflight.clone(),
            tenant: d.tenant.clone(),
            endpoint: d.webhook_id,
        }
    }

    /// Delivers until the task is dropped.
    pub async fn run(self) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut wakes = super::wakes();
        let mut gauge = tokio::time::interval(Duration::from_secs(5));
        loop {
            let free = slots.available_permits();
            let taken = if free > 0 {
                match db::claim_deliveries(
                    &self.db,
                    free as i64,
                    self.settings.lease(),
                    &self.busy(),
                )
                .await
                {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not look for due webhook deliveries");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let full = free > 0 && taken.len() == free;
            for d in taken {
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let slot = self.hold(&d);
                let this = self.clone();
                tokio::spawn(async move {
                    this.attempt(d).await;
                    drop(slot);
                    drop(permit);
                    // An upload's next event may be due now.
                    super::wake();
                });
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = wakes.changed() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = gauge.tick() => self.report_backlog().await,
            }
        }
    }

    async fn report_backlog(&self) {
        match db::oldest_undelivered(&self.db).await {
            Ok(oldest) => crate::metrics::events_oldest_undelivered(
                oldest.map(|t| (Utc::now() - t).to_std().unwrap_or_default()),
            ),
            Err(e) => tracing::debug!(error = %e, "could not measure the webhook backlog"),
        }
    }

    /// One attempt at one delivery, and its record.
    async fn attempt(&self, d: DueDelivery) {
        let (status, error) = self.post(&d).await;
        let outcome = match (status, error) {
            (Some(s), None) => Attempted::Delivered { status: s },
            (status, error) => {
                let error = error.unwrap_or_default();
                let age = (Utc::now() - d.event_at).to_std().unwrap_or_default();
                let jitter = {
                    let mut b = [0u8; 8];
                    getrandom::getrandom(&mut b).expect("the OS random source works");
                    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
                };
                match self
                    .settings
                    .retry
                    .after_failure(d.attempts.max(1) as u32, age, jitter)
                {
                    AfterFailure::RetryIn(wait) => Attempted::Retry {
                        at: Utc::now()
                            + chrono::Duration::from_std(wait)
                                .unwrap_or(chrono::Duration::hours(1)),
                        status,
                        error,
                    },
                    AfterFailure::GiveUp => Attempted::Failed { status, error },
                }
            }
        };
        let (outcome_label, lag) = match &outcome {
            Attempted::Delivered { .. } => ("delivered", Some(d.event_at)),
            Attempted::Retry { .. } => ("retry", None),
            Attempted::Failed { .. } => ("failed", None),
        };
        match db::finish_delivery(&self.db, &d, &outcome).await {
            Ok(true) => {
                crate::metrics::webhook_delivery(
                    outcome_label,
                    lag.map(|t| (Utc::now() - t).to_std().unwrap_or_default()),
                );
                match &outcome {
                    Attempted::Delivered { .. } => {
                        tracing::debug!(webhook = %super::webhook_id(d.webhook_id), event_seq = d.event_seq, attempts = d.attempts, "webhook delivered")
                    }
                    Attempted::Retry { status, error, .. } => {
                        tracing::info!(webhook = %super::webhook_id(d.webhook_id), event_seq = d.event_seq, attempts = d.attempts, ?status, error = %error, "webhook delivery failed; will retry")
                    }
                    Attempted::Failed { status, error } => {
                        tracing::warn!(webhook = %super::webhook_id(d.webhook_id), event_seq = d.event_seq, attempts = d.attempts, ?status, error = %error, "webhook delivery failed for good")
                    }
                }
            }
            Ok(false) => {
                tracing::warn!(webhook = %super::webhook_id(d.webhook_id), event_seq = d.event_seq, "a webhook delivery outlived its lease; another attempt has it")
            }
            Err(e) => {
                // The lease runs out and the delivery is taken again: at least once.
                tracing::warn!(error = %e, "could not record a webhook delivery's outcome")
            }
        }
    }

    /// POSTs the event: `(Some(status), None)` for a 2xx, otherwise the status
    /// (if any) and what went wrong. Never a URL or a header in the error.
    async fn post(&self, d: &DueDelivery) -> (Option<u16>, Option<String>) {
        let secret = match self.secrets.open(&d.tenant, d.webhook_id, &d.secret) {
            Ok(s) => s,
            Err(e) => return (None, Some(e.to_string())),
        };
        let event = d.event();
        let body = serde_json::to_vec(&event).expect("events serialize");
        let timestamp = Utc::now().timestamp();
        let signature = secret.sign(&event.id, timestamp, &body);
        let request = match self.http.request(reqwest::Method::POST, &d.url) {
            Ok(r) => r,
            // No connection is made.
            Err(e) => return (None, Some(e.to_string())),
        };
        let sent = request
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut res = match sent {
            Ok(r) => r,
            Err(e) => return (None, Some(crate::outbound::describe(&e))),
        };
        let status = res.status();
        // Read a little of the answer (so the connection can be reused), never all of it.
        let mut read = 0usize;
        while read < MAX_RESPONSE_BYTES {
            match res.chunk().await {
                Ok(Some(c)) => read += c.len(),
                _ => break,
            }
        }
        if status.is_success() {
            (Some(status.as_u16()), None)
        } else {
            (
                Some(status.as_u16()),
                Some(format!("the receiver answered {}", status.as_u16())),
            )
        }
    }
}
