//! # vitalwatch-ingest
//!
//! Readings in. The pure core turns an MQTT message into validated,
//! normalized observations or specific rejections; the drivers move them.
//!
//! Pure core (no I/O, no clock):
//! - [`topic`]: the v1 MQTT topic contract;
//! - [`decode`]: the four payload formats (canonical JSON, SenML, FHIR, protobuf);
//! - [`units`]: accepted units, conversions and plausibility limits;
//! - [`normalize`]: validation, unit conversion, patient attribution;
//! - [`pipeline`]: one message in, observations + rejections + reply out;
//! - [`reject`]: reason codes;
//! - [`dedup`]: a bounded cache of recently produced observation ids.
//!
//! Drivers:
//! - [`worker`]: the `ingest` role (MQTT -> bus, ack after the bus acked);
//! - [`persist`]: the `persist` role (bus -> store, commit after the store).

pub mod acks;
pub mod decode;
pub mod dedup;
pub mod normalize;
pub mod persist;
pub mod pipeline;
pub mod registry;
pub mod reject;
pub mod topic;
pub mod units;
pub mod worker;
