//! Alarm fatigue against detection on the home-trajectory model (issue #14
//! §5), one test per program, 200 stable and 200 deteriorating patients over
//! 30 days each (seed `home::SEED`; `examples/noise.rs` prints the full table).
//!
//! Stable patients: fewer than 1 notifying OPENED alert (LOW and above; INFO
//! goes to the digest only) per patient per 30 days on average (issue #14 §5 target) and no CRITICAL one. Deteriorating patients:
//! every one gets an alert of the expected rule at the expected severity
//! within the bound of `Deterioration::expectation` (readings after the first
//! reading meeting the clinical definition).

use vitalwatch_benches::home::{self, Deterioration};
use vitalwatch_rules_core::Program;
use vitalwatch_schemas::proto::Severity;

const PATIENTS: usize = 200;
const DAYS: u32 = 30;

fn check(program: Program) {
    let (st, de) = home::measure(home::SEED, program, PATIENTS, DAYS).unwrap_or_else(|e| panic!("{e}"));
    let exp = Deterioration::of(program).expectation();
    let mut failures = Vec::new();
    let rate = st.notified_per_patient_month();
    if rate >= 1.0 {
        failures.push(format!(
            "stable: {rate:.2} notifying OPENED alerts per patient per 30 days (target < 1); by rule: {:?}",
            st.by_rule
        ));
    }
    let critical = st.per_patient_month(Some(Severity::Critical));
    if critical > 0.0 {
        failures.push(format!("stable: {critical:.3} CRITICAL alerts per patient per 30 days (expected none)"));
    }
    let missed: Vec<String> = de
        .expected
        .iter()
        .zip(&de.first_alert)
        .zip(&de.defined)
        .enumerate()
        .filter(|(_, ((d, _), defined))| **defined && !home::in_bound(d.as_ref(), exp.max_readings))
        .map(|(i, ((_, first), _))| match first {
            Some(f) => format!(
                "#{i}: first {} {:?} {:?} readings / {:.1} h after the definition",
                f.rule_id,
                f.severity,
                f.readings_from_definition,
                f.hours_from_definition.unwrap_or(f64::NAN)
            ),
            None => format!("#{i}: no alert of {:?}", exp.rules),
        })
        .collect();
    if !missed.is_empty() {
        failures.push(format!(
            "deteriorating: {}/{} meeting the definition not alerted by {:?} at >= {:?} within {} reading(s) of \"{}\"; first ones: {:?}",
            missed.len(),
            de.meeting_definition(),
            exp.rules,
            exp.min_severity,
            exp.max_readings,
            exp.definition,
            missed.iter().take(3).collect::<Vec<_>>()
        ));
    }
    assert!(failures.is_empty(), "{}:\n{}", program.as_str(), failures.join("\n"));
}

#[test]
fn heart_failure_noise_and_detection() {
    check(Program::HeartFailure);
}

#[test]
fn hypertension_noise_and_detection() {
    check(Program::Hypertension);
}

#[test]
fn copd_noise_and_detection() {
    check(Program::Copd);
}

#[test]
fn diabetes_noise_and_detection() {
    check(Program::Diabetes);
}

#[test]
fn general_noise_and_detection() {
    check(Program::General);
}

#[test]
fn the_model_is_deterministic_and_realistic() {
    for p in Program::ALL {
        let a = home::trajectory(home::SEED, p, 7, true, DAYS);
        let b = home::trajectory(home::SEED, p, 7, true, DAYS);
        let va: Vec<f64> = a.readings.iter().map(|r| r.value).collect();
        let vb: Vec<f64> = b.readings.iter().map(|r| r.value).collect();
        assert_eq!(va, vb, "{p:?}: same seed, same readings");
        assert!(a.readings.windows(2).all(|w| w[0].time <= w[1].time), "{p:?}: readings in time order");
        assert!(a.definition().is_some(), "{p:?}: the deterioration meets its clinical definition");
        let per_day = a.readings.len() as f64 / f64::from(DAYS);
        assert!((1.0..40.0).contains(&per_day), "{p:?}: {per_day:.1} readings a day");
    }
}
