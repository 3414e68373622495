//! Rate limits: per grant subject (tenant, subject), and per API key when
//! `API_KEY_RATE_LIMIT` is set; GCRA with a burst of twice the rate, counted
//! per instance (governor).

use crate::error::ApiError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

pub struct RateLimits {
    subjects: Option<DefaultKeyedRateLimiter<(String, String)>>,
    keys: Option<DefaultKeyedRateLimiter<String>>,
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
    /// `per_subject` and `per_key`: requests per second, 0 for none.
    pub fn new(per_subject: u32, per_key: u32) -> Self {
        Self {
            subjects: limiter(per_subject),
            keys: limiter(per_key),
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
    }
}
