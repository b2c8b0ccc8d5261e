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
//! - [`text`]: no control characters in text that reaches Kafka or the database;
//! - [`ratelimit`]: per-sender token buckets (bounded memory);
//! - [`dedup`]: a bounded cache of recently produced observation ids.
//!
//! Drivers (feature `drivers`, on by default):
//! - [`worker`]: the `ingest` role (MQTT -> bus, ack after the bus acked);
//! - [`membership`]: joining the MQTT shared subscription, and leaving it on
//!   shutdown without stranding messages;
//! - [`registry`]: the device/patient registry, refreshed off the hot path
//!   (timeouts, backoff, negative cache, bounded hold of unknown ids);
//! - [`persist`]: the `persist` role (bus -> store, commit after the store).

#[cfg(feature = "drivers")]
pub mod acks;
pub mod decode;
pub mod dedup;
#[cfg(feature = "drivers")]
pub mod membership;
#[cfg(feature = "drivers")]
pub mod mqtt_client;
pub mod normalize;
#[cfg(feature = "drivers")]
pub mod persist;
pub mod pipeline;
pub mod ratelimit;
#[cfg(feature = "drivers")]
pub mod registry;
pub mod reject;
pub mod text;
pub mod topic;
pub mod units;
#[cfg(feature = "drivers")]
pub mod worker;
