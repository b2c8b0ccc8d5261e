//! Clinical scenarios written as readings over time.

use crate::common;

use common::*;
use vitalwatch_rules_core::{
    Comparison, Level, ObservationOutcome, PatientRules, Persistence, Program, RejectReason, Severity, Spo2Scale,
    ThresholdCheck, ThresholdRule,
};
use vitalwatch_schemas::Code;
use vitalwatch_schemas::proto::{AlertEventKind, Severity as PSeverity};

const P: &str = "p-001";

fn sev(e: &vitalwatch_rules_core::AlertEvent) -> PSeverity {
    PSeverity::try_from(e.severity).expect("known severity")
}

// ---------------------------------------------------------------- must alert

#[test]
fn heart_failure_weight_gain_of_2_4_kg_in_3_days() {
    let mut s = Sim::program(P, Program::HeartFailure);
    for d in 0..9 {
        s.read(P, Code::BodyWeight, 80.0 + if d % 2 == 0 { 0.1 } else { -0.1 }, t0() + days(d as f64));
    }
    // Then +0.7, +0.8 and +0.9 kg a day from 80.0: +2.4 kg in 3 days.
    s.read(P, Code::BodyWeight, 80.0, t0() + days(9.0));
    s.read(P, Code::BodyWeight, 80.7, t0() + days(10.0) + hours(0.5));
    s.read(P, Code::BodyWeight, 81.5, t0() + days(11.0) + hours(0.2));
    assert!(s.events.is_empty(), "no alert before 2 kg: {:?}", s.events);
    s.read(P, Code::BodyWeight, 82.4, t0() + days(12.0) + hours(1.0));

    let ev = s.of_rule("hf.weight_gain_3d");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    let e = ev[0];
    assert_eq!(e.kind, AlertEventKind::Opened as i32);
    assert_eq!(sev(e), PSeverity::High);
    assert_eq!(e.threshold, Some(2.0));
    assert_eq!(e.baseline, Some(80.0));
    assert_eq!(e.rule_kind, "trend");
    assert_eq!(e.program, "heart_failure");
    assert_eq!(e.code, "29463-7");
    assert_eq!(e.reading_time_unix_micros, (t0() + days(12.0) + hours(1.0)).timestamp_micros());
    let values: Vec<f64> = e.readings.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![80.0, 80.7, 81.5, 82.4], "evidence: the window's readings");
    assert!(e.readings.iter().all(|r| r.unit == "kg" && r.observation_id.len() == 32));
    let last = e.readings.last().expect("evidence");
    assert_eq!(
        last.observation_id,
        vitalwatch_schemas::ObservationId::compute(P, Code::BodyWeight, last.time_unix_micros).to_hex()
    );
    assert!(e.summary.contains("+2.4 kg in 3 days"), "{}", e.summary);
    assert!(e.summary.contains("threshold 2 kg"), "{}", e.summary);
    assert!(!e.summary.contains(P), "no patient id in the summary");
    assert_eq!(e.trace_id, format!("trace-{}", (t0() + days(12.0) + hours(1.0)).timestamp()));
    // The 1-day rule (1.36 kg) did not fire: at most +0.9 kg a day.
    assert!(s.of_rule("hf.weight_gain_1d").is_empty());
}

