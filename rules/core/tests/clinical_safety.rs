//! Issue #14, clinical safety of the default rules: single red values,
//! boundaries on both sides, severities that match delivery urgency,
//! confirmation of noisy single readings, NEWS2 from readings taken together,
//! COPD target range and oxygen. Each boundary is tested on both sides.

use crate::common;

use common::*;
use vitalwatch_rules_core::{ConfigError, OxygenPlan, PatientRules, Program, Spo2Scale, Spo2Target, news2::score_spo2};
use vitalwatch_schemas::Code;
use vitalwatch_schemas::proto::{AlertEventKind, Severity as PSeverity};

const P: &str = "p-014";

fn sev(e: &vitalwatch_rules_core::AlertEvent) -> PSeverity {
    PSeverity::try_from(e.severity).expect("known severity")
}

/// Normal readings of every home-measurable NEWS2 parameter, one a day for a
/// week, so a later reading is never the patient's first.
fn settled(program: Program) -> Sim {
    let mut s = Sim::program(P, program);
    for d in 0..7 {
        let t = t0() - days(7.0 - f64::from(d));
        s.read(P, Code::RespiratoryRate, 16.0, t);
        s.read(P, Code::Spo2, 97.0, t);
        s.bp(P, 125.0, 80.0, t);
        s.read(P, Code::HeartRate, 72.0, t);
        s.read(P, Code::BodyTemperature, 36.8, t);
    }
    assert!(s.events.is_empty(), "{:#?}", s.events);
    s
}

/// A single red value, re-measured 10 minutes later with the same value.
/// (Confirmation also comes from the next routine reading: see
/// `a_single_red_value_is_confirmed_by_the_next_days_reading`.)
fn confirmed_reading(program: Program, code: Code, value: f64) -> Sim {
    let mut s = settled(program);
    s.read(P, code, value, t0());
    assert!(s.events.iter().all(|e| sev(e) == PSeverity::Info), "one reading waits for confirmation");
    s.read(P, code, value, t0() + hours(10.0 / 60.0));
    s
}

// ------------------------------------------------ 3. single red values

#[test]
fn each_single_red_parameter_alerts_alone_and_its_neighbour_does_not() {
    // (rule, code, red value, value one step inside the band that scores < 3)
    // clinical.md §3.1 (NEWS2 chart 1).
    let cases = [
        ("threshold.sbp.low", Code::Systolic, 90.0, 91.0),
        ("threshold.rr.low", Code::RespiratoryRate, 8.0, 9.0),
        ("threshold.rr.high", Code::RespiratoryRate, 25.0, 24.0),
        ("threshold.temperature.low", Code::BodyTemperature, 35.0, 35.1),
        ("threshold.spo2.low", Code::Spo2, 91.0, 92.0),
        ("threshold.hr.high", Code::HeartRate, 131.0, 130.0),
        ("threshold.hr.low", Code::HeartRate, 40.0, 41.0),
    ];
    for (rule, code, red, inside) in cases {
        let s = confirmed_reading(Program::General, code, red);
        let ev = s.of_rule(rule);
        assert_eq!(ev.len(), 1, "{rule} at {red}: {:#?}", s.events);
        assert_eq!(ev[0].kind, AlertEventKind::Opened as i32);
        assert_eq!(sev(ev[0]), PSeverity::High, "{rule}: a red single parameter reaches the physician at night");
        let s = confirmed_reading(Program::General, code, inside);
        assert!(s.of_rule(rule).is_empty(), "{rule} at {inside}: {:#?}", s.events);
    }
}

#[test]
fn a_single_red_value_nobody_re_measures_is_reported_after_the_confirmation_window() {
    let mut s = settled(Program::General);
    s.read(P, Code::Systolic, 86.0, t0());
    s.read(P, Code::Diastolic, 55.0, t0());
    s.tick(t0() + hours(29.9));
    assert!(s.of_rule("threshold.sbp.low").is_empty(), "inside the 30-h window: still pending");
    s.tick(t0() + hours(30.0));
    let ev = s.of_rule("threshold.sbp.low");
    assert_eq!(ev.len(), 1, "fail-safe: reported once the window has passed");
    assert_eq!(ev[0].reading_time_unix_micros, t0().timestamp_micros());
    assert!(ev[0].summary.contains("not re-measured within 30 h"), "{}", ev[0].summary);
    s.tick(t0() + hours(31.0));
    assert_eq!(s.of_rule("threshold.sbp.low").len(), 1, "reported once");
}

