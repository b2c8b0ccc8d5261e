//! Append-only audit records: every episode state change and every delivery
//! attempt with its outcome. Records carry ids only (episode, physician,
//! notification key), never clinical values, so they can be stored and
//! shipped as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::episode::{AckVia, EpisodeId};
use crate::notification::{NotificationKey, Step};
use crate::severity::{Channel, Severity};
use crate::team::PhysicianId;

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it happened (the planner's or dispatcher's clock).
    pub at: DateTime<Utc>,
    /// The episode it concerns.
    pub episode_id: EpisodeId,
    /// What happened.
    pub entry: AuditEntry,
}

/// Why a notification did not go out on its channel now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The recipient's quiet hours.
    QuietHours,
    /// The recipient's hourly cap was reached.
    HourlyCap,
    /// INFO alerts are only ever shown in digests.
    InfoSeverity,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider accepted the message.
    Delivered {
        /// The provider's message id, if it returned one.
        provider_message_id: Option<String>,
    },
    /// A transient failure: will be retried.
    Transient {
        /// What failed.
        error: String,
        /// When the next attempt is planned, if any.
        retry_at: Option<DateTime<Utc>>,
    },
    /// A permanent failure: will not be retried on this channel.
    Permanent {
        /// What failed.
        error: String,
    },
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEntry {
    /// A new episode was opened from an alert event.
    EpisodeOpened {
        /// The alert event.
        event_id: String,
        /// Initial severity.
        severity: Severity,
    },
    /// The severity of an open episode rose.
    SeverityRaised {
        /// The alert event.
        event_id: String,
        /// Previous severity.
        from: Severity,
        /// New severity.
        to: Severity,
    },
    /// The episode was resolved.
    EpisodeResolved {
        /// The alert event.
        event_id: String,
    },
    /// An alert event was not applied (late, out of order, or for a resolved episode).
    EventIgnored {
        /// The alert event.
        event_id: String,
        /// Why.
        reason: String,
    },
    /// A physician acknowledged the episode.
    Acknowledged {
        /// Who.
        by: PhysicianId,
        /// How.
        via: AckVia,
        /// Severity covered by the acknowledgment.
        severity: Severity,
    },
    /// A physician snoozed the episode.
    Snoozed {
        /// Who.
        by: PhysicianId,
        /// Until when.
        until: DateTime<Utc>,
        /// Highest severity the snooze hides.
        severity: Severity,
    },
    /// A severity rise cancelled a snooze.
    SnoozeBroken {
        /// Severity the snooze covered.
        snoozed: Severity,
        /// New severity.
        now: Severity,
    },
    /// The planner decided a notification is due now.
    NotificationPlanned {
        /// Idempotency key.
        key: NotificationKey,
        /// Recipient.
        recipient: PhysicianId,
        /// Channel.
        channel: Channel,
        /// Step.
        step: Step,
    },
    /// A due notification was held back.
    NotificationHeld {
        /// Idempotency key.
        key: NotificationKey,
        /// Recipient.
        recipient: PhysicianId,
        /// Why.
        reason: HoldReason,
        /// Until when, if it will go out later.
        until: Option<DateTime<Utc>>,
    },
    /// A notification was folded into the recipient's digest.
    NotificationDigested {
        /// Idempotency key (route `digest`).
        key: NotificationKey,
        /// Recipient.
        recipient: PhysicianId,
        /// Why.
        reason: HoldReason,
    },
    /// A step target could not be paged (unknown physician or no reachable channel).
    RecipientUnreachable {
        /// Who.
        recipient: PhysicianId,
        /// Step.
        step: Step,
    },
    /// One delivery attempt and its outcome.
    DeliveryAttempt {
        /// Idempotency key.
        key: NotificationKey,
        /// Channel.
        channel: Channel,
        /// Transport that carried it (`smtp`, `twilio`, ...).
        transport: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// Outcome.
        outcome: AttemptOutcome,
    },
    /// A permanent failure (or the end of the retry horizon) switched to the other channel.
    FallbackScheduled {
        /// Key of the failed notification.
        failed: NotificationKey,
        /// Key of the fallback notification.
        fallback: NotificationKey,
        /// Failed channel.
        from: Channel,
        /// Fallback channel.
        to: Channel,
    },
    /// A page still failing transiently on its channel was also queued on the
    /// other channel; the first channel keeps being retried.
    FallbackWhileRetrying {
        /// Key of the notification being retried.
        retrying: NotificationKey,
        /// Key of the fallback notification.
        fallback: NotificationKey,
        /// Channel being retried.
        from: Channel,
        /// Fallback channel.
        to: Channel,
    },
    /// A folded notification was put into a digest email (queued in the outbox).
    DigestFormed {
        /// Outbox key of the digest email.
        digest: NotificationKey,
        /// Key of the folded notification (route `digest`).
        key: NotificationKey,
        /// Recipient.
        recipient: PhysicianId,
    },
    /// The digest email listing this episode was accepted by the provider.
    DigestDelivered {
        /// Outbox key of the digest email.
        digest: NotificationKey,
        /// Key of the folded notification (route `digest`).
        key: NotificationKey,
        /// Recipient.
        recipient: PhysicianId,
        /// The episode's status in the digest: `open`, `acknowledged` or `resolved`.
        status: String,
    },
    /// A notification could not be delivered on any channel.
    DeliveryFailed {
        /// Idempotency key.
        key: NotificationKey,
        /// Last error.
        error: String,
    },
}
