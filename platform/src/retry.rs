//! The one retry helper: every loop that retries an operation (a database
//! write, a bus send, a dead letter, topic creation, the registry's first
//! load) goes through [`retry`] or, where the operation cannot be a closure
//! (it needs `&mut self`), through the same [`Backoff`] schedule with
//! [`Delays::wait`].
//!
//! - exponential backoff from [`Backoff::initial`], multiplied by
//!   [`Backoff::factor`] per retry, capped at [`Backoff::max`];
//! - jitter: each delay is drawn uniformly from `[d × (1 − jitter), d]`, so
//!   replicas that failed together do not retry together, and the cap stays a
//!   cap;
//! - classification: a [`Classify`] (any `Fn(&E) -> Class`) says whether an
//!   error is [`Class::Transient`] (retry) or [`Class::Permanent`] (return it
//!   at once);
//! - cancellation: with a token, a wait between two attempts ends as soon as
//!   the token fires ([`RetryError::Cancelled`], carrying the last error); an
//!   attempt in progress is never interrupted.
//!
//! Domain retry policies stay where they are (alerting's notification
//! retries: a horizon, `Retry-After`, a fallback channel); they can use
//! [`Delays`] or [`sleep_until_cancelled`] for the waiting.

use std::future::Future;
use std::time::Duration;

use crate::shutdown::CancellationToken;

/// Whether an error is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// It may succeed later (connection lost, timeout, broker away): retry.
    Transient,
    /// It will fail again (the data is refused, a bad setting): give up now.
    Permanent,
}

/// Classifies errors for [`retry`]; implemented for closures `Fn(&E) -> Class`.
pub trait Classify<E> {
    /// The class of `error`.
    fn classify(&self, error: &E) -> Class;
}

impl<E, F: Fn(&E) -> Class> Classify<E> for F {
    fn classify(&self, error: &E) -> Class {
        self(error)
    }
}

/// Every error is transient: retry until success, cancellation or
/// [`Backoff::max_attempts`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysTransient;

impl<E> Classify<E> for AlwaysTransient {
    fn classify(&self, _: &E) -> Class {
        Class::Transient
    }
}

/// The fraction of jitter of [`Backoff::exponential`].
pub const DEFAULT_JITTER: f64 = 0.2;

/// A backoff schedule: exponential, capped, with jitter, optionally bounded in attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay after the first failure (before jitter).
    pub initial: Duration,
    /// The cap on any delay.
    pub max: Duration,
    /// Growth per retry.
    pub factor: u32,
    /// Jitter fraction in `[0, 1]`: a delay `d` becomes uniform in `[d × (1 − jitter), d]`.
    pub jitter: f64,
    /// Attempts in all, the first included; `None`: no limit.
    pub max_attempts: Option<u32>,
}

impl Backoff {
    /// Doubling from `initial` up to `max`, [`DEFAULT_JITTER`], no attempt limit.
    pub const fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, factor: 2, jitter: DEFAULT_JITTER, max_attempts: None }
    }

    /// The same schedule with `jitter` (clamped to `[0, 1]`; 0: deterministic delays).
    pub const fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The same schedule giving up after `attempts` attempts in all.
    pub const fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The delay before retry number `retry` (0: after the first failure), before jitter.
    pub fn nominal(&self, retry: u32) -> Duration {
        let growth = self.factor.max(1).saturating_pow(retry.min(63));
        self.initial.saturating_mul(growth).min(self.max)
    }

    /// The delay before retry number `retry`, with jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let d = self.nominal(retry);
        if self.jitter <= 0.0 || d.is_zero() {
            return d;
        }
        let keep = 1.0 - self.jitter * rand::random::<f64>();
        d.mul_f64(keep.clamp(0.0, 1.0))
    }

    /// The successive delays of one retry loop.
    pub fn delays(&self) -> Delays {
        Delays { backoff: *self, retries: 0 }
    }
}

