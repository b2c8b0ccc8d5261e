//! vitalwatch's integration tests, one test binary (one link; shared helpers
//! in `common`, service helpers from `vitalwatch-testkit`): the real
//! `vitalwatch` binary against real services (Mosquitto, Kafka-protocol
//! broker, PostgreSQL, TimescaleDB, SMTP, HTTP). Under `CI=true` a missing
//! service fails a test. One module per subject:
//!
//! `cargo nextest run -p vitalwatch --test integration <module>::` runs one.

mod common;
mod faults;
mod payloads;

mod admin_api;
mod bus_handover;
mod crash_recovery;
mod device_status;
mod fault_suite;
mod full_pipeline;
mod http_ingest;
mod ingest_limits;
mod ingest_pipeline;
mod lifecycle;
mod observability;
mod patient_export;
mod poison_records;
mod registry_faults;
mod rules_pipeline;
mod run_embedded;
mod scale_out;
mod security;
mod timescale;
