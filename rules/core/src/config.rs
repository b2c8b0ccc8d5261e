//! Rule configuration: what the responsible physician sets per patient, on top of
//! the defaults of a care program.
//!
//! Everything here is serde-(de)serializable: the worker stores a
//! [`PatientRules`] per patient as JSON in the database and the CLI edits it.
//! A [`PatientRules`] holds only the program and the patient's *differences*
//! from the program defaults; [`PatientRules::effective`] merges them into the
//! complete, validated [`RuleSet`] the engine evaluates.
//!
//! Values are in the normalized UCUM unit of each code ([`Code::ucum`]): kg,
//! Cel, mg/dL, mm\[Hg\], %, /min.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vitalwatch_schemas::Code;

use crate::error::ConfigError;

/// Alert severity, lowest to highest: the one domain type of vitalwatch
/// (shared with alerting), defined in `vitalwatch-schemas`.
pub use vitalwatch_schemas::Severity;

/// A care program. Each has default rules ([`Program::defaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    /// Chronic heart failure (ICC): daily weight.
    HeartFailure,
    /// Hypertension: home blood pressure.
    Hypertension,
    /// COPD and chronic respiratory failure: SpO2.
    Copd,
    /// Diabetes: capillary glucose.
    Diabetes,
    /// General monitoring: safety-net thresholds and NEWS2 only.
    General,
}

impl Program {
    /// Every program, in a stable order.
    pub const ALL: [Program; 5] =
        [Program::HeartFailure, Program::Hypertension, Program::Copd, Program::Diabetes, Program::General];

    /// The name used in configuration and in `AlertEvent.program`.
    pub fn as_str(self) -> &'static str {
        match self {
            Program::HeartFailure => "heart_failure",
            Program::Hypertension => "hypertension",
            Program::Copd => "copd",
            Program::Diabetes => "diabetes",
            Program::General => "general",
        }
    }

    /// Parses a program name.
    pub fn parse(s: &str) -> Option<Program> {
        Program::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The code whose missing-data alert cannot be disabled in this program.
    ///
    /// clinical.md §5.2: for chronic heart failure (daily weight) and diabetes
    /// (glucose) the DMN must emit non-transmission alerts "which the operator
    /// cannot deactivate".
    pub fn mandatory_missing_data(self) -> Option<Code> {
        match self {
            Program::HeartFailure => Some(Code::BodyWeight),
            Program::Diabetes => Some(Code::BloodGlucose),
            _ => None,
        }
    }

    /// The program's default rules for SpO2 scale 1 (see
    /// [`crate::programs::defaults`] for the sources of every number).
    pub fn defaults(self) -> RuleSet {
        crate::programs::defaults(self, Spo2Scale::Scale1, false)
    }
}

/// NEWS2 SpO2 scale (clinical.md §3.1). Scale 2 is only for patients with
/// hypercapnic respiratory failure and a prescribed 88–92 % target; the choice
/// is the clinician's and is never inferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spo2Scale {
    /// Scale 1 (default, most patients).
    #[default]
    Scale1,
    /// Scale 2 (hypercapnic respiratory failure, target 88–92 %).
    Scale2,
}

/// Level of consciousness on the ACVPU scale (NEWS2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consciousness {
    /// Alert (scores 0).
    #[default]
    Alert,
    /// New confusion (scores 3).
    NewConfusion,
    /// Responds to voice (scores 3).
    Voice,
    /// Responds to pain (scores 3).
    Pain,
    /// Unresponsive (scores 3).
    Unresponsive,
}

/// What NEWS2 assumes for the parameters home devices never measure.
///
/// Home readings carry no level of consciousness and no "air or oxygen". By
/// default the patient is assumed **alert and on air**, which can only
/// *under*-estimate the score; the physician can set a patient on long-term
/// oxygen therapy to `supplemental_oxygen: true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct News2Assumptions {
    /// The patient is on supplemental oxygen (scores 2; changes scale 2 scoring).
    pub supplemental_oxygen: bool,
    /// The assumed level of consciousness.
    pub consciousness: Consciousness,
}

/// How a value is compared with a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// value > trigger.
    Gt,
    /// value >= trigger.
    Ge,
    /// value < trigger.
    Lt,
    /// value <= trigger.
    Le,
}

impl Comparison {
    /// Whether `value` breaches `trigger`.
    pub fn holds(self, value: f64, trigger: f64) -> bool {
        match self {
            Comparison::Gt => value > trigger,
            Comparison::Ge => value >= trigger,
            Comparison::Lt => value < trigger,
            Comparison::Le => value <= trigger,
        }
    }

