//! A deterministic model of home-monitoring trajectories, and a harness that
//! runs them through the rules engine (issue #14 §5: "alerts per patient per
//! month on stable patients, without delaying any true deterioration").
//!
//! Pure code: no clock, no I/O, no RNG crate (a SplitMix64 seeded from the
//! population seed, the program and the patient index). The same seed gives
//! the same readings and the same alerts on every machine.
//!
//! Each program has STABLE patients and DETERIORATING patients with a known
//! onset (day 10–20 of 30). The noise model follows issue #14 §5 (oximeters
//! ±2–3 %, glucometers ±15 %, scales ±0.2 kg with the evening 0.5–1 kg above
//! the morning, cuffs ±5–8 mmHg with duplicate readings, thermometers
//! ±0.3 °C); every other number is a design choice of the model, marked (U).
//! Adherence is perfect (U): missing-data rules are not what this measures.

use chrono::{DateTime, Duration, TimeZone, Utc};
use vitalwatch_rules_core::{AlertEvent, ConfigError, Engine, EngineSettings, PatientRules, Program};
use vitalwatch_schemas::domain::InvalidId;
use vitalwatch_schemas::proto::{AlertEventKind, Severity};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

/// The seed of the documented measurement (`cargo run -p vitalwatch-benches --example noise`).
pub const SEED: u64 = 14;

/// SplitMix64 (Steele, Lea & Flood 2014): small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for patient `index` of `program` in the population `seed`.
    pub fn new(seed: u64, program: Program, index: u64) -> Self {
        let p = Program::ALL.iter().position(|q| *q == program).unwrap_or(0) as u64;
        let mut r = Rng(seed ^ (p << 56) ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D));
        r.next_u64();
        r
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Normal with mean 0 and standard deviation `sd` (Box–Muller).
    pub fn normal(&mut self, sd: f64) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A true deterioration with a known onset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Deterioration {
    /// Heart failure: fluid gain of 0.7–1.0 kg a day for 4 days.
    WeightGain,
    /// COPD exacerbation: SpO2 falls to 86–88 % over 2–3 days.
    Spo2Fall,
    /// Hypertensive crisis: 185–200 / 112–125 mmHg for a day.
    BpCrisis,
    /// ADA level-2 hypoglycaemia (< 54 mg/dL), re-tested 15 min later.
    Hypoglycaemia,
    /// Fever rising to 38.5–39.5 °C over 12 h, with tachycardia.
    Fever,
}

/// What a deteriorating patient must raise: the first OPENED or ESCALATED
/// event of one of `rules` at `min_severity` or above, at most
/// `max_readings` readings of `code` after the first reading meeting the
/// clinical definition.
#[derive(Debug, Clone, Copy)]
pub struct Expectation {
    pub rules: &'static [&'static str],
    pub min_severity: Severity,
    pub code: Code,
    pub max_readings: usize,
    /// The clinical definition the delay is measured from.
    pub definition: &'static str,
}

impl Deterioration {
    /// The deterioration modelled for a program.
    pub fn of(program: Program) -> Deterioration {
        match program {
            Program::HeartFailure => Deterioration::WeightGain,
            Program::Hypertension => Deterioration::BpCrisis,
            Program::Copd => Deterioration::Spo2Fall,
            Program::Diabetes => Deterioration::Hypoglycaemia,
            Program::General => Deterioration::Fever,
        }
    }

