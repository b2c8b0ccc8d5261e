//! Benchmarks live in benches/; see README.md "Performance".
//!
//! [`home`]: the home-trajectory model and alarm-fatigue harness (issue #14
//! §5), run by `examples/noise.rs` and asserted by `tests/noise.rs`.

pub mod home;
