//! Helpers for the scenario tests: readings over time.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use vitalwatch_rules_core::{AlertEvent, Engine, EngineSettings, ObservationOutcome, PatientRules, Program};
use vitalwatch_schemas::proto::AlertEventKind;
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

/// Monday 6 January 2025, 08:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 8, 0, 0).single().expect("valid date")
}

pub fn days(d: f64) -> Duration {
    Duration::microseconds((d * 86_400e6) as i64)
}

pub fn hours(h: f64) -> Duration {
    Duration::microseconds((h * 3_600e6) as i64)
}

pub fn pid(s: &str) -> PatientId {
    PatientId::new(s).expect("valid id")
}

pub fn dev(s: &str) -> DeviceId {
    DeviceId::new(s).expect("valid id")
}

/// An observation received one minute after it was taken.
pub fn obs(patient: &str, code: Code, value: f64, time: DateTime<Utc>) -> Observation {
    obs_from(patient, code, value, time, None)
}

pub fn obs_from(patient: &str, code: Code, value: f64, time: DateTime<Utc>, device: Option<&str>) -> Observation {
    Observation {
        id: ObservationId::compute(patient, code, time.timestamp_micros()),
        patient_id: pid(patient),
        code,
        value,
        time,
        received_at: time + Duration::minutes(1),
        source: if device.is_some() { Source::Device } else { Source::Manual },
        device_id: device.map(dev),
        time_source: TimeSource::Device,
        original_value: value,
        original_unit: code.ucum().to_owned(),
        msg_id: None,
        trace_id: format!("trace-{}", time.timestamp()),
    }
}

/// An engine plus the events it emitted.
pub struct Sim {
    pub engine: Engine,
    pub events: Vec<AlertEvent>,
}

impl Sim {
    pub fn new() -> Self {
        Sim { engine: Engine::new(EngineSettings::default()).expect("valid settings"), events: Vec::new() }
    }

    pub fn with(patient: &str, rules: PatientRules) -> Self {
        let mut s = Sim::new();
        let ev = s.engine.set_patient_rules(&pid(patient), rules, t0() - days(30.0)).expect("valid rules");
        assert!(ev.is_empty());
        s
    }

    pub fn program(patient: &str, p: Program) -> Self {
        Sim::with(patient, PatientRules::for_program(p))
    }

    /// Feeds a reading as it arrives live (now = one minute after).
    pub fn read(&mut self, patient: &str, code: Code, value: f64, time: DateTime<Utc>) -> ObservationOutcome {
        let o = obs(patient, code, value, time);
        self.engine.on_observation(&o, time + Duration::minutes(1), &mut self.events)
    }

    pub fn read_dev(
        &mut self,
        patient: &str,
        code: Code,
        value: f64,
        time: DateTime<Utc>,
        device: &str,
    ) -> ObservationOutcome {
        let o = obs_from(patient, code, value, time, Some(device));
        self.engine.on_observation(&o, time + Duration::minutes(1), &mut self.events)
    }

    pub fn bp(&mut self, patient: &str, sys: f64, dia: f64, time: DateTime<Utc>) {
        self.read(patient, Code::Systolic, sys, time);
        self.read(patient, Code::Diastolic, dia, time);
    }

    pub fn tick(&mut self, now: DateTime<Utc>) {
        self.engine.tick(now, &mut self.events);
    }

    pub fn of_rule(&self, rule: &str) -> Vec<&AlertEvent> {
        self.events.iter().filter(|e| e.rule_id == rule).collect()
    }

    pub fn kinds(&self, rule: &str) -> Vec<AlertEventKind> {
        self.of_rule(rule).iter().map(|e| AlertEventKind::try_from(e.kind).expect("known kind")).collect()
    }
}

/// A small deterministic pseudo-random generator (no dependency).
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi].
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}
