//! Layered configuration: built-in defaults, then an optional TOML file, then
//! environment variables `VITALWATCH_<SECTION>__<KEY>` (e.g.
//! `VITALWATCH_BUS__BROKERS=kafka:9092`). Unknown keys, in the file or the
//! environment, are errors: a typo must not silently fall back to a default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

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
        }
    }
}

/// MQTT connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Broker address, `mqtt://host:port`; in `run`, `embedded://host:port`
    /// starts the embedded broker there.
    pub url: String,
    /// Client id. Keep it stable per replica (e.g. the pod name of a
    /// StatefulSet) so a restarted replica resumes its persistent session.
    pub client_id: String,
    /// Shared-subscription group: replicas in one group split the messages.
    pub share_group: String,
    /// Username, if the broker requires one.
    pub username: Option<String>,
    /// Password (never logged).
    pub password: Option<String>,
    /// Keep-alive, seconds.
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
            keep_alive_secs: 30,
            max_in_flight: 2000,
        }
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
    /// Dead letters.
    pub rejected_topic: String,
    /// Device status events.
    pub device_status_topic: String,
    /// Alert events (key = patient id).
    pub alerts_topic: String,
    /// Partitions for topics vitalwatch creates (the replica ceiling of each consumer role).
    pub partitions: i32,
    /// Replication factor for topics vitalwatch creates (3 in production).
    pub replication: i32,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.*`).
    pub kafka: BTreeMap<String, String>,
}

impl Default for BusSettings {
    fn default() -> Self {
        use vitalwatch_schemas::topics;
        BusSettings {
            kind: BusKind::Kafka,
            brokers: "127.0.0.1:9092".into(),
            observations_topic: topics::KAFKA_OBSERVATIONS.into(),
            rejected_topic: topics::KAFKA_REJECTED.into(),
            device_status_topic: topics::KAFKA_DEVICE_STATUS.into(),
            alerts_topic: "vitalwatch.alerts.v1".into(),
            partitions: 12,
            replication: 1,
            kafka: BTreeMap::new(),
        }
    }
}

/// Database settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user:pass@host:port/db` or `sqlite://path/to/file.db`.
    pub url: String,
    /// Rows per INSERT statement (TimescaleDB-in-WASM test servers need <= 500).
    pub insert_chunk: usize,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings { url: "postgres://postgres@127.0.0.1:5432/postgres".into(), insert_chunk: 2000 }
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
    /// Registry reload period, seconds (also reloaded on an unknown device, at most once a second).
    pub registry_refresh_secs: u64,
    /// Observation ids remembered to drop redelivered duplicates.
    pub dedup_capacity: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_future_secs: 300,
            max_age_days: 90,
            max_payload_bytes: 256 * 1024,
            max_readings: 1000,
            registry_refresh_secs: 30,
            dedup_capacity: 1_000_000,
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
}

impl Default for PersistSettings {
    fn default() -> Self {
        PersistSettings { group: "vitalwatch-persist".into(), batch_size: 5000, batch_wait_ms: 50 }
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
            s.database.url = "sqlite://{data_dir}/vitalwatch.db".into();
            s.persist.batch_wait_ms = 20;
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
        s.validate()?;
        Ok(s)
    }

    /// Replaces `{data_dir}` in paths and URLs with the data folder.
    pub fn resolve_data_dir(&mut self) {
        let dir = self.data_dir.display().to_string();
        self.database.url = self.database.url.replace("{data_dir}", &dir);
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if self.mqtt.max_in_flight == 0 {
            return bad("mqtt.max_in_flight must be at least 1");
        }
        if self.persist.batch_size == 0 {
            return bad("persist.batch_size must be at least 1");
        }
        if self.database.insert_chunk == 0 {
            return bad("database.insert_chunk must be at least 1");
        }
        if self.bus.partitions < 1 {
            return bad("bus.partitions must be at least 1");
        }
        if !(self.database.url.starts_with("postgres://")
            || self.database.url.starts_with("postgresql://")
            || self.database.url.starts_with("sqlite://"))
        {
            return bad("database.url must start with postgres:// or sqlite://");
        }
        if !(self.mqtt.url.starts_with("mqtt://") || self.mqtt.url.starts_with("embedded://")) {
            return bad("mqtt.url must start with mqtt:// (or embedded:// in `run`)");
        }
        Ok(())
    }

    /// The configuration as TOML with secrets masked.
    pub fn redacted_toml(&self) -> String {
        let mut s = self.clone();
        if s.mqtt.password.is_some() {
            s.mqtt.password = Some("********".into());
        }
        s.database.url = redact_url(&s.database.url);
        for (k, v) in s.bus.kafka.iter_mut() {
            if k.contains("password") || k.contains("secret") {
                *v = "********".into();
            }
        }
        toml_string(&s)
    }
}

fn toml_string(s: &Settings) -> String {
    // figment re-exports no serializer; JSON is an acceptable, lossless dump.
    serde_json::to_string_pretty(s).unwrap_or_default()
}

/// Masks the password of a URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:********{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
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
        assert!(s.database.url.starts_with("sqlite://"));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:********@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
