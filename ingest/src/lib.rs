//! # vitalwatch-ingest
//!
//! Readings in. The pure core ([`vitalwatch_ingest_core`], re-exported here:
//! [`topic`], [`decode`], [`units`], [`normalize`], [`pipeline`], [`reject`],
//! [`text`], [`ratelimit`], [`dedup`]) turns an MQTT message into validated,
//! normalized observations or specific rejections; the drivers of this crate
//! move them:
//!
//! - [`worker`]: the `ingest` role (MQTT -> bus, ack after the bus acked);
//! - [`http`]: its HTTP ingestion endpoint (POST -> bus, answer after the bus acked);
//! - [`step`]: the per-message work both drivers share (rate limit, pipeline,
//!   registry gate, dedup, output);
//! - [`membership`]: joining the MQTT shared subscription, and leaving it on
//!   shutdown without stranding messages;
//! - [`registry`]: the device/patient registry, refreshed off the hot path
//!   (timeouts, backoff, negative cache, bounded hold of unknown ids);
//! - [`persist`]: the `persist` role (bus -> store, commit after the store).

pub use vitalwatch_ingest_core::{decode, dedup, normalize, pipeline, ratelimit, reject, text, topic, units};

pub mod acks;
pub mod http;
pub mod membership;
pub mod mqtt_client;
pub mod persist;
pub mod registry;
pub mod settings;
pub mod step;
pub mod worker;