    /// True for `gt`/`ge` (alerting on high values).
    pub fn is_upward(self) -> bool {
        matches!(self, Comparison::Gt | Comparison::Ge)
    }

    /// Whether `value` is back on the normal side of the clear threshold
    /// (inclusive): `value <= clear` for upward rules, `value >= clear` otherwise.
    pub fn cleared(self, value: f64, clear: f64) -> bool {
        if self.is_upward() { value <= clear } else { value >= clear }
    }

    /// The operator as text (`>`, `>=`, `<`, `<=`).
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
        }
    }
}

/// One severity level of a rule: breached when the compared quantity passes
/// `value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Severity when this level is reached.
    pub severity: Severity,
    /// Trigger value in the code's UCUM unit (or the change amount).
    pub value: f64,
}

/// How long a threshold breach must last before it opens an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Persistence {
    /// The first breaching reading opens the episode.
    #[default]
    Immediate,
    /// The last `readings` readings of the code must all breach; the severity is
    /// the lowest level among them.
    Consecutive {
        /// Number of consecutive breaching readings (2..=64).
        readings: u16,
    },
    /// Consecutive breaching readings must span at least `minutes` of
    /// measurement time. Judged on readings only: a single reading never
    /// satisfies it, and the wall clock is never used.
    Sustained {
        /// Minimum span in minutes (1..=10080).
        minutes: u32,
    },
    /// Confirmation of a single reading (alarm fatigue, issue #14 §5): a level
    /// at or above `immediate_from` opens the episode on the first reading; a
    /// lower level first makes the episode *pending* (no notification). The
    /// next reading of the code within `within_minutes` settles it: breaching
    /// again opens the episode (at the lower of the two levels, stamped with
    /// the first reading), a normal reading cancels it. When nobody
    /// re-measured within the window, the pending episode opens at the next
    /// [`crate::Engine::tick`] past the window (fail-safe: an unconfirmed
    /// value is reported, marked "not re-measured", never dropped).
    Confirmed(Confirmation),
}

/// How a single reading is confirmed before it notifies anyone (see
/// [`Persistence::Confirmed`]; also used by change rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// Window for the confirming reading, minutes (1..=2880).
    pub within_minutes: u32,
    /// Levels at or above this severity need no confirmation (default
    /// critical: critical values page at once).
    #[serde(default = "critical")]
    pub immediate_from: Severity,
}

fn critical() -> Severity {
    Severity::Critical
}

impl Persistence {
    /// The confirmation window and immediate severity, for
    /// [`Persistence::Confirmed`].
    pub fn confirmation(self) -> Option<Confirmation> {
        match self {
            Persistence::Confirmed(c) => Some(c),
            _ => None,
        }
    }
}

/// One comparison of a threshold rule against one code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdCheck {
    /// The code compared.
    pub code: Code,
    /// How the value is compared with each level's trigger.
    pub op: Comparison,
    /// Levels, lowest severity first.
    pub levels: Vec<Level>,
    /// Clear threshold (hysteresis): an open episode resolves only once the
    /// value is back on the normal side of it, inclusive.
    pub clear: f64,
}

/// An absolute threshold rule. With several checks the rule breaches when
/// *any* check breaches ("and/or"), and clears only when a complete reading
/// (all the checks' codes measured at the same time, like the systolic and
/// diastolic of one blood-pressure reading) is cleared on every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdRule {
    /// Stable rule id, e.g. `threshold.spo2.low`.
    pub id: String,
    /// The checks (usually one).
    pub checks: Vec<ThresholdCheck>,
    /// How long the breach must last.
    #[serde(default)]
    pub persistence: Persistence,
    /// Where the numbers come from.
    #[serde(default)]
    pub source: String,
}

/// Which way a change is alarming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// An increase (weight gain, blood pressure rise).
    Rise,
    /// A decrease (SpO2 drop).
    Drop,
}

