//! The alerting crate's integration tests, one test binary (one link, shared
//! helpers in `common`, service helpers from `vitalwatch-testkit`). One
//! module per subject; real SMTP (aiosmtpd), real HTTP servers, real
//! PostgreSQL and SQLite. The pure planner, rendering, team and
//! acknowledgment tests are the core's (alerting/core/tests).

mod common;

mod delivery;
mod i18n;
mod service;
