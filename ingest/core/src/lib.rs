//! # vitalwatch-ingest-core
//!
//! The pure core of ingest: it turns an MQTT message into validated,
//! normalized observations or specific rejections. No I/O, no clock: this
//! crate depends on no runtime, MQTT, bus, database or HTTP crate (the fuzz
//! targets in `fuzz/` and the benchmarks build it alone). The drivers that
//! move messages (the `ingest` and `persist` roles) live in `vitalwatch-ingest`,
//! which re-exports every module of this crate.
//!
//! - [`topic`]: the v1 MQTT topic contract;
//! - [`decode`]: the four payload formats (canonical JSON, SenML, FHIR, protobuf);
//! - [`units`]: accepted units, conversions and plausibility limits;
//! - [`normalize`]: validation, unit conversion, patient attribution;
//! - [`pipeline`]: one message in, observations + rejections + reply out;
//! - [`reject`]: reason codes;
//! - [`text`]: no control characters in text that reaches Kafka or the database;
//! - [`ratelimit`]: per-sender token buckets (bounded memory);
//! - [`dedup`]: a bounded cache of recently produced observation ids.

pub mod decode;
pub mod dedup;
pub mod normalize;
pub mod pipeline;
pub mod ratelimit;
pub mod reject;
pub mod text;
pub mod topic;
pub mod units;
