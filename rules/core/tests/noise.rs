//! Alarm fatigue (issue #14 §5): realistic multi-day home trajectories with
//! the noise of home devices. One noisy reading must not page; a confirmed
//! change must still alert at the right reading with the right severity.
//!
//! Noise (issue #14 §5): oximeters ±2–3 % with occasional artefact dips,
//! scales ±0.2 kg with the evening 0.5–1 kg above the morning. Each test
//! ticks the engine every hour so a pending state resolved at tick is seen.

use crate::common;

use common::*;
use vitalwatch_rules_core::{AlertEvent, Program};
use vitalwatch_schemas::Code;
use vitalwatch_schemas::proto::{AlertEventKind, Severity as PSeverity};

const P: &str = "p-noise";

/// Issue #14 §2: SpO2 below 90 % and heart-failure decompensation signs must
/// reach a clinician at night, which only `critical` does by default (U: the
/// mapping is the lead's to confirm in docs/clinical-rules.md).
/// HIGH and above reach the physician at night (quiet hours hold MEDIUM and
/// below by default; docs/clinical-rules.md).
const URGENT: PSeverity = PSeverity::High;

fn sev(e: &AlertEvent) -> PSeverity {
    PSeverity::try_from(e.severity).unwrap_or(PSeverity::Unspecified)
}

fn opened(s: &Sim) -> Vec<&AlertEvent> {
    s.events.iter().filter(|e| e.kind == AlertEventKind::Opened as i32).collect()
}

/// Ticks every hour from `from` (exclusive) to `to` (inclusive).
fn tick_until(s: &mut Sim, from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>) {
    let mut t = from + hours(1.0);
    while t <= to {
        s.tick(t);
        t += hours(1.0);
    }
}

/// Ten days of two or three oximeter spot checks a day around 95 % (±1), then
/// returns the time after the last one.
fn spo2_history(s: &mut Sim, rng: &mut Lcg) -> chrono::DateTime<chrono::Utc> {
    for d in 0..10 {
        for h in [0.0, 5.5, 11.0] {
            let t = t0() + days(f64::from(d)) + hours(h);
            s.read_dev(P, Code::Spo2, (95.0 + rng.range(-1.0, 1.0)).round(), t, "oxi-1");
            s.read_dev(P, Code::HeartRate, (74.0 + rng.range(-5.0, 5.0)).round(), t, "oxi-1");
        }
        tick_until(s, t0() + days(f64::from(d)), t0() + days(f64::from(d) + 1.0));
    }
    t0() + days(10.0)
}

fn one_artefact_dip_does_not_page(program: Program) {
    let mut s = Sim::program(P, program);
    let mut rng = Lcg(86);
    let t = spo2_history(&mut s, &mut rng);
    assert!(s.events.is_empty(), "{program:?}: stable history: {:#?}", s.events);
    // Cold fingers: one 86 % among 95 %; the patient re-measures 10 min later
    // (95 %) and the spot checks go on as before.
    s.read_dev(P, Code::Spo2, 86.0, t, "oxi-1");
    s.read_dev(P, Code::Spo2, 95.0, t + hours(1.0 / 6.0), "oxi-1");
    for (i, h) in [5.5, 11.0, 24.0, 29.5, 35.0].into_iter().enumerate() {
        s.read_dev(P, Code::Spo2, [95.0, 96.0, 94.0, 95.0, 95.0][i], t + hours(h), "oxi-1");
    }
    tick_until(&mut s, t, t + days(2.0));
    let o: Vec<_> = opened(&s).iter().map(|e| (e.rule_id.as_str(), sev(e))).collect();
    assert!(o.is_empty(), "{program:?}: one artefact 86 % among 95 % must not page; opened {o:?}");
}

#[test]
fn copd_one_86_among_95_spo2_does_not_page() {
    one_artefact_dip_does_not_page(Program::Copd);
}

#[test]
fn general_one_86_among_95_spo2_does_not_page() {
    one_artefact_dip_does_not_page(Program::General);
}

#[test]
fn copd_confirmed_low_spo2_alerts_urgently_by_the_confirming_reading() {
    let mut s = Sim::program(P, Program::Copd);
    let mut rng = Lcg(87);
    let t = spo2_history(&mut s, &mut rng);
    // Exacerbation over three days: 94, 93, 92, 91, 90, then 88 and a re-measure at 87.
    let mut at = t;
    for v in [94.0, 93.0, 92.0, 91.0, 90.0] {
        s.read_dev(P, Code::Spo2, v, at, "oxi-1");
        tick_until(&mut s, at, at + hours(12.0));
        at += hours(12.0);
    }
    s.read_dev(P, Code::Spo2, 88.0, at, "oxi-1");
    s.read_dev(P, Code::Spo2, 87.0, at + hours(0.25), "oxi-1");
    let deadline = (at + hours(0.25) + hours(1.0 / 60.0)).timestamp_micros();
    let urgent = s
        .events
        .iter()
        .find(|e| e.rule_id == "threshold.spo2.low" && sev(e) >= URGENT && e.kind != AlertEventKind::Resolved as i32);
    let got: Vec<_> = s.events.iter().map(|e| (e.rule_id.as_str(), sev(e), e.kind)).collect();
    let e = urgent.unwrap_or_else(|| panic!("threshold.spo2.low at >= {URGENT:?} by the 87 % re-measure; got {got:?}"));
    assert!(e.detected_at_unix_micros <= deadline, "alerted by the confirming reading: {e:#?}");
}

