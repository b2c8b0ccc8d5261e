//! Missing measurements: each patient's expected cadence per vital, and device
//! contact tracking to tell "device silent" from "patient did not measure".
//!
//! A cadence rule is overdue at `now` when no reading of its code was taken for
//! `every_hours + grace_hours` since the last one (or since the start of
//! monitoring). The episode it opens is stamped with the *due time* (last
//! reading + gap), not with the time `tick` ran, so its id is the same whatever
//! the tick schedule.
//!
//! Classification, made when the episode opens:
//! * **device silent**: the devices that sent this code (or, if none did, the
//!   patient's devices that never sent a reading) have all been silent — no
//!   reading and no status heartbeat — since the next reading was expected
//!   (last reading + `every_hours`);
//! * **patient did not measure**: some such device was heard from after that,
//!   or the patient has no known device (manual entry).

use serde::{Deserialize, Serialize};
use vitalwatch_schemas::Code;

use crate::compiled::{Finding, HOUR_US, Verdict};
use crate::config::{CadenceRule, Comparison};
use crate::history::History;

/// At most this many devices are tracked per patient, inline (least recently
/// heard from is forgotten first).
pub(crate) const MAX_DEVICES: usize = 6;

/// When a device was last heard from, which codes it sent, its newest
/// reading and its heartbeat-loss episode (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceSeen {
    /// Last contact (reading or heartbeat), µs; `i64::MIN` for an empty slot.
    pub last_us: i64,
    /// Measurement time of the device's newest reading (any code), µs;
    /// `i64::MIN` if it sent none. Per-device lateness (see `engine`).
    #[serde(default = "min_us")]
    pub newest_reading_us: i64,
    /// Opening time of the open heartbeat-loss episode (last contact + the
    /// silence limit), µs; `i64::MIN` when none is open.
    #[serde(default = "min_us")]
    pub silent_opened_us: i64,
    /// 32-bit FNV-1a hash of the device id (the id itself is not kept).
    pub id_hash: u32,
    /// Bit `Code::index` set for every code the device sent.
    pub codes: u8,
    /// The device sent at least one status heartbeat: only such devices can
    /// raise a heartbeat-loss alert.
    #[serde(default)]
    pub heartbeats: bool,
}

fn min_us() -> i64 {
    i64::MIN
}

impl DeviceSeen {
    /// An empty slot.
    pub(crate) const EMPTY: DeviceSeen = DeviceSeen {
        last_us: i64::MIN,
        newest_reading_us: i64::MIN,
        silent_opened_us: i64::MIN,
        id_hash: 0,
        codes: 0,
        heartbeats: false,
    };

    pub(crate) fn is_empty(&self) -> bool {
        self.last_us == i64::MIN
    }
}

/// The devices of one patient, inline (no allocation, one cache line and a half).
pub(crate) type Devices = [DeviceSeen; MAX_DEVICES];

/// FNV-1a hash of a device id, folded to 32 bits.
pub(crate) fn device_hash(id: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// Records a contact (a reading of `code`, or a heartbeat when `code` is None).
pub(crate) fn record_contact(devices: &mut Devices, id_hash: u32, t_us: i64, code: Option<Code>) {
    let bit = code.map_or(0u8, |c| 1u8 << c.index());
    let t_us = t_us.max(i64::MIN + 1);
    let reading_us = if code.is_some() { t_us } else { i64::MIN };
    let heartbeat = code.is_none();
    if let Some(d) = devices.iter_mut().find(|d| !d.is_empty() && d.id_hash == id_hash) {
        d.last_us = d.last_us.max(t_us);
        d.newest_reading_us = d.newest_reading_us.max(reading_us);
        d.codes |= bit;
        d.heartbeats |= heartbeat;
        return;
    }
    // An empty slot has last_us = i64::MIN, so it is also the least recent.
    if let Some(slot) = devices.iter_mut().min_by_key(|d| d.last_us) {
        *slot = DeviceSeen {
            last_us: t_us,
            newest_reading_us: reading_us,
            silent_opened_us: i64::MIN,
            id_hash,
            codes: bit,
            heartbeats: heartbeat,
        };
    }
}

/// Measurement time of the newest reading of the device `id_hash`, if it is
/// tracked and sent any.
pub(crate) fn newest_reading(devices: &Devices, id_hash: u32) -> Option<i64> {
    devices
        .iter()
        .find(|d| !d.is_empty() && d.id_hash == id_hash)
        .map(|d| d.newest_reading_us)
        .filter(|&t| t != i64::MIN)
}

/// Whether the code's readings are overdue at `now_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Gap {
    /// Overdue since `due_us`.
    Overdue {
        /// Last reading time + gap (or monitoring start + gap).
        due_us: i64,
        /// Where the gap is counted from.
        since_us: i64,
        /// The last reading, if any.
        last: Option<crate::history::Reading>,
    },
    /// Not overdue.
    OnTime,
}

