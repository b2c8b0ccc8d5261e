//! The rules editor's what-if replay (`preview`) and the threshold bounds of
//! the validation.

use crate::common::*;
use vitalwatch_rules_core::preview::{compare, would_alert};
use vitalwatch_rules_core::{
    Comparison, ConfigError, Level, PatientRules, Persistence, Program, Severity, ThresholdCheck, ThresholdRule,
    threshold_bounds,
};
use vitalwatch_schemas::Code;

const P: &str = "pat-preview";

fn hr_rule(trigger: f64, clear: f64) -> ThresholdRule {
    ThresholdRule {
        id: "threshold.hr.high".into(),
        checks: vec![ThresholdCheck {
            code: Code::HeartRate,
            op: Comparison::Ge,
            levels: vec![Level { severity: Severity::High, value: trigger }],
            clear,
        }],
        persistence: Persistence::Immediate,
        source: "test".into(),
    }
}

/// 30 days of a heart rate of 70 with one 110 on day 10 and a blood pressure
/// of 185/95 on day 20.
fn readings() -> Vec<vitalwatch_schemas::Observation> {
    let mut out = Vec::new();
    for d in 0..30 {
        let t = t0() + days(f64::from(d));
        out.push(obs(P, Code::HeartRate, if d == 10 { 110.0 } else { 70.0 }, t));
    }
    let t = t0() + days(20.0) + hours(2.0);
    out.push(obs(P, Code::Systolic, 185.0, t));
    out.push(obs(P, Code::Diastolic, 95.0, t));
    out
}

#[test]
fn a_lower_threshold_adds_the_reading_it_would_have_alerted_on_and_a_higher_one_removes_one() {
    let now = t0() + days(30.0);
    let current = PatientRules::for_program(Program::General);
    let (n, cur) = would_alert(&pid(P), &current, &readings(), now, 30).expect("valid rules");
    assert_eq!(n, 32);
    // The rules in force: the BP crisis (critical, immediate) only.
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert_eq!((cur[0].rule_id.as_str(), cur[0].severity), ("threshold.bp.crisis", Severity::Critical));
    assert_eq!((cur[0].code.as_str(), cur[0].value), ("8480-6", Some(185.0)));

    let mut candidate = current.clone();
    candidate.thresholds.push(hr_rule(100.0, 90.0));
    let mut crisis = vitalwatch_rules_core::programs::defaults(Program::General, Default::default(), false)
        .thresholds
        .into_iter()
        .find(|r| r.id == "threshold.bp.crisis")
        .expect("default crisis rule");
    crisis.checks[0].levels[0].value = 190.0;
    candidate.thresholds.push(crisis);
    let c = compare(&pid(P), &candidate, &current, &readings(), now, 30).expect("valid rules");
    assert_eq!(c.added.len(), 1, "{c:?}");
    let added = &c.added[0];
    assert_eq!(
        (added.rule_id.as_str(), added.code.as_str(), added.value),
        ("threshold.hr.high", "8867-4", Some(110.0))
    );
    assert_eq!(added.time, t0() + days(10.0));
    assert_eq!((added.severity, added.unit.as_str(), added.escalation), (Severity::High, "/min", false));
    assert_eq!(c.removed.len(), 1);
    assert_eq!(c.removed[0].rule_id, "threshold.bp.crisis");
    assert!(c.unchanged.is_empty());
}

#[test]
fn an_unconfirmed_single_reading_alerts_after_its_confirmation_window() {
    // The default HR rule waits for a second reading (30 h): a lone 140
    // followed by nothing for two days opens when the window passes.
    let t = t0();
    let lone = vec![obs(P, Code::HeartRate, 70.0, t), obs(P, Code::HeartRate, 140.0, t + days(1.0))];
    let (_, got) =
        would_alert(&pid(P), &PatientRules::for_program(Program::General), &lone, t + days(3.0), 30).expect("valid");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].rule_id.as_str(), got[0].value), ("threshold.hr.high", Some(140.0)));
}

#[test]
fn thresholds_outside_the_plausible_range_are_refused_with_the_value_and_the_range() {
    let mut r = PatientRules::for_program(Program::General);
    r.thresholds.push(hr_rule(320.0, 110.0));
    let e = r.effective().unwrap_err();
    assert!(matches!(e, ConfigError::ThresholdOutOfBounds { field: "trigger", .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "rule \"threshold.hr.high\": the trigger 320 /min for heart rate is outside the allowed range 0 to 300 /min"
    );
    let mut r = PatientRules::for_program(Program::General);
    r.thresholds.push(hr_rule(130.0, -5.0));
    assert!(matches!(r.effective(), Err(ConfigError::ThresholdOutOfBounds { field: "clear", .. })));
    // The defaults of every program lie within the bounds.
    for p in Program::ALL {
        for rule in vitalwatch_rules_core::programs::defaults(p, Default::default(), false).thresholds {
            for c in &rule.checks {
                let (lo, hi) = threshold_bounds(c.code);
                assert!(c.levels.iter().all(|l| (lo..=hi).contains(&l.value)), "{}", rule.id);
            }
        }
    }
    let invalid = would_alert(&pid(P), &r, &readings(), t0(), 30);
    assert!(invalid.is_err());
}
