//! Shared fixtures of the alerting tests (pure: no service). The alerting
//! role's tests include this file from their own `common` module.
#![allow(dead_code)]

use chrono::{DateTime, NaiveTime, Utc};
use vitalwatch_alerting_core::*;
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, EvidenceReading, Severity as PSeverity};

pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("valid RFC 3339 time")
}

pub fn pid(s: &str) -> PhysicianId {
    PhysicianId::new(s).unwrap()
}

pub fn physician(id: &str, quiet: Option<(u32, u32)>) -> Physician {
    Physician {
        id: pid(id),
        name: format!("Dr {id}"),
        email: EmailAddress::new(format!("{id}@hospital.example")).unwrap(),
        mobile: Some(PhoneNumber::new("+33612345678").unwrap()),
        time_zone: TimeZone::new("Europe/Paris").unwrap(),
        quiet_hours: quiet.map(|(s, e)| {
            QuietHours::new(NaiveTime::from_hms_opt(s, 0, 0).unwrap(), NaiveTime::from_hms_opt(e, 0, 0).unwrap())
        }),
        channels: ChannelPreferences::default(),
        hourly_cap: None,
        // The existing tests read English; the French ones set `Language::Fr`.
        language: Some(Language::En),
    }
}

pub fn directory(ps: Vec<Physician>) -> Directory {
    Directory::new(ps).unwrap()
}

/// The plan of `ep` at `now` for `team` and `dir`, with no recent load and
/// the default caps.
pub fn plan_now(ep: &EpisodeState, team: &CareTeam, dir: &Directory, now: DateTime<Utc>) -> Plan {
    plan(PlanInput { episode: ep, team, directory: dir, load: &RecentLoad::new(), caps: &CapPolicy::default(), now })
}

pub fn team() -> CareTeam {
    CareTeam {
        patient_id: PatientId::new("pt-0042").unwrap(),
        responsible: pid("dr-martin"),
        deputies: vec![pid("dr-chen")],
        policy: EscalationPolicy::default(),
    }
}

pub fn sev(s: Severity) -> i32 {
    (match s {
        Severity::Info => PSeverity::Info,
        Severity::Low => PSeverity::Low,
        Severity::Medium => PSeverity::Medium,
        Severity::High => PSeverity::High,
        Severity::Critical => PSeverity::Critical,
    }) as i32
}

/// An SpO2 alert event for episode `ep-1`.
pub fn event(id: &str, kind: AlertEventKind, severity: Severity, at: DateTime<Utc>) -> AlertEvent {
    let micros = at.timestamp_micros();
    AlertEvent {
        event_id: id.to_string(),
        episode_id: "ep-1".to_string(),
        patient_id: "pt-0042".to_string(),
        rule_id: "threshold.spo2.low".to_string(),
        rule_kind: "threshold".to_string(),
        kind: kind as i32,
        severity: sev(severity),
        program: "copd".to_string(),
        code: "59408-5".to_string(),
        reading_time_unix_micros: micros - 60_000_000,
        detected_at_unix_micros: micros,
        readings: vec![EvidenceReading {
            observation_id: "obs-1".into(),
            code: "59408-5".into(),
            value: 87.0,
            unit: "%".into(),
            time_unix_micros: micros - 60_000_000,
        }],
        threshold: Some(90.0),
        baseline: Some(95.0),
        summary: "SpO2 87 % below 90 %".to_string(),
        trace_id: "trace-1".to_string(),
        previous_severity: 0,
        historical: false,
        received_at_unix_micros: micros - 30_000_000,
        resolution: 0,
        rules_version: 0,
    }
}

pub fn history(end: DateTime<Utc>) -> Vec<(DateTime<Utc>, f64)> {
    (0..56).map(|i| (end - chrono::Duration::hours(6 * i), 95.0 - (i % 5) as f64 * 0.8)).collect()
}
