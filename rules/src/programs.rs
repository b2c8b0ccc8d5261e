//! Default rules of each care program, with the source of every number.
//!
//! These are *default candidates* (clinical.md §4 preamble): French rules
//! require the physician to set thresholds per patient (§5), and every default
//! here must be validated by the clinical lead. Numbers marked "(U)" have no
//! source: they are design choices (mostly hysteresis clear thresholds and
//! severities) documented as such.

use vitalwatch_schemas::Code;

use crate::config::{
    CadenceRule, ChangeMethod, ChangeRule, Comparison, Direction, Level, MinHistory, News2Rule, Persistence, Program,
    RuleSet, Severity, Spo2Scale, ThresholdCheck, ThresholdRule,
};

fn level(severity: Severity, value: f64) -> Level {
    Level { severity, value }
}

fn check(code: Code, op: Comparison, levels: Vec<Level>, clear: f64) -> ThresholdCheck {
    ThresholdCheck { code, op, levels, clear }
}

fn threshold(id: &str, checks: Vec<ThresholdCheck>, source: &str) -> ThresholdRule {
    ThresholdRule { id: id.to_owned(), checks, persistence: Persistence::Immediate, source: source.to_owned() }
}

/// The safety-net rules every program includes.
fn general(scale: Spo2Scale) -> RuleSet {
    let spo2 = match scale {
        // clinical.md §4.3: Cooper 2020, SpO2 < 90 % agreed with COPD exacerbations.
        // Clear at >= 92 % (U: hysteresis choice).
        Spo2Scale::Scale1 => threshold(
            "threshold.spo2.low",
            vec![check(Code::Spo2, Comparison::Lt, vec![level(Severity::High, 90.0)], 92.0)],
            "clinical.md §4.3: Cooper CB et al. 2020, SpO2 < 90 %",
        ),
        // clinical.md §4.3: BTS, assessment when saturation falls "below the
        // target range for the patient"; scale-2 patients target 88–92 %.
        // Clear at >= 90 % (U).
        Spo2Scale::Scale2 => threshold(
            "threshold.spo2.low",
            vec![check(Code::Spo2, Comparison::Lt, vec![level(Severity::High, 88.0)], 90.0)],
            "clinical.md §4.3: BTS 2017, below the 88-92 % target range (scale 2)",
        ),
    };
    RuleSet {
        thresholds: vec![
            spo2,
            // clinical.md §4.2: AHA hypertensive crisis "SBP >180 and/or DBP >120".
            // Clear at <= 160/100, the lower bound of ESC grade 2 (§4.2), so a
            // crisis resolves only once back below grade 2.
            threshold(
                "threshold.bp.crisis",
                vec![
                    check(Code::Systolic, Comparison::Gt, vec![level(Severity::Critical, 180.0)], 160.0),
                    check(Code::Diastolic, Comparison::Gt, vec![level(Severity::Critical, 120.0)], 100.0),
                ],
                "clinical.md §4.2: AHA hypertensive crisis SBP > 180 and/or DBP > 120",
            ),
            // clinical.md §4.5: fever >= 38.0 °C (CDC usage, S); NEWS2 scores 2
            // from 39.1 °C (§3.1), used for the high level. Clear at <= 37.5 °C (U).
            threshold(
                "threshold.temperature.fever",
                vec![check(
                    Code::BodyTemperature,
                    Comparison::Ge,
                    vec![level(Severity::Medium, 38.0), level(Severity::High, 39.1)],
                    37.5,
                )],
                "clinical.md §4.5: fever >= 38.0 °C; §3.1 NEWS2 >= 39.1 °C scores 2",
            ),
            // clinical.md §3.1: NEWS2 pulse >= 131 scores 3. Clear at <= 110, the
            // top of the band scoring 1.
            threshold(
                "threshold.hr.high",
                vec![check(Code::HeartRate, Comparison::Gt, vec![level(Severity::High, 130.0)], 110.0)],
                "clinical.md §3.1: NEWS2 pulse >= 131 scores 3",
            ),
            // clinical.md §3.1: NEWS2 pulse <= 40 scores 3. Clear at >= 51, the
            // bottom of the band scoring 0.
            threshold(
                "threshold.hr.low",
                vec![check(Code::HeartRate, Comparison::Le, vec![level(Severity::High, 40.0)], 51.0)],
                "clinical.md §3.1: NEWS2 pulse <= 40 scores 3",
            ),
        ],
        changes: Vec::new(),
        // clinical.md §3.2: bands low-medium (single 3), medium (5-6), high (>= 7).
        // Window and min_parameters are design choices (U): home readings are
        // rarely simultaneous and respiratory rate is rarely measured at home.
        news2: Some(News2Rule {
            id: "news2".to_owned(),
            window_minutes: 60,
            min_parameters: 4,
            low_medium: Severity::Medium,
            medium: Severity::High,
            high: Severity::Critical,
            source: "clinical.md §3: RCP NEWS2 (2017), charts 1 and 2".to_owned(),
        }),
        cadence: Vec::new(),
    }
}

