//! Inbound SMS security (issue #13): who may call `POST /sms/inbound`, how often,
//! and what a sender that keeps guessing gets.
//!
//! - [`InboundAuth`]: every call is authenticated. `twilio`: `X-Twilio-Signature`
//!   (HMAC-SHA1 of URL and parameters with the auth token); every other provider and
//!   the embedded `file` transport: `X-Vitalwatch-Signature: sha256=<hex>` over
//!   `"{timestamp}.{body}"` with `X-Vitalwatch-Timestamp` within a skew (stops replay
//!   of an old call), compared in constant time.
//! - [`ReplayCache`]: a signature seen once is refused for the skew window (per replica).
//! - [`GlobalLimiter`]: a token bucket over all senders, per replica.
//! - [`GuardPolicy`]: attempts per sender number (counted in the database, shared by
//!   replicas) and the lockout; [`sender_key`] is the keyed hash stored instead of the number.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::twilio_signature;

/// Header with the Unix time (seconds) of a generic webhook call.
pub const TIMESTAMP_HEADER: &str = "x-vitalwatch-timestamp";
/// Header with the generic webhook signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-vitalwatch-signature";
/// Twilio's signature header.
pub const TWILIO_HEADER: &str = "x-twilio-signature";
/// Shortest inbound secret accepted, in bytes.
pub const MIN_INBOUND_SECRET_LEN: usize = 32;

/// Why an inbound call is refused before its content is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundAuthError {
    /// Inbound SMS is disabled.
    #[error("inbound SMS is disabled")]
    Disabled,
    /// No signature (or no timestamp) header.
    #[error("missing signature or timestamp header")]
    Missing,
    /// The signature does not match.
    #[error("invalid signature")]
    BadSignature,
    /// The timestamp is outside the allowed skew (a replayed or delayed call).
    #[error("timestamp outside the allowed skew")]
    Stale,
    /// The same signed call was already received.
    #[error("replayed call")]
    Replayed,
}

/// How inbound calls are authenticated.
#[derive(Clone)]
pub enum InboundAuth {
    /// `POST /sms/inbound` answers 404.
    Disabled,
    /// Twilio: `X-Twilio-Signature` with the account's auth token over `url` and the form.
    Twilio {
        /// Auth token.
        auth_token: String,
        /// The URL Twilio calls (`{public_base_url}/sms/inbound`).
        url: String,
    },
    /// Generic: HMAC-SHA256 of `"{timestamp}.{body}"`.
    Hmac {
        /// Key.
        secret: Vec<u8>,
        /// Largest allowed distance between the timestamp and the clock.
        max_skew: Duration,
    },
}

impl std::fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InboundAuth::Disabled => "InboundAuth::Disabled",
            InboundAuth::Twilio { .. } => "InboundAuth::Twilio",
            InboundAuth::Hmac { .. } => "InboundAuth::Hmac",
        })
    }
}

fn hmac256(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The `X-Vitalwatch-Signature` value of a generic webhook call: `sha256=<hex>`.
pub fn sign_webhook(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut m = hmac256(secret);
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("sha256={}", hex(&m.finalize().into_bytes()))
}

impl InboundAuth {
    /// Whether inbound SMS is accepted at all.
    pub fn enabled(&self) -> bool {
        !matches!(self, InboundAuth::Disabled)
    }

    /// Verifies one call. `header` reads a request header (lower-case name); `pairs`
    /// is the decoded form. Returns the signature, to refuse replays ([`ReplayCache`]).
    pub fn verify<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        pairs: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<String, InboundAuthError> {
        match self {
            InboundAuth::Disabled => Err(InboundAuthError::Disabled),
            InboundAuth::Twilio { auth_token, url } => {
                let sig = header(TWILIO_HEADER).filter(|s| !s.is_empty()).ok_or(InboundAuthError::Missing)?;
                if twilio_signature::verify(auth_token, url, pairs, sig) {
                    Ok(sig.trim().to_string())
                } else {
                    Err(InboundAuthError::BadSignature)
                }
            }
            InboundAuth::Hmac { secret, max_skew } => {
                let ts = header(TIMESTAMP_HEADER).ok_or(InboundAuthError::Missing)?;
                let sig = header(SIGNATURE_HEADER).ok_or(InboundAuthError::Missing)?;
                let ts: i64 = ts.trim().parse().map_err(|_| InboundAuthError::Missing)?;
                let given = sig.trim().strip_prefix("sha256=").and_then(unhex).ok_or(InboundAuthError::BadSignature)?;
                let mut m = hmac256(secret);
                m.update(ts.to_string().as_bytes());
                m.update(b".");
                m.update(body);
                // Constant-time comparison.
                m.verify_slice(&given).map_err(|_| InboundAuthError::BadSignature)?;
                let at = DateTime::from_timestamp(ts, 0).ok_or(InboundAuthError::Stale)?;
                if (now - at).abs() > *max_skew {
                    return Err(InboundAuthError::Stale);
                }
                Ok(sig.trim().to_string())
            }
        }
    }
}

/// Signatures already accepted, kept for `ttl` (per replica): a replay within the
/// skew window is refused. Bounded: the oldest entries go first when full.
#[derive(Debug)]
pub struct ReplayCache {
    ttl: Duration,
    capacity: usize,
    seen: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl ReplayCache {
    /// A cache keeping signatures for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity: capacity.max(1), seen: Mutex::new(HashMap::new()) }
    }

    /// Records `signature`; false if it was seen within the ttl.
    pub fn first_use(&self, signature: &str, now: DateTime<Utc>) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, at| now - *at <= self.ttl);
        if seen.contains_key(signature) {
            return false;
        }
        if seen.len() >= self.capacity
            && let Some(oldest) = seen.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(signature.to_string(), now);
        true
    }
}

