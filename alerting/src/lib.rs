//! # vitalwatch-alerting
//!
//! Turns alert episodes from the rules engine into notifications that reach
//! the responsible physician, escalate until someone acknowledges, and stop on
//! acknowledgment or resolution.
//!
//! ## Layout
//!
//! The pure core lives in `vitalwatch-alerting-core` ([`vitalwatch_alerting_core`])
//! and is re-exported here (`crate::planner`, `vitalwatch_alerting::plan`, ...):
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
//! - [`retry`]: backoff with jitter;
//! - [`audit`]: append-only records of every decision and attempt.
//!
//! This crate holds the shells around it:
//!
//! - [`transport`]: SMTP, Twilio, webhook, `.eml` and JSON-lines transports;
//! - [`notifier`]: compose + send with retries and channel fallback;
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

pub use vitalwatch_alerting_core::*;

pub mod notifier;
pub mod service;
pub mod settings;
pub mod store;
pub mod transport;

pub use notifier::{DeliveryContext, DeliveryReport, Notifier, NotifierConfig, NotifierError};
pub use service::{run, run_serving, run_with_dead_letters};
pub use transport::{DeliveryError, FailureKind, Outbound, Receipt, Transport};