#[test]
fn copd_spo2_drifting_from_95_to_89_alerts() {
    let mut s = Sim::program(P, Program::Copd);
    let mut t = t0();
    for i in 0..20 {
        s.read(P, Code::Spo2, if i % 3 == 0 { 96.0 } else { 95.0 }, t);
        t += hours(12.0);
    }
    assert!(s.events.is_empty());
    // One spot check every 12 h: an out-of-range reading waits for the next
    // one, which confirms it.
    for v in [94.0, 94.0, 93.0, 93.0, 92.0, 91.0, 90.0, 89.0] {
        s.read(P, Code::Spo2, v, t);
        s.tick(t + hours(1.1));
        t += hours(12.0);
    }
    let drop = s.of_rule("copd.spo2_drop");
    assert_eq!(drop.len(), 1, "{:#?}", s.events);
    assert_eq!(drop[0].rule_kind, "baseline");
    assert_eq!(drop[0].baseline, Some(95.0));
    assert_eq!(drop[0].threshold, Some(3.0));
    assert_eq!(sev(drop[0]), PSeverity::Medium);
    assert_eq!(drop[0].readings.last().map(|r| r.value), Some(91.0), "92 fell 3 points, 91 confirmed it");
    assert!(drop[0].summary.contains("confirmed by a second reading"), "{}", drop[0].summary);
    // NEWS2 scale 1: 91 % scores 3, a red single parameter.
    let low = s.of_rule("threshold.spo2.low");
    assert_eq!(low.len(), 1);
    assert_eq!(low[0].readings.last().map(|r| r.value), Some(90.0), "91 scored 3, 90 confirmed it");
    assert_eq!(low[0].threshold, Some(91.0));
    assert_eq!(sev(low[0]), PSeverity::High);
}

#[test]
fn diabetic_hypoglycaemia_at_52_is_level_2() {
    let mut s = Sim::program(P, Program::Diabetes);
    let mut t = t0();
    for i in 0..12 {
        s.read(P, Code::BloodGlucose, [110.0, 145.0, 128.0, 160.0][i % 4], t);
        t += hours(6.0);
    }
    s.read(P, Code::BloodGlucose, 52.0, t);
    let ev = s.of_rule("threshold.glucose.low");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, AlertEventKind::Opened as i32);
    assert_eq!(sev(ev[0]), PSeverity::Critical, "ADA level 2 (< 54 mg/dL) pages at once");
    assert_eq!(ev[0].threshold, Some(54.0));
    assert!(ev[0].summary.contains("52 mg/dL"), "{}", ev[0].summary);
    assert_eq!(s.events.len(), 1);
}