    /// The alert it must raise. Severities: issue #14 §2 lists level-2
    /// hypoglycaemia, SpO2 < 90 % and heart-failure decompensation among what
    /// must reach a clinician at night: HIGH and CRITICAL do by default
    /// (quiet hours hold MEDIUM and below). Reading bounds (U): critical
    /// values at once (§5, "critical values still page at once"); a
    /// confirmed value at the confirming reading (one more reading, two when
    /// device noise puts a normal reading in between); a gradual change
    /// within three readings.
    pub fn expectation(self) -> Expectation {
        match self {
            Deterioration::WeightGain => Expectation {
                rules: &["hf.weight_gain_3d", "hf.weight_gain_7d", "hf.weight_gain_1d"],
                min_severity: Severity::High,
                code: Code::BodyWeight,
                max_readings: 3,
                definition: "fluid gain > 2 kg in 3 days (clinical.md §4.1, ESC HFA)",
            },
            Deterioration::Spo2Fall => Expectation {
                rules: &["threshold.spo2.low", "copd.spo2_drop"],
                min_severity: Severity::High,
                code: Code::Spo2,
                max_readings: 3,
                definition: "true SpO2 < 90 % (clinical.md §4.3, Cooper 2020)",
            },
            Deterioration::BpCrisis => Expectation {
                rules: &["threshold.bp.crisis"],
                min_severity: Severity::Critical,
                code: Code::Systolic,
                max_readings: 0,
                definition: "reading >= 180 and/or >= 120 mmHg (clinical.md §4.2, ESC/ESH)",
            },
            Deterioration::Hypoglycaemia => Expectation {
                rules: &["threshold.glucose.low"],
                min_severity: Severity::Critical,
                code: Code::BloodGlucose,
                max_readings: 0,
                definition: "reading < 54 mg/dL (clinical.md §4.4, ADA level 2)",
            },
            Deterioration::Fever => Expectation {
                rules: &["threshold.temperature.fever"],
                min_severity: Severity::Medium,
                code: Code::BodyTemperature,
                max_readings: 2,
                definition: "true temperature >= 38.0 °C (clinical.md §4.5)",
            },
        }
    }
}

/// One reading: the device's value and the noise-free value behind it.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub code: Code,
    pub time: DateTime<Utc>,
    pub value: f64,
    pub truth: f64,
    /// This reading meets the clinical definition of the deterioration.
    pub meets_definition: bool,
}

/// Thirty days (or `days`) of one patient's home readings, in time order.
#[derive(Debug, Clone)]
pub struct Trajectory {
    pub program: Program,
    pub deterioration: Option<Deterioration>,
    pub start: DateTime<Utc>,
    pub days: u32,
    pub onset: Option<DateTime<Utc>>,
    pub readings: Vec<Reading>,
}

impl Trajectory {
    /// The first reading at or after onset meeting the clinical definition.
    pub fn definition(&self) -> Option<&Reading> {
        let onset = self.onset?;
        self.readings.iter().find(|r| r.meets_definition && r.time >= onset)
    }
}

/// Monday 6 January 2025, 00:00 (times are the patient's local time).
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 0, 0, 0).single().unwrap_or_default()
}

fn at(day: u32, hours: f64) -> DateTime<Utc> {
    start() + Duration::seconds(((f64::from(day) * 24.0 + hours) * 3600.0) as i64)
}

fn hours_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_seconds() as f64 / 3600.0
}

