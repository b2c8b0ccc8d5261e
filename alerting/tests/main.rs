//! The alerting crate's integration tests, one test binary (one link, shared
//! helpers in `common`, service helpers from `vitalwatch-testkit`). One
//! module per subject; real SMTP (aiosmtpd), real HTTP servers, real
//! PostgreSQL and SQLite.

mod common;

mod ack;
mod delivery;
mod planner;
mod render;
mod service;
mod team;
