//! Arbitrary observation sequences (values, times, codes, heartbeats, ticks,
//! rule changes, closes, checkpoints) never panic, and replaying them gives the
//! same events.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use vitalwatch_rules_core::{Engine, EngineSettings, PatientRules, Program, Spo2Scale};
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource};

#[derive(Debug, Clone)]
enum Op {
    Obs { patient: u8, code: u8, value: f64, offset_s: i64, lag_s: i64, device: Option<u8> },
    Heartbeat { patient: u8, device: u8, offset_s: i64 },
    Tick { advance_s: i64 },
    Rules { patient: u8, program: u8, scale2: bool },
    Close { patient: u8, rule: u8 },
    Checkpoint { patient: u8 },
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..300.0f64,
        1 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(-1e300),
        1 => Just(1e300),
    ]
}

fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -86_400i64 * 20..86_400 * 20,
        1 => any::<i64>().prop_map(|x| x / 1_000_000),
        1 => Just(i64::MAX / 2_000_000),
        1 => Just(i64::MIN / 2_000_000),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..3, 0u8..8, value(), offset(), -3_600i64..86_400 * 3, proptest::option::of(0u8..3))
            .prop_map(|(patient, code, value, offset_s, lag_s, device)| Op::Obs { patient, code, value, offset_s, lag_s, device }),
        2 => (0u8..3, 0u8..3, offset()).prop_map(|(patient, device, offset_s)| Op::Heartbeat { patient, device, offset_s }),
        2 => (0i64..86_400 * 3).prop_map(|advance_s| Op::Tick { advance_s }),
        1 => (0u8..3, 0u8..5, any::<bool>()).prop_map(|(patient, program, scale2)| Op::Rules { patient, program, scale2 }),
        1 => (0u8..3, 0u8..12).prop_map(|(patient, rule)| Op::Close { patient, rule }),
        1 => (0u8..3).prop_map(|patient| Op::Checkpoint { patient }),
    ]
}

const RULE_IDS: [&str; 12] = [
    "threshold.spo2.low",
    "threshold.bp.crisis",
    "threshold.temperature.fever",
    "threshold.hr.high",
    "threshold.hr.low",
    "news2",
    "hf.weight_gain_3d",
    "hf.weight_gain_1d",
    "missing.body_weight",
    "copd.spo2_drop",
    "bp.sbp_trend",
    "threshold.glucose.low",
];

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).single().expect("valid")
}

fn at(secs: i64) -> DateTime<Utc> {
    match secs {
        i64::MAX => return DateTime::<Utc>::MAX_UTC,
        i64::MIN => return DateTime::<Utc>::MIN_UTC,
        _ => {}
    }
    base().checked_add_signed(Duration::seconds(secs)).unwrap_or(base())
}

fn run(ops: &[Op]) -> Vec<vitalwatch_rules_core::AlertEvent> {
    let mut engine = Engine::new(EngineSettings::default()).expect("settings");
    let mut out = Vec::new();
    let mut now = base();
    let pid = |p: u8| PatientId::new(format!("p{p}")).expect("valid");
    for op in ops {
        match op.clone() {
            Op::Obs { patient, code, value, offset_s, lag_s, device } => {
                let code = Code::ALL[usize::from(code) % Code::ALL.len()];
                let time = at(offset_s);
                let received_at = time.checked_add_signed(Duration::seconds(lag_s)).unwrap_or(time);
                now = now.max(received_at);
                let o = Observation {
                    id: ObservationId::compute(&format!("p{patient}"), code, time.timestamp_micros()),
                    patient_id: pid(patient),
                    code,
                    value,
                    time,
                    received_at,
                    source: Source::Device,
                    device_id: device.map(|d| DeviceId::new(format!("d{d}")).expect("valid")),
                    time_source: TimeSource::Device,
                    original_value: value,
                    original_unit: String::new(),
                    msg_id: None,
                    trace_id: String::new(),
                };
                engine.on_observation(&o, now, &mut out);
            }
            Op::Heartbeat { patient, device, offset_s } => {
                engine.on_device_status(
                    &DeviceId::new(format!("d{device}")).expect("valid"),
                    &pid(patient),
                    at(offset_s),
                );
            }
            Op::Tick { advance_s } => {
                now = now.checked_add_signed(Duration::seconds(advance_s)).unwrap_or(now);
                engine.tick(now, &mut out);
            }
            Op::Rules { patient, program, scale2 } => {
                let mut r = PatientRules::for_program(Program::ALL[usize::from(program) % 5]);
                if scale2 {
                    r.spo2_scale = Spo2Scale::Scale2;
                }
                if let Ok(ev) = engine.set_patient_rules(&pid(patient), r, now) {
                    out.extend(ev);
                }
            }
            Op::Close { patient, rule } => {
                if let Ok(ev) = engine.close_episode(&pid(patient), RULE_IDS[usize::from(rule)], now) {
                    out.push(ev);
                }
            }
            Op::Checkpoint { patient } => {
                if let Some(bytes) = engine.checkpoint(&pid(patient)) {
                    engine.restore(&pid(patient), &bytes).expect("own checkpoint restores");
                }
            }
        }
    }
    for p in 0..3 {
        let _ = engine.open_episodes(&pid(p));
        if let Some(s) = engine.patient_state(&pid(p)) {
            assert!(s.approx_bytes() > 0);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_sequences_never_panic_and_are_deterministic(ops in proptest::collection::vec(op(), 0..120)) {
        let a = run(&ops);
        let b = run(&ops);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn garbage_checkpoints_are_rejected_not_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut engine = Engine::new(EngineSettings::default()).expect("settings");
        let _ = engine.restore(&PatientId::new("p").expect("valid"), &bytes);
    }
}
