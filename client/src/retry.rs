use std::time::Duration;

/// Capped exponential backoff with jitter.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request (the first one included).
    pub max_attempts: u32,
    /// Delay before the second attempt (before jitter).
    pub base: Duration,
    /// Largest delay between attempts, and largest `Retry-After` honoured.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): `base × 2^(attempt-1)`,
    /// capped, then "equal jitter" (uniform between half and all of it), so
    /// clients that failed together do not come back together.
    /// A server's `Retry-After` wins when given (capped too).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.cap);
        }
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1).min(20))
                    .unwrap_or(u32::MAX),
            )
            .min(self.cap);
        let half = exp / 2;
        let jitter = half.mul_f64(random_unit());
        half + jitter
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for attempt in 1..=12 {
            let exp =
                (Duration::from_millis(100) * 2u32.pow(attempt - 1)).min(Duration::from_secs(2));
            for _ in 0..50 {
                let d = p.delay(attempt, None);
                assert!(
                    d >= exp / 2 && d <= exp,
                    "attempt {attempt}: {d:?} not in [{:?}, {exp:?}]",
                    exp / 2
                );
            }
        }
        let spread: std::collections::BTreeSet<_> = (0..20).map(|_| p.delay(5, None)).collect();
        assert!(spread.len() > 1, "no jitter");
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}
