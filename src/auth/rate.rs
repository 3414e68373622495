//! Rate limits: per grant subject (tenant, subject), per API key when
//! `API_KEY_RATE_LIMIT` is set, and per client address for failed
//! authentications (`AUTH_FAILURE_LIMIT`); GCRA with a burst of twice the
//! rate, counted per instance (governor).

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimits {
    subjects: Option<DefaultKeyedRateLimiter<(String, String)>>,
    keys: Option<DefaultKeyedRateLimiter<String>>,
    /// Failed authentications per client address.
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses over that limit, and until when: their credentials are
    /// checked only against what is already in memory (no database query).
    held: Mutex<HashMap<IpAddr, Instant>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

fn retry_after(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::RateLimited {
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

impl RateLimits {
    /// `per_subject` and `per_key`: requests per second, 0 for none;
    /// `failures_per_address`: failed authentications per second per client
    /// address, 0 for none.
    pub fn new(per_subject: u32, per_key: u32, failures_per_address: u32) -> Self {
        Self {
            subjects: limiter(per_subject),
            keys: limiter(per_key),
            failures: limiter(failures_per_address),
            held: Mutex::default(),
        }
    }

    /// Whether `peer` is over its limit of failed authentications now: the
    /// 429 to answer instead of a database query.
    pub fn held(&self, peer: Option<IpAddr>) -> Option<ApiError> {
        let until = *self.held.lock().unwrap().get(&peer?)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(ApiError::RateLimited {
            retry_after: left.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Counts a failed authentication from `peer`: past the limit, the
    /// address is held until its bucket has room again (see [`Self::held`]).
    pub fn failed(&self, peer: Option<IpAddr>) {
        let (Some(l), Some(ip)) = (&self.failures, peer) else {
            return;
        };
        if let Err(not_until) = l.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let wait = wait.max(Duration::from_secs(1));
            let mut held = self.held.lock().unwrap();
            if held.len() > 100_000 {
                held.retain(|_, t| *t > Instant::now());
            }
            held.insert(ip, Instant::now() + wait);
        }
    }

    pub fn check_subject(&self, tenant: &str, subject: &str) -> Result<(), ApiError> {
        match &self.subjects {
            Some(l) => l
                .check_key(&(tenant.to_string(), subject.to_string()))
                .map_err(retry_after),
            None => Ok(()),
        }
    }

    /// `key`: a stable id of the key (never the key itself), made only when
    /// API keys are limited at all.
    pub fn check_key(&self, key: impl FnOnce() -> String) -> Result<(), ApiError> {
        match &self.keys {
            Some(l) => l.check_key(&key()).map_err(retry_after),
            None => Ok(()),
        }
    }

    /// Forgets keys that have been idle (called now and then, so that the
    /// limiter does not grow with every subject ever seen).
    pub fn shrink(&self) {
        if let Some(l) = &self.subjects {
            l.retain_recent();
        }
        if let Some(l) = &self.keys {
            l.retain_recent();
        }
        if let Some(l) = &self.failures {
            l.retain_recent();
        }
        self.held
            .lock()
            .unwrap()
            .retain(|_, until| *until > Instant::now());
    }
}
