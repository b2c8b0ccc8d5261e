//! The `[rules]` section: the worker's settings ([`RulesSettings`]) and,
//! flattened into it under their own names, the engine's
//! ([`EngineSettings`], owned by `vitalwatch-rules-core`).

use serde::{Deserialize, Serialize};
use vitalwatch_platform::config::ConfigError;

use crate::EngineSettings;

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
    /// Longest wait to fill a batch, milliseconds. 0 (the default): a batch
    /// is what has arrived, and the engine never waits for more while a
    /// reading that may raise an alert is in hand (the alert latency); under
    /// load, what arrives while a batch is evaluated makes the next one.
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
    /// The engine's settings, flattened into this section with their own
    /// names (`rules.allowed_lateness_secs`, `rules.max_alert_age_secs`,
    /// `rules.max_future_skew_secs`, `rules.device_silent_after_secs`,
    /// `rules.retention_days`, `rules.default_program`): see
    /// [`EngineSettings`] for each, with its default.
    #[serde(flatten)]
    pub engine: EngineSettings,
}

impl Default for RulesSettings {
    fn default() -> Self {
        RulesSettings {
            group: "vitalwatch-rules".into(),
            tick_secs: 60,
            batch_size: 5000,
            batch_wait_ms: 0,
            config_poll_secs: 5,
            store_wait_secs: 30,
            engine: EngineSettings::default(),
        }
    }
}

impl RulesSettings {
    /// Checks values that serde cannot, the engine's ranges included.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.batch_size == 0 || self.tick_secs == 0 || self.config_poll_secs == 0 {
            return Err(ConfigError::new(
                "rules.batch_size, rules.tick_secs and rules.config_poll_secs must be at least 1",
            ));
        }
        self.engine.validate().map_err(|e| ConfigError::new(format!("rules engine settings: {e}")))
    }
}
