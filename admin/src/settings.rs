//! The `[api]` section of the admin API (`vitalwatch api`, and inside `run`).
//! Its transport limits also apply to the acknowledgment server of the
//! alerting role ([`ApiSettings::ack_limits`]).

use serde::{Deserialize, Serialize};
use vitalwatch_platform::config::ConfigError;

/// Admin API settings (`[api]`, env `VITALWATCH_API__<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Listen address, `host:port` (`127.0.0.1:8090` in `run`, which moves to a
    /// free port when that one is taken).
    pub listen: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Largest page a list returns (`limit` is capped to it).
    pub max_page_size: u32,
    /// Transport limits of both client-facing HTTP servers (the admin API and
    /// the acknowledgment server of `alerting.http_addr`): the request line and
    /// headers must arrive within this many seconds, else the connection is
    /// closed (slow-loris).
    pub header_read_timeout_secs: u64,
    /// Both servers: a request (body included) not answered within this many
    /// seconds gets 408 (slow bodies, stuck handlers).
    pub request_timeout_secs: u64,
    /// Both servers: open connections at most, each (more wait in the backlog).
    pub max_connections: usize,
    /// Largest request body of the acknowledgment server (`/ack`, `/sms/inbound`), bytes.
    pub ack_max_body_bytes: usize,
    /// Lifetime of a new API token, days (unless created with an explicit expiry).
    pub token_ttl_days: u32,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: "0.0.0.0:8090".into(),
            max_body_bytes: 1024 * 1024,
            max_page_size: 500,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 512,
            ack_max_body_bytes: 64 * 1024,
            token_ttl_days: 90,
        }
    }
}

impl ApiSettings {
    /// The transport limits of the admin API.
    pub fn limits(&self) -> vitalwatch_platform::http::HttpLimits {
        vitalwatch_platform::http::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            max_connections: self.max_connections,
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The transport limits of the acknowledgment server (`/ack`, `/sms/inbound`).
    pub fn ack_limits(&self) -> vitalwatch_platform::http::HttpLimits {
        vitalwatch_platform::http::HttpLimits { max_body_bytes: self.ack_max_body_bytes, ..self.limits() }
    }
}

impl ApiSettings {
    /// Checks values that serde cannot.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::new(m));
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("api.listen must be host:port with an IP address, e.g. 0.0.0.0:8090");
        }
        if self.max_page_size == 0 || self.max_body_bytes == 0 {
            return bad("api.max_page_size and api.max_body_bytes must be at least 1");
        }
        if self.header_read_timeout_secs == 0 || self.request_timeout_secs == 0 {
            return bad("api.header_read_timeout_secs and api.request_timeout_secs must be at least 1");
        }
        if self.max_connections == 0 || self.ack_max_body_bytes == 0 || self.token_ttl_days == 0 {
            return bad("api.max_connections, api.ack_max_body_bytes and api.token_ttl_days must be at least 1");
        }
        Ok(())
    }
}
