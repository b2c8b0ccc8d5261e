//! Subcommand implementations.

pub mod admin;
pub mod alerting;
pub mod ingest_client;
pub mod lifecycle;
pub mod registry;
pub mod report;
pub mod roles;
pub mod rules;
#[cfg(feature = "dev")]
pub mod run;
pub mod wiring;