/// How a change rule measures change against the patient's own past.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ChangeMethod {
    /// The current value against the extreme of the readings in the window
    /// before it: for `rise`, current − lowest; for `drop`, highest − current.
    /// The window is `window_hours + tolerance_hours` long, so a daily reading
    /// taken a little later in the day still reaches back to the reading
    /// `window_hours` before.
    WindowChange {
        /// Alarming direction.
        direction: Direction,
        /// Nominal window, hours.
        window_hours: u32,
        /// Extra look-back for time-of-day variation, hours.
        #[serde(default)]
        tolerance_hours: u32,
    },
    /// Robust baseline: the median of the readings in the `recent_hours`
    /// before and including the current one (just the current reading when 0)
    /// against the median of the `baseline_hours` before that. Optionally also
    /// requires the modified z-score 0.6745·|change|/MAD to reach
    /// `min_modified_z` (clinical.md §6.2, Iglewicz & Hoaglin 3.5); a zero MAD
    /// never blocks.
    Baseline {
        /// Alarming direction.
        direction: Direction,
        /// Recent window, hours (0 = the current reading only).
        recent_hours: u32,
        /// Baseline window before the recent window, hours.
        baseline_hours: u32,
        /// Minimum modified z-score, if any.
        #[serde(default)]
        min_modified_z: Option<f64>,
    },
    /// Like with like (issue #14 §5): the median of the readings of the last
    /// `tolerance_hours` (the current one included) against the readings
    /// taken within ± `tolerance_hours` of the same time of day `days`
    /// earlier (their lowest for a rise, highest for a drop). A morning
    /// weight is compared with morning weights, an evening one with evening
    /// ones, and a second weighing after breakfast is folded into the current
    /// median instead of being compared with the first. No reading around
    /// that time `days` earlier: no comparison.
    SameTimeOfDay {
        /// Alarming direction.
        direction: Direction,
        /// How many days back the reference is (1..=30).
        days: u32,
        /// Half-width of the reference window and length of the current one, hours (1..=11).
        tolerance_hours: u32,
    },
    /// The mean of the readings in the window (including the current one)
    /// compared with the levels.
    WindowMean {
        /// Window, hours.
        window_hours: u32,
    },
}

impl ChangeMethod {
    /// How far back the method looks, in hours.
    pub fn lookback_hours(&self) -> u64 {
        match *self {
            ChangeMethod::WindowChange { window_hours, tolerance_hours, .. } => {
                u64::from(window_hours) + u64::from(tolerance_hours)
            }
            ChangeMethod::Baseline { recent_hours, baseline_hours, .. } => {
                u64::from(recent_hours) + u64::from(baseline_hours)
            }
            ChangeMethod::SameTimeOfDay { days, tolerance_hours, .. } => {
                u64::from(days) * 24 + u64::from(tolerance_hours)
            }
            ChangeMethod::WindowMean { window_hours } => u64::from(window_hours),
        }
    }
}

/// The minimum history a change rule needs before it may fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinHistory {
    /// Readings needed in the reference window (the window before the current
    /// reading; for `window_mean` the window including it).
    pub readings: u16,
    /// The oldest reference reading must be at least this many hours older than
    /// the current reading.
    pub span_hours: u32,
}

/// A rule on change against the patient's own recent past.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRule {
    /// Stable rule id, e.g. `hf.weight_gain_3d`.
    pub id: String,
    /// The code.
    pub code: Code,
    /// How change is measured.
    pub method: ChangeMethod,
    /// How the change amount (or the mean) is compared with the levels.
    pub op: Comparison,
    /// Levels, lowest severity first, in the code's unit (change amounts are
    /// non-negative in the alarming direction).
    pub levels: Vec<Level>,
    /// Clear threshold on the same quantity (hysteresis).
    pub clear: f64,
    /// Minimum history before the rule may fire.
    pub min_history: MinHistory,
    /// Confirmation of a single reading (see [`Persistence::Confirmed`]);
    /// `None`: the first reading that meets the rule opens the episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Confirmation>,
    /// Rules of one group describe one condition (e.g. the weight-gain
    /// windows of heart failure): a rule of the group does not open an
    /// episode while another rule of the group has one open at the same or a
    /// higher severity, so one weight gain pages once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Where the numbers come from.
    #[serde(default)]
    pub source: String,
}

/// NEWS2 computed from home readings (clinical.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct News2Rule {
    /// Rule id, usually `news2`.
    pub id: String,
    /// A parameter counts if measured within this many minutes before (or at)
    /// the reading being evaluated.
    pub window_minutes: u32,
    /// How many of the five measured parameters (respiratory rate, SpO2,
    /// systolic BP, pulse, temperature) must be available (1..=5). Missing ones
    /// score 0, so a partial score can only under-estimate.
    pub min_parameters: u8,
    /// Severity for a single parameter scoring 3 (band low–medium).
    pub low_medium: Severity,
    /// Severity for an aggregate of 5–6 (band medium).
    pub medium: Severity,
    /// Severity for an aggregate of 7 or more (band high).
    pub high: Severity,
    /// Where the numbers come from.
    #[serde(default)]
    pub source: String,
}