#[test]
fn hypertensive_crisis_185_over_125_is_critical_and_alerts_once() {
    let mut s = Sim::program(P, Program::Hypertension);
    s.bp(P, 135.0, 85.0, t0());
    s.bp(P, 185.0, 125.0, t0() + hours(12.0));
    let ev = s.of_rule("threshold.bp.crisis");
    assert_eq!(ev.len(), 1, "one episode for the systolic and diastolic of one reading");
    assert_eq!(sev(ev[0]), PSeverity::Critical);
    assert_eq!(ev[0].threshold, Some(180.0));
    assert!(ev[0].summary.contains("185 mmHg"), "{}", ev[0].summary);
    let opened_episode = ev[0].episode_id.clone();
    // Resolution needs the whole reading past the clear thresholds (160/100).
    s.bp(P, 150.0, 105.0, t0() + hours(13.0));
    assert_eq!(s.kinds("threshold.bp.crisis"), vec![AlertEventKind::Opened]);
    s.bp(P, 150.0, 95.0, t0() + hours(14.0));
    assert_eq!(s.kinds("threshold.bp.crisis"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
    let r = s.of_rule("threshold.bp.crisis")[1];
    assert_eq!(r.episode_id, opened_episode);
    assert_eq!(r.readings.len(), 2, "systolic and diastolic of the clearing reading");
}

#[test]
fn patient_who_stops_weighing_himself() {
    let mut s = Sim::program(P, Program::HeartFailure);
    let mut t = t0();
    for _ in 0..5 {
        s.read_dev(P, Code::BodyWeight, 80.0, t, "scale-1");
        t += days(1.0);
    }
    let last = t - days(1.0);
    // The scale keeps sending heartbeats every hour; the patient no longer steps on it.
    let mut now = last;
    for _ in 0..72 {
        now += hours(1.0);
        s.engine.on_device_status(&dev("scale-1"), &pid(P), now);
        s.tick(now);
    }
    let ev = s.of_rule("missing.body_weight");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    assert_eq!(ev[0].rule_kind, "missing");
    assert!(ev[0].summary.contains("patient did not measure"), "{}", ev[0].summary);
    assert_eq!(ev[0].reading_time_unix_micros, (last + hours(36.0)).timestamp_micros(), "due time");
    assert_eq!(ev[0].readings.len(), 1, "last weight as evidence");
    // Weighing again resolves it.
    s.read_dev(P, Code::BodyWeight, 80.2, now, "scale-1");
    assert_eq!(s.kinds("missing.body_weight"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
}

#[test]
fn device_that_goes_offline_is_device_silent() {
    let mut s = Sim::program(P, Program::HeartFailure);
    let mut t = t0();
    for _ in 0..5 {
        s.read_dev(P, Code::BodyWeight, 80.0, t, "scale-1");
        s.engine.on_device_status(&dev("scale-1"), &pid(P), t + hours(1.0));
        t += days(1.0);
    }
    let mut now = t;
    for _ in 0..48 {
        now += hours(1.0);
        s.tick(now);
    }
    let ev = s.of_rule("missing.body_weight");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].rule_kind, "device_silent");
    assert!(ev[0].summary.contains("device silent"), "{}", ev[0].summary);
}

#[test]
fn news2_from_home_readings() {
    let mut s = Sim::program(P, Program::General);
    let t = t0();
    s.read(P, Code::RespiratoryRate, 22.0, t); // 2
    s.read(P, Code::Spo2, 93.0, t + hours(0.1)); // 2
    s.read(P, Code::Systolic, 105.0, t + hours(0.2)); // 1
    assert!(s.of_rule("news2").is_empty(), "only 3 parameters");
    s.read(P, Code::HeartRate, 115.0, t + hours(0.3)); // 2 -> 7 with 4 parameters
    let ev = s.of_rule("news2");
    assert_eq!(ev.len(), 1);
    assert_eq!(sev(ev[0]), PSeverity::Critical, "aggregate 7: high band");
    assert_eq!(ev[0].code, "");
    assert_eq!(ev[0].readings.len(), 4);
    assert!(ev[0].summary.contains("NEWS2 7"), "{}", ev[0].summary);
    assert!(ev[0].summary.contains("assumed alert and on air"));
}

// ----------------------------------------------------------- must not alert

#[test]
fn stable_patient_over_30_days_never_alerts() {
    let mut s = Sim::program(P, Program::HeartFailure);
    let mut rng = Lcg(7);
    for d in 0..30 {
        let day = t0() + days(d as f64);
        s.read_dev(P, Code::BodyWeight, 80.0 + rng.range(-0.3, 0.3), day, "scale-1");
        for h in [0.5, 12.5] {
            let t = day + hours(h);
            s.read(P, Code::Systolic, rng.range(118.0, 132.0), t);
            s.read(P, Code::Diastolic, rng.range(72.0, 84.0), t);
            s.read(P, Code::HeartRate, rng.range(62.0, 78.0), t);
            s.read(P, Code::Spo2, rng.range(96.0, 98.0), t + hours(0.1));
            s.read(P, Code::BodyTemperature, rng.range(36.5, 37.1), t + hours(0.2));
        }
        for h in 0..24 {
            s.engine.on_device_status(&dev("scale-1"), &pid(P), day + hours(h as f64));
            s.tick(day + hours(h as f64 + 0.9));
        }
    }
    assert!(s.events.is_empty(), "{:#?}", s.events);
}

#[test]
fn noisy_but_normal_values_do_not_alert() {
    for program in [Program::Diabetes, Program::Hypertension, Program::General] {
        let mut s = Sim::program(P, program);
        let mut rng = Lcg(42);
        let mut t = t0();
        for _ in 0..(30 * 4) {
            s.read(P, Code::BloodGlucose, rng.range(75.0, 240.0), t);
            s.bp(P, rng.range(105.0, 150.0), rng.range(60.0, 95.0), t + hours(0.1));
            s.read(P, Code::HeartRate, rng.range(52.0, 105.0), t + hours(0.1));
            s.read(P, Code::Spo2, rng.range(93.5, 99.0), t + hours(0.2));
            s.read(P, Code::BodyTemperature, rng.range(36.1, 37.6), t + hours(0.3));
            t += hours(6.0);
            s.tick(t);
        }
        assert!(s.events.is_empty(), "{program:?}: {:#?}", s.events);
    }
}

/// Issue #14 §1: a backfill of old readings updates history and raises
/// HISTORICAL alerts (it used to raise nothing: a severe hypoglycaemia synced
/// a day late was filed silently).
#[test]
fn late_backfill_updates_history_and_raises_historical_alerts() {
    let mut s = Sim::program(P, Program::Diabetes);
    let now = t0() + days(2.0);
    for i in 0..8 {
        let t = now - hours(6.0 * (7 - i) as f64);
        s.read(P, Code::BloodGlucose, 120.0, t);
    }
    let before = s.engine.patient_state(&pid(P)).expect("known").reading_count();
    // A glucometer uploads a whole day of old readings (3 days ago), one of them
    // a severe hypoglycaemia, and an old SpO2 of 85 %.
    let day = now - days(3.0);
    let mut outcomes = Vec::new();
    for (h, v) in [(0.0, 130.0), (4.0, 45.0), (8.0, 150.0), (12.0, 110.0)] {
        let o = obs(P, Code::BloodGlucose, v, day + hours(h));
        outcomes.push(s.engine.on_observation(&o, now, &mut s.events));
    }
    let o = obs(P, Code::Spo2, 85.0, day + hours(1.0));
    outcomes.push(s.engine.on_observation(&o, now, &mut s.events));
    assert!(outcomes.iter().all(|o| *o == ObservationOutcome::Late), "{outcomes:?}");
    // The lone 85 % waits for confirmation; its window passed long ago, so
    // the next tick reports it (historical, not re-measured).
    s.tick(now);
    assert!(s.events.iter().all(|e| e.historical), "{:#?}", s.events);
    // The hypoglycaemia is reported with its own reading time, and resolved by
    // the next (also historical) reading of the upload.
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
    assert_eq!(s.of_rule("threshold.glucose.low")[0].reading_time_unix_micros, (day + hours(4.0)).timestamp_micros());
    assert_eq!(s.kinds("threshold.spo2.low"), vec![AlertEventKind::Opened]);
    let state = s.engine.patient_state(&pid(P)).expect("known");
    assert_eq!(state.reading_count(), before + 5, "history updated");
    // A reading older than now - max_alert_age is historical even when it is the newest.
    let mut s2 = Sim::program("p-002", Program::Diabetes);
    let o = obs("p-002", Code::BloodGlucose, 40.0, now - hours(7.0));
    assert_eq!(s2.engine.on_observation(&o, now, &mut s2.events), ObservationOutcome::Late);
    assert_eq!(s2.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened]);
    assert!(s2.events[0].historical);
}

#[test]
fn out_of_order_reading_within_lateness_is_evaluated_in_time_order() {
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 120.0, t0() + hours(1.0));
    // Arrives after the 09:00 reading but was taken at 08:30: within the 1 h lateness.
    let o = obs(P, Code::BloodGlucose, 50.0, t0() + hours(0.5));
    assert_eq!(s.engine.on_observation(&o, t0() + hours(1.1), &mut s.events), ObservationOutcome::Evaluated);
    assert_eq!(s.kinds("threshold.glucose.low"), vec![AlertEventKind::Opened]);
    assert_eq!(s.events[0].reading_time_unix_micros, (t0() + hours(0.5)).timestamp_micros());
}

