//! # vitalwatch-platform
//!
//! The plumbing every role shares, so the role crates hold only their logic:
//! - [`config`]: layered configuration (defaults, file, environment) that rejects unknown keys;
//! - [`telemetry`]: tracing setup (JSON or text);
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` and the metrics recorder;
//! - [`http`]: serving a router with header and request timeouts, a connection cap and a body limit;
//! - [`secret`]: a string that cannot be printed (passwords, tokens, keys);
//! - [`shutdown`]: SIGTERM/SIGINT handling;
//! - [`bus`]: the message bus: Apache Kafka (any Kafka-protocol broker) or an in-process log;
//! - [`store`]: the database: PostgreSQL/TimescaleDB or SQLite, with migrations and the registry.

pub mod bus;
pub mod config;
pub mod http;
pub mod ops;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod telemetry;