/// The expected cadence of one vital: raises a missing-data alert when no
/// reading arrived for `every_hours + grace_hours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CadenceRule {
    /// Stable rule id, e.g. `missing.body_weight`.
    pub id: String,
    /// The code expected.
    pub code: Code,
    /// Expected interval between readings, hours.
    pub every_hours: u32,
    /// Extra time allowed before alerting, hours.
    pub grace_hours: u32,
    /// Severity of the missing-data alert.
    pub severity: Severity,
    /// Where the cadence comes from.
    #[serde(default)]
    pub source: String,
}

impl CadenceRule {
    /// `every_hours + grace_hours`.
    pub fn max_gap_hours(&self) -> u32 {
        self.every_hours.saturating_add(self.grace_hours)
    }
}

/// A complete set of rules, as evaluated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// Absolute thresholds.
    pub thresholds: Vec<ThresholdRule>,
    /// Change against the patient's own past.
    pub changes: Vec<ChangeRule>,
    /// NEWS2, if enabled.
    pub news2: Option<News2Rule>,
    /// Expected cadences (missing data).
    pub cadence: Vec<CadenceRule>,
}

impl RuleSet {
    /// Every rule id, in evaluation order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.thresholds
            .iter()
            .map(|r| r.id.as_str())
            .chain(self.changes.iter().map(|r| r.id.as_str()))
            .chain(self.news2.iter().map(|r| r.id.as_str()))
            .chain(self.cadence.iter().map(|r| r.id.as_str()))
    }
}

/// A patient's rule configuration: the program plus the physician's changes.
///
/// Rules in `thresholds`, `changes` and `cadence` *replace* the program default
/// with the same id, or are *added* when the id is new; `news2` replaces the
/// default NEWS2 rule; `disabled` switches program defaults off by id. The
/// missing-data rule of the heart-failure and diabetes programs cannot be
/// disabled (clinical.md §5.2).
///
/// ```
/// use vitalwatch_rules_core::{PatientRules, Program};
/// let json = r#"{"program":"copd","oxygen_plan":{"target":"88-92","supplemental_oxygen":true}}"#;
/// let rules: PatientRules = serde_json::from_str(json).unwrap();
/// assert_eq!(rules.program, Program::Copd);
/// assert!(rules.check_enrolment().is_ok());
/// assert!(rules.effective().is_ok());
/// // A COPD enrolment must state the SpO2 target and oxygen use.
/// let bare: PatientRules = serde_json::from_str(r#"{"program":"copd"}"#).unwrap();
/// assert!(bare.check_enrolment().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientRules {
    /// The care program (gives the default rules).
    pub program: Program,
    /// NEWS2 SpO2 scale, set by the clinician.
    #[serde(default)]
    pub spo2_scale: Spo2Scale,
    /// What NEWS2 assumes for consciousness and oxygen.
    #[serde(default)]
    pub news2_assumptions: News2Assumptions,
    /// The prescribed SpO2 target range and oxygen use (required at COPD
    /// enrolment, see [`PatientRules::check_enrolment`]). When set, it gives
    /// the NEWS2 scale (88-92 % is scale 2) and the oxygen assumption, and
    /// must not contradict `spo2_scale` / `news2_assumptions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oxygen_plan: Option<OxygenPlan>,
    /// Start of telemonitoring: missing-data rules count from here when the
    /// patient never sent a reading of the code. `None`: when the engine first
    /// saw the patient. Set it for deterministic replays.
    #[serde(default)]
    pub monitoring_since: Option<DateTime<Utc>>,
    /// Threshold rules replacing (same id) or added to the defaults.
    #[serde(default)]
    pub thresholds: Vec<ThresholdRule>,
    /// Change rules replacing (same id) or added to the defaults.
    #[serde(default)]
    pub changes: Vec<ChangeRule>,
    /// Replaces the default NEWS2 rule.
    #[serde(default)]
    pub news2: Option<News2Rule>,
    /// Cadence rules replacing (same id) or added to the defaults.
    #[serde(default)]
    pub cadence: Vec<CadenceRule>,
    /// Ids of default rules switched off.
    #[serde(default)]
    pub disabled: Vec<String>,
}

