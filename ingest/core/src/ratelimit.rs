//! Per-sender rate limits: a token bucket per device or patient id, in a map
//! of bounded size. Pure: no clock (the caller passes the time), no I/O.
//!
//! Each sender may send `burst` messages at once and `rate` messages a second
//! after that. A sender idle long enough to have refilled its bucket is in the
//! same state as one never seen, so its entry can be dropped without changing
//! any decision: when the map is full, idle entries go first. If that is not
//! enough (more active senders than `max_senders`), arbitrary entries are
//! dropped until the map is half full; those senders start again with a full
//! bucket (more lenient, never stricter). Memory stays bounded whatever the
//! number of distinct ids, and the amortized cost per message is O(1).

use std::collections::HashMap;
use std::time::Instant;

/// Rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per second per sender; 0 disables the limit.
    pub rate: f64,
    /// Messages a sender may send at once (bucket size), at least 1.
    pub burst: f64,
    /// Most senders tracked at once.
    pub max_senders: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by sender key.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// A limiter with `limit`.
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit { burst: limit.burst.max(1.0), max_senders: limit.max_senders.max(2), ..limit };
        RateLimiter { limit, buckets: HashMap::new() }
    }

    /// Takes one token from `key`'s bucket at `now`: true if the message may
    /// pass, false if the sender is over its limit.
    pub fn allow(&mut self, key: &str, now: Instant) -> bool {
        if self.limit.rate.is_nan() || self.limit.rate <= 0.0 {
            return true;
        }
        if let Some(b) = self.buckets.get_mut(key) {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.limit.rate).min(self.limit.burst);
            b.at = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.buckets.len() >= self.limit.max_senders {
            self.evict(now);
        }
        self.buckets.insert(key.to_owned(), Bucket { tokens: self.limit.burst - 1.0, at: now });
        true
    }

    /// Senders tracked now.
    pub fn senders(&self) -> usize {
        self.buckets.len()
    }

    /// Makes room: drops the senders whose bucket is full again at `now`,
    /// then, if more than half the capacity is still used, arbitrary others.
    fn evict(&mut self, now: Instant) {
        let RateLimit { rate, burst, max_senders } = self.limit;
        self.buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        let keep = max_senders / 2;
        if self.buckets.len() > keep {
            let drop: Vec<String> = self.buckets.keys().skip(keep).cloned().collect();
            for k in drop {
                self.buckets.remove(&k);
            }
        }
    }
}

/// The rate-limit key of an MQTT topic: the device or patient id segment
/// (`vitalwatch/v1/devices/{id}/...`, `vitalwatch/v1/patients/{id}/...`),
/// prefixed by its kind; `None` for any other topic. Works on the raw
/// segment (at most 64 bytes kept), so it needs no valid identifier.
pub fn sender_key(topic: &str) -> Option<String> {
    let mut parts = topic.splitn(5, '/');
    let (Some("vitalwatch"), Some("v1"), Some(kind), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let prefix = match kind {
        "devices" => "d:",
        "patients" => "p:",
        _ => return None,
    };
    let mut cut = id.len().min(64);
    while !id.is_char_boundary(cut) {
        cut -= 1;
    }
    Some(format!("{prefix}{}", &id[..cut]))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(rate: f64, burst: f64, max_senders: usize) -> RateLimiter {
        RateLimiter::new(RateLimit { rate, burst, max_senders })
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut l = limiter(50.0, 200.0, 100);
        let passed = (0..2000).filter(|_| l.allow("d:flood", t0)).count();
        assert_eq!(passed, 200, "the burst");
        // One second later: 50 more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..2000).filter(|_| l.allow("d:flood", t1)).count(), 50);
        // Another sender is not affected.
        assert!((0..200).all(|_| l.allow("d:calm", t1)));
        // A steady sender at the rate is never limited.
        let mut l = limiter(50.0, 200.0, 100);
        assert!((0..10_000).all(|k| l.allow("d:steady", t0 + Duration::from_millis(20 * k))));
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let mut l = limiter(0.0, 1.0, 10);
        assert!((0..1000).all(|_| l.allow("x", Instant::now())));
        assert_eq!(l.senders(), 0);
    }

    #[test]
    fn memory_stays_bounded_whatever_the_number_of_senders() {
        let t0 = Instant::now();
        let mut l = limiter(1.0, 5.0, 1000);
        for k in 0..100_000u32 {
            assert!(l.allow(&format!("d:{k}"), t0 + Duration::from_micros(k as u64)));
            assert!(l.senders() <= 1000);
        }
        // Idle senders (buckets full again) are dropped first: a flooder seen
        // just now keeps its empty bucket.
        let mut l = limiter(1.0, 5.0, 10);
        for k in 0..9 {
            l.allow(&format!("d:idle-{k}"), t0);
        }
        let later = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            l.allow("d:flood", later);
        }
        assert_eq!(l.senders(), 10);
        assert!(l.allow("d:new", later), "the map is full: idle senders make room");
        assert_eq!(l.senders(), 2, "the nine idle senders were dropped");
        assert!(!l.allow("d:flood", later), "the flooder is still limited");
    }

    #[test]
    fn sender_keys_from_topics() {
        assert_eq!(sender_key("vitalwatch/v1/devices/cuff-1/readings/json").as_deref(), Some("d:cuff-1"));
        assert_eq!(sender_key("vitalwatch/v1/devices/cuff-1/status").as_deref(), Some("d:cuff-1"));
        assert_eq!(sender_key("vitalwatch/v1/patients/p1/manual/senml").as_deref(), Some("p:p1"));
        assert_eq!(sender_key("other/v1/devices/x/status"), None);
        assert_eq!(sender_key("vitalwatch/v1/things/x/y"), None);
        let long = format!("vitalwatch/v1/devices/{}/status", "é".repeat(100));
        assert_eq!(sender_key(&long).unwrap().len(), 2 + 64);
    }
}
