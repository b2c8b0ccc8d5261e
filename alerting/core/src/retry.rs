//! Retry timing of transient delivery failures: a pure schedule (attempt ->
//! delay, capped exponential with jitter, `Retry-After` as a floor) and a
//! horizon after which a page stops being retried on its channel.
//!
//! A transient failure (connection refused, timeout, SMTP 4xx, HTTP 5xx,
//! 408, 429) never ends a delivery by itself: the outbox row stays pending
//! and is tried again at [`RetryPolicy::decide`]'s time, for as long as the
//! episode needs the page (the dispatcher cancels it once the episode is
//! acknowledged or resolved) and at most [`RetryPolicy::horizon_ms`] after
//! the page became due. While it is retried, the same step is also queued on
//! the other channel once the failures have lasted
//! [`RetryPolicy::fallback_after_ms`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt, in milliseconds (doubles each time).
    pub base_delay_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub max_delay_ms: u64,
    /// How long after the page became due it is still retried, in
    /// milliseconds (then it fails like a permanent failure: fallback
    /// channel, else the next rung).
    pub horizon_ms: u64,
    /// How long after the page became due a page still failing transiently
    /// is also queued on the other channel (the first channel keeps being
    /// retried), in milliseconds.
    pub fallback_after_ms: u64,
}

/// 24 hours, the default (and smallest configurable) retry horizon.
pub const DEFAULT_HORIZON_MS: u64 = 24 * 3600 * 1000;

impl Default for RetryPolicy {
    /// 5 s doubling to 5 min (with jitter), for 24 h; the fallback channel
    /// after 1 min of failures.
    fn default() -> Self {
        Self { base_delay_ms: 5_000, max_delay_ms: 300_000, horizon_ms: DEFAULT_HORIZON_MS, fallback_after_ms: 60_000 }
    }
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// The horizon has passed: stop retrying on this channel.
    GiveUp,
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based): "equal jitter",
    /// half of the capped exponential delay fixed, half spread by a hash of
    /// (key, attempt), so retries of different messages do not synchronize
    /// while staying reproducible. A provider's `Retry-After` is a floor
    /// (within `max_delay_ms`). Pure.
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

    /// After failed attempt `attempt` of a page due at `due_at`: when to try
    /// again, or give up once `now` is past the horizon. Pure.
    pub fn decide(
        &self,
        attempt: u32,
        key: &str,
        retry_after: Option<Duration>,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> RetryDecision {
        if self.elapsed_ms(due_at, now) >= self.horizon_ms {
            return RetryDecision::GiveUp;
        }
        match chrono::Duration::from_std(self.delay(attempt, key, retry_after)) {
            Ok(d) => RetryDecision::RetryAt(now + d),
            Err(_) => RetryDecision::GiveUp,
        }
    }

    /// Whether a page due at `due_at` that still fails transiently at `now`
    /// should also go out on the other channel. Pure.
    pub fn fallback_due(&self, due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.elapsed_ms(due_at, now) >= self.fallback_after_ms
    }

    fn elapsed_ms(&self, due_at: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
        u64::try_from((now - due_at).num_milliseconds()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let p = RetryPolicy { base_delay_ms: 1000, max_delay_ms: 8000, ..RetryPolicy::default() };
        for a in 1..40 {
            let d = p.delay(a, "k", None).as_millis() as u64;
            let raw = (1000u64 << (a - 1).min(30)).min(8000);
            assert!(d >= raw / 2 && d <= raw, "attempt {a}: {d}");
        }
        assert_eq!(p.delay(3, "k", None), p.delay(3, "k", None));
        assert!(p.delay(1, "k", Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        assert!(p.delay(1, "k", Some(Duration::from_secs(3600))) <= Duration::from_secs(8));
    }

    #[test]
    fn default_schedule_is_5s_doubling_to_5min() {
        let p = RetryPolicy::default();
        let d = |a| p.delay(a, "key", None).as_millis() as u64;
        assert!((2_500..=5_000).contains(&d(1)));
        assert!((5_000..=10_000).contains(&d(2)));
        assert!((150_000..=300_000).contains(&d(7)));
        assert!((150_000..=300_000).contains(&d(1_000)));
    }

    #[test]
    fn retries_until_the_horizon_whatever_the_attempt_count() {
        let p = RetryPolicy::default();
        let due: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        // The old policy gave up after 6 attempts (about 40 s).
        let now = due + chrono::Duration::minutes(10);
        match p.decide(60, "k", None, due, now) {
            RetryDecision::RetryAt(t) => assert!(t > now && t <= now + chrono::Duration::minutes(5)),
            RetryDecision::GiveUp => panic!("gave up after 10 minutes"),
        }
        let now = due + chrono::Duration::hours(23);
        assert!(matches!(p.decide(10_000, "k", None, due, now), RetryDecision::RetryAt(_)));
        let now = due + chrono::Duration::hours(24);
        assert_eq!(p.decide(3, "k", None, due, now), RetryDecision::GiveUp);
    }

    #[test]
    fn fallback_after_a_minute_of_failures() {
        let p = RetryPolicy::default();
        let due: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(!p.fallback_due(due, due + chrono::Duration::seconds(59)));
        assert!(p.fallback_due(due, due + chrono::Duration::seconds(60)));
        // A clock behind the due time (another replica) is not "late".
        assert!(!p.fallback_due(due, due - chrono::Duration::hours(1)));
    }
}
