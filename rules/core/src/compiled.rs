//! Rules compiled for the hot path: the effective [`RuleSet`] flattened into one
//! indexed list, with per-code lists of the rules a reading of that code must
//! run. Shared between patients through an `Arc` when they use the program
//! defaults unchanged.

use vitalwatch_schemas::Code;

use crate::config::{
    CadenceRule, ChangeMethod, ChangeRule, Comparison, Confirmation, News2Assumptions, News2Rule, PatientRules,
    Persistence, Program, RuleSet, Severity, Spo2Scale, ThresholdRule,
};
use crate::error::ConfigError;

/// The codes NEWS2 uses (respiratory rate, SpO2, systolic BP, pulse, temperature).
pub(crate) const NEWS2_CODES: [Code; 5] =
    [Code::RespiratoryRate, Code::Spo2, Code::Systolic, Code::HeartRate, Code::BodyTemperature];

/// One compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Threshold(ThresholdRule),
    Change(ChangeRule),
    News2(News2Rule),
    Cadence(CadenceRule),
}

impl Body {
    pub(crate) fn id(&self) -> &str {
        match self {
            Body::Threshold(r) => &r.id,
            Body::Change(r) => &r.id,
            Body::News2(r) => &r.id,
            Body::Cadence(r) => &r.id,
        }
    }

    /// The `rule_kind` of alert events (proto: threshold, baseline, trend,
    /// news2, missing, device_silent).
    pub(crate) fn kind_label(&self, device_silent: bool) -> &'static str {
        match self {
            Body::Threshold(_) => "threshold",
            Body::Change(c) => match c.method {
                ChangeMethod::Baseline { .. } => "baseline",
                ChangeMethod::WindowChange { .. }
                | ChangeMethod::WindowMean { .. }
                | ChangeMethod::SameTimeOfDay { .. } => "trend",
            },
            Body::News2(_) => "news2",
            Body::Cadence(_) if device_silent => "device_silent",
            Body::Cadence(_) => "missing",
        }
    }

    /// The confirmation window of the rule, µs (0: the rule opens on the
    /// first reading).
    pub(crate) fn confirm_window_us(&self) -> i64 {
        let c = match self {
            Body::Threshold(r) => r.persistence.confirmation(),
            Body::Change(r) => r.confirm,
            Body::News2(_) | Body::Cadence(_) => None,
        };
        c.map_or(0, |c| i64::from(c.within_minutes).saturating_mul(MINUTE_US))
    }

    /// The rule's group (see [`ChangeRule::group`]).
    pub(crate) fn group(&self) -> Option<&str> {
        match self {
            Body::Change(r) => r.group.as_deref(),
            _ => None,
        }
    }

    /// The primary code (`None` for NEWS2).
    pub(crate) fn primary_code(&self) -> Option<Code> {
        match self {
            Body::Threshold(r) => r.checks.first().map(|c| c.code),
            Body::Change(r) => Some(r.code),
            Body::News2(_) => None,
            Body::Cadence(r) => Some(r.code),
        }
    }
}

/// The compiled rules of one patient.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRules {
    pub(crate) config: PatientRules,
    pub(crate) program: Program,
    pub(crate) scale: Spo2Scale,
    pub(crate) assumptions: News2Assumptions,
    pub(crate) rules: Vec<Body>,
    /// Rules to run for a reading of each code (index = `Code::index`).
    pub(crate) by_code: [Vec<u16>; 8],
    /// The cadence rules.
    pub(crate) cadence: Vec<u16>,
}

impl CompiledRules {
    /// Validates and compiles. `retention_hours`: every look-back must fit.
    pub(crate) fn compile(config: PatientRules, retention_hours: u64) -> Result<Self, ConfigError> {
        let set: RuleSet = config.effective()?;
        let mut rules = Vec::new();
        for r in set.thresholds {
            if let Persistence::Sustained { minutes } = r.persistence {
                check_window(&r.id, u64::from(minutes).div_ceil(60), retention_hours)?;
            }
            rules.push(Body::Threshold(r));
        }
        for r in set.changes {
            check_window(&r.id, r.method.lookback_hours(), retention_hours)?;
            rules.push(Body::Change(r));
        }
        if let Some(n) = set.news2 {
            check_window(&n.id, u64::from(n.window_minutes).div_ceil(60), retention_hours)?;
            rules.push(Body::News2(n));
        }
        rules.extend(set.cadence.into_iter().map(Body::Cadence));
        let mut by_code: [Vec<u16>; 8] = Default::default();
        let mut cadence = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let i = u16::try_from(i).map_err(|_| ConfigError::TooManyRules(rules.len()))?;
            let mut add = |c: Code| {
                if let Some(list) = by_code.get_mut(c.index())
                    && !list.contains(&i)
                {
                    list.push(i);
                }
            };
            match r {
                Body::Threshold(t) => t.checks.iter().for_each(|c| add(c.code)),
                Body::Change(c) => add(c.code),
                Body::News2(_) => NEWS2_CODES.iter().for_each(|&c| add(c)),
                Body::Cadence(c) => {
                    add(c.code);
                    cadence.push(i);
                }
            }
        }
        Ok(CompiledRules {
            program: config.program,
            scale: config.scale(),
            assumptions: config.assumptions(),
            config,
            rules,
            by_code,
            cadence,
        })
    }

    /// Index of the rule with this id.
    pub(crate) fn find(&self, id: &str) -> Option<u16> {
        self.rules.iter().position(|r| r.id() == id).and_then(|i| u16::try_from(i).ok())
    }

    /// The rule at `i`.
    pub(crate) fn get(&self, i: u16) -> Option<&Body> {
        self.rules.get(usize::from(i))
    }

    /// Approximate heap bytes (for patients with their own rules).
    pub(crate) fn approx_bytes(&self) -> usize {
        // Rough: serialized size is a fair proxy for the owned strings and vectors.
        std::mem::size_of::<Self>() + serde_json::to_vec(&self.config).map(|v| v.len() * 4).unwrap_or(0)
    }
}

