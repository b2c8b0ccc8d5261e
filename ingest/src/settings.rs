//! The settings of the roles of this crate: `[ingest]` ([`IngestSettings`])
//! and `[persist]` ([`PersistSettings`]); the `vitalwatch` binary composes them
//! with the shared sections of `vitalwatch_platform::config`.

use serde::{Deserialize, Serialize};
use vitalwatch_platform::config::{ConfigError, DatabaseSettings, MqttSettings};

/// What the `ingest` role reads of the configuration ([`crate::worker::run`]).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// MQTT connection.
    pub mqtt: MqttSettings,
    /// Database (the registry).
    pub database: DatabaseSettings,
    /// The `[ingest]` section.
    pub ingest: IngestSettings,
}

/// Ingest role settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Accepted clock drift into the future, seconds.
    pub max_future_secs: i64,
    /// Backfill window, days.
    pub max_age_days: i64,
    /// Largest payload, bytes.
    pub max_payload_bytes: usize,
    /// Most readings per message.
    pub max_readings: usize,
    /// Registry reload period, seconds. A message from an unknown device or
    /// patient also asks the background refresher for a reload (coalesced, at
    /// most one per `registry_min_refresh_ms`); the processing loop never
    /// waits on the database.
    pub registry_refresh_secs: u64,
    /// Least time between two on-demand registry reloads, milliseconds.
    pub registry_min_refresh_ms: u64,
    /// Longest time a message from an unknown id waits for the reload it asked
    /// for, milliseconds; then it is rejected (`unknown_device`,
    /// `unknown_patient`, `device_not_enrolled`). Messages behind it are
    /// produced meanwhile; only their acknowledgments wait (MQTT order).
    pub registry_hold_ms: u64,
    /// Most messages waiting for a registry reload at once; beyond, a message
    /// from an unknown id is rejected without waiting.
    pub registry_max_held: usize,
    /// How long an id a reload confirmed unknown is rejected without asking for
    /// another reload, seconds (the negative cache; periodic reloads still
    /// pick up a new enrolment).
    pub registry_negative_ttl_secs: u64,
    /// Observation ids remembered to drop redelivered duplicates.
    pub dedup_capacity: usize,
    /// Per-sender rate limit: sustained messages per second per device (or
    /// patient app); messages beyond it are rejected (`rate_limited`). 0
    /// disables the limit.
    pub rate_limit_per_sec: f64,
    /// Per-sender rate limit: messages a sender may send at once.
    pub rate_limit_burst: f64,
    /// Most senders the rate limiter tracks at once (idle ones are dropped
    /// first; memory stays bounded whatever the number of ids).
    pub rate_limit_senders: usize,
    /// On SIGTERM, leave the MQTT shared subscription, take what the broker
    /// had queued for this replica, then end its persistent session, so a
    /// stopped replica strands nothing and ingest can scale down. Turn it off
    /// only where this replica can be the group's last member when it stops
    /// (a single replica): with no member subscribed the broker drops new
    /// messages, whereas a kept session queues them for the same client id.
    pub leave_on_shutdown: bool,
    /// Longest wait, seconds, for the broker to hand over what it had queued
    /// for a leaving replica; past it the session is kept (what it holds
    /// waits for this client id to return).
    pub drain_timeout_secs: u64,
    /// Address of the HTTP ingestion endpoint (`POST /ingest/v1/...`,
    /// docs/http-ingest.md), e.g. `0.0.0.0:8443` behind the TLS-terminating
    /// ingress; unset (the default) turns it off. `vitalwatch run` turns it
    /// on, on a free local port.
    pub http_listen: Option<String>,
    /// HTTP ingestion: open connections at most (further clients wait in the
    /// listen backlog).
    pub http_max_connections: usize,
    /// HTTP ingestion: a request (body included, registry hold and bus
    /// acknowledgment too) must be answered within this time, else 408.
    pub http_request_timeout_secs: u64,
    /// HTTP ingestion: longest wait for the bus to acknowledge a request's
    /// records, milliseconds; past it the answer is 503 with `Retry-After`
    /// (the client sends again; idempotency absorbs what did reach the bus).
    pub http_bus_timeout_ms: u64,
    /// HTTP ingestion: credentials are reloaded from the database this often,
    /// seconds (a revocation takes effect within this period; an unknown
    /// credential also asks for a reload, at most one per
    /// `registry_min_refresh_ms`).
    pub http_credentials_refresh_secs: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_future_secs: 300,
            max_age_days: 90,
            max_payload_bytes: 256 * 1024,
            max_readings: 1000,
            registry_refresh_secs: 30,
            registry_min_refresh_ms: 1_000,
            registry_hold_ms: 2_000,
            registry_max_held: 256,
            registry_negative_ttl_secs: 30,
            dedup_capacity: 1_000_000,
            rate_limit_per_sec: 50.0,
            rate_limit_burst: 200.0,
            rate_limit_senders: 100_000,
            leave_on_shutdown: true,
            drain_timeout_secs: 20,
            http_listen: None,
            http_max_connections: 1024,
            http_request_timeout_secs: 30,
            http_bus_timeout_ms: 10_000,
            http_credentials_refresh_secs: 30,
        }
    }
}

