//! Alert episodes: one per (patient, rule) condition, and deterministic ids.
//!
//! * The first trigger opens an episode (OPENED). While it is open, further
//!   triggers never re-alert, unless the severity rises (ESCALATED). Severity
//!   never goes down inside an episode.
//! * It resolves (RESOLVED) when the rule reports the condition cleared past
//!   its clear threshold (hysteresis), or when a physician closes it.
//! * After a physician closes an episode while the condition still holds, the
//!   rule stays quiet until the condition clears once, unless it reaches a
//!   *higher* severity than at closing, which opens a new episode.
//! * A reading older than the last one that updated an episode cannot
//!   escalate-then-resolve it out of order: resolution needs a reading at or
//!   after the episode's latest reading.
//!
//! `episode_id` = FNV-1a 128 of (patient, rule id, opening reading time);
//! `event_id` = FNV-1a 128 of (episode id, kind, severity). Replaying the same
//! readings gives the same ids, so downstream consumers drop redeliveries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vitalwatch_schemas::proto::AlertEventKind;

use crate::compiled::Verdict;
use crate::config::Severity;

/// State of an episode kept by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeStatus {
    /// Open: alerts were sent, the condition has not cleared.
    Open,
    /// Closed by a physician while the condition still held: the rule stays
    /// quiet until the condition clears or gets more severe.
    ClosedByPhysician,
    /// A single breaching reading awaits confirmation (see
    /// [`crate::Persistence::Confirmed`]): nobody was notified yet. The next
    /// reading of the code within the window opens it (breach) or cancels it
    /// (normal); past the window, [`crate::Engine::tick`] opens it.
    Pending,
}

/// One episode (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Episode {
    /// Measurement time of the opening reading (or the due time of a
    /// missing-data episode), µs.
    pub opened_us: i64,
    /// Latest reading time that updated the episode, µs.
    pub last_us: i64,
    /// Rule index in the patient's compiled rules.
    pub rule: u16,
    /// Current (highest) severity.
    pub severity: Severity,
    /// Open or closed by a physician.
    pub status: EpisodeStatus,
    /// Missing-data episodes: the device was silent when it opened.
    pub device_silent: bool,
}

/// What happened to the episode of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing to report.
    None,
    /// A new episode opened.
    Opened(Episode),
    /// The open episode's severity rose from `from`.
    Escalated {
        /// The episode after the change.
        episode: Episode,
        /// Severity before.
        from: Severity,
    },
    /// The episode resolved (and was removed).
    Resolved(Episode),
}