/// Computes the gap of `rule` at `now_us`.
pub(crate) fn gap(rule: &CadenceRule, hist: &History, monitoring_since_us: i64, now_us: i64) -> Gap {
    let last = hist.latest(rule.code, i64::MAX);
    let since_us = last.map_or(monitoring_since_us, |r| r.t_us.max(monitoring_since_us));
    let due_us = since_us.saturating_add(i64::from(rule.max_gap_hours()).saturating_mul(HOUR_US));
    if now_us >= due_us { Gap::Overdue { due_us, since_us, last } } else { Gap::OnTime }
}

/// The verdict of a cadence rule at `now_us`.
pub(crate) fn evaluate(rule: &CadenceRule, g: Gap, now_us: i64) -> Verdict {
    let threshold = f64::from(rule.max_gap_hours());
    match g {
        Gap::Overdue { since_us, last, .. } => Verdict::Trigger(Finding {
            severity: rule.severity,
            code: Some(rule.code),
            amount: now_us.saturating_sub(since_us) as f64 / HOUR_US as f64,
            reading: last.map(|r| r.value),
            threshold,
            baseline: None,
            op: Comparison::Ge,
        }),
        Gap::OnTime => Verdict::Clear(Finding {
            severity: rule.severity,
            code: Some(rule.code),
            amount: 0.0,
            reading: None,
            threshold,
            baseline: None,
            op: Comparison::Ge,
        }),
    }
}

/// True when the devices that should send `code` were all silent since
/// `expected_us`, when the next reading was expected (see the module docs).
pub(crate) fn device_silent(devices: &Devices, code: Code, expected_us: i64) -> bool {
    let bit = 1u8 << code.index();
    let known = devices.iter().filter(|d| !d.is_empty());
    let senders = known.clone().any(|d| d.codes & bit != 0);
    let candidates = known.filter(|d| if senders { d.codes & bit != 0 } else { d.codes == 0 });
    let mut any = false;
    for d in candidates {
        any = true;
        if d.last_us >= expected_us {
            return false;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tracking_is_bounded() {
        let mut v = [DeviceSeen::EMPTY; MAX_DEVICES];
        for i in 0..20u32 {
            record_contact(&mut v, i, i64::from(i), Some(Code::BodyWeight));
        }
        assert!(v.iter().all(|d| !d.is_empty() && d.id_hash >= 14));
        record_contact(&mut v, 19, 100, None);
        assert_eq!(v.iter().filter(|d| d.id_hash == 19).count(), 1);
    }

    #[test]
    fn silent_classification() {
        let mut v = [DeviceSeen::EMPTY; MAX_DEVICES];
        assert!(!device_silent(&v, Code::BodyWeight, 90), "no device: patient did not measure");
        record_contact(&mut v, 1, 50, Some(Code::BodyWeight));
        assert!(device_silent(&v, Code::BodyWeight, 90));
        record_contact(&mut v, 1, 95, None);
        assert!(!device_silent(&v, Code::BodyWeight, 90));
    }
}
