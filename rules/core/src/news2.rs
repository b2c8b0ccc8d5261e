//! NEWS2 scoring (Royal College of Physicians, 2017; clinical.md §3).
//!
//! NEWS2 was designed for acute adult hospital care; using it on home readings
//! is an extrapolation (clinical.md §3). Home readings carry no level of
//! consciousness and no "air or oxygen": the engine assumes **alert and on
//! air** unless the physician configured otherwise
//! ([`crate::News2Assumptions`]). Parameters that were not measured score 0,
//! so a partial score can only under-estimate the real one.
//!
//! # Rounding rule for non-integer values
//!
//! The chart's bands are integers for respiratory rate, SpO2, systolic BP and
//! pulse, and tenths of a degree for temperature (clinical.md §3.1, boundary
//! note). Values are first rounded to the chart's resolution, to the nearest
//! integer (respectively tenth), halves away from zero ([`f64::round`] on the
//! binary value), then banded: a respiratory rate of 8.4 scores as 8, 8.5 as 9;
//! a temperature of 38.04 °C scores as 38.0, 38.06 °C as 38.1. Non-finite
//! values are treated as not measured.

use serde::{Deserialize, Serialize};

use crate::config::{Consciousness, Spo2Scale};

/// The inputs of one NEWS2 computation. `None` = not measured (scores 0).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct News2Inputs {
    /// Respiratory rate, /min.
    pub respiratory_rate: Option<f64>,
    /// SpO2, %.
    pub spo2: Option<f64>,
    /// Which SpO2 scale applies.
    pub scale: Spo2Scale,
    /// On supplemental oxygen (scores 2; changes scale 2 scoring).
    pub supplemental_oxygen: bool,
    /// Systolic blood pressure, mm\[Hg\].
    pub systolic: Option<f64>,
    /// Pulse, /min.
    pub pulse: Option<f64>,
    /// Level of consciousness.
    pub consciousness: Consciousness,
    /// Temperature, Cel.
    pub temperature: Option<f64>,
}

/// Clinical risk band (clinical.md §3.2, RCP chart 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum News2Band {
    /// Aggregate 0–4 and no single parameter scoring 3.
    Low,
    /// A single parameter scoring 3 (aggregate below 5).
    LowMedium,
    /// Aggregate 5–6.
    Medium,
    /// Aggregate 7 or more.
    High,
}

impl News2Band {
    /// Lower-case name with a hyphen (`low`, `low-medium`, `medium`, `high`).
    pub fn as_str(self) -> &'static str {
        match self {
            News2Band::Low => "low",
            News2Band::LowMedium => "low-medium",
            News2Band::Medium => "medium",
            News2Band::High => "high",
        }
    }
}

/// A NEWS2 result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct News2 {
    /// Aggregate score, 0–20.
    pub total: u8,
    /// Some parameter scored 3 (a "red score").
    pub any_single_3: bool,
    /// The risk band.
    pub band: News2Band,
    /// How many of the five measured parameters were available.
    pub measured: u8,
}

fn round_int(x: f64) -> i64 {
    // The cast saturates for huge values; callers only pass finite values.
    x.round() as i64
}

/// Respiratory rate: ≤8 → 3; 9–11 → 1; 12–20 → 0; 21–24 → 2; ≥25 → 3 (§3.1).
pub fn score_respiratory_rate(rr: f64) -> u8 {
    match round_int(rr) {
        i64::MIN..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        _ => 3,
    }
}

/// SpO2 (§3.1). Scale 1: ≤91 → 3; 92–93 → 2; 94–95 → 1; ≥96 → 0.
/// Scale 2: ≤83 → 3; 84–85 → 2; 86–87 → 1; 88–92 → 0; ≥93 on air → 0;
/// 93–94 on oxygen → 1; 95–96 on oxygen → 2; ≥97 on oxygen → 3.
pub fn score_spo2(spo2: f64, scale: Spo2Scale, supplemental_oxygen: bool) -> u8 {
    let v = round_int(spo2);
    match scale {
        Spo2Scale::Scale1 => match v {
            i64::MIN..=91 => 3,
            92..=93 => 2,
            94..=95 => 1,
            _ => 0,
        },
        Spo2Scale::Scale2 => match v {
            i64::MIN..=83 => 3,
            84..=85 => 2,
            86..=87 => 1,
            88..=92 => 0,
            _ if !supplemental_oxygen => 0,
            93..=94 => 1,
            95..=96 => 2,
            _ => 3,
        },
    }
}

/// Systolic BP: ≤90 → 3; 91–100 → 2; 101–110 → 1; 111–219 → 0; ≥220 → 3 (§3.1).
pub fn score_systolic(sbp: f64) -> u8 {
    match round_int(sbp) {
        i64::MIN..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        _ => 3,
    }
}

/// Pulse: ≤40 → 3; 41–50 → 1; 51–90 → 0; 91–110 → 1; 111–130 → 2; ≥131 → 3 (§3.1).
pub fn score_pulse(pulse: f64) -> u8 {
    match round_int(pulse) {
        i64::MIN..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        _ => 3,
    }
}

/// Temperature: ≤35.0 → 3; 35.1–36.0 → 1; 36.1–38.0 → 0; 38.1–39.0 → 1;
/// ≥39.1 → 2 (§3.1). Compared in tenths of a degree after rounding.
pub fn score_temperature(celsius: f64) -> u8 {
    match round_int(celsius * 10.0) {
        i64::MIN..=350 => 3,
        351..=360 => 1,
        361..=380 => 0,
        381..=390 => 1,
        _ => 2,
    }
}

