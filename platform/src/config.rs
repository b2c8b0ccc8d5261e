//! Layered configuration: built-in defaults, then an optional TOML file, then
//! environment variables `VITALWATCH_<SECTION>__<KEY>` (e.g.
//! `VITALWATCH_BUS__BROKERS=kafka:9092`). Unknown keys, in the file or the
//! environment, are errors: a typo must not silently fall back to a default.
//!
//! This module holds the loader ([`load_layered`]) and the sections every role
//! shares: [`MqttSettings`], [`BusSettings`], [`DatabaseSettings`] and
//! [`OpsSettings`]. Each role owns its section in its own crate
//! (`vitalwatch_ingest::settings` for `[ingest]` and `[persist]`,
//! `vitalwatch_rules::settings` for `[rules]`, with the engine's settings from
//! `vitalwatch_rules_core`, `vitalwatch_alerting::settings` for `[alerting]`,
//! `vitalwatch_admin::settings` for `[api]`); the `vitalwatch` binary composes
//! them into the whole configuration (`vitalwatch/src/config.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::secret::{KafkaProperties, SecretUrl};

/// Loads `defaults`, then `file` (if given), then the environment
/// (`VITALWATCH_<SECTION>__<KEY>`; `VITALWATCH_CONFIG` and `VITALWATCH_LOG`
/// are not keys). Unknown keys are errors when `T` and its sections deny them
/// (`#[serde(deny_unknown_fields)]`).
///
/// # Errors
///
/// [`ConfigError`]: a missing file, a malformed value, an unknown key.
pub fn load_layered<T: Serialize + DeserializeOwned>(defaults: &T, file: Option<&Path>) -> Result<T, ConfigError> {
    let env = Env::prefixed("VITALWATCH_").split("__").ignore(&["config", "log"]);
    let mut fig = Figment::from(Serialized::defaults(defaults));
    if let Some(f) = file {
        if !f.exists() {
            return Err(ConfigError(format!("config file {} does not exist", f.display())));
        }
        fig = fig.merge(Toml::file(f));
    }
    fig.merge(env).extract().map_err(|e| ConfigError(e.to_string()))
}

/// The operations endpoints every role serves: `/metrics` (Prometheus text
/// format), `/healthz` (the process is alive), `/readyz` (its broker, bus and
/// database connections work). Internal: keep this port off public ingresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsSettings {
    /// Listen address, `host:port`; empty disables the endpoints.
    pub listen: String,
    /// A consumer role (persist, rules, alerting) that has received records
    /// it has not committed, and has made no progress for this many seconds,
    /// is stalled: `/readyz` fails naming it, and
    /// `vitalwatch_consumer_stalled_seconds` shows it.
    pub stall_secs: u64,
    /// On SIGTERM (or when a role fails), the longest time, seconds, for the
    /// process's roles to finish what they hold and commit; a role still
    /// running then is named in an error log and the process exits non-zero.
    /// Keep it below the pod's `terminationGracePeriodSeconds` (60) and above
    /// `ingest.drain_timeout_secs` (the MQTT hand-over).
    pub drain_deadline_secs: u64,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings { listen: "0.0.0.0:9464".into(), stall_secs: 120, drain_deadline_secs: 45 }
    }
}

impl OpsSettings {
    /// [`OpsSettings::drain_deadline_secs`] as a duration.
    pub fn drain_deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_deadline_secs)
    }

    /// Checks the listen address.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.is_empty() && self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::new(
                "ops.listen must be host:port with an IP address (e.g. 0.0.0.0:9464), or empty",
            ));
        }
        if self.drain_deadline_secs == 0 {
            return Err(ConfigError::new("ops.drain_deadline_secs must be at least 1"));
        }
        Ok(())
    }
}

