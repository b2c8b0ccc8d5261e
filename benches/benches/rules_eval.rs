//! Throughput of `Engine::on_observation` with the default programs.
//!
//! 10,000 patients spread over the five programs, warmed up with 14 days of
//! typical home readings (weight daily; blood pressure with pulse twice a day;
//! SpO2 twice a day; glucose four times a day for diabetics; temperature
//! daily), then one more day of readings is measured, in arrival order (a few
//! percent arrive late, a few are abnormal and raise alerts). Each sample
//! starts from a clone of the warmed engine, so every reading is new.

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vitalwatch_rules_core::{Engine, EngineSettings, PatientRules, Program};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

const PATIENTS: usize = 10_000;
const WARMUP_DAYS: i64 = 14;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn push(
    v: &mut Vec<(Observation, DateTime<Utc>)>,
    rng: &mut Rng,
    pid: &PatientId,
    base: DateTime<Utc>,
    code: Code,
    value: f64,
    minutes: i64,
    device: &str,
) {
    let time = base + Duration::minutes(minutes);
    // 2 % of readings arrive late (buffered by the hub for 3 hours).
    let lag = if rng.next() < 0.02 { Duration::hours(3) } else { Duration::seconds(30) };
    let o = Observation {
        id: ObservationId::compute(pid.as_str(), code, time.timestamp_micros()),
        patient_id: pid.clone(),
        code,
        value,
        time,
        received_at: time + lag,
        source: Source::Device,
        device_id: DeviceId::new(device).ok(),
        time_source: TimeSource::Device,
        original_value: value,
        original_unit: code.ucum().to_owned(),
        msg_id: None,
        trace_id: String::new(),
    };
    v.push((o, time + lag));
}

/// One day of readings for every patient, as (observation, processing time),
/// sorted by processing time.
fn day(ids: &[PatientId], d: i64, rng: &mut Rng) -> Vec<(Observation, DateTime<Utc>)> {
    let mut v = Vec::new();
    for (p, pid) in ids.iter().enumerate() {
        let program = Program::ALL[p % Program::ALL.len()];
        let base = start() + Duration::days(d) + Duration::minutes(6 * 60 + (p % 180) as i64);
        // About 1 % of patient-days are abnormal: weight jump, BP crisis, hypoglycaemia.
        let spike = rng.next() < 0.01;
        let w = 80.0 + rng.next() * 0.6 + if spike { 2.5 } else { 0.0 };
        push(&mut v, rng, pid, base, Code::BodyWeight, w, 0, "scale");
        for (k, at) in [(0, 30), (1, 12 * 60 + 30)] {
            let sys = if spike && k == 1 { 186.0 } else { 115.0 + rng.next() * 25.0 };
            let dia = 70.0 + rng.next() * 15.0;
            let hr = 60.0 + rng.next() * 25.0;
            let spo2 = 94.0 + rng.next() * 4.0;
            push(&mut v, rng, pid, base, Code::Systolic, sys, at, "cuff");
            push(&mut v, rng, pid, base, Code::Diastolic, dia, at, "cuff");
            push(&mut v, rng, pid, base, Code::HeartRate, hr, at, "cuff");
            push(&mut v, rng, pid, base, Code::Spo2, spo2, at + 5, "oxi");
        }
        let temp = 36.4 + rng.next() * 0.8;
        push(&mut v, rng, pid, base, Code::BodyTemperature, temp, 60, "thermo");
        if program == Program::Diabetes {
            for k in 0..4 {
                let g = if spike && k == 2 { 52.0 } else { 90.0 + rng.next() * 120.0 };
                push(&mut v, rng, pid, base, Code::BloodGlucose, g, 10 + k * 240, "gluco");
            }
        }
    }
    v.sort_by_key(|(o, now)| (*now, o.time));
    v
}

fn warmed() -> (Engine, Vec<(Observation, DateTime<Utc>)>) {
    let mut engine = Engine::new(EngineSettings::default()).unwrap_or_else(|e| panic!("settings: {e}"));
    let ids: Vec<PatientId> = (0..PATIENTS).filter_map(|p| PatientId::new(format!("patient-{p:06}")).ok()).collect();
    for (p, pid) in ids.iter().enumerate() {
        let mut rules = PatientRules::for_program(Program::ALL[p % Program::ALL.len()]);
        rules.monitoring_since = Some(start());
        if let Err(e) = engine.set_patient_rules(pid, rules, start()) {
            panic!("rules: {e}");
        }
    }
    let mut rng = Rng(1);
    let mut out = Vec::new();
    for d in 0..WARMUP_DAYS {
        for (o, now) in day(&ids, d, &mut rng) {
            engine.on_observation(&o, now, &mut out);
        }
        engine.tick(start() + Duration::days(d + 1), &mut out);
    }
    (engine, day(&ids, WARMUP_DAYS, &mut rng))
}

fn bench(c: &mut Criterion) {
    let (engine, stream) = warmed();
    let mut g = c.benchmark_group("rules_eval");
    g.throughput(Throughput::Elements(stream.len() as u64));
    g.sample_size(10);
    g.bench_function("on_observation_default_programs_10k_patients", |b| {
        b.iter_batched(
            || (engine.clone(), Vec::with_capacity(1024)),
            |(mut e, mut out)| {
                for (o, now) in &stream {
                    black_box(e.on_observation(o, *now, &mut out));
                }
                (e, out)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
