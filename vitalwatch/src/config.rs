//! The whole configuration of the binary: the shared sections of
//! `vitalwatch_platform::config` (MQTT, bus, database, operations endpoints)
//! and the section each role crate owns (`[ingest]` and `[persist]`:
//! `vitalwatch_ingest::settings`; `[rules]`: `vitalwatch_rules::settings`;
//! `[alerting]`: `vitalwatch_alerting::settings`; `[api]`:
//! `vitalwatch_admin::settings`), loaded in layers (built-in defaults, then an
//! optional TOML file, then `VITALWATCH_<SECTION>__<KEY>` environment
//! variables). Unknown keys, in the file or the environment, are errors.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vitalwatch_admin::settings::ApiSettings;
use vitalwatch_alerting::settings::{AlertTransportKind, AlertingSettings};
use vitalwatch_ingest::settings::{IngestConfig, IngestSettings, PersistSettings};
use vitalwatch_platform::config::{
    BusKind, BusSettings, ConfigError, DatabaseSettings, MqttSettings, OpsSettings, load_layered, redact_url,
};
use vitalwatch_platform::secret::SecretUrl;
use vitalwatch_platform::telemetry::LogFormat;
use vitalwatch_rules::settings::RulesSettings;
use vitalwatch_web::WebSettings;

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
    /// The clinician workspace, served on the API listener.
    pub web: WebSettings,
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
            web: WebSettings::default(),
        }
    }
}

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
            s.web.public_url = "http://127.0.0.1:8090".into();
        }
        s
    }

    /// Loads defaults, then `file` (if given), then the environment
    /// ([`vitalwatch_platform::config::load_layered`]), then resolves
    /// `{data_dir}`, moves the database TLS keys into its URL and validates.
    pub fn load(profile: Profile, file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut s = load_layered(&Settings::defaults(profile), file)?;
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
        self.alerting.resolve_data_dir(&dir);
    }

    /// Checks values that serde cannot, section by section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mqtt.validate()?;
        self.ingest.validate()?;
        self.persist.validate()?;
        self.rules.validate()?;
        self.database.validate()?;
        self.alerting.validate()?;
        self.api.validate()?;
        self.web.validate()?;
        self.bus.validate()?;
        self.ops.validate()
    }

    /// The configuration as JSON with secrets masked: [`Secret`] fields print
    /// `********`, the database URL and `bus.kafka` mask their secrets, and the
    /// other URLs (MQTT, webhook, public base) have theirs masked here.
    ///
    /// [`Secret`]: vitalwatch_platform::secret::Secret
    pub fn redacted_toml(&self) -> String {
        let mut s = self.clone();
        s.mqtt.url = redact_url(&s.mqtt.url);
        s.alerting.redact_urls();
        // figment re-exports no serializer; JSON is an acceptable, lossless dump.
        serde_json::to_string_pretty(&s).unwrap_or_default()
    }
}

impl Settings {
    /// What the `ingest` role reads.
    pub fn ingest_config(&self) -> IngestConfig {
        IngestConfig { mqtt: self.mqtt.clone(), database: self.database.clone(), ingest: self.ingest.clone() }
    }
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
    fn rules_engine_keys_are_in_the_rules_section_and_typos_fail() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vw.toml",
                "[rules]\ngroup = \"g\"\nallowed_lateness_secs = 120\ndefault_program = \"copd\"\n",
            )?;
            jail.set_env("VITALWATCH_RULES__DEVICE_SILENT_AFTER_SECS", "0");
            let s = Settings::load(Profile::Service, Some(Path::new("vw.toml"))).unwrap();
            assert_eq!(s.rules.group, "g");
            assert_eq!(s.rules.engine.allowed_lateness_secs, 120);
            assert_eq!(s.rules.engine.device_silent_after_secs, 0);
            assert_eq!(s.rules.engine.default_program, vitalwatch_rules::Program::Copd);
            assert_eq!(s.rules.engine.retention_days, 14);
            jail.set_env("VITALWATCH_RULES__RETENTION_DAY", "30");
            let e = Settings::load(Profile::Service, Some(Path::new("vw.toml"))).unwrap_err();
            assert!(e.to_string().contains("retention_day"), "{e}");
            jail.clear_env();
            jail.create_file("vw.toml", "[rules]\nallowed_lateness_sec = 120\n")?;
            let e = Settings::load(Profile::Service, Some(Path::new("vw.toml"))).unwrap_err();
            assert!(e.to_string().contains("allowed_lateness_sec"), "{e}");
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
        s.mqtt.password = Some(vitalwatch_platform::secret::Secret::new("mqtt-secret-pw"));
        assert!(s.validate().unwrap_err().to_string().contains("mqtt.password needs mqtt.username"));
        s.mqtt.username = Some("vitalwatch-ingest".into());
        s.mqtt.embedded_users.insert("dev-1".into(), vitalwatch_platform::secret::Secret::new("dev-secret-pw"));
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