/// MQTT connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Broker address: `mqtts://host[:port]` (TLS, port 8883 by default),
    /// `mqtt://host[:port]` (plain: in-cluster only); in `run`,
    /// `embedded://host:port` starts the embedded broker there.
    pub url: String,
    /// Client id. Keep it stable per replica (e.g. the pod name of a
    /// StatefulSet) so a restarted replica resumes its persistent session.
    pub client_id: String,
    /// Shared-subscription group: replicas in one group split the messages.
    pub share_group: String,
    /// Username, if the broker requires one.
    pub username: Option<String>,
    /// Password (never printed).
    pub password: Option<crate::secret::Secret>,
    /// `mqtts://`: CA certificates (PEM) that sign the broker's certificate.
    /// Unset: the system's CA certificates. A broker whose certificate does
    /// not verify is never talked to (no plaintext fallback).
    pub ca_file: Option<PathBuf>,
    /// `mqtts://`: client certificate chain (PEM) for mutual TLS, with
    /// `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// `mqtts://`: private key (PEM: PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// `vitalwatch run` only: the embedded broker's accounts, username =
    /// password. Empty (the default): the embedded broker asks for no
    /// credentials. Not empty: every client must give one of these pairs, and
    /// `run`'s own clients use `username`/`password` (added here) or a random
    /// internal account.
    pub embedded_users: BTreeMap<String, crate::secret::Secret>,
    /// Keep-alive, seconds. At 30, under ~10,000 messages/s each way, ingest
    /// replicas declared their ping lost ("Last pingreq isn't acked") every
    /// minute or two, reconnected and stalled the flow for tens of seconds;
    /// at 120 a run at the same load had no disconnect. A broker that dies
    /// closes the TCP connection, which is noticed at once either way.
    pub keep_alive_secs: u64,
    /// Messages processed but not yet acknowledged, at most (back-pressure).
    pub max_in_flight: usize,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "vitalwatch-ingest-0".into(),
            share_group: "vitalwatch-ingest".into(),
            username: None,
            password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            embedded_users: BTreeMap::new(),
            keep_alive_secs: 120,
            max_in_flight: 2000,
        }
    }
}

impl MqttSettings {
    /// Checks the in-flight bound, and the URL scheme against the TLS and
    /// credential keys: TLS files with a plaintext URL are an error, never a
    /// silent downgrade.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if self.max_in_flight == 0 {
            return bad("mqtt.max_in_flight must be at least 1");
        }
        let tls = self.url.starts_with("mqtts://");
        if !(tls || self.url.starts_with("mqtt://") || self.url.starts_with("embedded://")) {
            return bad("mqtt.url must start with mqtts:// (TLS), mqtt:// (plain) or embedded:// (in `run`)");
        }
        let tls_files = [&self.ca_file, &self.client_cert_file, &self.client_key_file];
        if !tls && tls_files.iter().any(|f| f.is_some()) {
            return bad("mqtt.ca_file, mqtt.client_cert_file and mqtt.client_key_file need an mqtts:// mqtt.url: \
                 with mqtt:// the connection would be plaintext");
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return bad("mqtt.client_cert_file and mqtt.client_key_file go together (mutual TLS)");
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("mqtt.password needs mqtt.username");
        }
        if self.embedded_users.iter().any(|(u, p)| u.is_empty() || p.is_empty()) {
            return bad("mqtt.embedded_users: usernames and passwords must not be empty");
        }
        Ok(())
    }
}

/// Bus backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    /// Apache Kafka or any Kafka-protocol broker.
    Kafka,
    /// In-process log (embedded mode only: one process).
    Memory,
}

