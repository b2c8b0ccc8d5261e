//! # vitalwatch-alerting
//!
//! Turns alert episodes from the rules engine into notifications that reach
//! the responsible physician, escalate until someone acknowledges, and stop on
//! acknowledgment or resolution.
//!
//! ## Layout
//!
//! - [`team`]: physicians, contact points (E.164, email, IANA time zone),
//!   channel preferences, care teams;
//! - [`policy`]: escalation ladders per severity;
//! - [`episode`]: episode state built from `AlertEvent`s, acks, snoozes;
//! - [`planner`]: the pure, clock-driven planner (what is due now, next wake-up);
//! - [`quiet_hours`], [`caps`]: noise control (deferral, hourly cap, digest);
//! - [`notification`]: notifications and their idempotency keys;
//! - [`ack`]: signed link tokens, SMS acknowledgment codes, reply parsing;
//! - [`render`]: email (text, HTML, chart) and SMS rendering;
//! - [`transport`]: SMTP, Twilio, webhook, `.eml` and JSON-lines transports;
//! - [`retry`]: backoff with jitter;
//! - [`notifier`]: compose + send with retries and channel fallback;
//! - [`audit`]: append-only records of every decision and attempt;
//! - [`store`]: the durable state (PostgreSQL or SQLite): care teams,
//!   episodes, the outbox, acknowledgments, the audit trail;
//! - [`service`]: the `vitalwatch alerting` role (consumer, dispatcher,
//!   escalation scheduler, HTTP endpoints); entry point [`run`].
//!
//! ## Using it
//!
//! 1. On an alert event: load or create the [`EpisodeState`], apply the event,
//!    call [`planner::plan`], write the notifications to the outbox under their
//!    keys (unique constraint), record the plan, store the state and the audit.
//! 2. At `next_wakeup`, or on an acknowledgment or snooze: plan again.
//! 3. An outbox worker composes each notification with [`Notifier::compose`]
//!    and sends it with [`Notifier::attempt`] (one try, scheduling retries with
//!    [`RetryPolicy::decide`]) or [`Notifier::deliver`] (in-process
//!    retries and fallback, for the embedded mode).
//!
//! No patient data is logged: logs carry ids only, at debug level.

pub mod ack;
pub mod audit;
pub mod caps;
pub mod episode;
pub mod inbound;
pub mod notification;
pub mod notifier;
pub mod planner;
pub mod policy;
pub mod quiet_hours;
pub mod render;
pub mod retry;
pub mod service;
pub mod severity;
pub mod store;
pub mod team;
pub mod transport;

pub use ack::{AckClaims, AckCode, AckCodeGenerator, AckError, AckSigner, SmsCommand, parse_sms_reply};
pub use audit::{AttemptOutcome, AuditEntry, AuditRecord, HoldReason};
pub use caps::{
    CapPolicy, DigestDecision, DigestEntry, DigestItemStatus, DigestLine, RecentLoad, digest_due, digest_key,
    digest_notification,
};
pub use episode::{AckVia, Acknowledgment, AlertDetails, EpisodeError, EpisodeId, EpisodeState, Issued, Snooze};
pub use notification::{Notification, NotificationKey, Route, Step};
pub use notifier::{DeliveryContext, DeliveryReport, Notifier, NotifierConfig, NotifierError};
pub use planner::{Plan, PlanInput, plan};
pub use policy::{EscalationPolicy, EscalationStep, Ladder, PolicyError, Target};
pub use quiet_hours::QuietHours;
pub use retry::{RetryDecision, RetryPolicy};
pub use service::{run, run_serving, run_with_dead_letters};
pub use severity::{Channel, Severity};
pub use team::{
    CareTeam, ChannelPreferences, Directory, EmailAddress, PhoneNumber, Physician, PhysicianId, TeamError, TimeZone,
};
pub use transport::{DeliveryError, FailureKind, Outbound, Receipt, Transport};
