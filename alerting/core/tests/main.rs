//! The alerting core's tests, one test binary: pure (no service), shared
//! fixtures in `common` (which the alerting role's tests include too).

mod common;

mod ack;
mod i18n;
mod planner;
mod render;
mod team;