#[test]
fn a_single_red_value_is_confirmed_by_the_next_days_reading_or_dropped_by_a_normal_one() {
    let mut s = settled(Program::General);
    s.read(P, Code::Spo2, 90.0, t0());
    s.tick(t0() + hours(12.0));
    assert!(s.of_rule("threshold.spo2.low").is_empty(), "waiting for the next reading");
    s.read(P, Code::Spo2, 89.0, t0() + hours(23.5));
    let ev = s.of_rule("threshold.spo2.low");
    assert_eq!(ev.len(), 1, "confirmed by the next morning's reading");
    assert_eq!(ev[0].reading_time_unix_micros, (t0() + hours(23.5)).timestamp_micros());
    let mut s = settled(Program::General);
    s.read(P, Code::Spo2, 90.0, t0());
    s.read(P, Code::Spo2, 96.0, t0() + hours(23.5));
    s.tick(t0() + hours(48.0));
    assert!(s.events.is_empty(), "a normal next reading drops it: {:#?}", s.events);
}

// ------------------------------------------------ 4. boundaries follow the source

#[test]
fn hypertensive_crisis_is_180_and_or_120_inclusive() {
    // ESC/ESH: >= 180 and/or >= 120 mmHg. Critical: no confirmation.
    for (sys, dia, alerts) in
        [(180.0, 80.0, true), (179.0, 80.0, false), (140.0, 120.0, true), (140.0, 119.0, false), (180.0, 120.0, true)]
    {
        let mut s = settled(Program::Hypertension);
        s.bp(P, sys, dia, t0());
        let ev = s.of_rule("threshold.bp.crisis");
        assert_eq!(ev.len(), usize::from(alerts), "{sys}/{dia}: {:#?}", s.events);
        if alerts {
            assert_eq!(sev(ev[0]), PSeverity::Critical, "{sys}/{dia}");
        }
    }
}

#[test]
fn hypoglycaemia_levels_follow_the_ada_boundaries() {
    // ADA: level 1 < 70 mg/dL (confirmed, medium); level 2 < 54 (critical, at once).
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 53.9, t0());
    let ev = s.of_rule("threshold.glucose.low");
    assert_eq!(ev.len(), 1, "level 2 pages on the first reading");
    assert_eq!(sev(ev[0]), PSeverity::Critical);
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 54.0, t0());
    s.read(P, Code::BloodGlucose, 54.0, t0() + hours(0.2));
    let ev = s.of_rule("threshold.glucose.low");
    assert_eq!(ev.len(), 1);
    assert_eq!(sev(ev[0]), PSeverity::Medium, "54 is level 1, not level 2");
    let mut s = Sim::program(P, Program::Diabetes);
    s.read(P, Code::BloodGlucose, 70.0, t0());
    s.read(P, Code::BloodGlucose, 70.0, t0() + hours(0.2));
    s.tick(t0() + hours(2.0));
    assert!(s.of_rule("threshold.glucose.low").is_empty(), "70 is not a hypoglycaemia (ADA: < 70)");
}

// ------------------------------------------------ 2. severity matches delivery

#[test]
fn news2_of_5_is_high_and_of_7_is_critical() {
    // RR 21 (2), SpO2 95 (1), SBP 105 (1), HR 95 (1), T 36.8 (0): 5.
    let mut s = settled(Program::General);
    let t = t0();
    s.read(P, Code::RespiratoryRate, 21.0, t);
    s.read(P, Code::Spo2, 95.0, t + hours(0.05));
    s.bp(P, 105.0, 70.0, t + hours(0.1));
    s.read(P, Code::HeartRate, 95.0, t + hours(0.15));
    let ev = s.of_rule("news2");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    assert_eq!(sev(ev[0]), PSeverity::High, "RCP urgent-response threshold");
    // HR 115 (2) and T 38.5 (1): 7.
    s.read(P, Code::HeartRate, 115.0, t + hours(0.2));
    s.read(P, Code::BodyTemperature, 38.5, t + hours(0.25));
    let ev = s.of_rule("news2");
    assert_eq!(ev.last().map(|e| e.kind), Some(AlertEventKind::Escalated as i32));
    assert_eq!(ev.last().map(|e| sev(e)), Some(PSeverity::Critical), "RCP emergency-response threshold");
}