/// The default rules of `program` for the given NEWS2 SpO2 scale.
pub fn defaults(program: Program, scale: Spo2Scale) -> RuleSet {
    let mut set = general(scale);
    match program {
        Program::General => {}
        Program::HeartFailure => {
            // clinical.md §4.1: ESC HFA "more than 2 kilos in 3 days". The window
            // gets 6 h of tolerance (U) so the daily reading 3 days earlier still
            // counts when today's is taken later in the day. Clear at <= 1.0 kg (U).
            set.changes.push(ChangeRule {
                id: "hf.weight_gain_3d".to_owned(),
                code: Code::BodyWeight,
                method: ChangeMethod::WindowChange { direction: Direction::Rise, window_hours: 72, tolerance_hours: 6 },
                op: Comparison::Gt,
                levels: vec![level(Severity::High, 2.0)],
                clear: 1.0,
                min_history: MinHistory { readings: 1, span_hours: 0 },
                source: "clinical.md §4.1: ESC HFA, weight increase by more than 2 kilos in 3 days".to_owned(),
            });
            // clinical.md §4.1: TEN-HMS rule of thumb, 3 lb (1.36 kg) in 1 day.
            // Clear at <= 0.5 kg (U).
            set.changes.push(ChangeRule {
                id: "hf.weight_gain_1d".to_owned(),
                code: Code::BodyWeight,
                method: ChangeMethod::WindowChange { direction: Direction::Rise, window_hours: 24, tolerance_hours: 6 },
                op: Comparison::Ge,
                levels: vec![level(Severity::Medium, 1.36)],
                clear: 0.5,
                min_history: MinHistory { readings: 1, span_hours: 0 },
                source: "clinical.md §4.1: TEN-HMS (Zhang 2009), 3 lb (1.36 kg) in 1 day".to_owned(),
            });
            // clinical.md §5.2: ICC, patient weight collected daily; the
            // non-transmission alert cannot be deactivated. 12 h grace (U).
            set.cadence.push(CadenceRule {
                id: "missing.body_weight".to_owned(),
                code: Code::BodyWeight,
                every_hours: 24,
                grace_hours: 12,
                severity: Severity::Medium,
                source: "clinical.md §5.2: ICC, daily weight, mandatory non-transmission alert".to_owned(),
            });
        }
        Program::Hypertension => {
            // Trend against the personal baseline: median SBP of the last 3 days
            // against the median of the 11 days before (14 days in all:
            // clinical.md §6.3, baselines of 14 stable days), gated by a
            // modified z-score >= 3.5 (§6.2, Iglewicz & Hoaglin). The +20 mmHg
            // level and the +10 mmHg clear are design choices (U), to be set by
            // the physician. Needs 10 baseline readings over 7 days (U).
            set.changes.push(ChangeRule {
                id: "bp.sbp_trend".to_owned(),
                code: Code::Systolic,
                method: ChangeMethod::Baseline {
                    direction: Direction::Rise,
                    recent_hours: 72,
                    baseline_hours: 264,
                    min_modified_z: Some(3.5),
                },
                op: Comparison::Ge,
                levels: vec![level(Severity::Medium, 20.0)],
                clear: 10.0,
                min_history: MinHistory { readings: 10, span_hours: 168 },
                source: "clinical.md §6.2-6.3: robust baseline (median/MAD, z 3.5), 14 days; +20 mmHg (U)".to_owned(),
            });
            // clinical.md §4.2: HBPM duplicate readings morning and evening
            // (Hypertension Canada, ESC 2024). Severity low and 12 h grace (U).
            set.cadence.push(CadenceRule {
                id: "missing.blood_pressure".to_owned(),
                code: Code::Systolic,
                every_hours: 12,
                grace_hours: 12,
                severity: Severity::Low,
                source: "clinical.md §4.2: HBPM readings morning and evening".to_owned(),
            });
        }
        Program::Copd => {
            // clinical.md §4.3: BTS, assessment "if the saturation falls by >= 3 %";
            // baseline = median of the previous 7 days (§6.1, Cooper: 7-day
            // rolling baseline). Needs 6 readings over 3 days (U); clear at a
            // drop <= 1 point (U).
            set.changes.push(ChangeRule {
                id: "copd.spo2_drop".to_owned(),
                code: Code::Spo2,
                method: ChangeMethod::Baseline {
                    direction: Direction::Drop,
                    recent_hours: 0,
                    baseline_hours: 168,
                    min_modified_z: None,
                },
                op: Comparison::Ge,
                levels: vec![level(Severity::Medium, 3.0)],
                clear: 1.0,
                min_history: MinHistory { readings: 6, span_hours: 72 },
                source: "clinical.md §4.3: BTS, fall by >= 3 %; §6.1 Cooper 7-day rolling baseline".to_owned(),
            });
            // clinical.md §5.2: oxygen therapy, SpO2 collected daily. 12 h grace,
            // severity low (U).
            set.cadence.push(CadenceRule {
                id: "missing.spo2".to_owned(),
                code: Code::Spo2,
                every_hours: 24,
                grace_hours: 12,
                severity: Severity::Low,
                source: "clinical.md §5.2: chronic respiratory failure, daily SpO2".to_owned(),
            });
        }
        Program::Diabetes => {
            // clinical.md §4.4: ADA hypoglycaemia level 1 < 70 mg/dL, level 2
            // < 54 mg/dL. Clear at >= 80 mg/dL, the bottom of the ADA
            // pre-prandial target 80-130 (§4.4).
            set.thresholds.push(threshold(
                "threshold.glucose.low",
                vec![check(
                    Code::BloodGlucose,
                    Comparison::Lt,
                    vec![level(Severity::Medium, 70.0), level(Severity::High, 54.0)],
                    80.0,
                )],
                "clinical.md §4.4: ADA hypoglycaemia level 1 < 70, level 2 < 54 mg/dL",
            ));
            // clinical.md §4.4: > 250 mg/dL (CGM level-2 hyperglycaemia boundary).
            // Clear at <= 180 mg/dL, the top of the time-in-range target (§4.4).
            set.thresholds.push(threshold(
                "threshold.glucose.high",
                vec![check(Code::BloodGlucose, Comparison::Gt, vec![level(Severity::Medium, 250.0)], 180.0)],
                "clinical.md §4.4: > 250 mg/dL (Battelino 2019 level-2 hyperglycaemia)",
            ));
            // clinical.md §5.2: capillary glucose 2-4 readings per day; the
            // non-transmission alert cannot be deactivated. 12 h grace (U).
            set.cadence.push(CadenceRule {
                id: "missing.blood_glucose".to_owned(),
                code: Code::BloodGlucose,
                every_hours: 12,
                grace_hours: 12,
                severity: Severity::Medium,
                source: "clinical.md §5.2: diabetes, 2-4 glucose readings a day, mandatory non-transmission alert"
                    .to_owned(),
            });
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate_set;

    #[test]
    fn every_default_set_is_valid() {
        for p in Program::ALL {
            for s in [Spo2Scale::Scale1, Spo2Scale::Scale2] {
                let set = defaults(p, s);
                validate_set(&set, p).unwrap_or_else(|e| panic!("{p:?} {s:?}: {e}"));
                for r in &set.thresholds {
                    assert!(r.source.contains("clinical.md"), "{} has no source", r.id);
                }
                for r in &set.changes {
                    assert!(r.source.contains("clinical.md"), "{} has no source", r.id);
                }
            }
        }
    }
}
