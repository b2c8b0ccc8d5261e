//! Noise control by volume: a per-physician hourly cap that folds low-severity
//! notifications into a digest, and the timing of digests.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vitalwatch_schemas::{Code, PatientId};

use crate::episode::EpisodeId;
use crate::notification::{Notification, NotificationKey, Step};
use crate::severity::{Channel, Severity};
use crate::team::{Physician, PhysicianId};

/// How caps apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapPolicy {
    /// Severities below this one are folded into the digest when the
    /// recipient's hourly cap is reached; this and above always go out.
    pub digest_below: Severity,
    /// Minimum time between two digests to the same physician, in minutes.
    pub digest_every_minutes: u32,
}

impl Default for CapPolicy {
    /// LOW and MEDIUM are capped; digests at most hourly.
    fn default() -> Self {
        Self { digest_below: Severity::High, digest_every_minutes: 60 }
    }
}

impl CapPolicy {
    /// Whether a page of `severity` to `physician`, who already had
    /// `sent_last_hour` notifications in the last rolling hour, goes to the digest.
    pub fn folds(&self, physician: &Physician, sent_last_hour: u32, severity: Severity) -> bool {
        if severity >= self.digest_below || severity == Severity::Critical {
            return false;
        }
        physician.hourly_cap.is_some_and(|cap| sent_last_hour >= cap)
    }
}

/// Notifications sent to each physician over the last rolling hour, across
/// all episodes (the outbox counts them: `recipient = $1 AND created_at > now() - 1h`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentLoad {
    counts: HashMap<PhysicianId, u32>,
}

impl RecentLoad {
    /// No notifications sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the count of one physician.
    pub fn set(&mut self, physician: PhysicianId, count: u32) {
        self.counts.insert(physician, count);
    }

    /// Count of one physician.
    pub fn count(&self, physician: &PhysicianId) -> u32 {
        self.counts.get(physician).copied().unwrap_or(0)
    }

    pub(crate) fn bump(&mut self, physician: &PhysicianId) {
        *self.counts.entry(physician.clone()).or_insert(0) += 1;
    }
}

/// One line of a physician's digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// Idempotency key (route `digest`).
    pub key: NotificationKey,
    /// The episode.
    pub episode_id: EpisodeId,
    /// The patient (pseudonymous id).
    pub patient_id: PatientId,
    /// Who receives the digest.
    pub recipient: PhysicianId,
    /// The step folded.
    pub step: Step,
    /// Severity of the episode then.
    pub severity: Severity,
    /// The vital, if any.
    pub code: Option<Code>,
    /// Value, if any.
    pub value: Option<f64>,
    /// UCUM unit of the value.
    pub unit: String,
    /// Measurement time.
    pub reading_time: DateTime<Utc>,
    /// Summary without identifying data.
    pub summary: String,
    /// When it was folded.
    pub at: DateTime<Utc>,
}

/// Whether a digest should go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestDecision {
    /// Nothing pending.
    Nothing,
    /// Send it now.
    SendNow,
    /// Wait until this instant (digest interval or quiet hours).
    WaitUntil(DateTime<Utc>),
}

/// Decides whether `physician`'s digest goes out at `now`. A digest collects
/// what was folded during one cap window: it is due `digest_every_minutes`
/// after the oldest pending entry was folded, and no sooner than
/// `digest_every_minutes` after the previous digest. Digests are non-urgent:
/// they respect quiet hours.
pub fn digest_due(
    physician: &Physician,
    policy: &CapPolicy,
    oldest_pending: Option<DateTime<Utc>>,
    last_sent: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> DigestDecision {
    let Some(oldest) = oldest_pending else {
        return DigestDecision::Nothing;
    };
    let every = Duration::minutes(i64::from(policy.digest_every_minutes.max(1)));
    let mut at = oldest + every;
    if let Some(last) = last_sent {
        at = at.max(last + every);
    }
    if let Some(q) = &physician.quiet_hours {
        at = q.release_time(physician.time_zone.tz(), Severity::Low, at.max(now));
    }
    if at <= now { DigestDecision::SendNow } else { DigestDecision::WaitUntil(at) }
}

/// Deterministic key of the digest for `recipient` formed at `now` (UTC,
/// minute precision): `digest:{recipient}:{YYYYMMDDTHHMM}`. The outbox row of
/// the digest is stored under it, so a digest is queued at most once.
pub fn digest_key(recipient: &PhysicianId, now: DateTime<Utc>) -> String {
    format!("digest:{recipient}:{}", now.format("%Y%m%dT%H%M"))
}

/// The outbox notification of a digest email listing `entries` (not empty)
/// for `recipient`: route email, step [`Step::Digest`], the episode of the
/// first entry as its reference episode, the highest severity listed.
pub fn digest_notification(
    recipient: &PhysicianId,
    entries: &[DigestEntry],
    now: DateTime<Utc>,
) -> Option<Notification> {
    let first = entries.first()?;
    let severity = entries.iter().map(|e| e.severity).max().unwrap_or(first.severity);
    Some(Notification {
        key: NotificationKey::from_raw(digest_key(recipient, now)),
        episode_id: first.episode_id.clone(),
        patient_id: first.patient_id.clone(),
        recipient: recipient.clone(),
        channel: Channel::Email,
        step: Step::Digest,
        severity,
        due_at: now,
        deferred_from: None,
        fallback_from: None,
    })
}

/// Where an episode listed in a digest stands when the digest is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestItemStatus {
    /// Still open and not acknowledged: the line carries an acknowledgment link.
    Open,
    /// Acknowledged (by whom, when) before the digest went out.
    Acknowledged {
        /// Who acknowledged.
        by: PhysicianId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Resolved before the digest went out.
    Resolved {
        /// When.
        at: DateTime<Utc>,
    },
}

/// One line of a digest email: the entry, its episode's status, and a signed
/// acknowledgment link for open episodes.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestLine {
    /// The folded notification.
    pub entry: DigestEntry,
    /// The episode's status when the digest is rendered.
    pub status: DigestItemStatus,
    /// Acknowledgment URL (open episodes only).
    pub ack_link: Option<String>,
}