#[test]
fn news2_combines_only_readings_taken_together_and_resolves_when_they_age_out() {
    // The same five abnormal parameters spread over two hours score nothing:
    // no 30-min window holds four of them.
    let mut s = settled(Program::General);
    let t = t0();
    s.read(P, Code::RespiratoryRate, 22.0, t);
    s.read(P, Code::Spo2, 94.0, t + hours(0.6));
    s.bp(P, 105.0, 70.0, t + hours(1.2));
    s.read(P, Code::HeartRate, 112.0, t + hours(1.8));
    assert!(s.of_rule("news2").is_empty(), "{:#?}", s.of_rule("news2"));
    // Taken together (within 30 min) they do: 2 + 1 + 1 + 2 = 6.
    let t = t0() + days(1.0);
    s.read(P, Code::RespiratoryRate, 22.0, t);
    s.read(P, Code::Spo2, 94.0, t + hours(0.1));
    s.bp(P, 105.0, 70.0, t + hours(0.2));
    s.read(P, Code::HeartRate, 112.0, t + hours(0.3));
    assert_eq!(s.kinds("news2"), vec![AlertEventKind::Opened]);
    // Hours later a lone SpO2 reading: the score can no longer be computed.
    s.read(P, Code::Spo2, 97.0, t + hours(6.0));
    assert_eq!(s.kinds("news2"), vec![AlertEventKind::Opened, AlertEventKind::Resolved]);
    let resolved = s.of_rule("news2")[1];
    assert!(resolved.summary.contains("no longer computable"), "{}", resolved.summary);
}

// ------------------------------------------------ 5. one noisy reading does not page

#[test]
fn one_86_among_95_re_measured_at_once_pages_nobody() {
    for program in [Program::General, Program::Copd] {
        let mut s = Sim::program(P, program);
        let mut t = t0() - days(8.0);
        for i in 0..24 {
            s.read(P, Code::Spo2, if i % 2 == 0 { 95.0 } else { 96.0 }, t);
            t += hours(8.0);
        }
        s.read(P, Code::Spo2, 86.0, t0());
        s.read(P, Code::Spo2, 95.0, t0() + hours(0.1));
        s.tick(t0() + hours(3.0));
        assert!(s.events.is_empty(), "{program:?}: {:#?}", s.events);
        // Positive control: confirmed by the re-measurement, it pages.
        s.read(P, Code::Spo2, 86.0, t0() + hours(4.0));
        s.read(P, Code::Spo2, 87.0, t0() + hours(4.1));
        let ev = s.of_rule("threshold.spo2.low");
        assert_eq!(ev.len(), 1, "{program:?}");
        assert_eq!(sev(ev[0]), PSeverity::High);
        assert!(ev[0].summary.contains("confirmed by a second reading"), "{}", ev[0].summary);
    }
}

#[test]
fn weights_are_compared_like_with_like() {
    let mut s = Sim::program(P, Program::HeartFailure);
    // A month of morning weights around 78 kg, evening ones 0.8 kg above.
    for d in 0..30 {
        let day = t0() - days(30.0 - f64::from(d));
        s.read(P, Code::BodyWeight, 78.0 + if d % 2 == 0 { 0.1 } else { -0.1 }, day);
        s.read(P, Code::BodyWeight, 78.8, day + hours(12.0));
    }
    // Morning 78.0, then 80.1 after breakfast and clothes, an hour later.
    s.read(P, Code::BodyWeight, 78.0, t0());
    s.read(P, Code::BodyWeight, 80.1, t0() + hours(1.0));
    assert!(s.events.is_empty(), "{:#?}", s.events);
    // A real gain: +0.8 kg a morning for 3 mornings (+2.4 kg) alerts on the third.
    s.read(P, Code::BodyWeight, 78.8, t0() + days(1.0));
    s.read(P, Code::BodyWeight, 79.6, t0() + days(2.0));
    assert!(s.of_rule("hf.weight_gain_3d").is_empty());
    s.read(P, Code::BodyWeight, 80.4, t0() + days(3.0));
    let ev = s.of_rule("hf.weight_gain_3d");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    assert_eq!(sev(ev[0]), PSeverity::High);
    assert!(ev[0].summary.contains("same time of day"), "{}", ev[0].summary);
    // One weight gain, one page: the 7-day rule (> 2.27 kg) holds too, but
    // the 3-day rule of the same group already has it open.
    assert!(s.of_rule("hf.weight_gain_7d").is_empty(), "{:#?}", s.of_rule("hf.weight_gain_7d"));
}

#[test]
fn a_steady_gain_the_3_day_rule_misses_is_caught_by_the_week() {
    // +0.5 kg a morning: never more than 2 kg in 3 days (1.5), 3 kg in 6.
    let mut s = Sim::program(P, Program::HeartFailure);
    for d in 0..14 {
        s.read(P, Code::BodyWeight, 78.0, t0() - days(14.0 - f64::from(d)));
    }
    for d in 1..=6 {
        s.read(P, Code::BodyWeight, 78.0 + 0.5 * f64::from(d), t0() + days(f64::from(d)));
    }
    assert!(s.of_rule("hf.weight_gain_3d").is_empty(), "{:#?}", s.events);
    let ev = s.of_rule("hf.weight_gain_7d");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    assert_eq!(sev(ev[0]), PSeverity::High);
    assert_eq!(ev[0].reading_time_unix_micros, (t0() + days(5.0)).timestamp_micros(), "+2.5 kg in 5 days");
}