fn check_window(rule: &str, hours: u64, retention_hours: u64) -> Result<(), ConfigError> {
    if hours > retention_hours {
        Err(ConfigError::WindowBeyondRetention { rule: rule.to_owned(), hours, retention_hours })
    } else {
        Ok(())
    }
}

/// What a rule concluded about one reading (or, for cadence rules, about now).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Finding {
    /// Severity reached (for a trigger).
    pub severity: Severity,
    /// The code concerned.
    pub code: Option<Code>,
    /// The compared quantity: a reading's value, a change amount, a mean, a
    /// NEWS2 total or hours without data.
    pub amount: f64,
    /// The reading's value, when `amount` is derived from it.
    pub reading: Option<f64>,
    /// The trigger crossed (trigger) or the clear threshold (clear).
    pub threshold: f64,
    /// The baseline or reference compared against.
    pub baseline: Option<f64>,
    /// How `amount` was compared.
    pub op: Comparison,
}

/// The outcome of evaluating one rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// The condition holds at this severity.
    Trigger(Finding),
    /// The condition is cleared (past the clear threshold).
    Clear(Finding),
    /// Nothing changes: between trigger and clear, not sustained yet, not
    /// enough history, or incomplete reading.
    NoChange,
    /// A single reading breaches a level that needs confirmation: the episode
    /// becomes pending (no notification) until the next reading of the code
    /// or the end of the confirmation window.
    Pending(Finding),
    /// The reading does not breach (but is not past the clear threshold
    /// either): cancels a pending episode, otherwise like `NoChange`.
    Normal,
}

impl Verdict {
    /// The finding, if the verdict carries one.
    pub(crate) fn finding(&self) -> Option<Finding> {
        match self {
            Verdict::Trigger(f) | Verdict::Clear(f) | Verdict::Pending(f) => Some(*f),
            Verdict::NoChange | Verdict::Normal => None,
        }
    }
}

/// Confirmation of a breach `f` of a rule on `code` (see
/// [`crate::Persistence::Confirmed`]): a level at or above `c.immediate_from`
/// triggers at once; otherwise the previous reading of `code`, taken within
/// the window before this one, confirms it when `level` says it breached too
/// (the severity is then the lower of the two), and the breach is pending
/// when it did not.
pub(crate) fn confirm(
    c: Confirmation,
    f: Finding,
    code: Code,
    ctx: &Ctx<'_>,
    level: impl FnOnce(crate::history::Reading) -> Option<(Severity, f64)>,
) -> Verdict {
    if f.severity >= c.immediate_from {
        return Verdict::Trigger(f);
    }
    let window = ctx.back(i64::from(c.within_minutes).saturating_mul(MINUTE_US));
    let previous = ctx.hist.readings(code, window, ctx.t_us.saturating_sub(1)).next_back();
    match previous.and_then(level) {
        Some((severity, trigger)) if severity < f.severity => {
            Verdict::Trigger(Finding { severity, threshold: trigger, ..f })
        }
        Some(_) => Verdict::Trigger(f),
        None => Verdict::Pending(f),
    }
}

/// The highest level of `levels` that `value` breaches.
pub(crate) fn level_of(op: Comparison, levels: &[crate::config::Level], value: f64) -> Option<(Severity, f64)> {
    levels.iter().rev().find(|l| op.holds(value, l.value)).map(|l| (l.severity, l.value))
}

/// What a rule evaluation sees.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The patient's history, the current reading included.
    pub hist: &'a crate::history::History,
    /// Measurement time of the reading being evaluated, µs.
    pub t_us: i64,
    /// Nothing older than this is looked at (newest reading − retention), so
    /// results never depend on whether old entries were pruned yet.
    pub floor_us: i64,
}

impl Ctx<'_> {
    /// `max(t − hours, floor)`.
    pub(crate) fn back(&self, micros: i64) -> i64 {
        self.t_us.saturating_sub(micros).max(self.floor_us)
    }
}

/// Microseconds per hour.
pub(crate) const HOUR_US: i64 = 3_600_000_000;
/// Microseconds per minute.
pub(crate) const MINUTE_US: i64 = 60_000_000;