/// Ten mornings around 78.0 kg (±0.2) at 07:30.
fn weight_history(s: &mut Sim, rng: &mut Lcg) {
    for d in 0..10 {
        let t = t0() + days(f64::from(d)) - hours(0.5);
        s.read_dev(P, Code::BodyWeight, ((78.0 + rng.range(-0.2, 0.2)) * 10.0).round() / 10.0, t, "scale-1");
        tick_until(s, t, t + days(1.0));
    }
}

#[test]
fn heart_failure_78_then_80_1_kg_an_hour_later_does_not_alert() {
    let mut s = Sim::program(P, Program::HeartFailure);
    let mut rng = Lcg(78);
    weight_history(&mut s, &mut rng);
    assert!(s.events.is_empty(), "stable history: {:#?}", s.events);
    // Morning weight, then dressed after breakfast an hour later; the next
    // mornings are back at 78.
    let t = t0() + days(10.0) - hours(0.5);
    s.read_dev(P, Code::BodyWeight, 78.0, t, "scale-1");
    s.read_dev(P, Code::BodyWeight, 80.1, t + hours(1.0), "scale-1");
    s.read_dev(P, Code::BodyWeight, 78.1, t + days(1.0), "scale-1");
    s.read_dev(P, Code::BodyWeight, 77.9, t + days(2.0), "scale-1");
    tick_until(&mut s, t, t + days(2.5));
    let o: Vec<_> = opened(&s).iter().map(|e| (e.rule_id.as_str(), sev(e))).collect();
    assert!(o.is_empty(), "78.0 then 80.1 kg an hour apart must not open weight alerts; opened {o:?} {:#?}", s.events);
}

#[test]
fn heart_failure_stable_30_days_with_diurnal_weights_raises_nothing() {
    let mut s = Sim::program(P, Program::HeartFailure);
    let mut rng = Lcg(30);
    for d in 0..30 {
        let day = t0() + days(f64::from(d)) - hours(1.0);
        // Morning 07:00–08:30, fluid weight 78 ± 0.3 kg and scale ±0.2 kg.
        let fluid = 78.0 + rng.range(-0.3, 0.3);
        let morning = day + hours(rng.range(0.0, 1.5));
        s.read_dev(P, Code::BodyWeight, ((fluid + rng.range(-0.2, 0.2)) * 10.0).round() / 10.0, morning, "scale-1");
        // Evening (19:00–22:00) on most days, 0.5–1.0 kg above the morning.
        if d % 3 != 2 {
            let evening = day + hours(12.0 + rng.range(0.0, 3.0));
            let w = fluid + rng.range(0.5, 1.0) + rng.range(-0.2, 0.2);
            s.read_dev(P, Code::BodyWeight, (w * 10.0).round() / 10.0, evening, "scale-1");
        }
        tick_until(&mut s, day, day + days(1.0));
    }
    let o: Vec<_> = s.events.iter().map(|e| (e.rule_id.as_str(), sev(e), e.kind)).collect();
    assert!(o.is_empty(), "a stable heart-failure patient raised {} events: {o:?}", o.len());
}

#[test]
fn heart_failure_gain_of_0_8_kg_a_day_alerts_urgently_by_the_third_morning() {
    let mut s = Sim::program(P, Program::HeartFailure);
    let mut rng = Lcg(31);
    for d in 0..14u32 {
        let day = t0() + days(f64::from(d)) - hours(0.5);
        // Fluid gain of 0.8 kg a day from day 10 (ESC HFA: > 2 kg in 3 days
        // is met on the third morning, +2.4 kg), evening weights +0.7 kg.
        let fluid = 78.0 + 0.8 * f64::from(d.saturating_sub(10)) + rng.range(-0.15, 0.15);
        s.read_dev(P, Code::BodyWeight, (fluid * 10.0).round() / 10.0, day, "scale-1");
        let evening = fluid + 0.7 + rng.range(-0.15, 0.15);
        s.read_dev(P, Code::BodyWeight, (evening * 10.0).round() / 10.0, day + hours(12.0), "scale-1");
        tick_until(&mut s, day, day + days(1.0));
    }
    let before: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.reading_time_unix_micros < (t0() + days(10.0) - hours(0.5)).timestamp_micros())
        .map(|e| (e.rule_id.as_str(), sev(e), e.kind))
        .collect();
    assert!(before.is_empty(), "nothing before the onset: {before:?}");
    // Third morning after onset (day 13), plus one hour for a confirmation at tick.
    let deadline = (t0() + days(13.0) - hours(0.5) + hours(1.0)).timestamp_micros();
    let got: Vec<_> = s.events.iter().map(|e| (e.rule_id.as_str(), sev(e), e.kind)).collect();
    let e = s
        .events
        .iter()
        .find(|e| e.rule_id.starts_with("hf.weight_gain") && sev(e) >= URGENT)
        .unwrap_or_else(|| panic!("an hf.weight_gain alert at >= {URGENT:?}; got {got:?}"));
    assert!(e.detected_at_unix_micros <= deadline, "by the third morning after onset: {e:#?}");
}