fn round_to(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

struct Gen {
    rng: Rng,
    out: Vec<Reading>,
}

impl Gen {
    /// Adds a reading: the truth plus `error`, rounded to the device's resolution.
    fn push(&mut self, code: Code, time: DateTime<Utc>, truth: f64, error: f64, meets: bool) {
        let (step, max) = match code {
            Code::BodyWeight | Code::BodyTemperature => (0.1, f64::MAX),
            Code::Spo2 => (1.0, 100.0),
            _ => (1.0, f64::MAX),
        };
        let value = round_to(truth + error, step).min(max);
        self.out.push(Reading { code, time, value, truth, meets_definition: meets });
    }
}

/// Builds the trajectory of patient `index` of `program` (deteriorating if
/// `deteriorating`) over `days` days.
pub fn trajectory(seed: u64, program: Program, index: u64, deteriorating: bool, days: u32) -> Trajectory {
    let mut g = Gen { rng: Rng::new(seed, program, index * 2 + u64::from(deteriorating)), out: Vec::new() };
    let det = deteriorating.then(|| Deterioration::of(program));
    // Onset between day 10 and day 20 (U): a week of history first, time to detect after.
    let onset_day = 10 + (g.rng.unit() * 10.0) as u32;
    let onset = det.map(|_| at(onset_day, g.rng.range(6.0, 20.0)));
    match program {
        Program::HeartFailure => heart_failure(&mut g, onset, days),
        Program::Hypertension => hypertension(&mut g, onset, days),
        Program::Copd => copd(&mut g, onset, days),
        Program::Diabetes => diabetes(&mut g, onset, days),
        Program::General => general(&mut g, onset, days),
    }
    let mut readings = g.out;
    readings.sort_by_key(|r| r.time);
    Trajectory { program, deterioration: det, start: start(), days, onset, readings }
}

/// How far a change that starts at `onset` and takes `span_h` hours has
/// progressed at `t` (0 before onset, 1 when complete).
fn progress(onset: Option<DateTime<Utc>>, t: DateTime<Utc>, span_h: f64) -> f64 {
    onset.map_or(0.0, |o| (hours_between(o, t) / span_h).clamp(0.0, 1.0))
}

/// Daily morning weight (07:00–08:30); an evening weight on 30 % of days,
/// 0.5–1.0 kg above the morning (issue #14 §5); on 5 % of days a second
/// weighing 30–90 min after the first, after breakfast and dressed, 0.8–2.1 kg
/// heavier (issue #14 §5: "78.0 then 80.1 kg an hour apart"). Scale noise
/// sd 0.1 kg (±0.2 kg). Fluid weight: dry weight 60–100 kg plus an AR(1)
/// day-to-day drift (sd 0.25 kg a day, coefficient 0.8) (U).
fn heart_failure(g: &mut Gen, onset: Option<DateTime<Utc>>, days: u32) {
    let dry = g.rng.range(60.0, 100.0);
    let rate = g.rng.range(0.7, 1.0); // kg a day, for 4 days (brief; Chaudhry 2007, clinical.md §4.1)
    let gain = |t: DateTime<Utc>| rate * 4.0 * progress(onset, t, 96.0);
    let mut drifts: Vec<f64> = Vec::with_capacity(days as usize);
    for day in 0..days {
        let drift = 0.8 * drifts.last().copied().unwrap_or(0.0) + g.rng.normal(0.25);
        drifts.push(drift);
        // The definition compares fluid weights 3 days apart (drift included).
        let three_days_ago = day.checked_sub(3).and_then(|d| drifts.get(d as usize)).copied();
        let weigh = |g: &mut Gen, t: DateTime<Utc>, offset: f64| {
            let meets = three_days_ago.is_some_and(|d3| drift + gain(t) - d3 - gain(t - Duration::hours(72)) > 2.0);
            let e = offset + g.rng.normal(0.1);
            g.push(Code::BodyWeight, t, dry + drift + gain(t), e, meets);
        };
        let morning = at(day, g.rng.range(7.0, 8.5));
        weigh(g, morning, 0.0);
        if g.rng.chance(0.05) {
            let (off, later) = (g.rng.range(0.8, 2.1), Duration::minutes(g.rng.range(30.0, 90.0) as i64));
            weigh(g, morning + later, off);
        }
        if g.rng.chance(0.3) {
            let (off, evening) = (g.rng.range(0.5, 1.0), at(day, g.rng.range(19.0, 22.0)));
            weigh(g, evening, off);
        }
    }
}

/// Home BP morning (06:30–08:30) and evening (19:00–21:30), two readings 1–2
/// min apart each time, the first one 3 mmHg higher on average (U);
/// reading-to-reading sd 5 / 4 mmHg (±5–8, issue #14 §5), day-to-day sd 5 / 3
/// (U). Pulse with every reading, sd 4 /min (U). Crisis: 185–200 / 112–125
/// mmHg from onset for 24 h (U), then back to baseline (treated).
fn hypertension(g: &mut Gen, onset: Option<DateTime<Utc>>, days: u32) {
    let (sbp0, dbp0, hr0) = (g.rng.range(125.0, 150.0), g.rng.range(75.0, 92.0), g.rng.range(60.0, 80.0));
    let (crisis_s, crisis_d) = (g.rng.range(185.0, 200.0), g.rng.range(112.0, 125.0));
    for day in 0..days {
        let (ds, dd) = (g.rng.normal(5.0), g.rng.normal(3.0));
        for (lo, hi) in [(6.5, 8.5), (19.0, 21.5)] {
            let t = at(day, g.rng.range(lo, hi));
            let crisis = onset.is_some_and(|o| t >= o && t < o + Duration::hours(24));
            let (s, d) = if crisis { (crisis_s, crisis_d) } else { (sbp0 + ds, dbp0 + dd) };
            for k in 0..2 {
                let tk = t + Duration::seconds(k * g.rng.range(60.0, 120.0) as i64);
                let first = if k == 0 { 3.0 } else { 0.0 };
                let (es, ed) = (first + g.rng.normal(5.0), first / 2.0 + g.rng.normal(4.0));
                let meets = round_to(s + es, 1.0) >= 180.0 || round_to(d + ed, 1.0) >= 120.0;
                g.push(Code::Systolic, tk, s, es, meets);
                g.push(Code::Diastolic, tk, d, ed, meets);
                let e = g.rng.normal(4.0);
                g.push(Code::HeartRate, tk, hr0, e, false);
            }
        }
    }
}

/// An SpO2 artefact (cold fingers, movement): 2 % of oximeter readings read
/// 6–10 points low (U; issue #14 §5, "one 86 % among 95 %").
fn oximeter_error(g: &mut Gen) -> f64 {
    if g.rng.chance(0.02) { -g.rng.range(6.0, 10.0) } else { g.rng.normal(1.2) }
}

/// 1–3 oximeter spot checks a day between 08:00 and 21:00 (SpO2 and pulse).
/// Stable SpO2 93–96 % (U), day-to-day sd 0.7 (U), oximeter sd 1.2 (±2–3 %,
/// issue #14 §5) plus artefacts. Temperature on 15 % of days (sd 0.15 true,
/// 0.15 device: ±0.3 °C), respiratory rate counted on 10 % of days (U).
/// Exacerbation: SpO2 falls to 86–88 % over 2–3 days and stays; pulse +12.
fn copd(g: &mut Gen, onset: Option<DateTime<Utc>>, days: u32) {
    let (spo2_0, hr0) = (g.rng.range(93.0, 96.0), g.rng.range(65.0, 90.0));
    let (floor, span_h) = (g.rng.range(86.0, 88.0), g.rng.range(48.0, 72.0));
    for day in 0..days {
        let dv = g.rng.normal(0.7);
        let checks = 1 + (g.rng.unit() * 3.0) as usize;
        let mut times: Vec<f64> = (0..checks).map(|_| g.rng.range(8.0, 21.0)).collect();
        times.sort_by(f64::total_cmp);
        for (i, h) in times.into_iter().enumerate() {
            let t = at(day, h);
            let p = progress(onset, t, span_h);
            let s = spo2_0 + dv - p * (spo2_0 - floor);
            let e = oximeter_error(g);
            g.push(Code::Spo2, t, s, e, s < 90.0);
            let e = g.rng.normal(4.0);
            g.push(Code::HeartRate, t, hr0 + 12.0 * p, e, false);
            if i == 0 && g.rng.chance(0.15) {
                let (tt, e) = (36.7 + g.rng.normal(0.15), g.rng.normal(0.15));
                g.push(Code::BodyTemperature, t + Duration::minutes(2), tt, e, false);
            }
            if i == 0 && g.rng.chance(0.1) {
                let e = g.rng.normal(1.5);
                g.push(Code::RespiratoryRate, t + Duration::minutes(3), 18.0 + 4.0 * p, e, false);
            }
        }
    }
}

/// 2–4 capillary glucose readings a day (clinical.md §5.2): fasting 07:00,
/// lunch 12:00, dinner 19:00, bedtime 22:00 (+0–60 min), 2 = fasting and
/// dinner. Patient mean 120–150 mg/dL, slot offsets 0/+15/+20/+35, day sd 10,
/// reading sd 12 (U); glucometer error 7.5 % sd (±15 %, issue #14 §5,
/// clinical.md §1.2). Level-2 hypo at onset: true 35–45 mg/dL, re-tested
/// 15 min later (rule of 15, U) at 45–60, back to 90–110 30 min later.
fn diabetes(g: &mut Gen, onset: Option<DateTime<Utc>>, days: u32) {
    let mean = g.rng.range(120.0, 150.0);
    let slots = [(7.0, 0.0), (12.0, 15.0), (19.0, 20.0), (22.0, 35.0)];
    for day in 0..days {
        let dv = g.rng.normal(10.0);
        let n = 2 + (g.rng.unit() * 3.0) as usize;
        let pick: &[usize] = match n {
            2 => &[0, 2],
            3 => &[0, 1, 2],
            _ => &[0, 1, 2, 3],
        };
        for &i in pick {
            let Some(&(h, off)) = slots.get(i) else { continue };
            let t = at(day, h + g.rng.unit());
            let truth = mean + off + dv + g.rng.normal(12.0);
            let e = truth * g.rng.normal(0.075);
            g.push(Code::BloodGlucose, t, truth, e, round_to(truth + e, 1.0) < 54.0);
        }
    }
    if let Some(o) = onset {
        for (dt, lo, hi) in [(0, 35.0, 45.0), (15, 45.0, 60.0), (45, 90.0, 110.0)] {
            let t = o + Duration::minutes(dt);
            let truth = g.rng.range(lo, hi);
            let e = truth * g.rng.normal(0.075);
            g.push(Code::BloodGlucose, t, truth, e, round_to(truth + e, 1.0) < 54.0);
        }
    }
}

/// One morning check a day (07:00–09:00): one BP reading with pulse, SpO2,
/// temperature (stable SBP 120–145, SpO2 95–98 %, temperature 36.4–37.0 °C,
/// U). Fever: from onset the temperature rises to 38.5–39.5 °C over 12 h and
/// stays 3 days, pulse +15; the patient measures temperature, SpO2 and pulse
/// every 6 h while unwell (U).
fn general(g: &mut Gen, onset: Option<DateTime<Utc>>, days: u32) {
    let (sbp0, dbp0, hr0) = (g.rng.range(120.0, 145.0), g.rng.range(70.0, 90.0), g.rng.range(60.0, 85.0));
    let (spo2_0, temp0, peak) = (g.rng.range(95.0, 98.0), g.rng.range(36.4, 37.0), g.rng.range(38.5, 39.5));
    let fever = |t: DateTime<Utc>| {
        let ill = onset.is_some_and(|o| t < o + Duration::hours(84));
        if ill { progress(onset, t, 12.0) } else { 0.0 }
    };
    // (time, with a BP reading): the daily morning check has one.
    let mut checks: Vec<(DateTime<Utc>, bool)> = (0..days).map(|d| (at(d, g.rng.range(7.0, 9.0)), true)).collect();
    if let Some(o) = onset {
        checks.extend((0..12).map(|k| (o + Duration::hours(2 + 6 * k), false)));
    }
    checks.sort();
    for (t, with_bp) in checks {
        let f = fever(t);
        let temp = temp0 + g.rng.normal(0.15) + f * (peak - temp0);
        let e = g.rng.normal(0.15);
        g.push(Code::BodyTemperature, t, temp, e, temp >= 38.0);
        let e = oximeter_error(g);
        g.push(Code::Spo2, t + Duration::minutes(1), spo2_0 - f, e, false);
        let e = g.rng.normal(4.0);
        g.push(Code::HeartRate, t + Duration::minutes(1), hr0 + 15.0 * f, e, false);
        if with_bp {
            let (es, ed) = (g.rng.normal(5.0), g.rng.normal(4.0));
            g.push(Code::Systolic, t + Duration::minutes(3), sbp0, es, false);
            g.push(Code::Diastolic, t + Duration::minutes(3), dbp0, ed, false);
        }
    }
}

/// Errors of the harness (a patient id or the default rules rejected).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("invalid id: {0}")]
    Id(#[from] InvalidId),
    #[error("default rules rejected: {0}")]
    Config(#[from] ConfigError),
}

fn device_for(code: Code) -> &'static str {
    match code {
        Code::BodyWeight => "scale",
        Code::Systolic | Code::Diastolic => "cuff",
        Code::BloodGlucose => "gluco",
        Code::BodyTemperature => "thermo",
        _ => "oxi",
    }
}

/// Runs a trajectory through a fresh engine with the program's default rules:
/// each reading arrives live (one minute after it was taken) and the engine
/// ticks every hour. Returns every event emitted.
pub fn run(t: &Trajectory, patient: &str) -> Result<Vec<AlertEvent>, HarnessError> {
    let pid = PatientId::new(patient)?;
    let mut engine = Engine::new(EngineSettings::default())?;
    let rules = PatientRules { monitoring_since: Some(t.start), ..PatientRules::for_program(t.program) };
    engine.set_patient_rules(&pid, rules, t.start)?;
    let mut events = Vec::new();
    let mut next_tick = t.start + Duration::hours(1);
    for r in &t.readings {
        while next_tick <= r.time {
            engine.tick(next_tick, &mut events);
            next_tick += Duration::hours(1);
        }
        let device = if r.code == Code::RespiratoryRate { None } else { Some(DeviceId::new(device_for(r.code))?) };
        let obs = Observation {
            id: ObservationId::compute(patient, r.code, r.time.timestamp_micros()),
            patient_id: pid.clone(),
            code: r.code,
            value: r.value,
            time: r.time,
            received_at: r.time + Duration::minutes(1),
            source: if device.is_some() { Source::Device } else { Source::Manual },
            device_id: device,
            time_source: TimeSource::Device,
            original_value: r.value,
            original_unit: r.code.ucum().to_owned(),
            msg_id: None,
            trace_id: String::new(),
        };
        engine.on_observation(&obs, r.time + Duration::minutes(1), &mut events);
    }
    let end = t.start + Duration::days(i64::from(t.days));
    while next_tick <= end {
        engine.tick(next_tick, &mut events);
        next_tick += Duration::hours(1);
    }
    Ok(events)
}

fn kind(e: &AlertEvent) -> AlertEventKind {
    AlertEventKind::try_from(e.kind).unwrap_or(AlertEventKind::Unspecified)
}

/// The severity of an event.
pub fn severity(e: &AlertEvent) -> Severity {
    Severity::try_from(e.severity).unwrap_or(Severity::Unspecified)
}

fn detected_at(e: &AlertEvent) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(e.detected_at_unix_micros).unwrap_or_default()
}

