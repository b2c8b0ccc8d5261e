//! Quiet hours: a daily window, in the physician's own time zone, during which
//! non-urgent notifications are deferred to the end of the window. Deferral
//! delays *delivery* only: the episode and its audit trail are unchanged.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::severity::Severity;

/// A daily quiet window `[start, end)` in local time. `start > end` spans
/// midnight (`22:00`–`07:00`); `start == end` is an empty window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    /// Local start time, e.g. `"22:00"`.
    pub start: NaiveTime,
    /// Local end time, e.g. `"07:00"`.
    pub end: NaiveTime,
    /// Severities at or above this one are delivered during quiet hours
    /// (default HIGH). CRITICAL always is, whatever this says.
    #[serde(default = "default_bypass")]
    pub bypass_from: Severity,
}

/// HIGH and CRITICAL reach the physician at night: the default rules give
/// HIGH to what a clinician wants to hear about at once (a confirmed red
/// NEWS2 parameter, NEWS2 >= 5, heart-failure weight gain; issue #14 §2 and
/// docs/clinical-rules.md). Quiet hours hold MEDIUM and below.
fn default_bypass() -> Severity {
    Severity::High
}

impl QuietHours {
    /// A window from `start` to `end`; HIGH and CRITICAL bypass it.
    pub fn new(start: NaiveTime, end: NaiveTime) -> Self {
        Self { start, end, bypass_from: default_bypass() }
    }

    /// Whether a local wall-clock time falls inside the window.
    pub fn contains(&self, local: NaiveTime) -> bool {
        if self.start == self.end {
            false
        } else if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// Whether a severity is delivered even inside the window.
    pub fn bypasses(&self, severity: Severity) -> bool {
        severity == Severity::Critical || severity >= self.bypass_from
    }

    /// If `at` falls inside the window in zone `tz`, the instant the window
    /// ends (the first valid local instant at or after `end`, so DST gaps and
    /// folds are handled); otherwise `None`.
    pub fn window_end(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&tz).naive_local();
        if !self.contains(local.time()) {
            return None;
        }
        let date = local.date();
        let end_date =
            if self.start > self.end && local.time() >= self.start { date.succ_opt().unwrap_or(date) } else { date };
        let end = first_instant_at_or_after(tz, end_date, self.end);
        // Never return an instant in the past (defensive against odd zones).
        Some(end.max(at))
    }

    /// When a notification of `severity` that is due at `at` may go out: `at`
    /// itself, or the end of the window if it must be deferred.
    pub fn release_time(&self, tz: Tz, severity: Severity, at: DateTime<Utc>) -> DateTime<Utc> {
        if self.bypasses(severity) {
            return at;
        }
        self.window_end(tz, at).unwrap_or(at)
    }
}

/// The first instant whose local time in `tz` is at or after `date time`.
fn first_instant_at_or_after(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut naive = NaiveDateTime::new(date, time);
    // A DST gap is at most a few hours: step forward until the local time exists.
    for _ in 0..(4 * 60) {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => naive += Duration::minutes(1),
        }
    }
    // Unreachable for real zones; fall back to reading the wall time as UTC.
    naive.and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn windows_spanning_midnight() {
        let q = QuietHours::new(t(22, 0), t(7, 0));
        assert!(q.contains(t(23, 0)));
        assert!(q.contains(t(3, 0)));
        assert!(!q.contains(t(7, 0)));
        assert!(!q.contains(t(12, 0)));
        let day = QuietHours::new(t(12, 0), t(14, 0));
        assert!(day.contains(t(13, 0)));
        assert!(!day.contains(t(14, 0)));
        assert!(!QuietHours::new(t(8, 0), t(8, 0)).contains(t(8, 0)));
    }

    #[test]
    fn parses_hh_mm() {
        let q: QuietHours = serde_json::from_str(r#"{"start":"22:00","end":"07:00"}"#).unwrap();
        assert_eq!(q.start, t(22, 0));
        assert_eq!(q.bypass_from, Severity::High, "HIGH and CRITICAL reach the physician at night");
        assert!(q.bypasses(Severity::High) && q.bypasses(Severity::Critical));
        assert!(!q.bypasses(Severity::Medium) && !q.bypasses(Severity::Low));
        // A physician may still hold HIGH at night; CRITICAL always passes.
        let strict: QuietHours =
            serde_json::from_str(r#"{"start":"22:00","end":"07:00","bypass_from":"critical"}"#).unwrap();
        assert!(!strict.bypasses(Severity::High) && strict.bypasses(Severity::Critical));
    }

    #[test]
    fn end_inside_a_dst_gap_moves_forward() {
        // 2026-03-29 Europe/Paris: 02:00 -> 03:00.
        let q = QuietHours::new(t(22, 0), t(2, 30));
        let at = "2026-03-28T23:30:00Z".parse::<DateTime<Utc>>().unwrap(); // 00:30 local
        let end = q.window_end(chrono_tz::Europe::Paris, at).unwrap();
        assert_eq!(end, "2026-03-29T01:00:00Z".parse::<DateTime<Utc>>().unwrap()); // 03:00 CEST
    }
}
