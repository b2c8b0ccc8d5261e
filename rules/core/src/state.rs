//! Per-patient state and its checkpoint form.
//!
//! In memory a [`PatientState`] is the compact history (8 bytes per reading),
//! the devices heard from, the open episodes and a pointer to the patient's
//! compiled rules (shared between all patients that use the program defaults
//! unchanged).
//!
//! A checkpoint is the JSON of [`PatientSnapshot`]: the patient's
//! [`PatientRules`], the history as raw packed `u64` entries (pruned to the
//! retention), the devices, and the episodes *by rule id* so that a restore
//! does not depend on rule order. Each history entry is a JSON integer of up
//! to 20 characters, so 14 days of typical history (182 readings) is about
//! 4 KB.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compiled::CompiledRules;
use crate::config::{PatientRules, Program, Severity};
use crate::episodes::{Episode, EpisodeStatus};
use crate::error::RestoreError;
use crate::history::History;
use crate::missing::{DeviceSeen, Devices};

/// The checkpoint format version written by this build.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The state the engine keeps for one patient.
#[derive(Debug, Clone)]
pub struct PatientState {
    pub(crate) rules: Arc<CompiledRules>,
    pub(crate) history: History,
    pub(crate) devices: Devices,
    pub(crate) episodes: Vec<Episode>,
    pub(crate) monitoring_since_us: i64,
    /// Recently ended episodes (resolved, or physician-closed then cleared):
    /// a late reading inside one of them was already handled.
    pub(crate) handled: Vec<Handled>,
    /// The version of the patient's rules (`patient_rules.version`) named in
    /// every event they raise; 0 = unversioned (program defaults).
    pub(crate) rules_version: u32,
}

/// The time span of an episode that ended (24 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handled {
    /// Opening reading time, µs.
    pub from_us: i64,
    /// Reading time that ended it, µs.
    pub to_us: i64,
    /// Rule index in the patient's compiled rules.
    pub rule: u16,
}

/// At most this many ended episodes are remembered per patient (the oldest
/// ending is forgotten first) (U): a late reading inside a forgotten one can
/// open a historical episode.
pub(crate) const MAX_HANDLED: usize = 8;

impl PatientState {
    pub(crate) fn new(rules: Arc<CompiledRules>, monitoring_since_us: i64) -> Self {
        PatientState {
            rules,
            history: History::default(),
            devices: [DeviceSeen::EMPTY; crate::missing::MAX_DEVICES],
            episodes: Vec::new(),
            monitoring_since_us,
            handled: Vec::new(),
            rules_version: 0,
        }
    }

    /// Remembers that an episode of `rule` covering `from_us..=to_us` ended.
    pub(crate) fn remember_handled(handled: &mut Vec<Handled>, rule: u16, from_us: i64, to_us: i64) {
        if handled.len() >= MAX_HANDLED
            && let Some(i) = handled.iter().enumerate().min_by_key(|(_, h)| h.to_us).map(|(i, _)| i)
        {
            handled.swap_remove(i);
        }
        handled.push(Handled { from_us, to_us, rule });
    }

    /// Approximate bytes used by this state: the struct itself (devices are
    /// inline) plus its heap (history, episodes). Rules shared with other patients (the
    /// program defaults) are not counted; a patient's own rules are.
    pub fn approx_bytes(&self) -> usize {
        let rules = if Arc::strong_count(&self.rules) > 1 { 0 } else { self.rules.approx_bytes() };
        std::mem::size_of::<Self>()
            + self.history.heap_bytes()
            + self.episodes.capacity() * std::mem::size_of::<Episode>()
            + self.handled.capacity() * std::mem::size_of::<Handled>()
            + rules
    }

    /// Number of readings held in history.
    pub fn reading_count(&self) -> usize {
        self.history.len()
    }

    /// The patient's program.
    pub fn program(&self) -> Program {
        self.rules.program
    }

    /// The patient's rule configuration (with its `monitoring_since`).
    pub fn rules(&self) -> PatientRules {
        PatientRules {
            monitoring_since: chrono::DateTime::from_timestamp_micros(self.monitoring_since_us),
            ..self.rules.config.clone()
        }
    }

