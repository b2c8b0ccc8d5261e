//! Real-service helpers of the alerting role's integration tests; the pure
//! fixtures are shared with the core's tests (alerting/core/tests/common),
//! the service helpers come from `vitalwatch-testkit`.
#![allow(dead_code)]

#[path = "../../core/tests/common/mod.rs"]
mod fixtures;
pub use fixtures::*;
pub use vitalwatch_testkit::{SmtpSink, aiosmtpd_available, free_port, spawn_http_server};

/// Whether the test may use a service; under CI=true a missing service is a
/// failure ([`vitalwatch_testkit::required`]).
pub fn require(service: &str, available: bool, how: &str) -> bool {
    vitalwatch_testkit::required(available, &format!("{service} ({how})"))
}
