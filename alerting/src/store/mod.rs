//! Durable state of the alerting role: physicians and care teams, episodes,
//! the notification outbox, acknowledgments and the append-only audit trail.
//!
//! One implementation of [`AlertStore`], [`tables::SqlAlertStore`], runs on
//! PostgreSQL (several replicas share the outbox with `FOR UPDATE SKIP
//! LOCKED` and leases) and SQLite (the embedded mode, one process); only
//! the SQL differs where it must (`sql/`). The tables come from the migrations in
//! `vitalwatch-schemas` (version 10, `alerting`); run them first with the
//! platform store's `migrate`.
//!
//! Every episode change goes through [`AlertStore::transition`]: in ONE
//! database transaction the episode row is locked, the [`Action`] is applied
//! by the pure [`engine`], and the new state, the outbox rows (unique on the
//! notification key), acknowledgment codes, acknowledgments and audit records
//! are written. So a notification exists in the outbox if and only if the
//! state that planned it was committed.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitalwatch_schemas::PatientId;

use crate::ack::AckCodeGenerator;
use crate::audit::AuditRecord;
use crate::caps::{CapPolicy, DigestEntry};
use crate::episode::{EpisodeId, EpisodeState};
use crate::inbound::{Admission, GuardPolicy, GuardRow};
use crate::notification::{Notification, NotificationKey};
use crate::severity::Severity;
use crate::team::{CareTeam, Physician, PhysicianId};

pub use vitalwatch_alerting_core::engine;
pub mod tables;

pub use engine::{Action, Applied, EngineError};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A failure that may pass (connection lost, serialization failure, busy).
    #[error("transient database error: {0}")]
    Transient(String),
    /// A failure retrying cannot fix.
    #[error("database error: {0}")]
    Permanent(String),
    /// The database refuses this data for good (a data exception or an
    /// integrity violation); other data would go in.
    #[error("database refused the data: {0}")]
    Rejected(String),
    /// Invalid input (unknown physician, malformed stored document...).
    #[error("{0}")]
    Invalid(String),
    /// The action cannot be applied to the episode.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<vitalwatch_platform::store::StoreError> for StoreError {
    fn from(e: vitalwatch_platform::store::StoreError) -> Self {
        use vitalwatch_platform::store::StoreError as P;
        match e {
            P::Transient(m) => StoreError::Transient(m),
            P::Permanent(m) => StoreError::Permanent(m),
            P::Rejected(m) => StoreError::Rejected(m),
            P::Invalid(m) => StoreError::Invalid(m),
        }
    }
}

impl StoreError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// Status of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Accepted by the provider.
    Sent,
    /// Failed permanently (a fallback may have been queued).
    Failed,
    /// Not sent: the episode was acknowledged or resolved first.
    Cancelled,
}

impl OutboxStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => OutboxStatus::Pending,
            "sent" => OutboxStatus::Sent,
            "failed" => OutboxStatus::Failed,
            "cancelled" => OutboxStatus::Cancelled,
            _ => return None,
        })
    }
}

/// An outbox row (for status views and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The notification.
    pub notification: Notification,
    /// Status.
    pub status: OutboxStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Provider message id of the accepted attempt.
    pub provider_message_id: Option<String>,
    /// Last error.
    pub last_error: Option<String>,
}

/// An outbox row claimed by a dispatcher until its lease ends.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The notification.
    pub notification: Notification,
    /// Attempts already made (the next one is `attempts + 1`).
    pub attempts: u32,
}

/// Everything the dispatcher needs to render a notification.
#[derive(Debug, Clone)]
pub struct RenderContext {
    /// The episode (`None` if it vanished).
    pub episode: Option<EpisodeState>,
    /// The recipient (`None` if deleted from the directory).
    pub recipient: Option<Physician>,
    /// The recipient's SMS acknowledgment code for the episode.
    pub ack_code: Option<crate::ack::AckCode>,
    /// Recent values of the alert's vital (oldest first), for the chart.
    pub history: Vec<(DateTime<Utc>, f64)>,
}