    /// The checkpoint form. `retention_us`: history older than the newest
    /// reading minus this is left out (except the newest reading of each code).
    pub(crate) fn snapshot(&self, retention_us: i64) -> PatientSnapshot {
        let mut h = self.history.clone();
        if let Some(newest) = h.newest_us() {
            h.prune(newest.saturating_sub(retention_us));
        }
        let (epoch_us, entries) = h.parts();
        PatientSnapshot {
            version: SNAPSHOT_VERSION,
            rules: self.rules(),
            rules_version: self.rules_version,
            monitoring_since_us: self.monitoring_since_us,
            epoch_us,
            history: entries.to_vec(),
            devices: self.devices.iter().filter(|d| !d.is_empty()).copied().collect(),
            episodes: self
                .episodes
                .iter()
                .filter_map(|e| {
                    Some(EpisodeSnapshot {
                        rule_id: self.rules.get(e.rule)?.id().to_owned(),
                        opened_us: e.opened_us,
                        last_us: e.last_us,
                        severity: e.severity,
                        status: e.status,
                        device_silent: e.device_silent,
                    })
                })
                .collect(),
            handled: self
                .handled
                .iter()
                .filter_map(|h| {
                    Some(HandledSnapshot {
                        rule_id: self.rules.get(h.rule)?.id().to_owned(),
                        from_us: h.from_us,
                        to_us: h.to_us,
                    })
                })
                .collect(),
        }
    }

    /// Rebuilds a state from a snapshot with already compiled rules.
    pub(crate) fn from_snapshot(s: PatientSnapshot, rules: Arc<CompiledRules>) -> Result<Self, RestoreError> {
        if s.version != SNAPSHOT_VERSION {
            return Err(RestoreError::UnsupportedVersion { found: s.version, expected: SNAPSHOT_VERSION });
        }
        let mut episodes = Vec::with_capacity(s.episodes.len());
        for e in s.episodes {
            let rule = rules.find(&e.rule_id).ok_or_else(|| RestoreError::UnknownEpisodeRule(e.rule_id.clone()))?;
            if episodes.iter().any(|x: &Episode| x.rule == rule) {
                continue;
            }
            episodes.push(Episode {
                opened_us: e.opened_us,
                last_us: e.last_us,
                rule,
                severity: e.severity,
                status: e.status,
                device_silent: e.device_silent,
            });
        }
        let mut devices = [DeviceSeen::EMPTY; crate::missing::MAX_DEVICES];
        for (slot, d) in devices.iter_mut().zip(s.devices.into_iter().filter(|d| !d.is_empty())) {
            *slot = d;
        }
        // Ended episodes of rules that no longer exist are forgotten.
        let handled = s
            .handled
            .iter()
            .rev()
            .take(MAX_HANDLED)
            .filter_map(|h| Some(Handled { from_us: h.from_us, to_us: h.to_us, rule: rules.find(&h.rule_id)? }))
            .collect();
        Ok(PatientState {
            rules,
            history: History::from_parts(s.epoch_us, s.history),
            devices,
            episodes,
            monitoring_since_us: s.monitoring_since_us,
            handled,
            rules_version: s.rules_version,
        })
    }
}

/// The serialized (checkpoint) form of a [`PatientState`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientSnapshot {
    /// Format version ([`SNAPSHOT_VERSION`]).
    pub version: u32,
    /// The patient's rule configuration.
    pub rules: PatientRules,
    /// Start of monitoring, µs since the Unix epoch.
    pub monitoring_since_us: i64,
    /// History epoch, µs since the Unix epoch.
    pub epoch_us: i64,
    /// History entries: `time offset µs (45 bits) | code (3 bits) | value (16 bits)`.
    pub history: Vec<u64>,
    #[serde(default)]
    devices: Vec<DeviceSeen>,
    /// Open (or physician-closed) episodes.
    #[serde(default)]
    pub episodes: Vec<EpisodeSnapshot>,
    /// Recently ended episodes (late readings inside them raise nothing).
    #[serde(default)]
    pub handled: Vec<HandledSnapshot>,
    /// The version of the rules (0: unversioned; absent in older checkpoints).
    #[serde(default)]
    pub rules_version: u32,
}

/// An ended episode in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandledSnapshot {
    /// The rule.
    pub rule_id: String,
    /// Opening reading time, µs.
    pub from_us: i64,
    /// Reading time that ended it, µs.
    pub to_us: i64,
}

/// An episode in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodeSnapshot {
    /// The rule.
    pub rule_id: String,
    /// Opening reading time, µs.
    pub opened_us: i64,
    /// Latest reading time that updated the episode, µs.
    pub last_us: i64,
    /// Current severity.
    pub severity: Severity,
    /// Open or closed by a physician.
    pub status: EpisodeStatus,
    /// Missing-data episode opened as "device silent".
    #[serde(default)]
    pub device_silent: bool,
}

/// Largest retention the settings allow, used when a state is deserialized
/// outside an engine.
const MAX_RETENTION_HOURS: u64 = 180 * 24;

impl Serialize for PatientState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.snapshot(i64::MAX).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PatientState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = PatientSnapshot::deserialize(deserializer)?;
        let rules = CompiledRules::compile(s.rules.clone(), MAX_RETENTION_HOURS).map_err(serde::de::Error::custom)?;
        PatientState::from_snapshot(s, Arc::new(rules)).map_err(serde::de::Error::custom)
    }
}