impl PatientRules {
    /// The program's defaults with no patient-specific change.
    pub fn for_program(program: Program) -> Self {
        PatientRules {
            program,
            spo2_scale: Spo2Scale::Scale1,
            news2_assumptions: News2Assumptions::default(),
            oxygen_plan: None,
            monitoring_since: None,
            thresholds: Vec::new(),
            changes: Vec::new(),
            news2: None,
            cadence: Vec::new(),
            disabled: Vec::new(),
        }
    }

    /// Merges the program defaults with this patient's changes and validates
    /// the result.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid rule: bad id, duplicate id,
    /// unknown disabled rule, unordered levels, clear threshold on the wrong
    /// side, non-finite number, out-of-range parameter, or a mandatory
    /// missing-data rule disabled or made too lax.
    pub fn effective(&self) -> Result<RuleSet, ConfigError> {
        self.check_oxygen_plan()?;
        let mut set = crate::programs::defaults(self.program, self.scale(), self.assumptions().supplemental_oxygen);
        let mut known: HashSet<&str> = set.ids().collect();
        for id in self.thresholds.iter().map(|r| &r.id).chain(self.changes.iter().map(|r| &r.id)) {
            known.insert(id);
        }
        for r in &self.cadence {
            known.insert(&r.id);
        }
        if let Some(n) = &self.news2 {
            known.insert(&n.id);
        }
        for id in &self.disabled {
            if !known.contains(id.as_str()) {
                return Err(ConfigError::UnknownDisabledRule(truncate(id)));
            }
        }
        merge(&mut set.thresholds, &self.thresholds, |r| &r.id);
        merge(&mut set.changes, &self.changes, |r| &r.id);
        merge(&mut set.cadence, &self.cadence, |r| &r.id);
        if let Some(n) = &self.news2 {
            set.news2 = Some(n.clone());
        }
        let off = |id: &String| self.disabled.iter().any(|d| d == id);
        set.thresholds.retain(|r| !off(&r.id));
        set.changes.retain(|r| !off(&r.id));
        set.cadence.retain(|r| !off(&r.id));
        if set.news2.as_ref().is_some_and(|n| off(&n.id)) {
            set.news2 = None;
        }
        validate_set(&set, self.program)?;
        Ok(set)
    }
}

impl PatientRules {
    /// The NEWS2 SpO2 scale in force: the oxygen plan's target when set
    /// (88-92 % → scale 2), else `spo2_scale`.
    pub fn scale(&self) -> Spo2Scale {
        match self.oxygen_plan {
            Some(p) => p.target.scale(),
            None => self.spo2_scale,
        }
    }

    /// The NEWS2 assumptions in force: the oxygen plan's oxygen use when set.
    pub fn assumptions(&self) -> News2Assumptions {
        match self.oxygen_plan {
            Some(p) => News2Assumptions { supplemental_oxygen: p.supplemental_oxygen, ..self.news2_assumptions },
            None => self.news2_assumptions,
        }
    }

    fn check_oxygen_plan(&self) -> Result<(), ConfigError> {
        let Some(plan) = self.oxygen_plan else { return Ok(()) };
        if self.spo2_scale != Spo2Scale::Scale1 && self.spo2_scale != plan.target.scale() {
            return Err(ConfigError::OxygenPlan(format!(
                "spo2_scale {:?} contradicts oxygen_plan.target {} (88-92 is scale 2, 94-98 scale 1)",
                self.spo2_scale,
                plan.target.as_str()
            )));
        }
        if self.news2_assumptions.supplemental_oxygen && !plan.supplemental_oxygen {
            return Err(ConfigError::OxygenPlan(
                "news2_assumptions.supplemental_oxygen is true but oxygen_plan.supplemental_oxygen is false".into(),
            ));
        }
        Ok(())
    }

    /// What an enrolment (admin API, CLI) must state on top of
    /// [`PatientRules::effective`]: a COPD program needs the patient's SpO2
    /// target range and oxygen use (issue #14 §6: BTS 88-92 % for patients at
    /// risk of hypercapnic respiratory failure, 94-98 % otherwise,
    /// clinical.md §4.3; a patient on oxygen scores 2 more in NEWS2, §3.1).
    ///
    /// # Errors
    ///
    /// [`ConfigError::OxygenPlan`] when a COPD program has no `oxygen_plan`.
    pub fn check_enrolment(&self) -> Result<(), ConfigError> {
        if self.program == Program::Copd && self.oxygen_plan.is_none() {
            return Err(ConfigError::OxygenPlan(
                "a copd program needs the patient's SpO2 target and oxygen use: set \"oxygen_plan\": \
                 {\"target\": \"88-92\" or \"94-98\", \"supplemental_oxygen\": true or false}"
                    .into(),
            ));
        }
        self.check_oxygen_plan()
    }
}

