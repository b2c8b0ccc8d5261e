//! Layered configuration: built-in defaults, then an optional TOML file, then
//! environment variables `VITALWATCH_<SECTION>__<KEY>` (e.g.
//! `VITALWATCH_BUS__BROKERS=kafka:9092`). Unknown keys, in the file or the
//! environment, are errors: a typo must not silently fall back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::secret::{KafkaProperties, Secret, SecretUrl};
use crate::telemetry::LogFormat;

/// Which defaults apply before the file and the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// A single role against real services (MQTT broker, Kafka, PostgreSQL).
    Service,
    /// `vitalwatch run`: every role in one process on embedded defaults.
    Embedded,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Log format.
    pub log_format: LogFormat,
    /// Folder for embedded-mode state (SQLite file, broker, alert files).
    pub data_dir: PathBuf,
    /// MQTT connection.
    pub mqtt: MqttSettings,
    /// Message bus.
    pub bus: BusSettings,
    /// Database.
    pub database: DatabaseSettings,
    /// Ingest role.
    pub ingest: IngestSettings,
    /// Persist role.
    pub persist: PersistSettings,
    /// Alerting role.
    pub alerting: AlertingSettings,
    /// Rules role.
    pub rules: RulesSettings,
    /// Operations endpoints (metrics and probes).
    pub ops: OpsSettings,
    /// Admin API (`vitalwatch api`, and inside `run`).
    pub api: ApiSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            log_format: LogFormat::Text,
            data_dir: PathBuf::from("data"),
            mqtt: MqttSettings::default(),
            bus: BusSettings::default(),
            database: DatabaseSettings::default(),
            ingest: IngestSettings::default(),
            persist: PersistSettings::default(),
            alerting: AlertingSettings::default(),
            rules: RulesSettings::default(),
            ops: OpsSettings::default(),
            api: ApiSettings::default(),
        }
    }
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
    /// Checks the URL scheme against the TLS and credential keys: TLS files
    /// with a plaintext URL are an error, never a silent downgrade.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
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

    /// The connect and statement timeouts every database client of every role uses.
    pub fn timeouts(&self) -> crate::store::DbTimeouts {
        crate::store::DbTimeouts {
            connect: std::time::Duration::from_millis(self.connect_timeout_ms),
            statement: std::time::Duration::from_millis(self.statement_timeout_ms),
        }
    }
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

/// Rules role settings (`vitalwatch rules`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSettings {
    /// Kafka consumer group (on the observations and device-status topics).
    pub group: String,
    /// Seconds between two evaluations of the missing-data rules.
    pub tick_secs: u64,
    /// Most bus messages per batch (one database transaction, one offset
    /// commit). A batch holds what arrived while the previous one was being
    /// committed, so this only caps a backlog: at 1000, a worker that spent
    /// ~100 ms per batch on publish, database and commit could not keep up
    /// with 14,000 observations a second and fell seconds behind.
    pub batch_size: usize,
    /// Longest wait to fill a batch, milliseconds.
    pub batch_wait_ms: u64,
    /// Seconds between two polls of `patient_rules` for changed rules.
    pub config_poll_secs: u64,
    /// On a new partition assignment, the longest wait, in seconds, for the
    /// `persist` role (group `persist.group`) to store everything this group
    /// already consumed from those partitions, so that a patient's rebuilt
    /// state lacks no reading the previous owner saw. After it, the state is
    /// rebuilt from what is stored (logged, counted). 0: do not wait (no
    /// `persist` role writes this database).
    pub store_wait_secs: u64,
    /// Engine: a reading older than the newest of its code from its device by
    /// more than this is out of order: evaluated as historical (unset: the
    /// engine's 3600).
    pub allowed_lateness_secs: Option<u32>,
    /// Engine: a reading older than now by more than this is historical: its
    /// alerts say so (unset: the engine's 21600).
    pub max_alert_age_secs: Option<u32>,
    /// Engine: a reading stamped later than now plus this is rejected (unset: the engine's 300).
    pub max_future_skew_secs: Option<u32>,
    /// Engine: a device that sent heartbeats and is silent (no heartbeat, no
    /// reading) this long raises a LOW technical alert by email; 0 disables
    /// it (unset: the engine's 21600).
    pub device_silent_after_secs: Option<u32>,
    /// Engine: days of history kept per patient, 1 to 180 (unset: the engine's 14).
    pub retention_days: Option<u16>,
    /// Engine: the program of a patient with no rules set yet (`general`,
    /// `heart_failure`, `hypertension`, `copd`, `diabetes`; unset: `general`).
    pub default_program: Option<String>,
}