fn sustained_spo2(p: Persistence) -> PatientRules {
    let mut r = PatientRules::for_program(Program::General);
    r.thresholds.push(ThresholdRule {
        id: "threshold.spo2.low".into(),
        checks: vec![ThresholdCheck {
            code: Code::Spo2,
            op: Comparison::Lt,
            levels: vec![Level { severity: Severity::High, value: 90.0 }],
            clear: 92.0,
        }],
        persistence: p,
        source: "test".into(),
    });
    r
}

#[test]
fn single_outlier_under_a_sustained_rule_does_not_alert() {
    for p in [Persistence::Consecutive { readings: 2 }, Persistence::Sustained { minutes: 30 }] {
        let mut s = Sim::with(P, sustained_spo2(p));
        s.read(P, Code::Spo2, 96.0, t0());
        s.read(P, Code::Spo2, 84.0, t0() + hours(0.25));
        s.read(P, Code::Spo2, 96.0, t0() + hours(0.5));
        s.read(P, Code::Spo2, 97.0, t0() + hours(1.0));
        assert!(s.events.is_empty(), "{p:?}: {:#?}", s.events);
        // Positive control: a sustained desaturation does alert.
        s.read(P, Code::Spo2, 88.0, t0() + hours(2.0));
        s.read(P, Code::Spo2, 87.0, t0() + hours(2.3));
        s.read(P, Code::Spo2, 88.0, t0() + hours(2.6));
        let ev = s.of_rule("threshold.spo2.low");
        assert_eq!(ev.len(), 1, "{p:?}");
        assert!(ev[0].readings.len() >= 2, "the sustained readings are evidence");
    }
}