/// A patient's prescribed SpO2 target and oxygen use (BTS, clinical.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OxygenPlan {
    /// Target saturation range.
    pub target: Spo2Target,
    /// Whether the patient is on supplemental (home) oxygen.
    pub supplemental_oxygen: bool,
}

/// BTS target saturation ranges (clinical.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Spo2Target {
    /// 94-98 %: most patients (NEWS2 scale 1).
    #[serde(rename = "94-98")]
    Standard,
    /// 88-92 %: patients at risk of hypercapnic respiratory failure (NEWS2
    /// scale 2, chosen by a clinician).
    #[serde(rename = "88-92")]
    Hypercapnic,
}

impl Spo2Target {
    /// The NEWS2 scale of this target.
    pub fn scale(self) -> Spo2Scale {
        match self {
            Spo2Target::Standard => Spo2Scale::Scale1,
            Spo2Target::Hypercapnic => Spo2Scale::Scale2,
        }
    }

    /// `"94-98"` or `"88-92"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Spo2Target::Standard => "94-98",
            Spo2Target::Hypercapnic => "88-92",
        }
    }
}

fn merge<T: Clone>(base: &mut Vec<T>, changes: &[T], id: impl Fn(&T) -> &String) {
    for c in changes {
        match base.iter_mut().find(|b| id(b) == id(c)) {
            Some(slot) => *slot = c.clone(),
            None => base.push(c.clone()),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The most hours a mandatory missing-data rule may allow without data
/// (clinical.md §5.2: diabetes data transmitted "at least weekly").
pub const MANDATORY_MAX_GAP_HOURS: u32 = 7 * 24;

/// At most this many rules per patient (rule indices are `u16`, evidence
/// buffers are small).
pub const MAX_RULES: usize = 256;

fn validate_id(id: &str) -> Result<(), ConfigError> {
    let reason = if id.is_empty() {
        Some("empty")
    } else if id.len() > 64 {
        Some("longer than 64 characters")
    } else if !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')) {
        Some("only a-z 0-9 _ . - are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidRuleId { id: truncate(id), reason }),
        None => Ok(()),
    }
}

fn finite(rule: &str, field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() { Ok(()) } else { Err(ConfigError::NonFinite { rule: rule.to_owned(), field }) }
}

fn invalid(rule: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::InvalidParameter { rule: rule.to_owned(), message: message.into() }
}

/// The range a threshold (trigger or clear, inclusive) on `code` must lie in,
/// in the code's UCUM unit: the physiological plausibility limits of ingest
/// (clinical.md §2.2, MIMIC-IV cleaning rules; glucose up to 3,000 mg/dL and
/// weight up to 700 kg are vitalwatch's choices). A reading outside is
/// rejected at ingest as a device or entry error, so a threshold outside
/// could never be reached (or would always be): it is a typing error. The
/// rules editor uses the same bounds for its inputs.
pub fn threshold_bounds(code: Code) -> (f64, f64) {
    match code {
        Code::HeartRate => (0.0, 300.0),
        Code::Systolic => (0.0, 400.0),
        Code::Diastolic => (0.0, 300.0),
        Code::RespiratoryRate => (0.0, 70.0),
        Code::BodyTemperature => (10.0, 50.0),
        Code::Spo2 => (0.0, 100.0),
        Code::BloodGlucose => (0.0, 3000.0),
        Code::BodyWeight => (0.0, 700.0),
    }
}

/// Checks that a threshold check's triggers and clear value lie within
/// [`threshold_bounds`] (run after the finiteness checks).
fn validate_bounds(rule: &str, check: &ThresholdCheck) -> Result<(), ConfigError> {
    let (min, max) = threshold_bounds(check.code);
    let values = check.levels.iter().map(|l| ("trigger", l.value)).chain(std::iter::once(("clear", check.clear)));
    for (field, value) in values {
        if !(min..=max).contains(&value) {
            return Err(ConfigError::ThresholdOutOfBounds {
                rule: rule.to_owned(),
                field,
                code_name: check.code.display(),
                value,
                min,
                max,
                unit: check.code.ucum(),
            });
        }
    }
    Ok(())
}

/// Validates levels and clear threshold of one comparison.
fn validate_bands(rule: &str, op: Comparison, levels: &[Level], clear: f64) -> Result<(), ConfigError> {
    if levels.is_empty() {
        return Err(ConfigError::EmptyRule(rule.to_owned()));
    }
    finite(rule, "clear", clear)?;
    for (i, l) in levels.iter().enumerate() {
        finite(rule, "levels.value", l.value)?;
        if let Some(prev) = i.checked_sub(1).and_then(|j| levels.get(j)) {
            let further = if op.is_upward() { l.value > prev.value } else { l.value < prev.value };
            if l.severity <= prev.severity || !further {
                return Err(ConfigError::LevelsNotOrdered(rule.to_owned()));
            }
        }
        let ok = if op.is_upward() { clear <= l.value } else { clear >= l.value };
        if !ok {
            return Err(ConfigError::ClearOnWrongSide { rule: rule.to_owned(), clear, trigger: l.value });
        }
    }
    Ok(())
}

fn validate_confirmation(rule: &str, c: Confirmation) -> Result<(), ConfigError> {
    if !(1..=48 * 60).contains(&c.within_minutes) {
        return Err(invalid(rule, "confirmation within_minutes must be between 1 and 2880"));
    }
    Ok(())
}

pub(crate) fn validate_set(set: &RuleSet, program: Program) -> Result<(), ConfigError> {
    let total = set.thresholds.len() + set.changes.len() + set.cadence.len() + usize::from(set.news2.is_some());
    if total > MAX_RULES {
        return Err(ConfigError::TooManyRules(total));
    }
    let mut seen = HashSet::new();
    for id in set.ids() {
        validate_id(id)?;
        if !seen.insert(id) {
            return Err(ConfigError::DuplicateRuleId(id.to_owned()));
        }
    }
    for r in &set.thresholds {
        if r.checks.is_empty() {
            return Err(ConfigError::EmptyRule(r.id.clone()));
        }
        if r.checks.len() > 8 {
            return Err(invalid(&r.id, "at most 8 checks per rule"));
        }
        for c in &r.checks {
            validate_bands(&r.id, c.op, &c.levels, c.clear)?;
            validate_bounds(&r.id, c)?;
        }
        for (i, c) in r.checks.iter().enumerate() {
            if r.checks.iter().skip(i + 1).any(|d| d.code == c.code) {
                return Err(invalid(&r.id, "two checks on the same code"));
            }
        }
        match r.persistence {
            Persistence::Immediate => {}
            Persistence::Consecutive { readings } => {
                if !(2..=64).contains(&readings) {
                    return Err(invalid(&r.id, "consecutive readings must be between 2 and 64"));
                }
            }
            Persistence::Sustained { minutes } => {
                if !(1..=7 * 24 * 60).contains(&minutes) {
                    return Err(invalid(&r.id, "sustained minutes must be between 1 and 10080"));
                }
            }
            Persistence::Confirmed(c) => validate_confirmation(&r.id, c)?,
        }
    }
    for r in &set.changes {
        validate_bands(&r.id, r.op, &r.levels, r.clear)?;
        match r.method {
            ChangeMethod::WindowChange { window_hours, .. } => {
                if window_hours == 0 {
                    return Err(invalid(&r.id, "window_hours must be positive"));
                }
                if !r.op.is_upward() || r.levels.iter().any(|l| l.value < 0.0) {
                    return Err(invalid(&r.id, "a change amount is compared with gt/ge and non-negative levels"));
                }
            }
            ChangeMethod::Baseline { baseline_hours, min_modified_z, .. } => {
                if baseline_hours == 0 {
                    return Err(invalid(&r.id, "baseline_hours must be positive"));
                }
                if !r.op.is_upward() || r.levels.iter().any(|l| l.value < 0.0) {
                    return Err(invalid(&r.id, "a change amount is compared with gt/ge and non-negative levels"));
                }
                if let Some(z) = min_modified_z {
                    finite(&r.id, "min_modified_z", z)?;
                    if z < 0.0 {
                        return Err(invalid(&r.id, "min_modified_z must not be negative"));
                    }
                }
            }
            ChangeMethod::SameTimeOfDay { days, tolerance_hours, .. } => {
                if !(1..=30).contains(&days) {
                    return Err(invalid(&r.id, "days must be between 1 and 30"));
                }
                if !(1..=11).contains(&tolerance_hours) {
                    return Err(invalid(&r.id, "tolerance_hours must be between 1 and 11"));
                }
                if !r.op.is_upward() || r.levels.iter().any(|l| l.value < 0.0) {
                    return Err(invalid(&r.id, "a change amount is compared with gt/ge and non-negative levels"));
                }
            }
            ChangeMethod::WindowMean { window_hours } => {
                if window_hours == 0 {
                    return Err(invalid(&r.id, "window_hours must be positive"));
                }
            }
        }
        if let Some(c) = r.confirm {
            validate_confirmation(&r.id, c)?;
        }
        if r.min_history.readings == 0 && !matches!(r.method, ChangeMethod::WindowMean { .. }) {
            return Err(invalid(&r.id, "min_history.readings must be at least 1"));
        }
        if u64::from(r.min_history.span_hours) > r.method.lookback_hours() {
            return Err(invalid(&r.id, "min_history.span_hours is longer than the rule looks back"));
        }
    }
    if let Some(n) = &set.news2 {
        if !(1..=5).contains(&n.min_parameters) {
            return Err(invalid(&n.id, "min_parameters must be between 1 and 5"));
        }
        if !(1..=24 * 60).contains(&n.window_minutes) {
            return Err(invalid(&n.id, "window_minutes must be between 1 and 1440"));
        }
        if !(n.low_medium <= n.medium && n.medium <= n.high) {
            return Err(ConfigError::LevelsNotOrdered(n.id.clone()));
        }
    }
    for c in &set.cadence {
        if c.every_hours == 0 {
            return Err(invalid(&c.id, "every_hours must be positive"));
        }
        if c.max_gap_hours() > 90 * 24 {
            return Err(invalid(&c.id, "every_hours + grace_hours must be at most 90 days"));
        }
    }
    if let Some(code) = program.mandatory_missing_data() {
        let rules: Vec<&CadenceRule> = set.cadence.iter().filter(|c| c.code == code).collect();
        if rules.is_empty() {
            return Err(ConfigError::mandatory(program, code));
        }
        if let Some(lax) = rules.iter().find(|c| c.max_gap_hours() > MANDATORY_MAX_GAP_HOURS) {
            return Err(ConfigError::MandatoryMissingDataTooLax {
                rule: lax.id.clone(),
                hours: lax.max_gap_hours(),
                max_hours: MANDATORY_MAX_GAP_HOURS,
                program: program.as_str(),
            });
        }
    }
    Ok(())
}

/// Engine-wide settings (not per patient).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// A reading older than the newest reading of the same code from the same
    /// device (or of the same code, for manual entries) by more than this is
    /// *out of order*: it is evaluated as a historical reading (see
    /// [`crate::engine`]). Default 3600 s (design choice, not from a source).
    pub allowed_lateness_secs: u32,
    /// A reading older than `now` by more than this is *historical*: it is
    /// evaluated, but its alerts are marked historical and it never reopens
    /// an episode already handled. Default 6 h (design
    /// choice, not from a source; clinical.md §5.3: alerts are not read in real
    /// time anyway).
    pub max_alert_age_secs: u32,
    /// A reading stamped later than `now` plus this is rejected (device clock
    /// error): it would otherwise make every real reading look late.
    /// Default 300 s.
    pub max_future_skew_secs: u32,
    /// Days of history kept per patient (1..=180). Every rule's look-back
    /// must fit. Default 14 (clinical.md §6.3: 14 stable days of baseline).
    pub retention_days: u16,
    /// Program used for a patient the engine receives readings for before any
    /// [`PatientRules`] was set. Default `general`.
    pub default_program: Program,
    /// A device that sent status heartbeats and has not been heard from (no
    /// heartbeat, no reading) for this long raises a LOW technical alert
    /// (`technical.device_silent`); 0 disables it. Default 6 h (U): half the
    /// shortest default cadence (12 h, twice-daily home BP, clinical.md §4.2),
    /// so the care team can fix the device before a measurement is missed,
    /// and long enough that a phone or hub offline for a few hours does not
    /// alert.
    pub device_silent_after_secs: u32,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            allowed_lateness_secs: 3600,
            max_alert_age_secs: 6 * 3600,
            max_future_skew_secs: 300,
            retention_days: 14,
            default_program: Program::General,
            device_silent_after_secs: 6 * 3600,
        }
    }
}

impl EngineSettings {
    /// Checks the ranges.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Settings`] when `retention_days` is outside 1..=180.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=180).contains(&self.retention_days) {
            return Err(ConfigError::Settings(format!(
                "retention_days must be between 1 and 180, got {}",
                self.retention_days
            )));
        }
        Ok(())
    }
}
