//! Compact per-patient reading history, sorted by measurement time.
//!
//! One `u64` per reading, all codes in one vector (one allocation per
//! patient):
//!
//! ```text
//! | 45 bits: time offset, µs since the patient's epoch | 3 bits: code | 16 bits: value |
//! ```
//!
//! * The time keeps full microsecond precision, so the [`ObservationId`] of a
//!   stored reading can be recomputed for alert evidence
//!   (`ObservationId::compute(patient, code, time)`). 2^45 µs is about 407
//!   days; the epoch is rebased when needed (history only spans the retention,
//!   at most 180 days).
//! * Values are quantized to 0.01 of the UCUM unit (0.1 mg/dL for glucose),
//!   saturating to 0..=655.35 (0..=6553.5 mg/dL). Every plausible home value
//!   (clinical.md §2.2) fits; rules evaluate the quantized value so that a
//!   restored or replayed history gives exactly the same results.
//! * Entries sort by the whole `u64`: by time, then code. Two readings with the
//!   same code and time are the same observation (the observation id is a hash
//!   of patient, code and time), so the second one is a duplicate.
//!
//! Old entries are pruned only when the vector is full (so the steady state
//! never allocates), and the newest entry of each code is always kept (the
//! missing-data rules need the last reading time even after weeks of silence).
//! Queries clamp their windows to the retention, so whether an old entry has
//! been pruned yet never changes a result.
//!
//! [`ObservationId`]: vitalwatch_schemas::ObservationId

use vitalwatch_schemas::Code;

const VALUE_BITS: u32 = 16;
const CODE_BITS: u32 = 3;
const TIME_SHIFT: u32 = VALUE_BITS + CODE_BITS;
const MAX_OFFSET: i64 = (1 << 45) - 1;
const HALF_RANGE: i64 = 1 << 44;

/// A decoded reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    /// Measurement time, µs since the Unix epoch.
    pub t_us: i64,
    /// The code.
    pub code: Code,
    /// The (quantized) value.
    pub value: f64,
}

/// Result of [`History::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Stored.
    Inserted,
    /// Same code and time already stored.
    Duplicate,
    /// Older than the newest reading minus the retention: not stored.
    TooOld,
}

fn divisor(code: Code) -> f64 {
    match code {
        Code::BloodGlucose => 10.0,
        _ => 100.0,
    }
}

/// Quantizes a value the way the history stores it.
pub(crate) fn quantize(code: Code, value: f64) -> u16 {
    let q = (value * divisor(code)).round();
    if q.is_nan() || q <= 0.0 {
        0
    } else if q >= f64::from(u16::MAX) {
        u16::MAX
    } else {
        q as u16
    }
}

/// The value a quantized entry stands for.
pub(crate) fn dequantize(code: Code, q: u16) -> f64 {
    f64::from(q) / divisor(code)
}

/// Index of the first entry `>= key`, searched from the end: readings are
/// almost always looked up near the newest one, so galloping backward touches
/// a few cache lines at the end of the history instead of the whole vector.
fn partition_from_end(entries: &[u64], key: u64) -> usize {
    let mut hi = entries.len();
    let mut step = 1usize;
    while hi > 0 {
        let probe = hi.saturating_sub(step);
        match entries.get(probe) {
            Some(&e) if e < key => {
                let lo = probe + 1;
                return lo + entries.get(lo..hi).map_or(0, |s| s.partition_point(|&x| x < key));
            }
            _ => {
                hi = probe;
                step = step.saturating_mul(2);
            }
        }
    }
    0
}

fn code_bits(e: u64) -> usize {
    ((e >> VALUE_BITS) & ((1 << CODE_BITS) - 1)) as usize
}

/// The history of one patient.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    epoch_us: i64,
    entries: Vec<u64>,
}

impl History {
    /// Rebuilds a history from a checkpoint; drops malformed entries.
    pub(crate) fn from_parts(epoch_us: i64, mut entries: Vec<u64>) -> Self {
        entries.retain(|&e| code_bits(e) < Code::ALL.len());
        entries.sort_unstable();
        entries.dedup_by_key(|e| *e >> VALUE_BITS);
        entries.shrink_to_fit();
        History { epoch_us, entries }
    }

    /// Epoch and raw entries, for checkpoints.
    pub(crate) fn parts(&self) -> (i64, &[u64]) {
        (self.epoch_us, &self.entries)
    }