/// Air → 0, supplemental oxygen → 2 (§3.1).
pub fn score_oxygen(supplemental_oxygen: bool) -> u8 {
    if supplemental_oxygen { 2 } else { 0 }
}

/// Alert → 0; new confusion, voice, pain or unresponsive → 3 (§3.1).
pub fn score_consciousness(c: Consciousness) -> u8 {
    if c == Consciousness::Alert { 0 } else { 3 }
}

/// The aggregate band: ≥7 high; 5–6 medium; a single 3 low–medium; else low
/// (§3.2).
pub fn band(total: u8, any_single_3: bool) -> News2Band {
    if total >= 7 {
        News2Band::High
    } else if total >= 5 {
        News2Band::Medium
    } else if any_single_3 {
        News2Band::LowMedium
    } else {
        News2Band::Low
    }
}

/// Computes NEWS2. Unmeasured or non-finite parameters score 0.
///
/// ```
/// use vitalwatch_rules_core::news2::{news2_score, News2Band, News2Inputs};
/// let n = news2_score(&News2Inputs { spo2: Some(91.0), pulse: Some(95.0), ..Default::default() });
/// assert_eq!((n.total, n.any_single_3, n.band), (4, true, News2Band::LowMedium));
/// ```
pub fn news2_score(i: &News2Inputs) -> News2 {
    let measured = |v: Option<f64>| v.filter(|x| x.is_finite());
    let parts = [
        measured(i.respiratory_rate).map(score_respiratory_rate),
        measured(i.spo2).map(|v| score_spo2(v, i.scale, i.supplemental_oxygen)),
        measured(i.systolic).map(score_systolic),
        measured(i.pulse).map(score_pulse),
        measured(i.temperature).map(score_temperature),
    ];
    let fixed = [score_oxygen(i.supplemental_oxygen), score_consciousness(i.consciousness)];
    let mut total = 0u8;
    let mut any3 = false;
    let mut count = 0u8;
    for s in parts.iter().flatten() {
        total += s;
        any3 |= *s == 3;
        count += 1;
    }
    for s in fixed {
        total += s;
        any3 |= s == 3;
    }
    News2 { total, any_single_3: any3, band: band(total, any3), measured: count }
}

/// The latest reading of each NEWS2 parameter within the rule's window before
/// (and at) `ctx.t_us`, in [`crate::compiled::NEWS2_CODES`] order.
pub(crate) fn parameters(
    rule: &crate::config::News2Rule,
    ctx: &crate::compiled::Ctx<'_>,
) -> [Option<crate::history::Reading>; 5] {
    let from = ctx.back(i64::from(rule.window_minutes).saturating_mul(crate::compiled::MINUTE_US));
    let all = ctx.hist.latest_each(from, ctx.t_us);
    crate::compiled::NEWS2_CODES.map(|c| all.get(c.index()).copied().flatten())
}

/// Evaluates the NEWS2 rule at `ctx.t_us`: triggers in the low–medium, medium
/// and high bands, clears in the low band, and does nothing when fewer than
/// `min_parameters` parameters were measured within the window.
pub(crate) fn evaluate_rule(
    rule: &crate::config::News2Rule,
    ctx: &crate::compiled::Ctx<'_>,
    scale: Spo2Scale,
    assumptions: crate::config::News2Assumptions,
) -> crate::compiled::Verdict {
    use crate::compiled::{Finding, Verdict};
    let [rr, spo2, sbp, pulse, temp] = parameters(rule, ctx);
    let v = |r: Option<crate::history::Reading>| r.map(|r| r.value);
    let n = news2_score(&News2Inputs {
        respiratory_rate: v(rr),
        spo2: v(spo2),
        scale,
        supplemental_oxygen: assumptions.supplemental_oxygen,
        systolic: v(sbp),
        pulse: v(pulse),
        consciousness: assumptions.consciousness,
        temperature: v(temp),
    });
    if n.measured < rule.min_parameters {
        // The components that made the score have aged out of the window and
        // no new set was measured (issue #14 §3): the score is no longer
        // computable, so an episode opened from it resolves, unless a
        // parameter measured now still scores 3 (the single-parameter rules
        // report that one). `reading` carries the number of parameters.
        if n.any_single_3 {
            return Verdict::NoChange;
        }
        return Verdict::Clear(Finding {
            severity: rule.low_medium,
            code: None,
            amount: f64::from(n.total),
            reading: Some(f64::from(n.measured)),
            threshold: 4.0,
            baseline: None,
            op: crate::config::Comparison::Ge,
        });
    }
    let finding = |severity, threshold| Finding {
        severity,
        code: None,
        amount: f64::from(n.total),
        reading: None,
        threshold,
        baseline: None,
        op: crate::config::Comparison::Ge,
    };
    match n.band {
        News2Band::Low => Verdict::Clear(finding(rule.low_medium, 4.0)),
        News2Band::LowMedium => Verdict::Trigger(finding(rule.low_medium, 3.0)),
        News2Band::Medium => Verdict::Trigger(finding(rule.medium, 5.0)),
        News2Band::High => Verdict::Trigger(finding(rule.high, 7.0)),
    }
}