/// Persist role settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistSettings {
    /// Kafka consumer group.
    pub group: String,
    /// Most observations per database transaction.
    pub batch_size: usize,
    /// Longest wait to fill a batch, milliseconds.
    pub batch_wait_ms: u64,
    /// Batches written at once, each on its own database connection (offsets
    /// are still committed in order). 1 writes one batch at a time.
    pub concurrent_writes: usize,
}

impl Default for PersistSettings {
    fn default() -> Self {
        PersistSettings {
            group: "vitalwatch-persist".into(),
            batch_size: 5000,
            batch_wait_ms: 50,
            concurrent_writes: 2,
        }
    }
}

impl IngestSettings {
    /// Checks values that serde cannot.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.rate_limit_per_sec.is_finite() && self.rate_limit_per_sec >= 0.0) {
            return Err(ConfigError::new("ingest.rate_limit_per_sec must be a number >= 0 (0 disables the limit)"));
        }
        if !(self.rate_limit_burst.is_finite() && self.rate_limit_burst >= 1.0) || self.rate_limit_senders == 0 {
            return Err(ConfigError::new(
                "ingest.rate_limit_burst must be at least 1 and ingest.rate_limit_senders at least 1",
            ));
        }
        if self.http_max_connections == 0 || self.http_request_timeout_secs == 0 || self.http_bus_timeout_ms == 0 {
            return Err(ConfigError::new(
                "ingest.http_max_connections, ingest.http_request_timeout_secs and ingest.http_bus_timeout_ms must be at least 1",
            ));
        }
        // An HTTP request waits for a registry reload (at most the hold) and
        // then for the bus (at most the bus timeout), and answers 503 itself
        // when either runs out: neither wait may outlast the request timeout,
        // which cuts the request off without an answer that says what happened.
        let request_ms = self.http_request_timeout_secs.saturating_mul(1000);
        if self.registry_hold_ms.saturating_add(self.http_bus_timeout_ms) >= request_ms {
            return Err(ConfigError::new(format!(
                "ingest.registry_hold_ms ({}) + ingest.http_bus_timeout_ms ({}) must be less than \
                 ingest.http_request_timeout_secs ({} s): an HTTP request must be answered by ingest, not cut off",
                self.registry_hold_ms, self.http_bus_timeout_ms, self.http_request_timeout_secs
            )));
        }
        Ok(())
    }
}

impl PersistSettings {
    /// Checks values that serde cannot.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 || self.concurrent_writes == 0 {
            return Err(ConfigError::new("persist.batch_size and persist.concurrent_writes must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        IngestSettings::default().validate().unwrap();
        PersistSettings::default().validate().unwrap();
    }

    #[test]
    fn an_http_request_is_answered_before_its_timeout_cuts_it_off() {
        let s = IngestSettings { http_request_timeout_secs: 5, registry_hold_ms: 2_000, ..Default::default() };
        let e = IngestSettings { http_bus_timeout_ms: 3_000, ..s.clone() }.validate().unwrap_err().to_string();
        assert!(e.contains("ingest.registry_hold_ms (2000) + ingest.http_bus_timeout_ms (3000)"), "{e}");
        IngestSettings { http_bus_timeout_ms: 2_999, ..s.clone() }.validate().unwrap();
        assert!(IngestSettings { registry_hold_ms: 10_000, ..s }.validate().is_err());
    }
}