/// Message bus settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// Backend.
    pub kind: BusKind,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Normalized observations (key = patient id).
    pub observations_topic: String,
    /// Dead letters of ingest (rejected MQTT messages).
    pub rejected_topic: String,
    /// Dead letters of the consumer roles (persist, rules, alerting): bus
    /// records that could never be processed, with the reason.
    pub dead_letter_topic: String,
    /// Device status events.
    pub device_status_topic: String,
    /// Alert events (key = patient id).
    pub alerts_topic: String,
    /// Partitions for topics vitalwatch creates (the replica ceiling of each consumer role).
    pub partitions: i32,
    /// Replication factor for topics vitalwatch creates (3 in production).
    pub replication: i32,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.*`).
    /// Secret ones (`sasl.password`, `ssl.key.pem`, ... see
    /// [`crate::redact::is_secret_kafka_property`]) are printed masked.
    pub kafka: KafkaProperties,
    // --- Kafka transport security: librdkafka properties with names the
    // environment can carry (dotted names cannot be set there). Each may be
    // given here or in `kafka` under its librdkafka name, not both. Checked by
    // `crate::bus::kafka_security`.
    /// `security.protocol`: `plaintext`, `ssl`, `sasl_plaintext` or
    /// `sasl_ssl` (unset: librdkafka's `plaintext`). Production: `ssl` or
    /// `sasl_ssl`. TLS never falls back to plaintext.
    pub security_protocol: Option<String>,
    /// `ssl.ca.location`: CA certificates (PEM) the brokers' certificates must
    /// lead to (unset: the system's CA store). Host names are verified.
    pub ssl_ca_location: Option<PathBuf>,
    /// `ssl.certificate.location`: client certificate (PEM), for brokers that
    /// authenticate clients by certificate; with `ssl_key_location`.
    pub ssl_certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: the client certificate's private key (PEM).
    pub ssl_key_location: Option<PathBuf>,
    /// `sasl.mechanism`: `SCRAM-SHA-256`, `SCRAM-SHA-512`, `PLAIN` (only
    /// over `sasl_ssl`) or `OAUTHBEARER` (with `sasl.oauthbearer.*` in `kafka`).
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password` (never printed).
    pub sasl_password: Option<crate::secret::Secret>,
}

impl Default for BusSettings {
    fn default() -> Self {
        use vitalwatch_schemas::topics;
        BusSettings {
            kind: BusKind::Kafka,
            brokers: "127.0.0.1:9092".into(),
            observations_topic: topics::KAFKA_OBSERVATIONS.into(),
            rejected_topic: topics::KAFKA_REJECTED.into(),
            dead_letter_topic: topics::KAFKA_DEAD_LETTER.into(),
            device_status_topic: topics::KAFKA_DEVICE_STATUS.into(),
            alerts_topic: "vitalwatch.alerts.v1".into(),
            partitions: 12,
            replication: 1,
            kafka: KafkaProperties::default(),
            security_protocol: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
        }
    }
}

impl BusSettings {
    /// Checks the partition count and, for Kafka, the transport security keys.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions < 1 {
            return Err(ConfigError::new("bus.partitions must be at least 1"));
        }
        if self.kind == BusKind::Kafka {
            crate::bus::kafka_security::properties(self).map_err(|e| ConfigError(e.to_string()))?;
        }
        Ok(())
    }
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user:pass@host:port/db` or `sqlite://path/to/file.db`.
    /// Printed with its password masked (userinfo and `password`/`sslpassword`
    /// query parameters); [`SecretUrl::expose`] gives the URL to connect with.
    pub url: SecretUrl,
    /// Rows per INSERT statement (TimescaleDB-in-WASM test servers need <= 500).
    pub insert_chunk: usize,
    /// Longest wait for a new PostgreSQL connection (TCP connect and startup),
    /// milliseconds. A database that does not answer in time is a transient
    /// error, never a hang.
    pub connect_timeout_ms: u64,
    /// Longest database call, milliseconds: the server's `statement_timeout`,
    /// and a client-side bound on every call (a hung server cannot cancel its
    /// own statements). Migrations are exempt.
    pub statement_timeout_ms: u64,
    // --- TLS to PostgreSQL (libpq semantics; the same names also work as
    // query parameters of `url`, where they must not contradict these).
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (unset:
    /// the URL's `sslmode`, else `prefer`, libpq's default). Production:
    /// `verify-full`. `prefer` and `require` without a CA do not stop an
    /// attacker in the middle.
    pub sslmode: Option<String>,
    /// CA certificates (PEM) the server's chain must lead to (`verify-ca`,
    /// `verify-full`; with `require`, the chain is then checked too).
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate chain (PEM), for servers that authenticate clients
    /// by certificate; with `sslkey`.
    pub sslcert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub sslkey: Option<PathBuf>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SecretUrl::new("postgres://postgres@127.0.0.1:5432/postgres"),
            insert_chunk: 2000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            sslmode: None,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        }
    }
}

