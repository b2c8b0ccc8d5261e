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

use foldhash::{HashMap, HashMapExt as _};
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

/// Who a rate limit applies to: a device or a patient (manual entries), by
/// id, borrowed from the topic (no allocation per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderKey<'a> {
    kind: SenderKind,
    id: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderKind {
    Device = 0,
    Patient = 1,
}

/// Longest id kept in a key, bytes (longer ids are cut on a character boundary).
const MAX_KEY_ID_BYTES: usize = 64;

impl<'a> SenderKey<'a> {
    /// A device's key.
    pub fn device(id: &'a str) -> Self {
        SenderKey { kind: SenderKind::Device, id: cut(id) }
    }

    /// A patient's key (manual entries).
    pub fn patient(id: &'a str) -> Self {
        SenderKey { kind: SenderKind::Patient, id: cut(id) }
    }

    /// The id (at most 64 bytes).
    pub fn id(&self) -> &'a str {
        self.id
    }
}

impl std::fmt::Display for SenderKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = match self.kind {
            SenderKind::Device => "d:",
            SenderKind::Patient => "p:",
        };
        write!(f, "{prefix}{}", self.id)
    }
}

fn cut(id: &str) -> &str {
    let mut end = id.len().min(MAX_KEY_ID_BYTES);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

/// Token buckets by sender key: one map per kind of sender, keyed by id, so
/// that a lookup needs no key built for it.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: [HashMap<Box<str>, Bucket>; 2],
}

impl RateLimiter {
    /// A limiter; `burst` below 1 is raised to 1, `max_senders` below 2 to 2.
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit { burst: limit.burst.max(1.0), max_senders: limit.max_senders.max(2), ..limit };
        RateLimiter { limit, buckets: [HashMap::new(), HashMap::new()] }
    }

    /// Takes a token from `key`'s bucket at `now`; false if it has none (the
    /// message is over the limit).
    pub fn allow(&mut self, key: SenderKey<'_>, now: Instant) -> bool {
        if self.limit.rate.is_nan() || self.limit.rate <= 0.0 {
            return true;
        }
        if let Some(b) = self.buckets[key.kind as usize].get_mut(key.id) {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * self.limit.rate).min(self.limit.burst);
            b.at = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.senders() >= self.limit.max_senders {
            self.evict(now);
        }
        self.buckets[key.kind as usize].insert(key.id.into(), Bucket { tokens: self.limit.burst - 1.0, at: now });
        true
    }

    /// Senders tracked now.
    pub fn senders(&self) -> usize {
        self.buckets.iter().map(HashMap::len).sum()
    }

    /// Drops idle senders (full buckets: no decision changes), then, if more
    /// than half the bound remain, arbitrary ones down to half.
    fn evict(&mut self, now: Instant) {
        let RateLimit { rate, burst, max_senders } = self.limit;
        let mut keep = max_senders / 2;
        for map in &mut self.buckets {
            map.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        }
        for map in &mut self.buckets {
            let here = map.len().min(keep);
            keep -= here;
            if map.len() > here {
                let drop: Vec<Box<str>> = map.keys().skip(here).cloned().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
    }
}

/// The rate-limit key of a topic's sender: the device for device topics, the
/// patient for manual entries; `None` for topics of neither kind (they are
/// rejected by the topic check, not limited).
pub fn sender_key(topic: &str) -> Option<SenderKey<'_>> {
    let mut parts = topic.splitn(5, '/');
    let (Some("vitalwatch"), Some("v1"), Some(kind), Some(id)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    match kind {
        "devices" => Some(SenderKey::device(id)),
        "patients" => Some(SenderKey::patient(id)),
        _ => None,
    }
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
        let passed = (0..2000).filter(|_| l.allow(SenderKey::device("flood"), t0)).count();
        assert_eq!(passed, 200, "the burst");
        // One second later: 50 more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..2000).filter(|_| l.allow(SenderKey::device("flood"), t1)).count(), 50);
        // Another sender is not affected.
        assert!((0..200).all(|_| l.allow(SenderKey::device("calm"), t1)));
        // A steady sender at the rate is never limited.
        let mut l = limiter(50.0, 200.0, 100);
        assert!((0..10_000).all(|k| l.allow(SenderKey::device("steady"), t0 + Duration::from_millis(20 * k))));
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let mut l = limiter(0.0, 1.0, 10);
        assert!((0..1000).all(|_| l.allow(SenderKey::device("x"), Instant::now())));
        assert_eq!(l.senders(), 0);
    }

    #[test]
    fn memory_stays_bounded_whatever_the_number_of_senders() {
        let t0 = Instant::now();
        let mut l = limiter(1.0, 5.0, 1000);
        for k in 0..100_000u32 {
            assert!(l.allow(SenderKey::device(&k.to_string()), t0 + Duration::from_micros(k as u64)));
            assert!(l.senders() <= 1000);
        }
        // Idle senders (buckets full again) are dropped first: a flooder seen
        // just now keeps its empty bucket.
        let mut l = limiter(1.0, 5.0, 10);
        for k in 0..9 {
            l.allow(SenderKey::device(&format!("idle-{k}")), t0);
        }
        let later = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            l.allow(SenderKey::device("flood"), later);
        }
        assert_eq!(l.senders(), 10);
        assert!(l.allow(SenderKey::patient("new"), later), "the map is full: idle senders make room");
        assert_eq!(l.senders(), 2, "the nine idle senders were dropped");
        assert!(!l.allow(SenderKey::device("flood"), later), "the flooder is still limited");
    }

    #[test]
    fn sender_keys_from_topics() {
        let key = |t: &str| sender_key(t).map(|k| k.to_string());
        assert_eq!(key("vitalwatch/v1/devices/cuff-1/readings/json").as_deref(), Some("d:cuff-1"));
        assert_eq!(key("vitalwatch/v1/devices/cuff-1/status").as_deref(), Some("d:cuff-1"));
        assert_eq!(key("vitalwatch/v1/patients/p1/manual/senml").as_deref(), Some("p:p1"));
        assert_ne!(sender_key("vitalwatch/v1/patients/x/manual/json"), sender_key("vitalwatch/v1/devices/x/status"));
        assert_eq!(sender_key("other/v1/devices/x/status"), None);
        assert_eq!(sender_key("vitalwatch/v1/things/x/y"), None);
        let long = format!("vitalwatch/v1/devices/{}/status", "é".repeat(100));
        assert_eq!(sender_key(&long).unwrap().id().len(), 64);
    }
}