/// When a deteriorating patient was alerted.
#[derive(Debug, Clone)]
pub struct Detection {
    pub rule_id: String,
    pub severity: Severity,
    /// Hours from onset to the alert.
    pub hours_from_onset: f64,
    /// Hours from the first reading meeting the clinical definition (negative:
    /// the alert came earlier).
    pub hours_from_definition: Option<f64>,
    /// Readings of the expected code after the definition reading, up to the
    /// alert (0: alerted on that reading; negative: alerted before it).
    pub readings_from_definition: Option<i64>,
}

/// The first event of the expected rules at or after onset, at any severity
/// (`min_severity` = Unspecified) or at the expected one. An episode of those
/// rules already open at onset (opened by earlier readings and not resolved)
/// counts: the physician has the alert, and the engine does not re-alert.
pub fn detection(t: &Trajectory, events: &[AlertEvent], min_severity: Severity) -> Option<Detection> {
    let (det, onset) = (t.deterioration?, t.onset?);
    let exp = det.expectation();
    let qualifies = |e: &&AlertEvent| {
        matches!(kind(e), AlertEventKind::Opened | AlertEventKind::Escalated)
            && exp.rules.contains(&e.rule_id.as_str())
            && severity(e) >= min_severity
    };
    let open_at_onset = events.iter().filter(qualifies).filter(|e| detected_at(e) < onset).find(|e| {
        !events
            .iter()
            .any(|r| kind(r) == AlertEventKind::Resolved && r.episode_id == e.episode_id && detected_at(r) < onset)
    });
    let e = open_at_onset.or_else(|| events.iter().filter(qualifies).find(|e| detected_at(e) >= onset))?;
    let at = detected_at(e);
    let def = t.definition();
    let readings = def.map(|d| {
        let of_code = |lo: DateTime<Utc>, hi: DateTime<Utc>| {
            t.readings
                .iter()
                .filter(|r| r.code == exp.code && r.time > lo && r.time + Duration::minutes(1) <= hi)
                .count() as i64
        };
        if at >= d.time { of_code(d.time, at) } else { -(of_code(at - Duration::minutes(1), d.time) + 1) }
    });
    Some(Detection {
        rule_id: e.rule_id.clone(),
        severity: severity(e),
        hours_from_onset: hours_between(onset, at),
        hours_from_definition: def.map(|d| hours_between(d.time, at)),
        readings_from_definition: readings,
    })
}