impl DatabaseSettings {
    /// Moves `sslmode`, `sslrootcert`, `sslcert` and `sslkey` into the query
    /// of a `postgres://` URL (every store reads its TLS settings from the
    /// URL, as libpq). A key the URL already has with another value is an
    /// error: a production `verify-full` must not be downgraded silently.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn apply_tls_keys(&mut self) -> Result<(), ConfigError> {
        let url = self.url.expose().to_owned();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Ok(());
        }
        let keys = [
            ("sslmode", self.sslmode.clone()),
            ("sslrootcert", self.sslrootcert.as_ref().map(|p| p.display().to_string())),
            ("sslcert", self.sslcert.as_ref().map(|p| p.display().to_string())),
            ("sslkey", self.sslkey.as_ref().map(|p| p.display().to_string())),
        ];
        let (_, in_url) =
            crate::store::pg_tls::split_url(&url).map_err(|e| ConfigError(format!("database.url: {e}")))?;
        let url_value = |k: &str| match k {
            "sslmode" => url.contains("sslmode=").then(|| in_url.mode.as_str().to_owned()),
            "sslrootcert" => in_url.root_cert.as_ref().map(|p| p.display().to_string()),
            "sslcert" => in_url.client_cert.as_ref().map(|p| p.display().to_string()),
            _ => in_url.client_key.as_ref().map(|p| p.display().to_string()),
        };
        let mut add = Vec::new();
        for (k, v) in keys {
            let Some(v) = v.filter(|v| !v.is_empty()) else { continue };
            match url_value(k) {
                Some(u) if u != v => {
                    return Err(ConfigError(format!("database.{k} = {v:?} contradicts {k}={u} in database.url")));
                }
                Some(_) => {}
                None => add.push(format!("{k}={}", query_escape(&v))),
            }
        }
        if !add.is_empty() {
            let sep = if url.contains('?') { '&' } else { '?' };
            self.url = SecretUrl::new(format!("{url}{sep}{}", add.join("&")));
        }
        // The combination must work (e.g. verify-full needs a CA file).
        crate::store::pg_tls::split_url(self.url.expose())
            .map(|_| ())
            .map_err(|e| ConfigError(format!("database.sslmode / database.sslrootcert: {e}")))
    }

    /// Checks the chunk size, the timeouts and the URL scheme.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if self.insert_chunk == 0 {
            return bad("database.insert_chunk must be at least 1");
        }
        if self.connect_timeout_ms == 0 || self.statement_timeout_ms == 0 {
            return bad("database.connect_timeout_ms and database.statement_timeout_ms must be at least 1");
        }
        let db_url = self.url.expose();
        if !(db_url.starts_with("postgres://")
            || db_url.starts_with("postgresql://")
            || db_url.starts_with("sqlite://"))
        {
            return bad("database.url must start with postgres:// or sqlite://");
        }
        Ok(())
    }

    /// The connect and statement timeouts every database client of every role uses.
    pub fn timeouts(&self) -> crate::store::DbTimeouts {
        crate::store::DbTimeouts {
            connect: std::time::Duration::from_millis(self.connect_timeout_ms),
            statement: std::time::Duration::from_millis(self.statement_timeout_ms),
        }
    }
}

/// A configuration error, with the offending key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with its message (which names the offending key).
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

pub use crate::redact::redact_url;

/// Escapes a URL query value (`%`, `&`, `#`, `+`, `=`, space).
fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '%' | '&' | '#' | '+' | '=' | ' ' | '?' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
