//! The engine: per-patient state plus configuration, driven by observations,
//! device heartbeats and ticks. Deterministic: time only comes from the
//! readings and from the `now` arguments.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind};
use vitalwatch_schemas::{DeviceId, Observation, PatientId};

use crate::alert::{self, Cause, Emit};
use crate::compiled::{Body, CompiledRules, Ctx, Finding, HOUR_US, Verdict};
use crate::config::{EngineSettings, PatientRules, Program};
use crate::episodes::{self, EpisodeInfo, EpisodeStatus, Transition};
use crate::error::{CloseError, ConfigError, RestoreError};
use crate::history::Insert;
use crate::missing;
use crate::state::{PatientSnapshot, PatientState};

/// What the engine did with an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObservationOutcome {
    /// Stored and evaluated against the patient's rules.
    Evaluated,
    /// Stored and evaluated as a *historical* reading: it is older than the
    /// newest reading of its code from its device by more than the allowed
    /// lateness, or older than `now − max_alert_age`. Its alerts are marked
    /// historical; it never opens an episode when one of that rule is open or
    /// closed, nor when one already covered its time (see [`process`]).
    Late,
    /// Same code and measurement time (hence same observation id) already
    /// seen: ignored.
    Duplicate,
    /// Not stored.
    Rejected(RejectReason),
}

/// Why an observation was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The value is NaN or infinite.
    NonFiniteValue,
    /// Measured later than `now + max_future_skew` (device clock error).
    FutureTime,
    /// Older than the patient's newest reading minus the retention.
    BeyondRetention,
}

/// What [`Engine::replay`] rebuilt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplayReport {
    /// Observations of the patient processed.
    pub observations: usize,
    /// Episodes open at the end of the replay.
    pub open_episodes: usize,
    /// Events of the replay about readings taken (or, for historical events,
    /// received) within `max_alert_age` of `now`. They may have been published before the restart: their ids are
    /// deterministic, so re-publishing them is safe (consumers drop
    /// duplicates) and guarantees none is lost. Older events are dropped.
    pub recent_events: Vec<AlertEvent>,
}

/// The rules engine (pure, no I/O). One instance per worker partition.
#[derive(Debug, Clone)]
pub struct Engine {
    settings: EngineSettings,
    retention_us: i64,
    defaults: Vec<(Program, Arc<CompiledRules>)>,
    patients: HashMap<PatientKey, PatientState, BuildHasherDefault<IdHasher>>,
}

/// A patient id stored inline in the map (valid ids are at most 64 ASCII
/// bytes), so a lookup compares keys without touching another heap line.
#[derive(Clone)]
struct PatientKey {
    len: u8,
    bytes: [u8; 64],
}

