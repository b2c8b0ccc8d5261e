//! # vitalwatch-alerting-core
//!
//! The pure core of alerting: what an alert episode should send, to whom,
//! when, and what the message says. No I/O and no clock of its own (every
//! function takes `now`): this crate depends on no runtime, database, HTTP or
//! mail transport crate. The `vitalwatch alerting` role (consumer, stores,
//! transports, dispatcher, HTTP endpoints) lives in `vitalwatch-alerting`,
//! which re-exports everything of this crate.
//!
//! ## Layout
//!
//! - [`team`]: physicians, contact points (E.164, email, IANA time zone),
//!   channel preferences, care teams;
//! - [`policy`]: escalation ladders per severity;
//! - [`episode`]: episode state built from `AlertEvent`s, acks, snoozes;
//! - [`planner`]: the pure, clock-driven planner (what is due now, next wake-up);
//! - [`engine`]: the step the stores run inside their episode transaction
//!   (apply an action, re-plan, say what to write);
//! - [`quiet_hours`], [`caps`]: noise control (deferral, hourly cap, digest);
//! - [`notification`]: notifications and their idempotency keys;
//! - [`ack`]: signed link tokens, SMS acknowledgment codes, reply parsing;
//! - [`inbound`], [`twilio_signature`]: authentication and limits of inbound SMS replies;
//! - [`i18n`]: languages (French, English), number and date formats of messages;
//! - [`render`]: email (text, HTML, chart) and SMS rendering (feature `mime`:
//!   the MIME assembly of an email with lettre's message builder);
//! - [`retry`]: backoff with jitter;
//! - [`audit`]: append-only records of every decision and attempt;
//! - [`severity`]: severities and delivery channels.

pub mod ack;
pub mod audit;
pub mod caps;
pub mod engine;
pub mod episode;
pub mod i18n;
pub mod inbound;
pub mod notification;
pub mod planner;
pub mod policy;
pub mod quiet_hours;
pub mod render;
pub mod retry;
pub mod severity;
pub mod team;
pub mod twilio_signature;

pub use ack::{AckClaims, AckCode, AckCodeGenerator, AckError, AckSigner, SmsCommand, parse_sms_reply};
pub use audit::{AttemptOutcome, AuditEntry, AuditRecord, HoldReason};
pub use caps::{
    CapPolicy, DigestDecision, DigestEntry, DigestItemStatus, DigestLine, RecentLoad, digest_due, digest_key,
    digest_notification,
};
pub use episode::{AckVia, Acknowledgment, AlertDetails, EpisodeError, EpisodeId, EpisodeState, Issued, Snooze};
pub use i18n::{Language, UnknownLanguage};
pub use notification::{Notification, NotificationKey, Route, Step};
pub use planner::{Plan, PlanInput, plan};
pub use policy::{EscalationPolicy, EscalationStep, Ladder, PolicyError, Target};
pub use quiet_hours::QuietHours;
pub use retry::{RetryDecision, RetryPolicy};
pub use severity::{Channel, Severity};
pub use team::{
    CareTeam, ChannelPreferences, Directory, EmailAddress, PhoneNumber, Physician, PhysicianId, TeamError, TimeZone,
};
