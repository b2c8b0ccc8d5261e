//! Absolute threshold rules, with severities, hysteresis and persistence.

use crate::compiled::{Ctx, Finding, MINUTE_US, Verdict, confirm, level_of};
use crate::config::{Persistence, ThresholdCheck, ThresholdRule};

fn breach(check: &ThresholdCheck, value: f64) -> Option<(crate::config::Severity, f64)> {
    level_of(check.op, &check.levels, value)
}

/// Evaluates `rule` at the reading time `ctx.t_us`.
///
/// * Trigger: some check breaches (the highest severity wins), and the
///   persistence requirement holds on the breaching code's readings.
/// * Clear: every check's code has a reading at this exact time (a complete
///   reading: systolic *and* diastolic) and each is on the normal side of its
///   clear threshold.
/// * Otherwise no change (hysteresis band, incomplete reading, not sustained).
pub(crate) fn evaluate(rule: &ThresholdRule, ctx: &Ctx<'_>) -> Verdict {
    let mut best: Option<(Finding, &ThresholdCheck)> = None;
    let mut complete = true;
    let mut all_clear = true;
    let mut first_value: Option<(f64, f64, &ThresholdCheck)> = None;
    for check in &rule.checks {
        let Some(r) = ctx.hist.at(check.code, ctx.t_us) else {
            complete = false;
            continue;
        };
        if first_value.is_none() {
            first_value = Some((r.value, check.clear, check));
        }
        if let Some((severity, trigger)) = breach(check, r.value)
            && best.as_ref().is_none_or(|(f, _)| severity > f.severity)
        {
            let f = Finding {
                severity,
                code: Some(check.code),
                amount: r.value,
                reading: Some(r.value),
                threshold: trigger,
                baseline: None,
                op: check.op,
            };
            best = Some((f, check));
        }
        if !check.op.cleared(r.value, check.clear) {
            all_clear = false;
        }
    }
    if let Some((f, check)) = best {
        if rule.persistence == Persistence::Immediate {
            return Verdict::Trigger(f);
        }
        if let Persistence::Confirmed(c) = rule.persistence {
            return confirm(c, f, check.code, ctx, |r| breach(check, r.value));
        }
        return match sustained(rule.persistence, check, ctx) {
            Some((severity, _)) if severity >= f.severity => Verdict::Trigger(f),
            Some((severity, trigger)) => Verdict::Trigger(Finding { severity, threshold: trigger, ..f }),
            None => Verdict::NoChange,
        };
    }
    match first_value {
        Some((value, clear, check)) if complete && all_clear => Verdict::Clear(Finding {
            severity: check.levels.first().map_or(crate::config::Severity::Info, |l| l.severity),
            code: Some(check.code),
            amount: value,
            reading: Some(value),
            threshold: clear,
            baseline: None,
            op: check.op,
        }),
        Some(_) => Verdict::Normal,
        None => Verdict::NoChange,
    }
}

/// The severity the persistence requirement supports (the lowest level along
/// the required streak), or `None` when the breach is not sustained yet.
fn sustained(p: Persistence, check: &ThresholdCheck, ctx: &Ctx<'_>) -> Option<(crate::config::Severity, f64)> {
    let mut streak = ctx.hist.readings(check.code, ctx.floor_us, ctx.t_us).rev();
    match p {
        Persistence::Immediate | Persistence::Confirmed(_) => {
            let r = streak.next()?;
            breach(check, r.value)
        }
        Persistence::Consecutive { readings } => {
            let mut min: Option<(crate::config::Severity, f64)> = None;
            for _ in 0..readings {
                let r = streak.next()?;
                let lvl = breach(check, r.value)?;
                if min.is_none_or(|m| lvl.0 < m.0) {
                    min = Some(lvl);
                }
            }
            min
        }
        Persistence::Sustained { minutes } => {
            let need = i64::from(minutes).saturating_mul(MINUTE_US);
            let mut min: Option<(crate::config::Severity, f64)> = None;
            for r in streak {
                let lvl = breach(check, r.value)?;
                if min.is_none_or(|m| lvl.0 < m.0) {
                    min = Some(lvl);
                }
                if ctx.t_us.saturating_sub(r.t_us) >= need {
                    return min;
                }
            }
            None
        }
    }
}