/// The state of one retry loop over a [`Backoff`]: for loops whose
/// operation cannot be a closure (it borrows `&mut self`), or that go on
/// after a success (a connection loop: [`Delays::reset`] on success).
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    retries: u32,
}

impl Delays {
    /// The next delay (with jitter); counts one retry.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.backoff.delay(self.retries);
        self.retries = self.retries.saturating_add(1);
        d
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// Retries counted since the start or the last [`reset`](Self::reset).
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// True once another attempt would exceed [`Backoff::max_attempts`].
    pub fn exhausted(&self) -> bool {
        self.backoff.max_attempts.is_some_and(|max| self.retries.saturating_add(1) >= max)
    }

    /// Sleeps the next delay; false (at once) if `cancel` fires first.
    pub async fn wait(&mut self, cancel: Option<&CancellationToken>) -> bool {
        let d = self.next_delay();
        sleep_until_cancelled(d, cancel).await
    }
}

/// Sleeps `delay`; false as soon as `cancel` fires (at once if it has).
pub async fn sleep_until_cancelled(delay: Duration, cancel: Option<&CancellationToken>) -> bool {
    match cancel {
        None => {
            tokio::time::sleep(delay).await;
            true
        }
        Some(token) if token.is_cancelled() => false,
        Some(token) => tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = token.cancelled() => false,
        },
    }
}

/// Why [`retry`] gave up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RetryError<E> {
    /// The operation failed with a permanent error (not retried).
    #[error("{0}")]
    Permanent(E),
    /// [`Backoff::max_attempts`] attempts failed; the last error.
    #[error("gave up after {attempts} attempts: {error}")]
    Exhausted {
        /// The last error.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
    /// The token fired while the operation was failing; the last error.
    #[error("cancelled while retrying: {0}")]
    Cancelled(E),
}

impl<E> RetryError<E> {
    /// The error of the last attempt.
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Permanent(e) | RetryError::Exhausted { error: e, .. } | RetryError::Cancelled(e) => e,
        }
    }

    /// True if it ended because the token fired.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, RetryError::Cancelled(_))
    }
}