/// A token bucket over all senders (per replica): `per_minute` tokens a minute,
/// at most `per_minute` at once.
#[derive(Debug)]
pub struct GlobalLimiter {
    per_minute: f64,
    state: Mutex<(f64, DateTime<Utc>)>,
}

impl GlobalLimiter {
    /// A full bucket.
    pub fn new(per_minute: u32, now: DateTime<Utc>) -> Self {
        let cap = f64::from(per_minute.max(1));
        Self { per_minute: cap, state: Mutex::new((cap, now)) }
    }

    /// Takes one token; false when the bucket is empty.
    pub fn try_take(&self, now: DateTime<Utc>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = (now - st.1).num_milliseconds().max(0) as f64 / 60_000.0;
        st.0 = (st.0 + elapsed * self.per_minute).min(self.per_minute);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Limits per sender number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardPolicy {
    /// Failed attempts allowed within `window`.
    pub max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// Lockout after `max_failures`.
    pub lockout: Duration,
}

impl Default for GuardPolicy {
    fn default() -> Self {
        Self { max_failures: 5, window: Duration::minutes(15), lockout: Duration::hours(1) }
    }
}

/// The stored state of one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardRow {
    /// Start of the counting window.
    pub window_start: DateTime<Utc>,
    /// Attempts counted in the window.
    pub failures: u32,
    /// Locked until.
    pub locked_until: Option<DateTime<Utc>>,
    /// Lockouts so far.
    pub lockouts: u32,
}

/// What [`admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The attempt may be evaluated (it is already counted).
    Allowed,
    /// The sender is locked out (`new_lockout`: this attempt started the lockout; audit it).
    Locked {
        /// Until when.
        until: DateTime<Utc>,
        /// Whether the lockout starts now.
        new_lockout: bool,
    },
}

/// The pure step of the per-sender limit: counts the attempt BEFORE the code is
/// checked (so parallel requests cannot pass the limit), locks when the window's
/// count would exceed `max_failures`. Returns the new row and the decision.
pub fn admit(row: Option<GuardRow>, policy: &GuardPolicy, now: DateTime<Utc>) -> (GuardRow, Admission) {
    let mut r = row.unwrap_or(GuardRow { window_start: now, failures: 0, locked_until: None, lockouts: 0 });
    if let Some(until) = r.locked_until.filter(|u| *u > now) {
        return (r, Admission::Locked { until, new_lockout: false });
    }
    if r.locked_until.is_some() || now - r.window_start >= policy.window {
        r.window_start = now;
        r.failures = 0;
        r.locked_until = None;
    }
    if r.failures >= policy.max_failures {
        let until = now + policy.lockout;
        r.locked_until = Some(until);
        r.lockouts += 1;
        return (r, Admission::Locked { until, new_lockout: true });
    }
    r.failures += 1;
    (r, Admission::Allowed)
}