#[test]
fn baseline_rule_before_minimum_history_does_not_fire() {
    let mut s = Sim::program(P, Program::Copd);
    s.read(P, Code::Spo2, 96.0, t0());
    s.read(P, Code::Spo2, 96.0, t0() + hours(12.0));
    s.read(P, Code::Spo2, 96.0, t0() + hours(24.0));
    s.read(P, Code::Spo2, 91.0, t0() + hours(36.0)); // -5 points, but only 3 baseline readings
    assert!(s.events.is_empty(), "{:#?}", s.events);
}

#[test]
fn scale_2_patient_is_not_alerted_inside_the_88_92_target() {
    let mut r = PatientRules::for_program(Program::Copd);
    r.spo2_scale = Spo2Scale::Scale2;
    let mut s = Sim::with(P, r);
    s.read(P, Code::Spo2, 89.0, t0());
    assert!(s.events.is_empty());
    s.read(P, Code::Spo2, 86.0, t0() + hours(1.0));
    assert!(s.events.is_empty(), "below the target range, waiting for confirmation");
    s.read(P, Code::Spo2, 85.0, t0() + hours(1.1));
    assert_eq!(s.of_rule("threshold.spo2.low").len(), 1);
}

#[test]
fn duplicates_and_future_readings_are_ignored() {
    let mut s = Sim::program(P, Program::Diabetes);
    assert_eq!(s.read(P, Code::BloodGlucose, 50.0, t0()), ObservationOutcome::Evaluated);
    assert_eq!(s.read(P, Code::BloodGlucose, 50.0, t0()), ObservationOutcome::Duplicate);
    assert_eq!(s.events.len(), 1);
    let o = obs(P, Code::BloodGlucose, 40.0, t0() + days(400.0));
    assert_eq!(
        s.engine.on_observation(&o, t0(), &mut s.events),
        ObservationOutcome::Rejected(RejectReason::FutureTime)
    );
    let mut o = obs(P, Code::BloodGlucose, 40.0, t0() + hours(1.0));
    o.value = f64::NAN;
    assert_eq!(
        s.engine.on_observation(&o, t0() + hours(1.0), &mut s.events),
        ObservationOutcome::Rejected(RejectReason::NonFiniteValue)
    );
    assert_eq!(s.events.len(), 1);
}
