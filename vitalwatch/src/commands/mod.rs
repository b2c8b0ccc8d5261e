//! Subcommand implementations.

pub mod admin;
pub mod alerting;
pub mod registry;
pub mod roles;
pub mod rules;
pub mod run;
pub mod wiring;
