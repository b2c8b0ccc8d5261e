//! The rules engine's tests, one test binary: pure (no service), shared
//! fixtures in `common`. One module per subject.

mod common;

mod clinical_safety;
mod episodes;
mod lateness;
mod memory;
mod news2;
mod noise;
mod preview;
#[path = "proptest.rs"]
mod properties;
mod scenarios;
