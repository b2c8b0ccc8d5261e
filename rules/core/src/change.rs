//! Change against the patient's own recent past: window change (weight gain in
//! 3 days), robust baseline (median/MAD: SpO2 drop, blood-pressure trend) and
//! window mean.

use crate::baseline::{Samples, modified_z};
use crate::compiled::{Ctx, Finding, HOUR_US, Verdict, confirm, level_of};
use crate::config::{ChangeMethod, ChangeRule, Direction};

fn hours(h: u32) -> i64 {
    i64::from(h).saturating_mul(HOUR_US)
}

/// The compared quantity of a change rule at `ctx.t_us`: (amount, baseline,
/// current value, may_trigger). `None` when there is not enough history.
pub(crate) fn measure(rule: &ChangeRule, ctx: &Ctx<'_>) -> Option<(f64, Option<f64>, f64, bool)> {
    let t = ctx.t_us;
    let current = ctx.hist.at(rule.code, t)?.value;
    let enough = |count: usize, oldest: Option<i64>| {
        count >= usize::from(rule.min_history.readings)
            && oldest.is_some_and(|o| t.saturating_sub(o) >= hours(rule.min_history.span_hours))
    };
    match rule.method {
        ChangeMethod::WindowChange { direction, window_hours, tolerance_hours } => {
            let from = ctx.back(hours(window_hours).saturating_add(hours(tolerance_hours)));
            let (mut n, mut oldest, mut lo, mut hi) = (0usize, None, f64::INFINITY, f64::NEG_INFINITY);
            for r in ctx.hist.readings(rule.code, from, t.saturating_sub(1)) {
                n += 1;
                oldest = oldest.or(Some(r.t_us));
                lo = lo.min(r.value);
                hi = hi.max(r.value);
            }
            if !enough(n, oldest) {
                return None;
            }
            Some(match direction {
                Direction::Rise => (current - lo, Some(lo), current, true),
                Direction::Drop => (hi - current, Some(hi), current, true),
            })
        }
        ChangeMethod::Baseline { direction, recent_hours, baseline_hours, min_modified_z } => {
            let (recent_from, base_to) = if recent_hours == 0 {
                (t, t.saturating_sub(1))
            } else {
                let edge = t.saturating_sub(hours(recent_hours));
                (edge.saturating_add(1), edge)
            };
            let base_from = ctx.back(hours(recent_hours).saturating_add(hours(baseline_hours)));
            let mut base = Samples::default();
            let mut oldest = None;
            for r in ctx.hist.readings(rule.code, base_from, base_to) {
                oldest = oldest.or(Some(r.t_us));
                base.push(r.value);
            }
            if !enough(base.len(), oldest) {
                return None;
            }
            let mut recent = Samples::default();
            for r in ctx.hist.readings(rule.code, recent_from.max(ctx.floor_us), t) {
                recent.push(r.value);
            }
            let recent_med = recent.median()?;
            let (base_med, mad) = base.median_mad()?;
            let amount = match direction {
                Direction::Rise => recent_med - base_med,
                Direction::Drop => base_med - recent_med,
            };
            let may_trigger = min_modified_z.is_none_or(|z| modified_z(amount, mad) >= z);
            Some((amount, Some(base_med), current, may_trigger))
        }
        ChangeMethod::SameTimeOfDay { direction, days, tolerance_hours } => {
            let tol = hours(tolerance_hours);
            let mut recent = Samples::default();
            for r in ctx.hist.readings(rule.code, t.saturating_sub(tol).saturating_add(1).max(ctx.floor_us), t) {
                recent.push(r.value);
            }
            // The reference is the lowest (rise) or highest (drop) reading
            // around the same time of day 1, 2, ... `days` days earlier ("in
            // 3 days" is any span up to 3 days): an extra weighing after
            // breakfast then never hides a real gain.
            let (mut lo, mut hi, mut count) = (f64::INFINITY, f64::NEG_INFINITY, 0usize);
            let mut ref_from = t;
            for d in 1..=days {
                let centre = t.saturating_sub(hours(d.saturating_mul(24)));
                let (from, to) = (centre.saturating_sub(tol).max(ctx.floor_us), centre.saturating_add(tol));
                ref_from = ref_from.min(from);
                for r in ctx.hist.readings(rule.code, from, to.min(t.saturating_sub(tol))) {
                    lo = lo.min(r.value);
                    hi = hi.max(r.value);
                    count += 1;
                }
            }
            let (mut n, mut oldest) = (0usize, None);
            for r in ctx.hist.readings(rule.code, ref_from, t) {
                n += 1;
                oldest = oldest.or(Some(r.t_us));
            }
            if count == 0 || !enough(n, oldest) {
                return None;
            }
            let now_med = recent.median()?;
            Some(match direction {
                Direction::Rise => (now_med - lo, Some(lo), current, true),
                Direction::Drop => (hi - now_med, Some(hi), current, true),
            })
        }
        ChangeMethod::WindowMean { window_hours } => {
            let from = ctx.back(hours(window_hours));
            let mut s = Samples::default();
            let mut oldest = None;
            for r in ctx.hist.readings(rule.code, from, t) {
                oldest = oldest.or(Some(r.t_us));
                s.push(r.value);
            }
            if !enough(s.len(), oldest) {
                return None;
            }
            Some((s.mean()?, None, current, true))
        }
    }
}

/// Evaluates a change rule at `ctx.t_us`.
pub(crate) fn evaluate(rule: &ChangeRule, ctx: &Ctx<'_>) -> Verdict {
    let Some((amount, baseline, current, may_trigger)) = measure(rule, ctx) else {
        return Verdict::NoChange;
    };
    let finding = |severity, threshold| Finding {
        severity,
        code: Some(rule.code),
        amount,
        reading: Some(current),
        threshold,
        baseline,
        op: rule.op,
    };
    if may_trigger && let Some((severity, trigger)) = level_of(rule.op, &rule.levels, amount) {
        let f = finding(severity, trigger);
        return match rule.confirm {
            Some(c) => confirm(c, f, rule.code, ctx, |p| {
                let (amount, _, _, may) = measure(rule, &Ctx { t_us: p.t_us, ..*ctx })?;
                if may { level_of(rule.op, &rule.levels, amount) } else { None }
            }),
            None => Verdict::Trigger(f),
        };
    }
    if rule.op.cleared(amount, rule.clear) {
        let lowest = rule.levels.first().map_or(crate::config::Severity::Info, |l| l.severity);
        return Verdict::Clear(finding(lowest, rule.clear));
    }
    if rule.confirm.is_some() { Verdict::Normal } else { Verdict::NoChange }
}
