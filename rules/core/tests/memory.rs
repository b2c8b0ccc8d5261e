//! Memory per patient: 100,000 patients, each with 14 days of typical home
//! history (weight daily, blood pressure twice a day, SpO2 twice a day, heart
//! rate twice a day, glucose four times a day), built through the engine.

use chrono::{Duration, TimeZone, Utc};
use vitalwatch_rules_core::{Engine, EngineSettings, PatientRules, Program};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

const PATIENTS: usize = 100_000;
const DAYS: i64 = 14;

/// (code, readings per day, base value, device)
const SCHEDULE: [(Code, i64, f64, &str); 6] = [
    (Code::BodyWeight, 1, 80.0, "scale"),
    (Code::Systolic, 2, 128.0, "cuff"),
    (Code::Diastolic, 2, 79.0, "cuff"),
    (Code::Spo2, 2, 96.0, "oxi"),
    (Code::HeartRate, 2, 70.0, "oxi"),
    (Code::BloodGlucose, 4, 120.0, "gluco"),
];

#[test]
fn memory_per_patient_with_14_days_of_history() {
    let mut engine = Engine::new(EngineSettings::default()).expect("settings");
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().expect("valid");
    let now = start + Duration::days(DAYS);
    let mut out = Vec::new();
    let template = |pid: &PatientId| Observation {
        id: ObservationId(0),
        patient_id: pid.clone(),
        code: Code::BodyWeight,
        value: 0.0,
        time: start,
        received_at: start,
        source: Source::Device,
        device_id: None,
        time_source: TimeSource::Device,
        original_value: 0.0,
        original_unit: String::new(),
        msg_id: None,
        trace_id: String::new(),
    };
    let devices: Vec<DeviceId> = SCHEDULE.iter().map(|s| DeviceId::new(s.3).expect("valid")).collect();
    let mut readings = 0usize;
    for p in 0..PATIENTS {
        let pid = PatientId::new(format!("patient-{p:06}")).expect("valid");
        let program = Program::ALL[p % Program::ALL.len()];
        let mut rules = PatientRules::for_program(program);
        rules.monitoring_since = Some(start);
        engine.set_patient_rules(&pid, rules, start).expect("rules");
        let mut o = template(&pid);
        for d in 0..DAYS {
            for (i, &(code, per_day, base, _)) in SCHEDULE.iter().enumerate() {
                for k in 0..per_day {
                    let t = start + Duration::days(d) + Duration::minutes(7 * 60 + k * (14 * 60 / per_day) + i as i64);
                    o.code = code;
                    o.time = t;
                    o.value = base + ((d + k + p as i64) % 5) as f64 * 0.3;
                    o.device_id = devices.get(i).cloned();
                    engine.on_observation(&o, t + Duration::minutes(1), &mut out);
                    readings += 1;
                }
            }
        }
    }
    engine.tick(now, &mut out);
    assert_eq!(engine.patient_count(), PATIENTS);
    let total_state: usize = (0..PATIENTS)
        .map(|p| {
            let pid = PatientId::new(format!("patient-{p:06}")).expect("valid");
            engine.patient_state(&pid).map_or(0, |s| s.approx_bytes())
        })
        .sum();
    let per_patient = total_state / PATIENTS;
    let with_map = engine.approx_bytes() / PATIENTS;
    println!(
        "{readings} readings; {} per patient; PatientState::approx_bytes = {per_patient} B/patient; \
         engine incl. hash map and ids = {with_map} B/patient; events = {}",
        readings / PATIENTS,
        out.len()
    );
    assert!(per_patient <= 2048, "{per_patient} bytes per patient");
    assert!(out.is_empty(), "typical stable history raises no alert: {:?}", out.first());
}