impl Default for RulesSettings {
    fn default() -> Self {
        RulesSettings {
            group: "vitalwatch-rules".into(),
            tick_secs: 60,
            batch_size: 5000,
            batch_wait_ms: 20,
            config_poll_secs: 5,
            store_wait_secs: 30,
            allowed_lateness_secs: None,
            max_alert_age_secs: None,
            max_future_skew_secs: None,
            device_silent_after_secs: None,
            retention_days: None,
            default_program: None,
        }
    }
}

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
    pub fn limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            max_connections: self.max_connections,
            max_body_bytes: self.max_body_bytes,
        }
    }

    /// The transport limits of the acknowledgment server (`/ack`, `/sms/inbound`).
    pub fn ack_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits { max_body_bytes: self.ack_max_body_bytes, ..self.limits() }
    }
}

/// How alert emails (and, with `file`, SMS) leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertTransportKind {
    /// Emails through `alerting.smtp`, SMS through `alerting.sms.provider`.
    Smtp,
    /// Emails as `.eml` files and SMS as JSON lines in `alerting.file_dir`.
    File,
}

/// SMTP connection security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurityKind {
    /// Implicit TLS (port 465).
    Tls,
    /// STARTTLS required (port 587).
    StartTls,
    /// STARTTLS when offered.
    Opportunistic,
    /// Plain text (tests and local relays only).
    None,
}

/// SMS provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProviderKind {
    /// No SMS: pages go by email only.
    None,
    /// Twilio's Messages API (or any API of that shape).
    Twilio,
    /// A JSON webhook (`{to, body, idempotency_key}`).
    Webhook,
}

/// Outgoing mail server of the alerting role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSmtpSettings {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connection security.
    pub security: SmtpSecurityKind,
    /// User name, if the server requires authentication.
    pub username: Option<String>,
    /// Password (never printed).
    pub password: Option<Secret>,
    /// Sender mailbox, e.g. `vitalwatch <alerts@hospital.example>`; its domain
    /// is also used in Message-IDs.
    pub from: String,
    /// Timeout of one SMTP conversation, seconds.
    pub timeout_secs: u64,
}

impl Default for AlertSmtpSettings {
    fn default() -> Self {
        AlertSmtpSettings {
            host: "127.0.0.1".into(),
            port: 25,
            security: SmtpSecurityKind::Opportunistic,
            username: None,
            password: None,
            from: "vitalwatch <alerts@vitalwatch.localdomain>".into(),
            timeout_secs: 20,
        }
    }
}

/// SMS gateway of the alerting role (outgoing messages and inbound replies).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSmsSettings {
    /// Provider.
    pub provider: SmsProviderKind,
    /// Twilio API base URL.
    pub twilio_base_url: String,
    /// Twilio account SID.
    pub twilio_account_sid: String,
    /// Twilio auth token (never printed). When set, inbound SMS webhooks must
    /// carry a valid `X-Twilio-Signature`.
    pub twilio_auth_token: Option<Secret>,
    /// Sender number (E.164); or use `twilio_messaging_service_sid`.
    pub twilio_from: Option<String>,
    /// Twilio messaging service SID (instead of `twilio_from`).
    pub twilio_messaging_service_sid: Option<String>,
    /// Webhook URL (provider `webhook`).
    pub webhook_url: String,
    /// Bearer token for the webhook (never printed).
    pub webhook_bearer_token: Option<Secret>,
    /// HMAC-SHA256 secret to sign webhook bodies (never printed).
    pub webhook_signing_secret: Option<Secret>,
    /// Timeout of one provider request, seconds.
    pub timeout_secs: u64,
    /// Inbound SMS replies (`POST /sms/inbound`): authentication and limits.
    pub inbound: AlertSmsInboundSettings,
}