/// Applies a verdict about `rule` at reading time `t_us`. `ordered`: a clear
/// must not be older than the episode's latest reading (false for
/// missing-data rules, which are about `now`). `confirm_us`: the rule's
/// confirmation window (0 when it has none); a normal reading cancels a
/// pending episode only within it.
pub(crate) fn apply(
    episodes: &mut Vec<Episode>,
    rule: u16,
    verdict: &Verdict,
    t_us: i64,
    ordered: bool,
    confirm_us: i64,
) -> Transition {
    let idx = episodes.iter().position(|e| e.rule == rule);
    match (verdict, idx) {
        (Verdict::Trigger(f), None) => open(episodes, None, rule, f.severity, t_us),
        (Verdict::Pending(f), None) => {
            let ep = Episode {
                opened_us: t_us,
                last_us: t_us,
                rule,
                severity: f.severity,
                status: EpisodeStatus::Pending,
                device_silent: false,
            };
            episodes.reserve_exact(1);
            episodes.push(ep);
            Transition::None
        }
        (Verdict::Pending(_), Some(i)) => {
            // Unconfirmed: never escalates an open episode, never replaces an
            // older pending one (the tick opens that one if nobody re-measured).
            if let Some(ep) = episodes.get_mut(i)
                && ep.status != EpisodeStatus::Pending
            {
                ep.last_us = ep.last_us.max(t_us);
            }
            Transition::None
        }
        (Verdict::Trigger(f), Some(i)) => {
            let Some(ep) = episodes.get_mut(i) else {
                return Transition::None;
            };
            match ep.status {
                EpisodeStatus::Pending => {
                    // Confirmed: the episode is stamped with the first reading.
                    let first = ep.opened_us.min(t_us);
                    let opened = Episode {
                        opened_us: first,
                        last_us: ep.opened_us.max(t_us),
                        rule,
                        severity: f.severity,
                        status: EpisodeStatus::Open,
                        device_silent: false,
                    };
                    *ep = opened;
                    Transition::Opened(opened)
                }
                EpisodeStatus::Open => {
                    ep.last_us = ep.last_us.max(t_us);
                    if f.severity > ep.severity {
                        let from = ep.severity;
                        ep.severity = f.severity;
                        Transition::Escalated { episode: *ep, from }
                    } else {
                        Transition::None
                    }
                }
                EpisodeStatus::ClosedByPhysician => {
                    if f.severity > ep.severity {
                        open(episodes, Some(i), rule, f.severity, t_us)
                    } else {
                        ep.last_us = ep.last_us.max(t_us);
                        Transition::None
                    }
                }
            }
        }
        (Verdict::Clear(_) | Verdict::Normal, Some(i))
            if episodes.get(i).is_some_and(|e| e.status == EpisodeStatus::Pending) =>
        {
            let Some(ep) = episodes.get(i).copied() else {
                return Transition::None;
            };
            // A normal reading after the first one, within the window, cancels.
            if t_us > ep.opened_us && t_us.saturating_sub(ep.opened_us) <= confirm_us {
                episodes.swap_remove(i);
            }
            Transition::None
        }
        (Verdict::Normal, _) => Transition::None,
        (Verdict::Clear(_), Some(i)) => {
            let Some(ep) = episodes.get(i).copied() else {
                return Transition::None;
            };
            if ordered && t_us < ep.last_us {
                return Transition::None;
            }
            episodes.swap_remove(i);
            match ep.status {
                EpisodeStatus::Open => Transition::Resolved(Episode { last_us: ep.last_us.max(t_us), ..ep }),
                EpisodeStatus::ClosedByPhysician | EpisodeStatus::Pending => Transition::None,
            }
        }
        (Verdict::Clear(_), None) | (Verdict::NoChange, _) => Transition::None,
    }
}

fn open(episodes: &mut Vec<Episode>, replace: Option<usize>, rule: u16, severity: Severity, t_us: i64) -> Transition {
    let ep =
        Episode { opened_us: t_us, last_us: t_us, rule, severity, status: EpisodeStatus::Open, device_silent: false };
    match replace.and_then(|i| episodes.get_mut(i)) {
        Some(slot) => *slot = ep,
        None => {
            episodes.reserve_exact(1);
            episodes.push(ep);
        }
    }
    Transition::Opened(ep)
}

