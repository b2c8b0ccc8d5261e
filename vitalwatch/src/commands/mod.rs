//! Subcommand implementations.

pub mod admin;
pub mod alerting;
pub mod registry;
pub mod report;
pub mod roles;
pub mod rules;
#[cfg(feature = "dev")]
pub mod run;
pub mod wiring;
