//! # vitalwatch-schemas
//!
//! The data contracts of vitalwatch, with no I/O:
//!
//! - [`proto`]: the protobuf messages exchanged on MQTT (`ReadingBatch`) and Kafka
//!   (`Observation`, `Rejection`), compiled from `proto/` with prost and protox;
//! - [`domain`]: the canonical domain types (vital kinds, LOINC codes, UCUM units,
//!   observations, provenance) and identifier validation;
//! - [`severity`]: [`Severity`], the alert severity of the rules engine and of
//!   alerting, with its conversions to and from the wire enum [`proto::Severity`];
//! - [`migrations`]: the SQL migrations for PostgreSQL/TimescaleDB and SQLite.

pub mod domain;
pub mod migrations;
pub mod registry;
pub mod severity;
pub mod topics;

/// Protobuf messages generated from `proto/vitalwatch/v1/vitalwatch.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/vitalwatch.v1.rs"));
}

pub use domain::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource, VitalKind};
pub use severity::Severity;