fn fnv128(parts: &[&[u8]]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for p in parts {
        for &b in *p {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// Deterministic episode id (32 hex characters).
pub(crate) fn episode_id(patient: &str, rule_id: &str, opened_us: i64) -> String {
    format!("{:032x}", fnv128(&[patient.as_bytes(), rule_id.as_bytes(), &opened_us.to_le_bytes()]))
}

/// Deterministic event id (32 hex characters).
pub(crate) fn event_id(episode_id: &str, kind: AlertEventKind, severity: Severity) -> String {
    let k = (kind as i32).to_le_bytes();
    format!("{:032x}", fnv128(&[episode_id.as_bytes(), &k, &[severity as u8]]))
}

/// A read-only view of an episode, for workers and the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeInfo {
    /// Deterministic episode id.
    pub episode_id: String,
    /// The rule.
    pub rule_id: String,
    /// Current severity.
    pub severity: Severity,
    /// Open or closed by a physician.
    pub status: EpisodeStatus,
    /// Measurement time of the opening reading (missing data: the due time).
    pub opened_at: DateTime<Utc>,
    /// Latest reading time that updated the episode.
    pub last_reading_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiled::Finding;
    use crate::config::Comparison;

    fn trig(s: Severity) -> Verdict {
        Verdict::Trigger(Finding {
            severity: s,
            code: None,
            amount: 0.0,
            reading: None,
            threshold: 0.0,
            baseline: None,
            op: Comparison::Gt,
        })
    }

    #[test]
    fn lifecycle() {
        let mut eps = Vec::new();
        assert!(matches!(apply(&mut eps, 0, &trig(Severity::Medium), 10, true, 0), Transition::Opened(_)));
        assert_eq!(apply(&mut eps, 0, &trig(Severity::Medium), 11, true, 0), Transition::None);
        assert!(matches!(
            apply(&mut eps, 0, &trig(Severity::High), 12, true, 0),
            Transition::Escalated { from: Severity::Medium, .. }
        ));
        assert_eq!(apply(&mut eps, 0, &trig(Severity::Low), 13, true, 0), Transition::None);
        let Verdict::Trigger(f) = trig(Severity::Low) else { unreachable!() };
        assert_eq!(apply(&mut eps, 0, &Verdict::Clear(f), 5, true, 0), Transition::None, "older reading");
        assert!(matches!(apply(&mut eps, 0, &Verdict::Clear(f), 14, true, 0), Transition::Resolved(_)));
        assert!(eps.is_empty());
    }

    #[test]
    fn pending_is_confirmed_by_a_breach_and_cancelled_by_a_normal_reading_within_the_window() {
        let Verdict::Trigger(f) = trig(Severity::High) else { unreachable!() };
        let mut eps = Vec::new();
        assert_eq!(apply(&mut eps, 0, &Verdict::Pending(f), 10, true, 100), Transition::None);
        assert_eq!(eps.first().map(|e| e.status), Some(EpisodeStatus::Pending));
        // A normal reading within the window cancels, silently.
        assert_eq!(apply(&mut eps, 0, &Verdict::Normal, 50, true, 100), Transition::None);
        assert!(eps.is_empty());
        // Pending, then a breach: opens, stamped with the first reading.
        apply(&mut eps, 0, &Verdict::Pending(f), 200, true, 100);
        let Transition::Opened(ep) = apply(&mut eps, 0, &trig(Severity::High), 230, true, 100) else {
            panic!("a second breaching reading confirms")
        };
        assert_eq!((ep.opened_us, ep.last_us, ep.status), (200, 230, EpisodeStatus::Open));
        // An unconfirmed breach never escalates an open episode.
        let Verdict::Trigger(c) = trig(Severity::Critical) else { unreachable!() };
        assert_eq!(apply(&mut eps, 0, &Verdict::Pending(c), 240, true, 100), Transition::None);
        assert_eq!(eps.first().map(|e| e.severity), Some(Severity::High));
        // A normal reading past the window does not cancel a pending episode
        // (the tick opens it: nobody re-measured in time).
        let mut late = Vec::new();
        apply(&mut late, 0, &Verdict::Pending(f), 10, true, 100);
        apply(&mut late, 0, &Verdict::Normal, 111, true, 100);
        assert_eq!(late.first().map(|e| e.status), Some(EpisodeStatus::Pending));
    }

    #[test]
    fn ids_are_deterministic() {
        let a = episode_id("p1", "r", 5);
        assert_eq!(a, episode_id("p1", "r", 5));
        assert_ne!(a, episode_id("p1", "r", 6));
        assert_ne!(a, episode_id("p2", "r", 5));
        assert_eq!(a.len(), 32);
        let e = event_id(&a, AlertEventKind::Opened, Severity::High);
        assert_ne!(e, event_id(&a, AlertEventKind::Escalated, Severity::High));
        assert_ne!(e, event_id(&a, AlertEventKind::Opened, Severity::Critical));
    }
}