/// OPENED events of a stable population, by severity.
#[derive(Debug, Clone, Default)]
pub struct StableStats {
    pub patients: usize,
    pub days: u32,
    /// OPENED events by severity (index: proto severity value).
    pub opened: [usize; 6],
    /// OPENED events by rule, most frequent first.
    pub by_rule: Vec<(String, usize)>,
}

impl StableStats {
    /// OPENED events per patient per 30 days, at `severity` (or all if None).
    pub fn per_patient_month(&self, severity: Option<Severity>) -> f64 {
        let n = match severity {
            Some(s) => self.opened.get(s as usize).copied().unwrap_or(0),
            None => self.opened.iter().sum(),
        };
        n as f64 / self.patients.max(1) as f64 * 30.0 / f64::from(self.days.max(1))
    }

    /// OPENED events that notify a physician (LOW and above: INFO events go
    /// to the daily digest only and never page) per patient per 30 days.
    pub fn notified_per_patient_month(&self) -> f64 {
        self.per_patient_month(None) - self.per_patient_month(Some(Severity::Info))
    }
}

/// Results of the deteriorating population of a program.
#[derive(Debug, Clone, Default)]
pub struct DeterioratingStats {
    pub patients: usize,
    /// First alert of an expected rule at any severity, per patient (None: never).
    pub first_alert: Vec<Option<Detection>>,
    /// First alert of an expected rule at the expected severity.
    pub expected: Vec<Option<Detection>>,
    /// The trajectory met the clinical definition.
    pub defined: Vec<bool>,
}