impl PatientKey {
    fn new(id: &PatientId) -> Self {
        let src = id.as_str().as_bytes();
        let n = src.len().min(64);
        let mut bytes = [0u8; 64];
        if let (Some(dst), Some(src)) = (bytes.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        PatientKey { len: n as u8, bytes }
    }

    fn as_str(&self) -> &str {
        // Always valid: a prefix of a validated ASCII id.
        self.bytes.get(..usize::from(self.len)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }
}

impl PartialEq for PatientKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for PatientKey {}

impl Hash for PatientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for PatientKey {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for PatientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fast, non-cryptographic hasher for patient ids (FxHash-style multiply
/// and rotate, 8 bytes at a time). Patient ids are validated, pseudonymous
/// identifiers assigned by the platform, not attacker-chosen keys, so hash
/// flooding resistance (SipHash, the std default) is not needed on this path.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.0 = (self.0 ^ u64::from_le_bytes(b)).wrapping_mul(K).rotate_left(26);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            if let Some(dst) = b.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.0 = (self.0 ^ u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59)).wrapping_mul(K).rotate_left(26);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(0xf135_7aea_2e62_a9c5).rotate_left(26);
    }

    fn finish(&self) -> u64 {
        // Final avalanche (from MurmurHash3 fmix64) so the low bits used for bucket selection mix well.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

struct Limits {
    retention_us: i64,
    lateness_us: i64,
    max_age_us: i64,
    skew_us: i64,
}

/// Whether the reading being processed is historical, and when it was received.
#[derive(Clone, Copy)]
struct Arrival {
    historical: bool,
    received_us: i64,
}

impl Arrival {
    /// Not about a reading that arrived: ticks, closes, rule changes.
    const NONE: Arrival = Arrival { historical: false, received_us: 0 };
}

impl Engine {
    /// Creates an engine.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Settings`] for invalid settings; any error of a program's
    /// default rules (a bug, covered by tests).
    pub fn new(settings: EngineSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let retention_hours = u64::from(settings.retention_days) * 24;
        let mut defaults = Vec::with_capacity(Program::ALL.len());
        for p in Program::ALL {
            defaults.push((p, Arc::new(CompiledRules::compile(PatientRules::for_program(p), retention_hours)?)));
        }
        Ok(Engine {
            retention_us: i64::from(settings.retention_days) * 24 * HOUR_US,
            settings,
            defaults,
            patients: HashMap::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    fn limits(&self) -> Limits {
        Limits {
            retention_us: self.retention_us,
            lateness_us: i64::from(self.settings.allowed_lateness_secs) * 1_000_000,
            max_age_us: i64::from(self.settings.max_alert_age_secs) * 1_000_000,
            skew_us: i64::from(self.settings.max_future_skew_secs) * 1_000_000,
        }
    }

    fn default_rules(&self, program: Program) -> Option<Arc<CompiledRules>> {
        self.defaults.iter().find(|(p, _)| *p == program).map(|(_, r)| Arc::clone(r))
    }

    /// Compiles rules, sharing the program defaults when unchanged.
    /// `monitoring_since` is per patient: it lives in the state, not in the
    /// (shareable) compiled rules.
    fn compile(&self, mut rules: PatientRules) -> Result<Arc<CompiledRules>, ConfigError> {
        rules.monitoring_since = None;
        if rules == PatientRules::for_program(rules.program)
            && let Some(shared) = self.default_rules(rules.program)
        {
            return Ok(shared);
        }
        let hours = u64::from(self.settings.retention_days) * 24;
        Ok(Arc::new(CompiledRules::compile(rules, hours)?))
    }

    /// Sets (or replaces) a patient's rules; takes effect for the next reading.
    /// Open episodes of rules that still exist (same id) are kept; those of
    /// removed or disabled rules are resolved, and their RESOLVED events
    /// returned.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the rules are invalid (see [`PatientRules::effective`])
    /// or look back further than the retention. The previous rules stay.
    pub fn set_patient_rules(
        &mut self,
        patient: &PatientId,
        rules: PatientRules,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertEvent>, ConfigError> {
        self.set_versioned_rules(patient, rules, 0, now)
    }

    /// [`Engine::set_patient_rules`] with the rules' version
    /// (`patient_rules.version`), named in every event they raise
    /// (`AlertEvent.rules_version`; 0 = unversioned, the program defaults).
    /// The RESOLVED events of removed rules name the new version.
    ///
    /// # Errors
    ///
    /// As [`Engine::set_patient_rules`].
    pub fn set_versioned_rules(
        &mut self,
        patient: &PatientId,
        rules: PatientRules,
        version: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<AlertEvent>, ConfigError> {
        let since = rules.monitoring_since.map(|t| t.timestamp_micros());
        let compiled = self.compile(rules)?;
        let now_us = now.timestamp_micros();
        let floor_pad = self.retention_us;
        let Some(state) = self.patients.get_mut(patient.as_str()) else {
            let mut state = PatientState::new(compiled, since.unwrap_or(now_us));
            state.rules_version = version;
            self.patients.insert(PatientKey::new(patient), state);
            return Ok(Vec::new());
        };
        state.rules_version = version;
        let old = std::mem::replace(&mut state.rules, Arc::clone(&compiled));
        if let Some(s) = since {
            state.monitoring_since_us = s;
        }
        let mut events = Vec::new();
        let floor = state.history.newest_us().unwrap_or(now_us).saturating_sub(floor_pad);
        let mut kept = Vec::with_capacity(state.episodes.len());
        for ep in std::mem::take(&mut state.episodes) {
            let Some(old_body) = old.get(ep.rule) else {
                continue;
            };
            match compiled.find(old_body.id()) {
                Some(rule) => kept.push(episodes::Episode { rule, ..ep }),
                None if ep.status == EpisodeStatus::Open => events.push(alert::build(&Emit {
                    patient: patient.as_str(),
                    program: old.program.as_str(),
                    body: old_body,
                    hist: &state.history,
                    floor_us: floor,
                    kind: AlertEventKind::Resolved,
                    episode: ep,
                    previous: None,
                    finding: None,
                    reading_us: ep.last_us,
                    now_us,
                    trace_id: "",
                    cause: Cause::RuleRemoved,
                    historical: false,
                    received_us: 0,
                })),
                None => {}
            }
        }
        state.episodes = kept;
        stamp_version(&mut events, 0, version);
        let handled = std::mem::take(&mut state.handled);
        state.handled = handled
            .into_iter()
            .filter_map(|h| {
                let rule = compiled.find(old.get(h.rule)?.id())?;
                Some(crate::state::Handled { rule, ..h })
            })
            .collect();
        Ok(events)
    }

    /// The rules of a patient, if known.
    pub fn patient_rules(&self, patient: &PatientId) -> Option<PatientRules> {
        self.patients.get(patient.as_str()).map(|s| s.rules())
    }

    /// Processes one observation at processing time `now`, appending any alert
    /// events to `out` (allocation-free unless an event is emitted or the
    /// patient is new).
    ///
    /// Rules run on the measurement time. A patient the engine has no rules for
    /// gets the default program of the settings.
    pub fn on_observation(
        &mut self,
        obs: &Observation,
        now: DateTime<Utc>,
        out: &mut Vec<AlertEvent>,
    ) -> ObservationOutcome {
        let t = obs.time_micros();
        let now_us = now.timestamp_micros();
        let limits = self.limits();
        if !obs.value.is_finite() {
            return ObservationOutcome::Rejected(RejectReason::NonFiniteValue);
        }
        if t > now_us.saturating_add(limits.skew_us) {
            return ObservationOutcome::Rejected(RejectReason::FutureTime);
        }
        let start = out.len();
        if let Some(state) = self.patients.get_mut(obs.patient_id.as_str()) {
            let outcome = process(state, obs.patient_id.as_str(), obs, now_us, &limits, out);
            stamp_version(out, start, state.rules_version);
            return outcome;
        }
        let rules = match self.default_rules(self.settings.default_program) {
            Some(r) => r,
            None => return ObservationOutcome::Rejected(RejectReason::BeyondRetention),
        };
        let state =
            self.patients.entry(PatientKey::new(&obs.patient_id)).or_insert_with(|| PatientState::new(rules, t));
        let outcome = process(state, obs.patient_id.as_str(), obs, now_us, &limits, out);
        stamp_version(out, start, state.rules_version);
        outcome
    }

    /// Records a status heartbeat of `device`, enrolled to `patient`, at `time`.
    /// Used to tell "device silent" from "patient did not measure".
    pub fn on_device_status(&mut self, device: &DeviceId, patient: &PatientId, time: DateTime<Utc>) {
        let t = time.timestamp_micros();
        let hash = missing::device_hash(device.as_str());
        if !self.patients.contains_key(patient.as_str())
            && let Some(rules) = self.default_rules(self.settings.default_program)
        {
            self.patients.insert(PatientKey::new(patient), PatientState::new(rules, t));
        }
        if let Some(state) = self.patients.get_mut(patient.as_str()) {
            missing::record_contact(&mut state.devices, hash, t, None);
        }
    }

    /// Evaluates the missing-data rules and the device heartbeat loss of every
    /// patient at `now`, appending events to `out` in a deterministic order
    /// (patient id, rule id).
    ///
    /// `now` should be the worker's watermark: the processing time up to which
    /// the patient's readings have been consumed. Ticking with the wall clock
    /// while a backlog is still being consumed would report missing data that
    /// is only queued.
    pub fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<AlertEvent>) {
        let now_us = now.timestamp_micros();
        let start = out.len();
        let retention = self.retention_us;
        let silent_after_us = i64::from(self.settings.device_silent_after_secs) * 1_000_000;
        for (patient, state) in self.patients.iter_mut() {
            let from = out.len();
            tick_patient(patient.as_str(), state, now_us, retention, out);
            if silent_after_us > 0 {
                tick_devices(patient.as_str(), state, now_us, silent_after_us, out);
            }
            stamp_version(out, from, state.rules_version);
        }
        if let Some(new) = out.get_mut(start..) {
            new.sort_by(|a, b| (&a.patient_id, &a.rule_id, a.kind).cmp(&(&b.patient_id, &b.rule_id, b.kind)));
        }
    }

    /// A physician closes the open episode of `rule_id`. Returns its RESOLVED
    /// event. The rule stays quiet until its condition clears or gets more
    /// severe than at closing.
    ///
    /// # Errors
    ///
    /// [`CloseError`] when the patient, the rule or an open episode is unknown.
    pub fn close_episode(
        &mut self,
        patient: &PatientId,
        rule_id: &str,
        now: DateTime<Utc>,
    ) -> Result<AlertEvent, CloseError> {
        let state = self.patients.get_mut(patient.as_str()).ok_or(CloseError::UnknownPatient)?;
        let rule =
            state.rules.find(rule_id).ok_or_else(|| CloseError::UnknownRule(rule_id.chars().take(80).collect()))?;
        let ep = state
            .episodes
            .iter_mut()
            .find(|e| e.rule == rule && e.status == EpisodeStatus::Open)
            .ok_or_else(|| CloseError::NoOpenEpisode(rule_id.to_owned()))?;
        ep.status = EpisodeStatus::ClosedByPhysician;
        let ep = *ep;
        let body = state.rules.get(rule).ok_or_else(|| CloseError::UnknownRule(rule_id.to_owned()))?;
        let floor = state.history.newest_us().unwrap_or(ep.last_us).saturating_sub(self.retention_us);
        let mut event = alert::build(&Emit {
            patient: patient.as_str(),
            program: state.rules.program.as_str(),
            body,
            hist: &state.history,
            floor_us: floor,
            kind: AlertEventKind::Resolved,
            episode: ep,
            previous: None,
            finding: None,
            reading_us: ep.last_us,
            now_us: now.timestamp_micros(),
            trace_id: "",
            cause: Cause::ClosedByPhysician,
            historical: false,
            received_us: 0,
        });
        event.rules_version = state.rules_version;
        Ok(event)
    }

    /// The patient's open (and physician-closed) episodes.
    pub fn open_episodes(&self, patient: &PatientId) -> Vec<EpisodeInfo> {
        let Some(state) = self.patients.get(patient.as_str()) else {
            return Vec::new();
        };
        let at = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
        state
            .episodes
            .iter()
            .filter(|e| e.status != EpisodeStatus::Pending)
            .filter_map(|e| {
                let rule_id = state.rules.get(e.rule)?.id();
                Some(EpisodeInfo {
                    episode_id: episodes::episode_id(patient.as_str(), rule_id, e.opened_us),
                    rule_id: rule_id.to_owned(),
                    severity: e.severity,
                    status: e.status,
                    opened_at: at(e.opened_us),
                    last_reading_at: at(e.last_us),
                })
            })
            .collect()
    }

    /// Serializes a patient's state (JSON of [`PatientSnapshot`]); `None` for
    /// an unknown patient.
    pub fn checkpoint(&self, patient: &PatientId) -> Option<Vec<u8>> {
        let state = self.patients.get(patient.as_str())?;
        serde_json::to_vec(&state.snapshot(self.retention_us)).ok()
    }

    /// Restores a patient's state from [`Engine::checkpoint`] bytes, replacing
    /// any state held.
    ///
    /// # Errors
    ///
    /// [`RestoreError`] if the bytes are not a checkpoint of a supported
    /// version, or its rules are invalid for this engine.
    pub fn restore(&mut self, patient: &PatientId, bytes: &[u8]) -> Result<(), RestoreError> {
        let snap: PatientSnapshot = serde_json::from_slice(bytes)?;
        let rules = self.compile(snap.rules.clone())?;
        let state = PatientState::from_snapshot(snap, rules)?;
        self.patients.insert(PatientKey::new(patient), state);
        Ok(())
    }

    /// Rebuilds a patient's state from its recent observations (e.g. the last
    /// 14 days from the database), replacing any state held. Observations are
    /// processed in arrival order (`received_at`, then measurement time), each
    /// with `now = max(received_at, time)` capped at `now`, so late readings
    /// are late again and episodes open and resolve as they did live.
    /// Observations of other patients are skipped. Missing-data rules are not
    /// replayed: the next [`Engine::tick`] re-opens such episodes with the
    /// same ids.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the rules are invalid.
    pub fn replay<'a, I>(
        &mut self,
        patient: &PatientId,
        rules: PatientRules,
        observations: I,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, ConfigError>
    where
        I: IntoIterator<Item = &'a Observation>,
    {
        self.replay_versioned(patient, rules, 0, observations, now)
    }

    /// [`Engine::replay`] with the rules' version (see
    /// [`Engine::set_versioned_rules`]); the replayed events name it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the rules are invalid.
    pub fn replay_versioned<'a, I>(
        &mut self,
        patient: &PatientId,
        rules: PatientRules,
        version: u32,
        observations: I,
        now: DateTime<Utc>,
    ) -> Result<ReplayReport, ConfigError>
    where
        I: IntoIterator<Item = &'a Observation>,
    {
        let since = rules.monitoring_since.map(|t| t.timestamp_micros());
        let compiled = self.compile(rules)?;
        let mut obs: Vec<&Observation> = observations.into_iter().filter(|o| o.patient_id == *patient).collect();
        obs.sort_by_key(|o| (o.received_at.max(o.time), o.time, o.code));
        let now_us = now.timestamp_micros();
        let first = obs.first().map_or(now_us, |o| o.time_micros().min(o.received_at.timestamp_micros()));
        let mut state = PatientState::new(compiled, since.unwrap_or(first));
        state.rules_version = version;
        let limits = self.limits();
        let mut events = Vec::new();
        let mut n = 0;
        for o in &obs {
            let t_now = o.received_at.max(o.time).timestamp_micros().min(now_us);
            if !o.value.is_finite() || o.time_micros() > t_now.saturating_add(limits.skew_us) {
                continue;
            }
            process(&mut state, patient.as_str(), o, t_now, &limits, &mut events);
            n += 1;
        }
        let cutoff = now_us.saturating_sub(limits.max_age_us);
        // Historical events are about old readings received recently: keep
        // them by their receive time.
        events.retain(|e| e.reading_time_unix_micros.max(e.received_at_unix_micros) >= cutoff);
        stamp_version(&mut events, 0, version);
        let report = ReplayReport {
            observations: n,
            open_episodes: state.episodes.iter().filter(|e| e.status == EpisodeStatus::Open).count(),
            recent_events: events,
        };
        self.patients.insert(PatientKey::new(patient), state);
        Ok(report)
    }

    /// Forgets a patient (end of monitoring). Returns whether it was known.
    pub fn remove_patient(&mut self, patient: &PatientId) -> bool {
        self.patients.remove(patient.as_str()).is_some()
    }

    /// Number of patients held.
    pub fn patient_count(&self) -> usize {
        self.patients.len()
    }

    /// A patient's state, for inspection and memory measurement.
    pub fn patient_state(&self, patient: &PatientId) -> Option<&PatientState> {
        self.patients.get(patient.as_str())
    }

    /// Approximate bytes held by the engine for all patients: each
    /// [`PatientState::approx_bytes`], the patient id strings and the hash
    /// map's buckets (shared default rules excluded).
    pub fn approx_bytes(&self) -> usize {
        let buckets =
            self.patients.capacity() * (std::mem::size_of::<PatientKey>() + std::mem::size_of::<PatientState>() + 1);
        let per: usize = self.patients.values().map(|v| v.approx_bytes() - std::mem::size_of::<PatientState>()).sum();
        buckets + per
    }
}

/// Names the rules' version in the events appended to `out` from `start` on.
fn stamp_version(out: &mut [AlertEvent], start: usize, version: u32) {
    for e in out.iter_mut().skip(start) {
        e.rules_version = version;
    }
}

/// Processes one observation for one patient.
///
/// Lateness (issue #14): a reading is *out of order* when it is older, by more
/// than the allowed lateness, than the newest reading of the same code from
/// the same device (for a device reading: the older of the code's newest
/// reading and the device's newest reading of any code; for a manual entry:
/// the code's newest reading). It is *historical* when out of order or older
/// than `now − max_alert_age`. A historical reading is evaluated like any
/// other, with these limits (U):
/// * a trigger opens a (historical) episode only when the rule has no episode
///   (open or physician-closed) and no ended episode of the rule covered the
///   reading's time, from the allowed lateness before its opening reading
///   (the same onset) to its resolving reading; it never escalates an open
///   episode (no re-page). A reading after the resolving one is a relapse
///   and is news;
/// * a clear resolves an open episode as a current reading does (only if it
///   is not older than the episode's latest reading);
/// * a newer reading of the same code does not suppress it: a level-2
///   hypoglycaemia that was never alerted is news to the physician, whatever
///   the order in which the meter uploads its memory. The episode it opens
///   resolves on the next clearing reading.
fn process(
    state: &mut PatientState,
    patient: &str,
    obs: &Observation,
    now_us: i64,
    limits: &Limits,
    out: &mut Vec<AlertEvent>,
) -> ObservationOutcome {
    let t = obs.time_micros();
    let code = obs.code;
    let PatientState { rules, history, devices, episodes, monitoring_since_us, handled, .. } = state;
    let code_newest = history.latest(code, i64::MAX).map(|r| r.t_us);
    let dev_hash = obs.device_id.as_ref().map(|d| missing::device_hash(d.as_str()));
    let reference = match dev_hash {
        // A device with no earlier reading has nothing newer: in order.
        Some(h) => missing::newest_reading(devices, h).and_then(|d| code_newest.map(|c| c.min(d))),
        None => code_newest,
    };
    let out_of_order = reference.is_some_and(|n| t < n.saturating_sub(limits.lateness_us));
    let late = out_of_order || t < now_us.saturating_sub(limits.max_age_us);
    match history.insert(code, t, obs.value, limits.retention_us) {
        Insert::Inserted => {}
        Insert::Duplicate => return ObservationOutcome::Duplicate,
        Insert::TooOld => return ObservationOutcome::Rejected(RejectReason::BeyondRetention),
    }
    if let Some(h) = dev_hash {
        missing::record_contact(devices, h, t, Some(code));
    }
    let arrival = Arrival { historical: late, received_us: obs.received_at.timestamp_micros() };
    let floor_us = history.newest_us().unwrap_or(t).saturating_sub(limits.retention_us);
    let ctx = Ctx { hist: history, t_us: t, floor_us };
    let rules: &CompiledRules = rules;
    let Some(list) = rules.by_code.get(code.index()) else {
        return ObservationOutcome::Evaluated;
    };
    for &ri in list {
        let Some(body) = rules.get(ri) else { continue };
        let (verdict, ordered) = match body {
            Body::Cadence(c) => {
                let g = missing::gap(c, history, *monitoring_since_us, now_us);
                match missing::evaluate(c, g, now_us) {
                    v @ Verdict::Clear(_) => (v, false),
                    _ => continue,
                }
            }
            Body::Threshold(r) => (crate::threshold::evaluate(r, &ctx), true),
            Body::Change(r) => (crate::change::evaluate(r, &ctx), true),
            Body::News2(r) => (crate::news2::evaluate_rule(r, &ctx, rules.scale, rules.assumptions), true),
        };
        if late
            && matches!(verdict, Verdict::Trigger(_) | Verdict::Pending(_))
            && (episodes.iter().any(|e| e.rule == ri && e.status != EpisodeStatus::Pending)
                || handled
                    .iter()
                    .any(|h| h.rule == ri && h.from_us.saturating_sub(limits.lateness_us) <= t && t <= h.to_us))
        {
            continue;
        }
        if let (Some(group), Some(f)) = (body.group(), verdict.finding())
            && matches!(verdict, Verdict::Trigger(_) | Verdict::Pending(_))
            && !episodes.iter().any(|e| e.rule == ri)
            && episodes.iter().any(|e| {
                e.status == EpisodeStatus::Open
                    && e.severity >= f.severity
                    && rules.get(e.rule).and_then(Body::group) == Some(group)
            })
        {
            // One condition, one page: another rule of the group already has it open.
            continue;
        }
        // Missing-data episodes are about `now`, not a reading time: not remembered.
        let confirm_us = body.confirm_window_us();
        let tr = match body {
            Body::Cadence(_) => episodes::apply(episodes, ri, &verdict, t, ordered, 0),
            _ => apply_tracked(episodes, handled, ri, &verdict, t, ordered, confirm_us),
        };
        emit(tr, patient, rules, body, history, floor_us, verdict.finding(), t, now_us, &obs.trace_id, arrival, out);
    }
    if late { ObservationOutcome::Late } else { ObservationOutcome::Evaluated }
}

/// [`episodes::apply`], remembering the span of an episode that ends (resolved,
/// cleared after a physician closed it, or replaced by a more severe one).
fn apply_tracked(
    episodes: &mut Vec<episodes::Episode>,
    handled: &mut Vec<crate::state::Handled>,
    rule: u16,
    verdict: &Verdict,
    t_us: i64,
    ordered: bool,
    confirm_us: i64,
) -> Transition {
    let before = episodes.iter().find(|e| e.rule == rule).copied();
    let tr = episodes::apply(episodes, rule, verdict, t_us, ordered, confirm_us);
    // A pending episode nobody was told about is not a handled one.
    if let Some(b) = before
        && b.status != EpisodeStatus::Pending
        && episodes.iter().find(|e| e.rule == rule).is_none_or(|a| a.opened_us != b.opened_us)
    {
        PatientState::remember_handled(handled, rule, b.opened_us, b.last_us.max(t_us));
    }
    tr
}

#[allow(clippy::too_many_arguments)]
fn emit(
    tr: Transition,
    patient: &str,
    rules: &CompiledRules,
    body: &Body,
    hist: &crate::history::History,
    floor_us: i64,
    finding: Option<Finding>,
    reading_us: i64,
    now_us: i64,
    trace_id: &str,
    arrival: Arrival,
    out: &mut Vec<AlertEvent>,
) {
    let (kind, episode, previous) = match tr {
        Transition::None => return,
        Transition::Opened(ep) => (AlertEventKind::Opened, ep, None),
        Transition::Escalated { episode, from } => (AlertEventKind::Escalated, episode, Some(from)),
        Transition::Resolved(ep) => (AlertEventKind::Resolved, ep, None),
    };
    out.push(alert::build(&Emit {
        patient,
        program: rules.program.as_str(),
        body,
        hist,
        floor_us,
        kind,
        episode,
        previous,
        finding,
        reading_us,
        now_us,
        trace_id,
        cause: Cause::Condition,
        historical: arrival.historical,
        received_us: arrival.received_us,
    }));
}

fn tick_patient(patient: &str, state: &mut PatientState, now_us: i64, retention_us: i64, out: &mut Vec<AlertEvent>) {
    let PatientState { rules, history, devices, episodes, monitoring_since_us, .. } = state;
    let rules: &CompiledRules = rules;
    let floor_us = history.newest_us().unwrap_or(now_us).saturating_sub(retention_us);
    for &ri in &rules.cadence {
        let Some(body) = rules.get(ri) else { continue };
        let Body::Cadence(c) = body else { continue };
        let g = missing::gap(c, history, *monitoring_since_us, now_us);
        let (t, reading_us, expected_us) = match g {
            missing::Gap::Overdue { due_us, since_us, .. } => {
                (due_us, due_us, since_us.saturating_add(i64::from(c.every_hours).saturating_mul(HOUR_US)))
            }
            missing::Gap::OnTime => (now_us, history.latest(c.code, i64::MAX).map_or(now_us, |r| r.t_us), now_us),
        };
        let verdict = missing::evaluate(c, g, now_us);
        let mut tr = episodes::apply(episodes, ri, &verdict, t, false, 0);
        if let Transition::Opened(ep) = &mut tr {
            ep.device_silent = missing::device_silent(devices, c.code, expected_us);
            if let Some(stored) = episodes.iter_mut().find(|e| e.rule == ri) {
                stored.device_silent = ep.device_silent;
            }
        }
        emit(
            tr,
            patient,
            rules,
            body,
            history,
            floor_us,
            verdict.finding(),
            reading_us,
            now_us,
            "",
            Arrival::NONE,
            out,
        );
    }
    open_unconfirmed(patient, rules, history, episodes, floor_us, now_us, out);
}

/// Opens the pending episodes whose confirmation window has passed without a
/// new reading of their code (fail-safe: an unconfirmed value is reported,
/// marked "not re-measured", rather than dropped). The event is about the
/// first reading, found again by evaluating the rule at its time.
fn open_unconfirmed(
    patient: &str,
    rules: &CompiledRules,
    history: &crate::history::History,
    episodes: &mut [episodes::Episode],
    floor_us: i64,
    now_us: i64,
    out: &mut Vec<AlertEvent>,
) {
    for ep in episodes.iter_mut().filter(|e| e.status == EpisodeStatus::Pending) {
        let Some(body) = rules.get(ep.rule) else { continue };
        if now_us < ep.opened_us.saturating_add(body.confirm_window_us()) {
            continue;
        }
        let ctx = Ctx { hist: history, t_us: ep.opened_us, floor_us };
        let finding = match body {
            Body::Threshold(r) => crate::threshold::evaluate(r, &ctx).finding(),
            Body::Change(r) => crate::change::evaluate(r, &ctx).finding(),
            Body::News2(_) | Body::Cadence(_) => None,
        };
        ep.status = EpisodeStatus::Open;
        out.push(alert::build(&Emit {
            patient,
            program: rules.program.as_str(),
            body,
            hist: history,
            floor_us,
            kind: AlertEventKind::Opened,
            episode: *ep,
            previous: None,
            finding,
            reading_us: ep.opened_us,
            now_us,
            trace_id: "",
            cause: Cause::Unconfirmed,
            // Reported a confirmation window after it was measured: never
            // worded as the present. Its receive time is not kept.
            historical: true,
            received_us: 0,
        }));
    }
}

/// Heartbeat loss (issue #14 §7): a device that sent status heartbeats and
/// has not been heard from (heartbeat or reading) for `after_us` opens a LOW
/// technical episode stamped with its due time (last contact + `after_us`),
/// so its id does not depend on the tick schedule; the first tick after the
/// device is heard again resolves it. Devices that never sent a heartbeat
/// (and manual-entry patients, who have no device) never raise it: their
/// silence is the missing-data rules' business.
fn tick_devices(patient: &str, state: &mut PatientState, now_us: i64, after_us: i64, out: &mut Vec<AlertEvent>) {
    let program = state.rules.program.as_str();
    let after_hours = after_us as f64 / HOUR_US as f64;
    for d in state.devices.iter_mut().filter(|d| !d.is_empty() && d.heartbeats) {
        let due = d.last_us.saturating_add(after_us);
        let silence = |opened_us: i64, last_us: i64| alert::DeviceSilence {
            id_hash: d.id_hash,
            codes: d.codes,
            opened_us,
            last_us,
            after_hours,
        };
        if d.silent_opened_us != i64::MIN && d.silent_opened_us != due {
            // Heard from since the episode opened.
            let ev = alert::build_device_silent(
                patient,
                program,
                &silence(d.silent_opened_us, d.last_us),
                AlertEventKind::Resolved,
                now_us,
            );
            out.push(ev);
            d.silent_opened_us = i64::MIN;
        }
        if d.silent_opened_us == i64::MIN && now_us >= due {
            out.push(alert::build_device_silent(
                patient,
                program,
                &silence(due, d.last_us),
                AlertEventKind::Opened,
                now_us,
            ));
            d.silent_opened_us = due;
        }
    }
}