impl Default for AlertSmsSettings {
    fn default() -> Self {
        AlertSmsSettings {
            provider: SmsProviderKind::None,
            twilio_base_url: "https://api.twilio.com".into(),
            twilio_account_sid: String::new(),
            twilio_auth_token: None,
            twilio_from: None,
            twilio_messaging_service_sid: None,
            webhook_url: String::new(),
            webhook_bearer_token: None,
            webhook_signing_secret: None,
            timeout_secs: 15,
            inbound: AlertSmsInboundSettings::default(),
        }
    }
}

/// Inbound SMS replies (`POST /sms/inbound`, issue #13): every call is authenticated,
/// attempts are limited per sender number and per replica, and a sender that fails too
/// often is locked out (audited in `admin_audit`).
///
/// Authentication by provider: `twilio` verifies `X-Twilio-Signature` with
/// `alerting.sms.twilio_auth_token`; `webhook`, `none` and the `file` transport of `run`
/// verify `X-Vitalwatch-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`
/// with `X-Vitalwatch-Timestamp` (Unix seconds) within `max_skew_secs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSmsInboundSettings {
    /// Whether `POST /sms/inbound` accepts replies. Unset: on for `twilio` and `webhook`
    /// and for the `file` transport of `run`, off for provider `none`. When on, the role
    /// refuses to start without its secret (`twilio_auth_token` for `twilio`, `secret`
    /// otherwise; `run` creates `{file_dir}/sms-inbound.secret`).
    pub enabled: Option<bool>,
    /// HMAC-SHA256 key of the generic webhook scheme, at least 32 bytes (never logged).
    pub secret: Option<crate::secret::Secret>,
    /// Largest difference between `X-Vitalwatch-Timestamp` and the clock, seconds.
    pub max_skew_secs: u64,
    /// Failed attempts (unknown number, unknown or wrong code) allowed per sender number
    /// within `failure_window_secs` before the number is locked out.
    pub max_failures: u32,
    /// Window of `max_failures`, seconds.
    pub failure_window_secs: u64,
    /// How long a locked-out number gets the neutral answer whatever it sends, seconds.
    pub lockout_secs: u64,
    /// Inbound requests one replica accepts per minute over all senders (token bucket).
    pub global_per_minute: u32,
}

impl Default for AlertSmsInboundSettings {
    fn default() -> Self {
        AlertSmsInboundSettings {
            enabled: None,
            secret: None,
            max_skew_secs: 300,
            max_failures: 5,
            failure_window_secs: 900,
            lockout_secs: 3600,
            global_per_minute: 120,
        }
    }
}

impl AlertingSettings {
    /// Checks the SMS code length and the inbound limits (the message names the key).
    pub fn check_sms(&self) -> Result<(), String> {
        if !(6..=10).contains(&self.ack_code_digits) {
            return Err(format!(
                "alerting.ack_code_digits must be 6 to 10 (got {}): shorter codes can be guessed",
                self.ack_code_digits
            ));
        }
        let i = &self.sms.inbound;
        if i.max_skew_secs == 0 || i.max_skew_secs > 3600 {
            return Err("alerting.sms.inbound.max_skew_secs must be 1 to 3600".into());
        }
        if i.max_failures == 0 || i.failure_window_secs == 0 || i.lockout_secs == 0 || i.global_per_minute == 0 {
            return Err("alerting.sms.inbound.max_failures, failure_window_secs, lockout_secs and global_per_minute must be at least 1".into());
        }
        Ok(())
    }
}