/// The key stored for a sender number: 128 bits of HMAC-SHA256 with the
/// acknowledgment secret (no phone numbers in the guard table or the audit).
pub fn sender_key(secret: &[u8], number: &str) -> String {
    let mut m = hmac256(secret);
    m.update(b"vitalwatch-sms-sender\0");
    m.update(number.as_bytes());
    hex(&m.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn hmac_auth() -> InboundAuth {
        InboundAuth::Hmac { secret: SECRET.to_vec(), max_skew: Duration::minutes(5) }
    }

    #[test]
    fn hmac_signature_timestamp_and_tampering() {
        let now = Utc::now();
        let body = b"From=%2B33600000001&Body=ACK+12345678";
        let ts = now.timestamp();
        let sig = sign_webhook(SECRET, ts, body);
        let ts_s = ts.to_string();
        let check = |sig: &str, ts: &str, body: &[u8]| {
            hmac_auth().verify(
                |n| match n {
                    SIGNATURE_HEADER => Some(sig),
                    TIMESTAMP_HEADER => Some(ts),
                    _ => None,
                },
                body,
                &[],
                now,
            )
        };
        assert!(check(&sig, &ts_s, body).is_ok());
        assert_eq!(check(&sig, &ts_s, b"From=%2B33600000001&Body=ACK+12345679"), Err(InboundAuthError::BadSignature));
        assert_eq!(check(&sig, &(ts - 1).to_string(), body), Err(InboundAuthError::BadSignature));
        let old = ts - 600;
        assert_eq!(check(&sign_webhook(SECRET, old, body), &old.to_string(), body), Err(InboundAuthError::Stale));
        assert_eq!(check("sha256=zz", &ts_s, body), Err(InboundAuthError::BadSignature));
        assert_eq!(
            check(&sign_webhook(b"other-secret-other-secret-other!", ts, body), &ts_s, body),
            Err(InboundAuthError::BadSignature)
        );
        let none = hmac_auth().verify(|_| None, body, &[], now);
        assert_eq!(none, Err(InboundAuthError::Missing));
        assert_eq!(InboundAuth::Disabled.verify(|_| None, body, &[], now), Err(InboundAuthError::Disabled));
    }

    #[test]
    fn replay_cache_refuses_a_second_use_within_the_ttl() {
        let now = Utc::now();
        let c = ReplayCache::new(Duration::minutes(5), 2);
        assert!(c.first_use("a", now));
        assert!(!c.first_use("a", now + Duration::minutes(1)));
        assert!(c.first_use("a", now + Duration::minutes(7)));
        assert!(c.first_use("b", now + Duration::minutes(7)));
        assert!(c.first_use("c", now + Duration::minutes(7)));
    }

    #[test]
    fn global_bucket_refills() {
        let now = Utc::now();
        let l = GlobalLimiter::new(2, now);
        assert!(l.try_take(now) && l.try_take(now));
        assert!(!l.try_take(now));
        assert!(l.try_take(now + Duration::seconds(31)));
    }

    #[test]
    fn attempts_are_counted_first_and_lock_after_the_limit() {
        let p = GuardPolicy::default();
        let t = Utc::now();
        let mut row = None;
        for _ in 0..5 {
            let (r, a) = admit(row, &p, t);
            assert_eq!(a, Admission::Allowed);
            row = Some(r);
        }
        let (r, a) = admit(row, &p, t);
        assert_eq!(a, Admission::Locked { until: t + p.lockout, new_lockout: true });
        assert_eq!(r.lockouts, 1);
        let (r, a) = admit(Some(r), &p, t + Duration::minutes(30));
        assert_eq!(a, Admission::Locked { until: t + p.lockout, new_lockout: false });
        // After the lockout: a new window.
        let (r, a) = admit(Some(r), &p, t + Duration::minutes(61));
        assert_eq!(a, Admission::Allowed);
        assert_eq!(r.failures, 1);
        // A window that passed without lockout starts again.
        let quiet = GuardRow { window_start: t, failures: 4, locked_until: None, lockouts: 0 };
        assert_eq!(admit(Some(quiet), &p, t + Duration::minutes(16)).0.failures, 1);
    }

    #[test]
    fn sender_key_is_keyed_and_stable() {
        assert_eq!(sender_key(SECRET, "+33600000001"), sender_key(SECRET, "+33600000001"));
        assert_ne!(sender_key(SECRET, "+33600000001"), sender_key(SECRET, "+33600000002"));
        assert_ne!(sender_key(SECRET, "+33600000001"), sender_key(b"another", "+33600000001"));
        assert_eq!(sender_key(SECRET, "+33600000001").len(), 32);
    }
}
