//! # vitalwatch-rules-core
//!
//! The pure core of the vitalwatch rules engine: it turns a patient's
//! normalized observations (from `vitalwatch.observations.v1`) into
//! [`AlertEvent`]s (for `vitalwatch.alerts.v1`). No I/O, no clock, no logging:
//! this crate depends on no runtime, bus, database or HTTP crate. The worker
//! that consumes Kafka, rebuilds state from the database and publishes alerts
//! (`vitalwatch_rules::worker`, the `vitalwatch rules` role) is built on top of
//! [`Engine`] in the `vitalwatch-rules` crate, which re-exports this one.
//!
//! ## Layout
//!
//! - [`config`]: per-patient rule configuration ([`PatientRules`]) on top of
//!   program defaults, engine settings, validation;
//! - [`preview`]: what-if replays of stored readings under candidate rules
//!   (the rules editor's preview);
//! - [`programs`]: the default rules of each care program, with sources;
//! - [`news2`]: NEWS2 scoring (RCP 2017);
//! - `history`: compact per-patient reading history (8 bytes per reading);
//! - `baseline`: median / MAD / mean on a stack buffer;
//! - `threshold`, `change`, `missing`: rule evaluation (`missing` also tracks
//!   device contact and heartbeats);
//! - `episodes`: one episode per (patient, rule), deterministic ids;
//! - `alert`: evidence and summaries of [`AlertEvent`]s;
//! - [`state`]: [`PatientState`] and its checkpoint form;
//! - [`engine`]: [`Engine`], which ties them together.
//!
//! ## Guarantees
//!
//! - **Event time.** Rules run on measurement time. Readings are inserted into
//!   history in time order whatever their arrival order, so late data updates
//!   history and baselines in event-time order. Lateness is per measurement
//!   type and device: a reading is *out of order* only when older, by more
//!   than the allowed lateness, than a newer reading of the same code from the
//!   same device (same code, for manual entries), so a BP cuff that syncs
//!   behind the oximeter is evaluated as usual. A *historical* reading (out of
//!   order, or older than `now − max_alert_age`) is still evaluated: it raises
//!   an alert marked `historical`, with its severity unchanged, unless an
//!   episode of that rule is open or physician-closed, or an ended episode of
//!   that rule already covered its time (from the allowed lateness before its
//!   opening reading to its resolving reading); it never escalates an episode
//!   (no re-page). Every alert carries the time its reading was taken and, for
//!   readings, when it was received.
//! - **Device silence.** A device that sent status heartbeats and has not been
//!   heard from (heartbeat or reading) for `device_silent_after_secs` raises a
//!   LOW technical alert (`technical.device_silent`, rule kind
//!   `device_heartbeat_lost`) at the next [`Engine::tick`], resolved at the
//!   first tick after it is heard again. Distinct from the missing-data rules
//!   (`missing.*`: the patient did not measure).
//! - **Duplicates** (same code and measurement time, i.e. same observation id)
//!   are ignored.
//! - **Episodes.** One per (patient, rule): OPENED once, ESCALATED only when
//!   the severity rises, RESOLVED past the clear threshold or when a physician
//!   closes it.
//! - **Determinism.** Episode and event ids are hashes of the readings, so a
//!   replay or a restore from checkpoint produces the same ids; consumers drop
//!   duplicates by `event_id`.
//! - **No panics on data**, and no allocation on the hot path unless an event
//!   is emitted.
//! - **No PHI in summaries**: summaries never contain the patient id.

pub mod config;
pub mod engine;
pub mod error;
pub mod news2;
pub mod preview;
pub mod programs;
pub mod state;

mod alert;
mod baseline;
mod change;
mod compiled;
mod episodes;
mod history;
mod missing;
mod threshold;

pub use config::{
    CadenceRule, ChangeMethod, ChangeRule, Comparison, Confirmation, Consciousness, Direction, EngineSettings, Level,
    MinHistory, News2Assumptions, News2Rule, OxygenPlan, PatientRules, Persistence, Program, RuleSet, Severity,
    Spo2Scale, Spo2Target, ThresholdCheck, ThresholdRule, threshold_bounds,
};
pub use engine::{Engine, ObservationOutcome, RejectReason, ReplayReport};
pub use episodes::{EpisodeInfo, EpisodeStatus};
pub use error::{CloseError, ConfigError, RestoreError};
pub use news2::{News2, News2Band, News2Inputs, news2_score};
pub use state::{PatientSnapshot, PatientState};
pub use vitalwatch_schemas::proto::AlertEvent;