/// Alerting role settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSettings {
    /// Kafka consumer group of the alert-event consumer.
    pub group: String,
    /// Listen address of the acknowledgment / SMS webhook / health server.
    pub http_addr: String,
    /// Public base URL of that server, used in acknowledgment links
    /// (`{public_base_url}/ack?t=...`) and to verify Twilio signatures
    /// (`{public_base_url}/sms/inbound`).
    pub public_base_url: String,
    /// Secret for acknowledgment links and SMS codes, at least 32 bytes (never
    /// printed). Required by `vitalwatch alerting`; in `run`, a random secret is
    /// created in `file_dir` (mode 0600) when unset.
    pub ack_secret: Option<Secret>,
    /// Validity of acknowledgment links, hours.
    pub ack_link_ttl_hours: u32,
    /// Digits of SMS acknowledgment codes (6 to 10; see docs/alerting.md for the odds of guessing).
    pub ack_code_digits: u32,
    /// Transport kind.
    pub transport: AlertTransportKind,
    /// Folder of the `file` transport (`{data_dir}` is replaced by the data folder).
    pub file_dir: PathBuf,
    /// Outgoing mail server (transport `smtp`).
    pub smtp: AlertSmtpSettings,
    /// SMS gateway (transport `smtp`).
    pub sms: AlertSmsSettings,
    /// How long a dispatcher owns the outbox rows it claimed, seconds: rows of
    /// a dispatcher that died are retried after this.
    pub outbox_lease_secs: u64,
    /// Outbox poll period, milliseconds.
    pub outbox_poll_ms: u64,
    /// Outbox rows claimed at once.
    pub outbox_batch: usize,
    /// Period of the escalation scheduler, milliseconds.
    pub scheduler_poll_ms: u64,
    /// Delay before the second attempt after a transient failure,
    /// milliseconds (doubles, with jitter).
    pub retry_base_delay_ms: u64,
    /// Longest delay between attempts, milliseconds.
    pub retry_max_delay_ms: u64,
    /// How long a notification failing transiently (connection refused,
    /// timeout, SMTP 4xx, HTTP 5xx/408/429) is retried after it became due,
    /// seconds (at least 86400). Acknowledgment or resolution of the episode
    /// stops the retries earlier; after the horizon the delivery fails like a
    /// permanent failure (fallback channel, else the next rung).
    pub retry_horizon_secs: u64,
    /// After this many seconds of transient failures, the same page is also
    /// sent on the recipient's other channel (email <-> SMS) while the first
    /// one keeps being retried.
    pub retry_fallback_after_secs: u64,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        AlertingSettings {
            group: "vitalwatch-alerting".into(),
            http_addr: "0.0.0.0:8080".into(),
            public_base_url: "http://127.0.0.1:8080".into(),
            ack_secret: None,
            ack_link_ttl_hours: 72,
            ack_code_digits: 8,
            transport: AlertTransportKind::Smtp,
            file_dir: PathBuf::from("{data_dir}/alerts"),
            smtp: AlertSmtpSettings::default(),
            sms: AlertSmsSettings::default(),
            outbox_lease_secs: 60,
            outbox_poll_ms: 500,
            outbox_batch: 20,
            scheduler_poll_ms: 1000,
            retry_base_delay_ms: 5_000,
            retry_max_delay_ms: 300_000,
            retry_horizon_secs: 86_400,
            retry_fallback_after_secs: 60,
        }
    }
}

