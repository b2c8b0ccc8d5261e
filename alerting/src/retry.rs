//! Retry timing: exponential backoff with jitter, honouring `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in total on one channel (first try included).
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds (doubles each time).
    pub base_delay_ms: u64,
    /// Longest delay, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    /// 6 attempts: about 2 s, 4 s, 8 s, 16 s, 32 s apart (capped at 60 s).
    fn default() -> Self {
        Self { max_attempts: 6, base_delay_ms: 2_000, max_delay_ms: 60_000 }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): "equal jitter",
    /// half fixed, half spread by a hash of (key, attempt) so retries of
    /// different messages do not synchronize while staying reproducible.
    /// A provider's `Retry-After` is a floor (within `max_delay_ms`).
    pub fn delay(&self, attempt: u32, key: &str, retry_after: Option<Duration>) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let raw = self.base_delay_ms.saturating_mul(1u64 << exp).min(self.max_delay_ms.max(1));
        let half = raw / 2;
        let h = Sha256::new().chain_update(key.as_bytes()).chain_update(attempt.to_be_bytes()).finalize();
        let r = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let jitter = if half == 0 { 0 } else { r % (half + 1) };
        let mut d = Duration::from_millis(half + jitter);
        if let Some(ra) = retry_after {
            d = d.max(ra.min(Duration::from_millis(self.max_delay_ms.max(1))));
        }
        d
    }

    /// When to try again after failed attempt `attempt`, or `None` when the
    /// attempts are exhausted (for an outbox that schedules retries).
    pub fn next_attempt_at(
        &self,
        attempt: u32,
        key: &str,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if attempt >= self.max_attempts {
            return None;
        }
        let d = chrono::Duration::from_std(self.delay(attempt, key, retry_after)).ok()?;
        Some(now + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let p = RetryPolicy { max_attempts: 10, base_delay_ms: 1000, max_delay_ms: 8000 };
        for a in 1..10 {
            let d = p.delay(a, "k", None).as_millis() as u64;
            let raw = (1000u64 << (a - 1)).min(8000);
            assert!(d >= raw / 2 && d <= raw, "attempt {a}: {d}");
        }
        assert_eq!(p.delay(3, "k", None), p.delay(3, "k", None));
        assert!(p.delay(1, "k", Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        assert!(p.next_attempt_at(10, "k", None, Utc::now()).is_none());
    }
}