/// Runs `op` until it succeeds, fails with an error `classify` calls
/// permanent, [`Backoff::max_attempts`] attempts failed, or `cancel` fires
/// while it fails. `on_retry(error, delay)` is called for each transient
/// failure that will be retried (metrics, a log line), before the wait.
///
/// The first attempt always runs, even with `cancel` already fired; a fired
/// token only stops the waiting between attempts.
///
/// # Errors
///
/// [`RetryError`] with the last error.
pub async fn retry<T, E, Fut>(
    backoff: &Backoff,
    cancel: Option<&CancellationToken>,
    classify: impl Classify<E>,
    mut on_retry: impl FnMut(&E, Duration),
    mut op: impl FnMut() -> Fut,
) -> Result<T, RetryError<E>>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut delays = backoff.delays();
    loop {
        let error = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if classify.classify(&error) == Class::Permanent {
            return Err(RetryError::Permanent(error));
        }
        if delays.exhausted() {
            return Err(RetryError::Exhausted { error, attempts: delays.retries() + 1 });
        }
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            on_retry(&error, Duration::ZERO);
            return Err(RetryError::Cancelled(error));
        }
        let delay = delays.next_delay();
        on_retry(&error, delay);
        if !sleep_until_cancelled(delay, cancel).await {
            return Err(RetryError::Cancelled(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap_and_jitter_stays_below_it() {
        let b = Backoff::exponential(100 * MS, 1_000 * MS).with_jitter(0.0);
        let got: Vec<u64> = (0..7).map(|r| b.delay(r).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(b.nominal(u32::MAX), 1_000 * MS, "no overflow");
        let j = Backoff::exponential(100 * MS, 1_000 * MS);
        for r in 0..20 {
            for _ in 0..50 {
                let d = j.delay(r);
                assert!(d <= j.nominal(r) && d >= j.nominal(r).mul_f64(1.0 - DEFAULT_JITTER), "{d:?} at {r}");
            }
        }
        // Jitter spreads the delays.
        let spread: std::collections::HashSet<Duration> = (0..50).map(|_| j.delay(3)).collect();
        assert!(spread.len() > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_with_backoff_until_success() {
        let calls = AtomicU32::new(0);
        let mut seen = Vec::new();
        let start = Instant::now();
        let b = Backoff::exponential(100 * MS, 10_000 * MS).with_jitter(0.0);
        let r: Result<u32, RetryError<&str>> = retry(
            &b,
            None,
            AlwaysTransient,
            |e: &&str, d| seen.push((*e, d)),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 4 { Err("down") } else { Ok(n) }
            },
        )
        .await;
        assert_eq!(r, Ok(4));
        assert_eq!(seen.iter().map(|s| s.1.as_millis()).collect::<Vec<_>>(), [100, 200, 400, 800]);
        assert_eq!(start.elapsed(), 1_500 * MS, "slept exactly the backoff (paused clock)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_returned_at_once() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let classify = |e: &String| if e == "refused" { Class::Permanent } else { Class::Transient };
        let r: Result<(), _> = retry(
            &Backoff::exponential(100 * MS, 10_000 * MS),
            None,
            classify,
            |_, _| {},
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Err(if n == 0 { "timeout".to_owned() } else { "refused".to_owned() })
            },
        )
        .await;
        assert_eq!(r, Err(RetryError::Permanent("refused".to_owned())));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(start.elapsed() <= 100 * MS, "one backoff, then no wait: {:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let calls = AtomicU32::new(0);
        let b = Backoff::exponential(250 * MS, 10_000 * MS).with_jitter(0.0).with_max_attempts(8);
        let start = Instant::now();
        let r: Result<(), _> =
            retry(&b, None, AlwaysTransient, |_: &u32, _| {}, || async { Err(calls.fetch_add(1, Ordering::SeqCst)) })
                .await;
        assert_eq!(r, Err(RetryError::Exhausted { error: 7, attempts: 8 }));
        // 250 + 500 + ... + 16 000 capped at 10 000: 7 waits.
        assert_eq!(start.elapsed(), (250 + 500 + 1_000 + 2_000 + 4_000 + 8_000 + 10_000) * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_wait_at_once() {
        let token = CancellationToken::new();
        let calls = Arc::new(AtomicU32::new(0));
        let b = Backoff::exponential(Duration::from_secs(60), Duration::from_secs(60));
        let task = {
            let (token, calls) = (token.clone(), calls.clone());
            tokio::spawn(async move {
                retry(
                    &b,
                    Some(&token),
                    AlwaysTransient,
                    |_: &&str, _| {},
                    || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async { Err::<(), _>("down") }
                    },
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        token.cancel();
        let r = task.await.unwrap();
        assert_eq!(r, Err(RetryError::Cancelled("down")));
        assert!(r.unwrap_err().is_cancelled());
        assert_eq!(start.elapsed(), Duration::ZERO, "no waiting out the 60 s backoff");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // An already fired token: one attempt, no wait.
        let start = Instant::now();
        let r = retry(&b, Some(&token), AlwaysTransient, |_, _| {}, || async { Err::<(), _>("down") }).await;
        assert_eq!(r, Err(RetryError::Cancelled("down")));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // ... which still gets its chance to succeed.
        let r: Result<u8, RetryError<()>> =
            retry(&b, Some(&token), AlwaysTransient, |_, _| {}, || async { Ok(7) }).await;
        assert_eq!(r, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn delays_reset_after_a_success() {
        let mut d = Backoff::exponential(100 * MS, 5_000 * MS).with_jitter(0.0).delays();
        let start = Instant::now();
        assert!(d.wait(None).await);
        assert!(d.wait(None).await);
        assert_eq!(start.elapsed(), 300 * MS);
        assert_eq!(d.retries(), 2);
        d.reset();
        assert_eq!(d.next_delay(), 100 * MS);
        let token = CancellationToken::new();
        token.cancel();
        let start = Instant::now();
        assert!(!d.wait(Some(&token)).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