impl DeterioratingStats {
    /// Patients whose expected alert (rule, severity) came within the bound.
    pub fn within_bound(&self, max_readings: usize) -> usize {
        self.expected.iter().filter(|d| in_bound(d.as_ref(), max_readings)).count()
    }

    /// Patients whose trajectory met the clinical definition (the others,
    /// whose noise-free course stayed short of it, are not held to the bound).
    pub fn meeting_definition(&self) -> usize {
        self.defined.iter().filter(|d| **d).count()
    }
}

/// The expected alert came at most `max_readings` readings after the
/// definition reading (or before it).
pub fn in_bound(d: Option<&Detection>, max_readings: usize) -> bool {
    d.and_then(|d| d.readings_from_definition).is_some_and(|r| r <= max_readings as i64)
}

/// Runs `n` stable and `n` deteriorating patients of `program` for `days` days.
pub fn measure(
    seed: u64,
    program: Program,
    n: usize,
    days: u32,
) -> Result<(StableStats, DeterioratingStats), HarnessError> {
    let mut st = StableStats { patients: n, days, ..StableStats::default() };
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    let mut de = DeterioratingStats { patients: n, ..DeterioratingStats::default() };
    let min = Deterioration::of(program).expectation().min_severity;
    for i in 0..n as u64 {
        let t = trajectory(seed, program, i, false, days);
        for e in run(&t, &format!("s-{i:05}"))?.iter().filter(|e| kind(e) == AlertEventKind::Opened) {
            if let Some(c) = st.opened.get_mut(severity(e) as usize) {
                *c += 1;
            }
            *by_rule.entry(e.rule_id.clone()).or_default() += 1;
        }
        let t = trajectory(seed, program, i, true, days);
        let events = run(&t, &format!("d-{i:05}"))?;
        de.first_alert.push(detection(&t, &events, Severity::Unspecified));
        de.expected.push(detection(&t, &events, min));
        de.defined.push(t.definition().is_some());
    }
    st.by_rule = by_rule.into_iter().collect();
    st.by_rule.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok((st, de))
}