/// What became of one delivery attempt, to record with [`AlertStore::complete`].
#[derive(Debug, Clone)]
pub enum Completion {
    /// Accepted by the provider.
    Sent {
        /// Provider message id.
        provider_message_id: Option<String>,
    },
    /// Transient failure: the row stays pending, to be tried again at
    /// `retry_at`. `fallback`, if given, is queued as well (the same step on
    /// the other channel, while this one keeps being retried) and recorded in
    /// the episode's issued notifications without marking this channel failed.
    Retry {
        /// Next attempt.
        retry_at: DateTime<Utc>,
        /// The error.
        error: String,
        /// The same step on the other channel, to send meanwhile.
        fallback: Option<Notification>,
    },
    /// Permanent failure (or the retry horizon passed): the notification is
    /// marked failed in the episode's issued notifications. `fallback` is
    /// queued if given and recorded there (so reminders and the all-clear use
    /// the fallback channel); without one, the episode is re-planned at once
    /// (the planner pages the next rung when nobody could be told).
    Failed {
        /// The error.
        error: String,
        /// The same step on the other channel.
        fallback: Option<Notification>,
    },
    /// Not sent because the episode no longer needs it.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// Settings the transition needs besides the action.
#[derive(Debug, Clone)]
pub struct TransitionOptions {
    /// Generator of SMS acknowledgment codes (`None`: codes are not assigned;
    /// only for administrative actions that never plan pages).
    pub codes: Option<AckCodeGenerator>,
    /// Hourly caps and digest policy.
    pub caps: CapPolicy,
}

/// The durable state of alerting.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Checks the connection (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates or replaces a physician (validated first).
    async fn upsert_physician(&self, physician: &Physician) -> Result<(), StoreError>;
    /// All physicians, by id.
    async fn physicians(&self) -> Result<Vec<Physician>, StoreError>;
    /// One physician by id.
    async fn physician(&self, id: &PhysicianId) -> Result<Option<Physician>, StoreError>;
    /// The physician whose mobile number is `mobile` (E.164).
    async fn physician_by_mobile(&self, mobile: &str) -> Result<Option<Physician>, StoreError>;
    /// Creates or replaces a patient's care team (validated against the directory).
    async fn set_care_team(&self, team: &CareTeam) -> Result<(), StoreError>;
    /// A patient's care team.
    async fn care_team(&self, patient: &PatientId) -> Result<Option<CareTeam>, StoreError>;

    /// Applies `action` to an episode in one transaction (see the module docs).
    /// `patient` is required when the episode may not exist yet (events).
    async fn transition(
        &self,
        episode: &EpisodeId,
        action: Action,
        options: &TransitionOptions,
        now: DateTime<Utc>,
    ) -> Result<Applied, StoreError>;

