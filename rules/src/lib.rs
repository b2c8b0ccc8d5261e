//! # vitalwatch-rules
//!
//! The `vitalwatch rules` role: [`worker`] consumes normalized observations
//! and device status from the bus, rebuilds patient state from the database,
//! runs the pure engine of [`vitalwatch_rules_core`] and publishes alert
//! events. The engine itself (thresholds, baselines, NEWS2, missing data,
//! episodes) lives in `vitalwatch-rules-core`, which has no I/O dependency;
//! everything of it is re-exported here, so `vitalwatch_rules::Engine` and
//! `vitalwatch_rules::config::PatientRules` keep working.

pub use vitalwatch_rules_core::*;

pub mod settings;
pub mod worker;
