//! # vitalwatch-platform
//!
//! The plumbing every role shares, so the role crates hold only their logic:
//! - [`config`]: layered configuration (defaults, file, environment) that rejects unknown keys;
//! - [`telemetry`]: tracing setup (JSON or text);
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` and the metrics recorder;
//! - [`http`]: serving a router with header and request timeouts, a connection cap and a body limit;
//! - [`secret`]: a string that cannot be printed (passwords, tokens, keys);
//! - [`redact`]: masking of secrets inside URLs and Kafka properties;
//! - [`private_fs`]: files and folders only the service user can read (mode 0600 / 0700);
//! - [`shutdown`]: SIGTERM/SIGINT handling (tokio-util's `CancellationToken`);
//! - [`tasks`]: a process's roles as one task set: the first failure stops them all, a bounded drain;
//! - [`retry`]: the one retry helper: exponential backoff with jitter, transient/permanent errors, cancellation;
//! - [`bus`]: the message bus: Apache Kafka (any Kafka-protocol broker) or an in-process log;
//! - [`store`]: the database: PostgreSQL/TimescaleDB or SQLite, with migrations and the registry.

pub mod bus;
pub mod config;
pub mod http;
pub mod ops;
pub mod private_fs;
pub mod redact;
pub mod retry;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod tasks;
pub mod telemetry;