    /// Episodes whose `next_wakeup` is at or before `now`, at most `limit`.
    async fn due_episodes(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<EpisodeId>, StoreError>;
    /// The open episode in which `physician` was given SMS code `code`, and the
    /// severity the code was sent for (it acknowledges that severity, not a later rise).
    async fn episode_for_code(
        &self,
        physician: &PhysicianId,
        code: &str,
    ) -> Result<Option<(EpisodeId, Severity)>, StoreError>;

    /// Counts one inbound SMS attempt of `sender_key` ([`crate::inbound::sender_key`])
    /// BEFORE its code is checked, in one transaction on the shared row of that sender
    /// (so every replica sees the same count), and decides with
    /// [`crate::inbound::admit`]. A new lockout is appended to `admin_audit`
    /// (action `sms_inbound_lockout`, target the physician if the number is known).
    async fn sms_admit(
        &self,
        sender_key: &str,
        physician: Option<&PhysicianId>,
        policy: &GuardPolicy,
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError>;

    /// A code was right: clears the sender's count.
    async fn sms_succeeded(&self, sender_key: &str) -> Result<(), StoreError>;
    /// An episode's state.
    async fn episode(&self, episode: &EpisodeId) -> Result<Option<EpisodeState>, StoreError>;

    /// Claims up to `limit` due outbox rows for `worker` until `lease_until`.
    /// Rows claimed by another live worker are skipped; rows whose lease has
    /// passed are taken over.
    async fn claim(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// What rendering `n` needs.
    async fn render_context(&self, n: &Notification) -> Result<RenderContext, StoreError>;
    /// Records an attempt's outcome (with its audit records) in one short
    /// transaction and releases the claim.
    async fn complete(
        &self,
        key: &NotificationKey,
        attempt: u32,
        completion: Completion,
        audit: &[AuditRecord],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Outbox rows waiting for another attempt after a transient failure
    /// (pending, at least one attempt made), for the
    /// `vitalwatch_notifications_awaiting_retry` gauge.
    async fn awaiting_retry(&self) -> Result<u64, StoreError>;

    /// Queues the digests that are due at `now` (see [`crate::caps::digest_due`]):
    /// for each physician with pending digest entries, in one transaction,
    /// creates the digest email's outbox row (key [`crate::caps::digest_key`])
    /// and assigns the pending entries to it, with a `DigestFormed` audit
    /// record per entry. Safe on several replicas: a physician's digest is
    /// formed by one replica at a time (PostgreSQL: transaction-scoped
    /// advisory lock plus `FOR UPDATE SKIP LOCKED` on the entries), and an
    /// entry belongs to one digest only. Returns the digests queued (at most `limit`).
    async fn form_digests(
        &self,
        caps: &CapPolicy,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Notification>, StoreError>;
    /// The entries listed in the digest whose outbox key is `digest`, oldest first.
    async fn digest_entries(&self, digest: &NotificationKey) -> Result<Vec<DigestEntry>, StoreError>;
    /// The entries of `recipient` not yet in a digest, oldest first.
    async fn pending_digest(&self, recipient: &PhysicianId) -> Result<Vec<DigestEntry>, StoreError>;

    /// Outbox rows of an episode, oldest first.
    async fn outbox(&self, episode: &EpisodeId) -> Result<Vec<OutboxRow>, StoreError>;
    /// Audit trail of an episode, oldest first.
    async fn audit_trail(&self, episode: &EpisodeId) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Opens the store of a `database.url` (`postgres://...` or `sqlite://path`).
pub async fn open(url: &str) -> Result<Arc<dyn AlertStore>, StoreError> {
    open_with(url, vitalwatch_platform::store::DbTimeouts::default()).await
}

/// Opens the store named by a `postgres://` or `sqlite://` URL; PostgreSQL
/// connections use `timeouts` (connect and statement, as every role's).
pub async fn open_with(
    url: &str,
    timeouts: vitalwatch_platform::store::DbTimeouts,
) -> Result<Arc<dyn AlertStore>, StoreError> {
    match url.strip_prefix("sqlite://") {
        Some(path) => Ok(Arc::new(tables::SqlAlertStore::open(path)?)),
        None => Ok(Arc::new(tables::SqlAlertStore::connect(url, timeouts).await?)),
    }
}

/// Counts of outbox rows by status (for tests and status views).
pub fn count_by_status(rows: &[OutboxRow]) -> std::collections::HashMap<&'static str, usize> {
    let mut m = std::collections::HashMap::new();
    for r in rows {
        *m.entry(r.status.as_str()).or_insert(0) += 1;
    }
    m
}

/// The audit entry type name (`episode_opened`, `delivery_attempt`, ...).
pub(crate) fn entry_type(r: &AuditRecord) -> String {
    serde_json::to_value(&r.entry)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("serialization: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Invalid(format!("stored {what} is invalid: {e}")))
}

/// The code to print in a notification of `severity`: the one sent for that
/// severity, else the one of the highest severity.
pub(crate) fn code_for(codes: Vec<(String, Option<Severity>)>, severity: Severity) -> Option<crate::ack::AckCode> {
    let exact = codes.iter().find(|(_, s)| *s == Some(severity)).map(|(c, _)| c.clone());
    let code = exact.or_else(|| codes.iter().max_by_key(|(_, s)| *s).map(|(c, _)| c.clone()))?;
    serde_json::from_value(serde_json::Value::String(code)).ok()
}

/// An `admin_audit` row for a lockout (ids and counts only; never the number).
pub(crate) struct LockoutAudit {
    pub(crate) actor: String,
    pub(crate) actor_role: String,
    pub(crate) action: String,
    pub(crate) target_kind: String,
    pub(crate) target_id: String,
    pub(crate) details: String,
}

/// Action name of lockout rows in `admin_audit`.
pub const LOCKOUT_ACTION: &str = "sms_inbound_lockout";

pub(crate) fn lockout_audit(
    sender_key: &str,
    physician: Option<&PhysicianId>,
    row: &GuardRow,
    until: DateTime<Utc>,
) -> LockoutAudit {
    let (target_kind, target_id) = match physician {
        Some(p) => ("physician", p.to_string()),
        None => ("sms_sender", sender_key.to_string()),
    };
    LockoutAudit {
        actor: "alerting".into(),
        actor_role: "system".into(),
        action: LOCKOUT_ACTION.into(),
        target_kind: target_kind.into(),
        target_id,
        details: serde_json::json!({
            "sender_key": sender_key,
            "failures": row.failures,
            "locked_until": until.to_rfc3339(),
            "lockouts": row.lockouts,
        })
        .to_string(),
    }
}
