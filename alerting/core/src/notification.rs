//! Notifications the planner decides to send, and their idempotency keys.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vitalwatch_schemas::PatientId;

use crate::episode::EpisodeId;
use crate::severity::{Channel, Severity};
use crate::team::PhysicianId;

/// Which step of an episode's notification plan a notification belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Rung `index` of the ladder of `severity` (0 = first page).
    Page {
        /// Severity of the ladder.
        severity: Severity,
        /// Rung index.
        index: u32,
    },
    /// Reminder number `number` (1-based) after the last rung of `severity`.
    Reminder {
        /// Severity of the ladder.
        severity: Severity,
        /// Reminder number, from 1.
        number: u32,
    },
    /// The all-clear sent to everyone who was paged.
    Resolved,
    /// A digest email listing folded notifications of several episodes
    /// (never planned per episode; formed by the digest scheduler).
    Digest,
}

impl Step {
    /// The severity this step pages for (`None` for the all-clear).
    pub fn severity(self) -> Option<Severity> {
        match self {
            Step::Page { severity, .. } | Step::Reminder { severity, .. } => Some(severity),
            Step::Resolved | Step::Digest => None,
        }
    }

    /// Whether this step asks the recipient to act (a page or a reminder).
    pub fn is_page(self) -> bool {
        matches!(self, Step::Page { .. } | Step::Reminder { .. })
    }
}

impl fmt::Display for Step {
    /// `high.page0`, `high.remind2`, `resolved`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Page { severity, index } => write!(f, "{severity}.page{index}"),
            Step::Reminder { severity, number } => write!(f, "{severity}.remind{number}"),
            Step::Resolved => f.write_str("resolved"),
            Step::Digest => f.write_str("digest"),
        }
    }
}

/// What a notification key is for: a channel, or the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Delivered on a channel.
    Channel(Channel),
    /// Folded into the physician's digest.
    Digest,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Channel(c) => f.write_str(c.as_str()),
            Route::Digest => f.write_str("digest"),
        }
    }
}

/// Deterministic idempotency key `episode:step:recipient:route`. The same
/// (episode, step, recipient, channel) always gives the same key, so a
/// redelivered event or a restarted dispatcher can never page twice: store
/// it under a unique constraint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationKey(String);

impl NotificationKey {
    /// Builds the key.
    pub fn new(episode: &EpisodeId, step: Step, recipient: &PhysicianId, route: Route) -> Self {
        Self(format!("{episode}:{step}:{recipient}:{route}"))
    }

    /// Wraps a key built elsewhere (digest keys, see [`crate::caps::digest_key`]).
    pub fn from_raw(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A 128-bit hex digest of the key: a fixed-length, file-name-safe id
    /// (used as acknowledgment-token nonce, Message-ID and file name).
    pub fn digest_hex(&self) -> String {
        let d = Sha256::digest(self.0.as_bytes());
        hex(&d[..16])
    }
}

impl fmt::Display for NotificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case hexadecimal of `bytes` (keys, file names, signatures).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

/// One message to one physician on one channel, decided by the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key (unique per episode, step, recipient, channel).
    pub key: NotificationKey,
    /// The episode.
    pub episode_id: EpisodeId,
    /// The patient (pseudonymous id).
    pub patient_id: PatientId,
    /// Who receives it.
    pub recipient: PhysicianId,
    /// On which channel.
    pub channel: Channel,
    /// Which step it belongs to.
    pub step: Step,
    /// The episode's severity when the step was planned.
    pub severity: Severity,
    /// When it became due (after any quiet-hours deferral).
    pub due_at: DateTime<Utc>,
    /// When it would have been due without quiet hours, if it was deferred.
    #[serde(default)]
    pub deferred_from: Option<DateTime<Utc>>,
    /// The channel that failed permanently, if this is a fallback.
    #[serde(default)]
    pub fallback_from: Option<Channel>,
}

impl Notification {
    /// The same notification on the other channel, after a permanent failure
    /// of this one. Its key is the key of (episode, step, recipient, other
    /// channel): if that message was planned anyway, the outbox deduplicates.
    pub fn fallback(&self) -> Notification {
        let channel = self.channel.other();
        Notification {
            key: NotificationKey::new(&self.episode_id, self.step, &self.recipient, Route::Channel(channel)),
            channel,
            fallback_from: Some(self.channel),
            ..self.clone()
        }
    }
}
