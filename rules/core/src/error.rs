//! Typed errors of the rules engine.
//!
//! Expected conditions on the hot path (a duplicate, a late reading) are not
//! errors: they are reported by [`crate::ObservationOutcome`]. Errors are for
//! configuration that must be rejected and for checkpoints that cannot be read.

use vitalwatch_schemas::Code;

use crate::config::Program;

/// A patient's rule configuration or the engine settings were rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The SpO2 target / oxygen use of the patient is missing (COPD
    /// enrolment) or contradicts the NEWS2 settings.
    #[error("oxygen plan: {0}")]
    OxygenPlan(String),
    /// A rule id is empty, too long or uses characters other than `a-z 0-9 _ . -`.
    #[error("invalid rule id {id:?}: {reason}")]
    InvalidRuleId {
        /// The id as given (truncated to 80 characters).
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Two rules of the effective rule set have the same id.
    #[error("duplicate rule id {0:?}: rule ids must be unique across thresholds, changes, NEWS2 and cadence rules")]
    DuplicateRuleId(String),
    /// `disabled` names a rule that is not among the program defaults or overrides.
    #[error("cannot disable unknown rule {0:?}")]
    UnknownDisabledRule(String),
    /// A program whose missing-data alert is mandatory has no cadence rule for the code.
    #[error(
        "missing-data alerts for {code_name} cannot be disabled in the {program} program \
         (clinical.md §5.2: the operator cannot deactivate non-transmission alerts)"
    )]
    MandatoryMissingDataDisabled {
        /// The program.
        program: &'static str,
        /// Display name of the code that must be monitored.
        code_name: &'static str,
    },
    /// A mandatory missing-data rule allows a gap so long that it is disabled in practice.
    #[error(
        "missing-data rule {rule:?} allows {hours} h without data; the {program} program requires \
         at most {max_hours} h (clinical.md §5.2: transmission at least weekly)"
    )]
    MandatoryMissingDataTooLax {
        /// Rule id.
        rule: String,
        /// The configured `every_hours + grace_hours`.
        hours: u32,
        /// The most allowed.
        max_hours: u32,
        /// The program.
        program: &'static str,
    },
    /// A rule has nothing to evaluate (no checks or no levels).
    #[error("rule {0:?} has no checks or no levels")]
    EmptyRule(String),
    /// A number in a rule is NaN or infinite.
    #[error("rule {rule:?}: {field} must be a finite number")]
    NonFinite {
        /// Rule id.
        rule: String,
        /// Which field.
        field: &'static str,
    },
    /// Levels must have strictly rising severities and move away from normal.
    #[error(
        "rule {0:?}: levels must be listed from lowest to highest severity, with each trigger \
         further from normal than the previous one"
    )]
    LevelsNotOrdered(String),
    /// The clear threshold is not on the normal side of every trigger.
    #[error("rule {rule:?}: clear threshold {clear} is not on the normal side of trigger {trigger} (hysteresis)")]
    ClearOnWrongSide {
        /// Rule id.
        rule: String,
        /// The clear threshold.
        clear: f64,
        /// The offending trigger.
        trigger: f64,
    },
    /// A threshold (trigger or clear) lies outside the range the code's
    /// values can take ([`crate::config::threshold_bounds`]): it could never
    /// be reached, or would always be.
    #[error(
        "rule {rule:?}: the {field} {value} {unit} for {code_name} is outside the allowed range \
         {min} to {max} {unit}"
    )]
    ThresholdOutOfBounds {
        /// Rule id.
        rule: String,
        /// `trigger` or `clear`.
        field: &'static str,
        /// Display name of the code.
        code_name: &'static str,
        /// The value given.
        value: f64,
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
        /// UCUM unit of the code.
        unit: &'static str,
    },
    /// Any other invalid parameter, with an explanation.
    #[error("rule {rule:?}: {message}")]
    InvalidParameter {
        /// Rule id.
        rule: String,
        /// What is wrong.
        message: String,
    },
    /// A rule looks further back than the engine keeps history.
    #[error("rule {rule:?} looks back {hours} h but the engine keeps only {retention_hours} h of history")]
    WindowBeyondRetention {
        /// Rule id.
        rule: String,
        /// How far the rule looks back.
        hours: u64,
        /// The engine's retention.
        retention_hours: u64,
    },
    /// More rules than the engine can index.
    #[error("{0} rules configured; at most 256 are supported per patient")]
    TooManyRules(usize),
    /// The engine settings are invalid.
    #[error("invalid engine settings: {0}")]
    Settings(String),
}

impl ConfigError {
    pub(crate) fn mandatory(program: Program, code: Code) -> Self {
        ConfigError::MandatoryMissingDataDisabled { program: program.as_str(), code_name: code.display() }
    }
}

/// A checkpoint could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The bytes are not a checkpoint (bad JSON or wrong shape).
    #[error("checkpoint is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    /// The checkpoint was written by an incompatible version.
    #[error("checkpoint version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// Version found.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The rules stored in the checkpoint are invalid.
    #[error("checkpoint rules are invalid: {0}")]
    Config(#[from] ConfigError),
    /// An episode refers to a rule that the checkpoint's rules do not contain.
    #[error("checkpoint episode refers to unknown rule {0:?}")]
    UnknownEpisodeRule(String),
}

/// [`crate::Engine::close_episode`] could not close an episode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// The engine holds no state for this patient.
    #[error("unknown patient")]
    UnknownPatient,
    /// The patient has no rule with this id.
    #[error("the patient has no rule {0:?}")]
    UnknownRule(String),
    /// The rule has no open episode for this patient.
    #[error("rule {0:?} has no open episode for this patient")]
    NoOpenEpisode(String),
}
