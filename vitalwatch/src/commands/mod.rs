//! Subcommand implementations.

pub mod registry;
pub mod roles;
pub mod run;
pub mod wiring;