    /// Heap bytes used.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<u64>()
    }

    /// Number of stored readings.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn time(&self, e: u64) -> i64 {
        self.epoch_us.saturating_add((e >> TIME_SHIFT) as i64)
    }

    fn decode(&self, e: u64) -> Option<Reading> {
        let code = *Code::ALL.get(code_bits(e))?;
        Some(Reading { t_us: self.time(e), code, value: dequantize(code, (e & 0xffff) as u16) })
    }

    /// Newest measurement time stored.
    pub(crate) fn newest_us(&self) -> Option<i64> {
        self.entries.last().map(|&e| self.time(e))
    }

    /// Index of the first entry with time >= `t`.
    fn lower(&self, t: i64) -> usize {
        match t.checked_sub(self.epoch_us) {
            Some(off) if off <= 0 => 0,
            Some(off) if off <= MAX_OFFSET => partition_from_end(&self.entries, (off as u64) << TIME_SHIFT),
            Some(_) => self.entries.len(),
            None => {
                if t < self.epoch_us {
                    0
                } else {
                    self.entries.len()
                }
            }
        }
    }

    /// Index of the first entry with time > `t`.
    fn upper(&self, t: i64) -> usize {
        match t.checked_sub(self.epoch_us) {
            Some(off) if off < 0 => 0,
            Some(off) if off < MAX_OFFSET => partition_from_end(&self.entries, ((off + 1) as u64) << TIME_SHIFT),
            Some(_) => self.entries.len(),
            None => {
                if t < self.epoch_us {
                    0
                } else {
                    self.entries.len()
                }
            }
        }
    }

    /// Readings of `code` with `from_us <= t <= to_us`, oldest first.
    pub(crate) fn readings(
        &self,
        code: Code,
        from_us: i64,
        to_us: i64,
    ) -> impl DoubleEndedIterator<Item = Reading> + '_ {
        let (start, end) = (self.lower(from_us), self.upper(to_us));
        let span = if start < end { self.entries.get(start..end).unwrap_or(&[]) } else { &[] };
        let idx = code.index();
        span.iter().filter(move |&&e| code_bits(e) == idx).filter_map(|&e| self.decode(e))
    }

    /// The newest reading of each code with `from_us <= t <= to_us`, in one
    /// backward pass (index = `Code::index`).
    pub(crate) fn latest_each(&self, from_us: i64, to_us: i64) -> [Option<Reading>; 8] {
        let mut out = [None; 8];
        let (start, end) = (self.lower(from_us), self.upper(to_us));
        let span = if start < end { self.entries.get(start..end).unwrap_or(&[]) } else { &[] };
        for &e in span.iter().rev() {
            if let Some(slot) = out.get_mut(code_bits(e))
                && slot.is_none()
            {
                *slot = self.decode(e);
            }
        }
        out
    }

    /// The newest reading of `code` at or before `t_us`.
    pub(crate) fn latest(&self, code: Code, t_us: i64) -> Option<Reading> {
        self.readings(code, i64::MIN, t_us).next_back()
    }

    /// The reading of `code` at exactly `t_us`.
    pub(crate) fn at(&self, code: Code, t_us: i64) -> Option<Reading> {
        self.readings(code, t_us, t_us).next()
    }

    /// Stores a reading. `retention_us`: readings older than the newest minus
    /// this are not stored, and may be pruned.
    pub(crate) fn insert(&mut self, code: Code, t_us: i64, value: f64, retention_us: i64) -> Insert {
        if let Some(newest) = self.newest_us()
            && t_us < newest.saturating_sub(retention_us)
        {
            return Insert::TooOld;
        }
        if self.entries.is_empty() {
            self.epoch_us = t_us.saturating_sub(HALF_RANGE);
        }
        let mut off = t_us.saturating_sub(self.epoch_us);
        if off > MAX_OFFSET {
            self.rebase(t_us.saturating_sub(HALF_RANGE));
            off = t_us.saturating_sub(self.epoch_us);
        }
        if !(0..=MAX_OFFSET).contains(&off) {
            return Insert::TooOld;
        }
        let key = ((off as u64) << TIME_SHIFT) | ((code.index() as u64) << VALUE_BITS);
        let entry = key | u64::from(quantize(code, value));
        // Fast path: the newest reading so far, with room left (the common case).
        if self.entries.last().is_none_or(|&last| last >> VALUE_BITS < key >> VALUE_BITS)
            && self.entries.len() < self.entries.capacity()
        {
            self.entries.push(entry);
            return Insert::Inserted;
        }
        let pos = partition_from_end(&self.entries, key);
        if self.entries.get(pos).is_some_and(|&e| e >> VALUE_BITS == key >> VALUE_BITS) {
            return Insert::Duplicate;
        }
        if self.entries.len() == self.entries.capacity() {
            let newest = self.newest_us().unwrap_or(t_us).max(t_us);
            self.prune(newest.saturating_sub(retention_us));
            // Keep at least 1/16 free after a prune, so the (linear) prune runs
            // at most once per len/16 inserts; grow by small steps only, which
            // keeps the slack, hence the memory per patient, small.
            let len = self.entries.len();
            if len + len / 16 + 1 > self.entries.capacity() {
                self.entries.reserve_exact(len / 16 + 4);
            }
        }
        let pos = partition_from_end(&self.entries, key);
        self.entries.insert(pos, entry);
        Insert::Inserted
    }

    /// Moves the epoch forward; entries that no longer fit are dropped (they are
    /// far older than any retention).
    fn rebase(&mut self, new_epoch: i64) {
        let old = self.epoch_us;
        self.entries.retain_mut(|e| {
            let t = old.saturating_add((*e >> TIME_SHIFT) as i64);
            match t.checked_sub(new_epoch) {
                Some(off) if (0..=MAX_OFFSET).contains(&off) => {
                    *e = ((off as u64) << TIME_SHIFT) | (*e & ((1 << TIME_SHIFT) - 1));
                    true
                }
                _ => false,
            }
        });
        self.epoch_us = new_epoch;
    }

    /// Drops entries older than `cutoff_us`, except the newest entry of each code.
    pub(crate) fn prune(&mut self, cutoff_us: i64) {
        let p = self.lower(cutoff_us);
        if p == 0 {
            return;
        }
        let mut mask: u8 = 0;
        for &e in self.entries.iter().skip(p) {
            mask |= 1 << code_bits(e);
        }
        let mut kept = [0u64; 8];
        let mut n = 0;
        for &e in self.entries.iter().take(p).rev() {
            let bit = 1u8 << code_bits(e);
            if mask & bit == 0 {
                mask |= bit;
                if let Some(slot) = kept.get_mut(n) {
                    *slot = e;
                    n += 1;
                }
            }
        }
        let removed = p - n;
        if removed == 0 {
            return;
        }
        // `kept` is newest first; write it oldest first just before `p`.
        for (i, &e) in kept.iter().take(n).rev().enumerate() {
            if let Some(slot) = self.entries.get_mut(removed + i) {
                *slot = e;
            }
        }
        self.entries.drain(..removed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;
    const RET: i64 = 14 * 24 * H;

    #[test]
    fn insert_in_time_order_and_dedup() {
        let mut h = History::default();
        assert_eq!(h.insert(Code::BodyWeight, 10 * H, 80.0, RET), Insert::Inserted);
        assert_eq!(h.insert(Code::BodyWeight, 5 * H, 79.5, RET), Insert::Inserted);
        assert_eq!(h.insert(Code::Spo2, 5 * H, 95.0, RET), Insert::Inserted);
        assert_eq!(h.insert(Code::BodyWeight, 5 * H, 70.0, RET), Insert::Duplicate);
        let w: Vec<_> = h.readings(Code::BodyWeight, 0, 20 * H).map(|r| (r.t_us, r.value)).collect();
        assert_eq!(w, vec![(5 * H, 79.5), (10 * H, 80.0)]);
        assert_eq!(h.latest(Code::Spo2, 20 * H).map(|r| r.value), Some(95.0));
        assert_eq!(h.at(Code::BodyWeight, 10 * H).map(|r| r.value), Some(80.0));
    }

    #[test]
    fn microsecond_precision_and_quantization() {
        let mut h = History::default();
        let t = 1_700_000_000_123_457;
        h.insert(Code::BloodGlucose, t, 52.04, RET);
        let r = h.latest(Code::BloodGlucose, t).unwrap();
        assert_eq!(r.t_us, t);
        assert_eq!(r.value, 52.0);
        h.insert(Code::BodyWeight, t, 1e9, RET);
        assert_eq!(h.latest(Code::BodyWeight, t).unwrap().value, 655.35);
    }

    #[test]
    fn too_old_and_prune_keeps_newest_per_code() {
        let mut h = History::default();
        h.insert(Code::Spo2, 0, 95.0, RET);
        for d in 0..40 {
            h.insert(Code::BodyWeight, d * 24 * H, 80.0, RET);
        }
        assert_eq!(h.insert(Code::BodyWeight, 0, 80.0, RET), Insert::TooOld);
        h.prune(39 * 24 * H - RET);
        assert_eq!(h.latest(Code::Spo2, i64::MAX).map(|r| r.t_us), Some(0));
        assert_eq!(h.readings(Code::BodyWeight, i64::MIN, i64::MAX).count(), 15);
    }

    #[test]
    fn gallop_matches_binary_search() {
        let v: Vec<u64> = (0..100).map(|i| i * 10).collect();
        for key in 0..1_005 {
            assert_eq!(partition_from_end(&v, key), v.partition_point(|&x| x < key), "key {key}");
        }
        assert_eq!(partition_from_end(&[], 5), 0);
    }

    #[test]
    fn rebase_far_future() {
        let mut h = History::default();
        h.insert(Code::HeartRate, 0, 60.0, RET);
        let far = 500 * 24 * H;
        assert_eq!(h.insert(Code::HeartRate, far, 61.0, RET), Insert::Inserted);
        let all: Vec<_> = h.readings(Code::HeartRate, i64::MIN, i64::MAX).map(|r| r.t_us).collect();
        assert_eq!(all, vec![far]);
        assert_eq!(h.insert(Code::HeartRate, i64::MAX, 61.0, RET), Insert::Inserted);
        assert_eq!(h.insert(Code::HeartRate, i64::MIN, 61.0, RET), Insert::TooOld);
    }
}