/// A configuration error, with the offending key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl Settings {
    /// The defaults of a profile.
    pub fn defaults(profile: Profile) -> Settings {
        let mut s = Settings::default();
        if profile == Profile::Embedded {
            s.mqtt.url = "embedded://127.0.0.1:1883".into();
            s.mqtt.client_id = "vitalwatch-run".into();
            s.bus.kind = BusKind::Memory;
            s.database.url = SecretUrl::new("sqlite://{data_dir}/vitalwatch.db");
            s.persist.batch_wait_ms = 20;
            s.alerting.transport = AlertTransportKind::File;
            s.alerting.http_addr = "127.0.0.1:8080".into();
            s.ops.listen = "127.0.0.1:9464".into();
            s.api.listen = "127.0.0.1:8090".into();
        }
        s
    }

    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(profile: Profile, file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(profile, file, Env::prefixed("VITALWATCH_").split("__").ignore(&["config", "log"]))
    }

    fn load_from(profile: Profile, file: Option<&Path>, env: Env) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::defaults(profile)));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!("config file {} does not exist", f.display())));
            }
            fig = fig.merge(Toml::file(f));
        }
        let mut s: Settings = fig.merge(env).extract().map_err(|e| ConfigError(e.to_string()))?;
        s.resolve_data_dir();
        s.database.apply_tls_keys()?;
        s.validate()?;
        Ok(s)
    }

    /// Replaces `{data_dir}` in paths and URLs with the data folder.
    pub fn resolve_data_dir(&mut self) {
        let dir = self.data_dir.display().to_string();
        if self.database.url.expose().contains("{data_dir}") {
            self.database.url = SecretUrl::new(self.database.url.expose().replace("{data_dir}", &dir));
        }
        let file_dir = self.alerting.file_dir.display().to_string();
        if file_dir.contains("{data_dir}") {
            self.alerting.file_dir = PathBuf::from(file_dir.replace("{data_dir}", &dir));
        }
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if self.mqtt.max_in_flight == 0 {
            return bad("mqtt.max_in_flight must be at least 1");
        }
        let i = &self.ingest;
        if !(i.rate_limit_per_sec.is_finite() && i.rate_limit_per_sec >= 0.0) {
            return bad("ingest.rate_limit_per_sec must be a number >= 0 (0 disables the limit)");
        }
        if !(i.rate_limit_burst.is_finite() && i.rate_limit_burst >= 1.0) || i.rate_limit_senders == 0 {
            return bad("ingest.rate_limit_burst must be at least 1 and ingest.rate_limit_senders at least 1");
        }
        if self.ops.drain_deadline_secs == 0 {
            return bad("ops.drain_deadline_secs must be at least 1");
        }
        if self.persist.batch_size == 0 || self.persist.concurrent_writes == 0 {
            return bad("persist.batch_size and persist.concurrent_writes must be at least 1");
        }
        if self.rules.batch_size == 0 || self.rules.tick_secs == 0 || self.rules.config_poll_secs == 0 {
            return bad("rules.batch_size, rules.tick_secs and rules.config_poll_secs must be at least 1");
        }
        if self.database.insert_chunk == 0 {
            return bad("database.insert_chunk must be at least 1");
        }
        if self.database.connect_timeout_ms == 0 || self.database.statement_timeout_ms == 0 {
            return bad("database.connect_timeout_ms and database.statement_timeout_ms must be at least 1");
        }
        if self.alerting.outbox_lease_secs == 0 || self.alerting.outbox_batch == 0 {
            return bad("alerting.outbox_lease_secs and alerting.outbox_batch must be at least 1");
        }
        if self.alerting.retry_horizon_secs < 86_400 {
            return bad("alerting.retry_horizon_secs must be at least 86400 (24 h): a page is not given up sooner");
        }
        self.alerting.check_sms().map_err(ConfigError)?;
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("api.listen must be host:port with an IP address, e.g. 0.0.0.0:8090");
        }
        if self.api.max_page_size == 0 || self.api.max_body_bytes == 0 {
            return bad("api.max_page_size and api.max_body_bytes must be at least 1");
        }
        if self.api.header_read_timeout_secs == 0 || self.api.request_timeout_secs == 0 {
            return bad("api.header_read_timeout_secs and api.request_timeout_secs must be at least 1");
        }
        if self.api.max_connections == 0 || self.api.ack_max_body_bytes == 0 || self.api.token_ttl_days == 0 {
            return bad("api.max_connections, api.ack_max_body_bytes and api.token_ttl_days must be at least 1");
        }
        if self.bus.partitions < 1 {
            return bad("bus.partitions must be at least 1");
        }
        if self.bus.kind == BusKind::Kafka {
            crate::bus::kafka_security::properties(&self.bus).map_err(|e| ConfigError(e.to_string()))?;
        }
        let db_url = self.database.url.expose();
        if !(db_url.starts_with("postgres://")
            || db_url.starts_with("postgresql://")
            || db_url.starts_with("sqlite://"))
        {
            return bad("database.url must start with postgres:// or sqlite://");
        }
        self.mqtt.validate()?;
        if !self.ops.listen.is_empty() && self.ops.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("ops.listen must be host:port with an IP address (e.g. 0.0.0.0:9464), or empty");
        }
        Ok(())
    }

    /// The configuration as JSON with secrets masked: [`Secret`] fields print
    /// `********`, the database URL and `bus.kafka` mask their secrets, and the
    /// other URLs (MQTT, webhook, public base) have theirs masked here.
    pub fn redacted_toml(&self) -> String {
        let mut s = self.clone();
        for url in [
            &mut s.mqtt.url,
            &mut s.alerting.sms.webhook_url,
            &mut s.alerting.sms.twilio_base_url,
            &mut s.alerting.public_base_url,
        ] {
            *url = redact_url(url);
        }
        // figment re-exports no serializer; JSON is an acceptable, lossless dump.
        serde_json::to_string_pretty(&s).unwrap_or_default()
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

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_unknown_keys_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vw.toml", "[persist]\nbatch_size = 10\n")?;
            jail.set_env("VITALWATCH_BUS__BROKERS", "k1:9092");
            let s = Settings::load(Profile::Service, Some(Path::new("vw.toml"))).unwrap();
            assert_eq!(s.persist.batch_size, 10);
            assert_eq!(s.bus.brokers, "k1:9092");
            jail.set_env("VITALWATCH_BUS__BROKRES", "typo");
            let e = Settings::load(Profile::Service, Some(Path::new("vw.toml"))).unwrap_err();
            assert!(e.to_string().contains("brokres"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_file_key_fails() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vw.toml", "[persist]\nbatch_sise = 10\n")?;
            let e = Settings::load(Profile::Service, Some(Path::new("vw.toml"))).unwrap_err();
            assert!(e.to_string().contains("batch_sise"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn embedded_profile_defaults() {
        let s = Settings::defaults(Profile::Embedded);
        assert_eq!(s.bus.kind, BusKind::Memory);
        assert!(s.database.url.expose().starts_with("sqlite://"));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn alert_retry_horizon_is_at_least_a_day() {
        let mut s = Settings::defaults(Profile::Service);
        assert_eq!(s.alerting.retry_horizon_secs, 86_400);
        s.alerting.retry_horizon_secs = 3_600;
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("alerting.retry_horizon_secs"), "{e}");
    }

    #[test]
    fn sms_codes_of_fewer_than_six_digits_and_zero_limits_are_refused() {
        let mut s = Settings::defaults(Profile::Service);
        assert_eq!(s.alerting.ack_code_digits, 8);
        assert!(s.validate().is_ok());
        s.alerting.ack_code_digits = 4;
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("alerting.ack_code_digits"), "{e}");
        s.alerting.ack_code_digits = 8;
        s.alerting.sms.inbound.max_failures = 0;
        let e = s.validate().unwrap_err();
        assert!(e.to_string().contains("alerting.sms.inbound.max_failures"), "{e}");
    }

    #[test]
    fn mqtt_tls_and_credential_keys() {
        let mut s = Settings::defaults(Profile::Service);
        s.mqtt.ca_file = Some("/etc/vitalwatch/mqtt-ca.pem".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("mqtt.ca_file") && e.contains("plaintext"), "{e}");
        s.mqtt.url = "mqtts://broker.example:8883".into();
        assert!(s.validate().is_ok());
        s.mqtt.client_cert_file = Some("/etc/vitalwatch/ingest.crt".into());
        assert!(s.validate().unwrap_err().to_string().contains("mqtt.client_key_file"));
        s.mqtt.client_key_file = Some("/etc/vitalwatch/ingest.key".into());
        assert!(s.validate().is_ok());
        s.mqtt.password = Some(crate::secret::Secret::new("mqtt-secret-pw"));
        assert!(s.validate().unwrap_err().to_string().contains("mqtt.password needs mqtt.username"));
        s.mqtt.username = Some("vitalwatch-ingest".into());
        s.mqtt.embedded_users.insert("dev-1".into(), crate::secret::Secret::new("dev-secret-pw"));
        assert!(s.validate().is_ok());
        let t = s.redacted_toml();
        assert!(!t.contains("mqtt-secret-pw") && !t.contains("dev-secret-pw") && t.contains("dev-1"), "{t}");
        s.mqtt.url = "http://broker.example".into();
        assert!(s.validate().unwrap_err().to_string().contains("mqtt.url"));
    }

    #[test]
    fn mqtt_embedded_users_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VITALWATCH_MQTT__EMBEDDED_USERS", "{dev-1=\"pw-1\", pat-1=\"pw-2\"}");
            jail.set_env("VITALWATCH_MQTT__PASSWORD", "pw-ingest");
            jail.set_env("VITALWATCH_MQTT__USERNAME", "vitalwatch-ingest");
            let s = Settings::load(Profile::Embedded, None).unwrap();
            assert_eq!(s.mqtt.embedded_users["dev-1"].expose(), "pw-1");
            assert_eq!(s.mqtt.embedded_users["pat-1"].expose(), "pw-2");
            assert_eq!(s.mqtt.password.as_ref().map(|p| p.expose()), Some("pw-ingest"));
            Ok(())
        });
    }

    #[test]
    fn database_tls_keys_go_into_the_url() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VITALWATCH_DATABASE__URL", "postgres://vw@db.example/vw?application_name=persist");
            jail.set_env("VITALWATCH_DATABASE__SSLMODE", "verify-full");
            jail.set_env("VITALWATCH_DATABASE__SSLROOTCERT", "/etc/vitalwatch/db-ca/ca.crt");
            let s = Settings::load(Profile::Service, None).unwrap();
            assert_eq!(
                s.database.url.expose(),
                "postgres://vw@db.example/vw?application_name=persist&sslmode=verify-full&sslrootcert=/etc/vitalwatch/db-ca/ca.crt"
            );
            // verify-full without a CA cannot work: refused at load, naming the key.
            jail.set_env("VITALWATCH_DATABASE__SSLROOTCERT", "");
            jail.set_env("VITALWATCH_DATABASE__URL", "postgres://vw@db.example/vw");
            let e = Settings::load(Profile::Service, None).unwrap_err().to_string();
            assert!(e.contains("database.sslmode") && e.contains("needs a CA file"), "{e}");
            // A URL that says otherwise is not silently preferred.
            jail.set_env("VITALWATCH_DATABASE__SSLROOTCERT", "/ca.pem");
            jail.set_env("VITALWATCH_DATABASE__URL", "postgres://vw@db.example/vw?sslmode=disable");
            let e = Settings::load(Profile::Service, None).unwrap_err().to_string();
            assert!(e.contains("database.sslmode = \"verify-full\" contradicts sslmode=disable"), "{e}");
            jail.set_env("VITALWATCH_DATABASE__SSLMODE", "verify_full");
            jail.set_env("VITALWATCH_DATABASE__URL", "postgres://vw@db.example/vw");
            let e = Settings::load(Profile::Service, None).unwrap_err().to_string();
            assert!(e.contains("invalid sslmode \"verify_full\""), "{e}");
            Ok(())
        });
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:********@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        let mut s = Settings::defaults(Profile::Embedded);
        s.alerting.ack_secret = Some("very-secret-ack-key".into());
        s.alerting.smtp.password = Some("smtp-pass".into());
        s.mqtt.password = Some("mqtt-pass".into());
        s.alerting.sms.twilio_auth_token = Some("twilio-tok".into());
        s.alerting.sms.webhook_bearer_token = Some("hook-bearer".into());
        s.alerting.sms.webhook_signing_secret = Some("hook-signing".into());
        s.alerting.sms.webhook_url = "https://hook.example/sms?token=hook-query".into();
        s.mqtt.url = "mqtt://dev:mqtt-url-pass@broker:1883".into();
        s.database.url =
            SecretUrl::new("postgres://u:db-user-pass@h/db?password=db-query-pass&sslpassword=db-ssl-pass");
        s.bus.kafka.insert("sasl.password", "kafka-sasl-pass");
        s.bus.kafka.insert("ssl.key.pem", "kafka-key-pem");
        s.bus.kafka.insert("security.protocol", "SASL_SSL");
        let t = s.redacted_toml();
        for secret in [
            "very-secret-ack-key",
            "smtp-pass",
            "mqtt-pass",
            "twilio-tok",
            "hook-bearer",
            "hook-signing",
            "hook-query",
            "mqtt-url-pass",
            "db-user-pass",
            "db-query-pass",
            "db-ssl-pass",
            "kafka-sasl-pass",
            "kafka-key-pem",
        ] {
            assert!(!t.contains(secret), "{secret} printed: {t}");
        }
        assert!(t.contains("SASL_SSL") && t.contains("postgres://u:********@h/db"), "{t}");
        assert!(!format!("{s:?}").contains("db-query-pass"));
        s.resolve_data_dir();
        assert_eq!(s.alerting.file_dir, PathBuf::from("data/alerts"));
        assert_eq!(s.alerting.transport, AlertTransportKind::File);
    }
}
