//! What-if replays for the rules editor: which of a patient's stored readings
//! would have alerted under candidate rules, compared with the rules in force.
//!
//! Pure: the caller fetches the readings (e.g. the last 30 days from the
//! database) and passes them in with `now`. The replay is the engine's own
//! evaluation ([`Engine`]), reading by reading in arrival order, each at its
//! receive time (as [`Engine::replay`] rebuilds a patient), with a
//! [`Engine::tick`] before each reading and at `now`, so readings whose
//! confirmation window passed without a second reading open their episode as
//! they would have live. A reading *would have alerted* when it opened an
//! episode or escalated one (what pages someone); readings inside an episode
//! already open do not page again. Missing-data and device-silence alerts are
//! not about a reading and are left out.

use chrono::{DateTime, Utc};
use serde::Serialize;
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind};
use vitalwatch_schemas::{Observation, PatientId};

use crate::config::{EngineSettings, PatientRules, Severity};
use crate::engine::Engine;
use crate::error::ConfigError;

/// A reading that would have opened or escalated an episode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WouldAlert {
    /// Measurement time of the reading.
    pub time: DateTime<Utc>,
    /// LOINC code of the reading (empty for NEWS2, a multi-parameter score).
    pub code: String,
    /// Its value, in the code's UCUM unit (`None` for a score).
    pub value: Option<f64>,
    /// UCUM unit of the value.
    pub unit: String,
    /// Severity of the episode after this reading.
    pub severity: Severity,
    /// Rule id.
    pub rule_id: String,
    /// Rule kind (`threshold`, `baseline`, `trend`, `news2`).
    pub rule_kind: String,
    /// True when it escalated an open episode (false: it opened one).
    pub escalation: bool,
    /// The event's summary (no identifying data).
    pub summary: String,
}

/// Candidate rules against the rules in force, over the same readings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// Readings replayed.
    pub readings: usize,
    /// What the candidate rules would have raised, oldest first.
    pub candidate: Vec<WouldAlert>,
    /// What the rules in force raised (or would have), oldest first.
    pub current: Vec<WouldAlert>,
    /// Raised by the candidate, not by the rules in force (same reading time
    /// and rule), oldest first.
    pub added: Vec<WouldAlert>,
    /// Raised by the rules in force, no longer by the candidate.
    pub removed: Vec<WouldAlert>,
    /// Raised by both (the candidate's version; the severity may differ).
    pub unchanged: Vec<WouldAlert>,
}

/// Engine settings for a replay of `days` days: the defaults, with a
/// retention long enough to keep every reading replayed.
fn settings(days: u16) -> EngineSettings {
    EngineSettings { retention_days: days.clamp(14, 180), ..EngineSettings::default() }
}

/// Replays `observations` (the patient's; others are skipped) through the
/// engine with `rules` and returns the readings that would have opened or
/// escalated an episode, oldest first. `days`: how far back the readings go
/// (the engine keeps at least that much history).
///
/// # Errors
///
/// [`ConfigError`] when the rules are invalid (see [`PatientRules::effective`]).
pub fn would_alert(
    patient: &PatientId,
    rules: &PatientRules,
    observations: &[Observation],
    now: DateTime<Utc>,
    days: u16,
) -> Result<(usize, Vec<WouldAlert>), ConfigError> {
    let mut engine = Engine::new(settings(days))?;
    let mut obs: Vec<&Observation> = observations.iter().filter(|o| o.patient_id == *patient).collect();
    obs.sort_by_key(|o| (o.received_at.max(o.time), o.time, o.code));
    let first = obs.first().map_or(now, |o| o.time.min(o.received_at));
    let mut rules = rules.clone();
    // Count missing data from the first reading replayed, not from "now".
    rules.monitoring_since = Some(rules.monitoring_since.unwrap_or(first));
    engine.set_patient_rules(patient, rules, first)?;
    let mut events = Vec::new();
    let mut replayed = 0;
    for o in obs {
        let at = o.received_at.max(o.time).min(now);
        engine.tick(at, &mut events);
        engine.on_observation(o, at, &mut events);
        replayed += 1;
    }
    engine.tick(now, &mut events);
    let mut out: Vec<WouldAlert> = events.iter().filter_map(|e| alerted(e, observations)).collect();
    out.sort_by(|a, b| (a.time, &a.rule_id).cmp(&(b.time, &b.rule_id)));
    Ok((replayed, out))
}

/// The reading an OPENED or ESCALATED event is about; `None` for other events
/// and for alerts that are not about a reading (missing data, device silence).
fn alerted(e: &AlertEvent, observations: &[Observation]) -> Option<WouldAlert> {
    let escalation = match AlertEventKind::try_from(e.kind) {
        Ok(AlertEventKind::Opened) => false,
        Ok(AlertEventKind::Escalated) => true,
        _ => return None,
    };
    if e.rule_kind == "missing" || e.rule_kind == crate::alert::DEVICE_SILENT_KIND {
        return None;
    }
    let time = DateTime::from_timestamp_micros(e.reading_time_unix_micros)?;
    // The triggering reading: the event's code at its reading time (for a
    // two-check rule such as BP crisis, the other code may be the one).
    let at_time =
        |code: Option<&str>| observations.iter().find(|o| o.time == time && code.is_none_or(|c| o.code.loinc() == c));
    let reading = if e.code.is_empty() { None } else { at_time(Some(e.code.as_str())).or_else(|| at_time(None)) };
    Some(WouldAlert {
        time,
        code: reading.map_or_else(|| e.code.clone(), |o| o.code.loinc().to_owned()),
        value: reading.map(|o| o.value),
        unit: reading.map(|o| o.code.ucum().to_owned()).unwrap_or_default(),
        severity: Severity::from_proto(e.severity).unwrap_or(Severity::Info),
        rule_id: e.rule_id.clone(),
        rule_kind: e.rule_kind.clone(),
        escalation,
        summary: e.summary.clone(),
    })
}

/// Compares what `candidate` and `current` rules would have raised over the
/// same readings (see [`would_alert`]). An alert is the same in both when it
/// is about the same reading time and rule id.
///
/// # Errors
///
/// [`ConfigError`] when either rule set is invalid.
pub fn compare(
    patient: &PatientId,
    candidate: &PatientRules,
    current: &PatientRules,
    observations: &[Observation],
    now: DateTime<Utc>,
    days: u16,
) -> Result<Diff, ConfigError> {
    let (readings, cand) = would_alert(patient, candidate, observations, now, days)?;
    let (_, cur) = would_alert(patient, current, observations, now, days)?;
    Ok(diff(readings, cand, cur))
}

/// Splits two alert lists into added, removed and unchanged (same reading
/// time and rule id).
pub fn diff(readings: usize, candidate: Vec<WouldAlert>, current: Vec<WouldAlert>) -> Diff {
    let key = |a: &WouldAlert| (a.time, a.rule_id.clone());
    let in_current: std::collections::HashSet<_> = current.iter().map(key).collect();
    let in_candidate: std::collections::HashSet<_> = candidate.iter().map(key).collect();
    let (unchanged, added): (Vec<WouldAlert>, Vec<WouldAlert>) =
        candidate.iter().cloned().partition(|a| in_current.contains(&key(a)));
    let removed = current.iter().filter(|a| !in_candidate.contains(&key(a))).cloned().collect();
    Diff { readings, candidate, current, added, removed, unchanged }
}
