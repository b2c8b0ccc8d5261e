//! Default rules of each care program, with the source of every number.
//!
//! These are *default candidates* (clinical.md §4 preamble): French rules
//! require the physician to set thresholds per patient (§5), and every default
//! here must be validated by the clinical lead. Numbers marked "(U)" have no
//! source: they are design choices (mostly hysteresis clear thresholds and
//! severities) documented as such.

use vitalwatch_schemas::Code;

use crate::config::{
    CadenceRule, ChangeMethod, ChangeRule, Comparison, Confirmation, Direction, Level, MinHistory, News2Rule,
    Persistence, Program, RuleSet, Severity, Spo2Scale, ThresholdCheck, ThresholdRule,
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

/// Confirmation window of single spot-check readings (U, design choice):
/// home oximeters read ±2–3 %, glucometers ±15 % (issue #14 §5), so one
/// out-of-range non-critical reading waits for the next reading of the same
/// vital: a re-measurement minutes later (AHA home BP advice "wait 5 minutes
/// and retest", clinical.md §4.2) or the next routine one. Home spot checks
/// are at least daily (clinical.md §5.2), so 30 h (a day's routine plus 6 h
/// of drift) sees the next one; if none comes, the tick reports the single
/// reading (fail-safe). Critical levels never wait.
pub const CONFIRM_MINUTES: u32 = 30 * 60;

/// A threshold rule whose non-critical levels need a second reading (or the
/// end of the confirmation window) before anyone is notified.
fn confirmed(id: &str, checks: Vec<ThresholdCheck>, source: &str) -> ThresholdRule {
    ThresholdRule {
        persistence: Persistence::Confirmed(Confirmation {
            within_minutes: CONFIRM_MINUTES,
            immediate_from: Severity::Critical,
        }),
        ..threshold(id, checks, source)
    }
}

/// The safety-net rules every program includes.
///
/// Severities follow the delivery they need (docs/clinical-rules.md):
/// CRITICAL pages at once, day and night, without confirmation; HIGH reaches
/// the physician at night too (quiet hours hold only MEDIUM and below by
/// default) but, for single noisy spot checks, after confirmation; MEDIUM and
/// LOW wait for the day.
fn general(scale: Spo2Scale, oxygen: bool) -> RuleSet {
    let mut thresholds = match scale {
        // clinical.md §3.1: NEWS2 scale 1, SpO2 <= 91 % scores 3 (a "red"
        // single parameter, §3.2: urgent ward-based response). It also covers
        // the Cooper 2020 RPM threshold < 90 % (§4.3). Clear at >= 94 %, the
        // bottom of the BTS 94-98 % target range (§4.3).
        Spo2Scale::Scale1 => vec![confirmed(
            "threshold.spo2.low",
            vec![check(Code::Spo2, Comparison::Le, vec![level(Severity::High, 91.0)], 94.0)],
            "clinical.md §3.1: NEWS2 scale 1 SpO2 <= 91 % scores 3; §4.3 Cooper 2020 < 90 %",
        )],
        // clinical.md §4.3: BTS, assessment when saturation falls "below the
        // target range for the patient" (88-92 % on scale 2): < 88 % medium;
        // §3.1 NEWS2 scale 2, <= 83 % scores 3: high. Clear at >= 88 % (the
        // bottom of the target range).
        Spo2Scale::Scale2 => vec![confirmed(
            "threshold.spo2.low",
            vec![check(
                Code::Spo2,
                Comparison::Lt,
                vec![level(Severity::Medium, 88.0), level(Severity::High, 84.0)],
                88.0,
            )],
            "clinical.md §4.3: BTS, below the 88-92 % target (scale 2); §3.1 NEWS2 scale 2 <= 83 % scores 3",
        )],
    };
    if scale == Spo2Scale::Scale2 && oxygen {
        // clinical.md §3.1: NEWS2 scale 2 on oxygen, >= 97 % scores 3 (risk of
        // hypercapnia from over-oxygenation; BTS 88-92 % target, §4.3). Clear
        // at <= 92 %, the top of the target range.
        thresholds.push(confirmed(
            "threshold.spo2.high_on_oxygen",
            vec![check(Code::Spo2, Comparison::Ge, vec![level(Severity::High, 97.0)], 92.0)],
            "clinical.md §3.1: NEWS2 scale 2 on oxygen, SpO2 >= 97 % scores 3",
        ));
    }
    thresholds.extend([
        // ESC/ESH: hypertensive emergency/crisis at BP >= 180 and/or >= 120
        // mmHg; the AHA table (clinical.md §4.2) writes "> 180 / > 120" but
        // AHA-derived materials write "180 or higher" — inclusive is the safer
        // reading and 180/120 itself must alert (issue #14 §4). Critical:
        // pages at once. Clear at < 160/100, below ESC grade 2 (§4.2).
        threshold(
            "threshold.bp.crisis",
            vec![
                check(Code::Systolic, Comparison::Ge, vec![level(Severity::Critical, 180.0)], 159.0),
                check(Code::Diastolic, Comparison::Ge, vec![level(Severity::Critical, 120.0)], 99.0),
            ],
            "ESC/ESH hypertensive crisis SBP >= 180 and/or DBP >= 120 mmHg; clinical.md §4.2 (AHA 180/120)",
        ),
        // clinical.md §3.1: NEWS2 systolic <= 90 scores 3. Clear at >= 101,
        // out of the band scoring 2 (U).
        confirmed(
            "threshold.sbp.low",
            vec![check(Code::Systolic, Comparison::Le, vec![level(Severity::High, 90.0)], 101.0)],
            "clinical.md §3.1: NEWS2 systolic <= 90 mmHg scores 3",
        ),
        // clinical.md §4.5: fever >= 38.0 °C (CDC usage, S); NEWS2 scores 2
        // from 39.1 °C (§3.1), used for the high level. Clear at <= 37.5 °C (U).
        confirmed(
            "threshold.temperature.fever",
            vec![check(
                Code::BodyTemperature,
                Comparison::Ge,
                vec![level(Severity::Medium, 38.0), level(Severity::High, 39.1)],
                37.5,
            )],
            "clinical.md §4.5: fever >= 38.0 °C; §3.1 NEWS2 >= 39.1 °C scores 2",
        ),
        // clinical.md §3.1: NEWS2 temperature <= 35.0 °C scores 3. Clear at
        // >= 36.1 °C, the band scoring 0.
        confirmed(
            "threshold.temperature.low",
            vec![check(Code::BodyTemperature, Comparison::Le, vec![level(Severity::High, 35.0)], 36.1)],
            "clinical.md §3.1: NEWS2 temperature <= 35.0 °C scores 3",
        ),
        // clinical.md §3.1: NEWS2 pulse >= 131 scores 3. Clear at <= 110, the
        // top of the band scoring 1.
        confirmed(
            "threshold.hr.high",
            vec![check(Code::HeartRate, Comparison::Ge, vec![level(Severity::High, 131.0)], 110.0)],
            "clinical.md §3.1: NEWS2 pulse >= 131 scores 3",
        ),
        // clinical.md §3.1: NEWS2 pulse <= 40 scores 3. Clear at >= 51, the
        // bottom of the band scoring 0.
        confirmed(
            "threshold.hr.low",
            vec![check(Code::HeartRate, Comparison::Le, vec![level(Severity::High, 40.0)], 51.0)],
            "clinical.md §3.1: NEWS2 pulse <= 40 scores 3",
        ),
        // clinical.md §3.1: NEWS2 respiration rate <= 8 scores 3. Clear at
        // >= 12, the band scoring 0.
        confirmed(
            "threshold.rr.low",
            vec![check(Code::RespiratoryRate, Comparison::Le, vec![level(Severity::High, 8.0)], 12.0)],
            "clinical.md §3.1: NEWS2 respiration rate <= 8 /min scores 3",
        ),
        // clinical.md §3.1: NEWS2 respiration rate >= 25 scores 3. Clear at
        // <= 20, the band scoring 0.
        confirmed(
            "threshold.rr.high",
            vec![check(Code::RespiratoryRate, Comparison::Ge, vec![level(Severity::High, 25.0)], 20.0)],
            "clinical.md §3.1: NEWS2 respiration rate >= 25 /min scores 3",
        ),
    ]);
    RuleSet {
        thresholds,
        changes: Vec::new(),
        // clinical.md §3.2: bands low-medium (a single 3), medium (5-6, "key
        // threshold for urgent response"), high (>= 7, "urgent or emergency
        // response"). Medium is HIGH (reaches the physician at night), high
        // is CRITICAL. A single 3 is INFO here (digest): the single-parameter
        // rules above report it, confirmed, at HIGH.
        // Window (U): NEWS2 scores one set of observations taken together
        // (RCP Chart 1 is filled per observation round). At home a round of
        // cuff, oximeter, thermometer and a counted respiratory rate takes
        // minutes; 30 min keeps readings of one sitting together and never
        // mixes a morning SpO2 with an afternoon pressure. 4 of the 5
        // measurable parameters (respiratory rate is often not counted).
        news2: Some(News2Rule {
            id: "news2".to_owned(),
            window_minutes: 30,
            min_parameters: 4,
            low_medium: Severity::Info,
            medium: Severity::High,
            high: Severity::Critical,
            source: "clinical.md §3: RCP NEWS2 (2017), charts 1 and 2".to_owned(),
        }),
        cadence: Vec::new(),
    }
}

/// The default rules of `program` for the given NEWS2 SpO2 scale and oxygen
/// use.
pub fn defaults(program: Program, scale: Spo2Scale, oxygen: bool) -> RuleSet {
    let mut set = general(scale, oxygen);
    match program {
        Program::General => {}
        Program::HeartFailure => {
            // clinical.md §4.1: ESC HFA "more than 2 kilos in 3 days". Like
            // with like (issue #14 §5): the median of the weights of the last
            // 4 h against the median of those within ± 4 h of the same time
            // of day 1, 2 or 3 days earlier ("in 3 days": any span up to 3
            // days; U: 4 h covers a morning routine that drifts; an evening
            // weight, ~0.5-1 kg above the morning one, is compared with
            // evening weights). Needs a weight at least 20 h before (U).
            // HIGH: a decompensation sign the physician wants the same day,
            // night included (ESC: "tell your doctor"). Clear at <= 1.0 kg (U).
            set.changes.push(ChangeRule {
                id: "hf.weight_gain_3d".to_owned(),
                code: Code::BodyWeight,
                method: ChangeMethod::SameTimeOfDay { direction: Direction::Rise, days: 3, tolerance_hours: 4 },
                op: Comparison::Gt,
                levels: vec![level(Severity::High, 2.0)],
                clear: 1.0,
                min_history: MinHistory { readings: 2, span_hours: 20 },
                confirm: None,
                group: Some("hf.weight_gain".to_owned()),
                source: "clinical.md §4.1: ESC HFA, weight increase by more than 2 kilos in 3 days".to_owned(),
            });
            // clinical.md §4.1: "5 lb in 1 week" (Allina, UW Health; NCIC
            // "more than 5lbs in a week", S): > 2.27 kg in 7 days, same time
            // of day. Catches a steady gain of ~0.5 kg a day that never
            // exceeds 2 kg in 3 days on the scale's 0.1 kg readings. HIGH
            // (decompensation sign). Needs 3 weights over 2 days (U). Clear
            // at <= 1.0 kg (U).
            set.changes.push(ChangeRule {
                id: "hf.weight_gain_7d".to_owned(),
                code: Code::BodyWeight,
                method: ChangeMethod::SameTimeOfDay { direction: Direction::Rise, days: 7, tolerance_hours: 4 },
                op: Comparison::Gt,
                levels: vec![level(Severity::High, 2.27)],
                clear: 1.0,
                min_history: MinHistory { readings: 3, span_hours: 44 },
                confirm: None,
                group: Some("hf.weight_gain".to_owned()),
                source: "clinical.md §4.1: 5 lb (2.27 kg) in 1 week (Allina, UW Health, NCIC)".to_owned(),
            });
            // clinical.md §4.1: TEN-HMS rule of thumb, 3 lb (1.36 kg) in 1 day,
            // same time of day (see above). Needs 2 weights a day apart (U).
            // Clear at <= 0.5 kg (U).
            set.changes.push(ChangeRule {
                id: "hf.weight_gain_1d".to_owned(),
                code: Code::BodyWeight,
                method: ChangeMethod::SameTimeOfDay { direction: Direction::Rise, days: 1, tolerance_hours: 4 },
                op: Comparison::Ge,
                levels: vec![level(Severity::Medium, 1.36)],
                clear: 0.5,
                min_history: MinHistory { readings: 2, span_hours: 20 },
                confirm: None,
                group: Some("hf.weight_gain".to_owned()),
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
                confirm: None,
                group: None,
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
            // drop <= 1 point (U). One reading is not a fall (issue #14 §5:
            // oximeters read ±2-3 %): it needs the next reading within the
            // confirmation window to show the fall too, or nobody to
            // re-measure.
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
                confirm: Some(Confirmation { within_minutes: CONFIRM_MINUTES, immediate_from: Severity::Critical }),
                group: None,
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
            // clinical.md §4.4: ADA hypoglycaemia level 1 < 70 mg/dL (medium,
            // confirmed: glucometers read ±15 %), level 2 < 54 mg/dL
            // ("clinically significant", CRITICAL: pages at once, night
            // included). Clear at >= 80 mg/dL, the bottom of the ADA
            // pre-prandial target 80-130 (§4.4).
            set.thresholds.push(confirmed(
                "threshold.glucose.low",
                vec![check(
                    Code::BloodGlucose,
                    Comparison::Lt,
                    vec![level(Severity::Medium, 70.0), level(Severity::Critical, 54.0)],
                    80.0,
                )],
                "clinical.md §4.4: ADA hypoglycaemia level 1 < 70, level 2 < 54 mg/dL",
            ));
            // clinical.md §4.4: > 250 mg/dL (CGM level-2 hyperglycaemia boundary).
            // Clear at <= 180 mg/dL, the top of the time-in-range target (§4.4).
            set.thresholds.push(confirmed(
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
            for (s, o) in [(Spo2Scale::Scale1, false), (Spo2Scale::Scale2, false), (Spo2Scale::Scale2, true)] {
                let set = defaults(p, s, o);
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