// ------------------------------------------------ 6. COPD and oxygen

#[test]
fn copd_enrolment_requires_the_target_range_and_oxygen_use() {
    let bare = PatientRules::for_program(Program::Copd);
    let err = bare.check_enrolment().expect_err("no oxygen plan");
    assert!(matches!(err, ConfigError::OxygenPlan(_)));
    assert!(err.to_string().contains("88-92"), "{err}");
    assert!(PatientRules::for_program(Program::HeartFailure).check_enrolment().is_ok());
    let mut r = PatientRules::for_program(Program::Copd);
    r.oxygen_plan = Some(OxygenPlan { target: Spo2Target::Hypercapnic, supplemental_oxygen: true });
    r.check_enrolment().expect("complete");
    assert_eq!(r.scale(), Spo2Scale::Scale2);
    assert!(r.assumptions().supplemental_oxygen);
    // Contradictions are refused.
    r.spo2_scale = Spo2Scale::Scale2;
    r.oxygen_plan = Some(OxygenPlan { target: Spo2Target::Standard, supplemental_oxygen: false });
    assert!(matches!(r.effective(), Err(ConfigError::OxygenPlan(_))));
    // JSON form.
    let json = r#"{"program":"copd","oxygen_plan":{"target":"88-92","supplemental_oxygen":false}}"#;
    let r: PatientRules = serde_json::from_str(json).expect("valid");
    assert_eq!(r.scale(), Spo2Scale::Scale2);
}

fn copd(target: Spo2Target, oxygen: bool) -> Sim {
    let mut r = PatientRules::for_program(Program::Copd);
    r.oxygen_plan = Some(OxygenPlan { target, supplemental_oxygen: oxygen });
    Sim::with(P, r)
}

#[test]
fn hypercapnic_copd_patient_on_oxygen_is_scored_on_scale_2() {
    // 88-92 % is the target: no alert at 88 or 90.
    let mut s = copd(Spo2Target::Hypercapnic, true);
    for (i, v) in [90.0, 88.0, 89.0, 88.0, 90.0].into_iter().enumerate() {
        s.read(P, Code::Spo2, v, t0() + hours(i as f64 * 0.1));
    }
    s.tick(t0() + hours(3.0));
    assert!(s.events.is_empty(), "{:#?}", s.events);
    // Too much oxygen: >= 97 % on oxygen scores 3 on scale 2.
    s.read(P, Code::Spo2, 97.0, t0() + hours(4.0));
    s.read(P, Code::Spo2, 97.0, t0() + hours(4.1));
    let ev = s.of_rule("threshold.spo2.high_on_oxygen");
    assert_eq!(ev.len(), 1, "{:#?}", s.events);
    assert_eq!(sev(ev[0]), PSeverity::High);
    assert_eq!(score_spo2(97.0, Spo2Scale::Scale2, true), 3);
    // 96 % on oxygen is not red.
    let mut s = copd(Spo2Target::Hypercapnic, true);
    s.read(P, Code::Spo2, 96.0, t0());
    s.read(P, Code::Spo2, 96.0, t0() + hours(0.1));
    s.tick(t0() + hours(3.0));
    assert!(s.of_rule("threshold.spo2.high_on_oxygen").is_empty());
    // On air, 97 % is fine on scale 2.
    let mut s = copd(Spo2Target::Hypercapnic, false);
    s.read(P, Code::Spo2, 97.0, t0());
    s.read(P, Code::Spo2, 97.0, t0() + hours(0.1));
    s.tick(t0() + hours(3.0));
    assert!(s.events.is_empty(), "{:#?}", s.events);
    // Below the target range: 87 % (medium, confirmed); 83 % scores 3 (high).
    let mut s = copd(Spo2Target::Hypercapnic, false);
    s.read(P, Code::Spo2, 87.0, t0());
    s.read(P, Code::Spo2, 87.0, t0() + hours(0.1));
    assert_eq!(s.of_rule("threshold.spo2.low").first().map(|e| sev(e)), Some(PSeverity::Medium));
    s.read(P, Code::Spo2, 83.0, t0() + hours(0.2));
    s.read(P, Code::Spo2, 83.0, t0() + hours(0.3));
    assert_eq!(s.of_rule("threshold.spo2.low").last().map(|e| sev(e)), Some(PSeverity::High));
}
