//! Escalation policies: who is paged, in which order, after how long, per
//! severity, and how often unacknowledged alerts are repeated.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::severity::Severity;
use crate::team::{CareTeam, PhysicianId};

/// Longest ladder accepted (steps per severity).
pub const MAX_STEPS: usize = 16;
/// Most reminders accepted per severity.
pub const MAX_REMINDERS: u32 = 48;

/// Error for an inconsistent escalation policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A pageable severity has no step.
    #[error("the {0} escalation ladder has no step")]
    EmptyLadder(Severity),
    /// A ladder is too long.
    #[error("the {severity} escalation ladder has {steps} steps (at most {MAX_STEPS})")]
    TooManySteps {
        /// The severity.
        severity: Severity,
        /// The number of steps.
        steps: usize,
    },
    /// A step has no target.
    #[error("step {step} of the {severity} ladder has no target")]
    EmptyStep {
        /// The severity.
        severity: Severity,
        /// The step index.
        step: usize,
    },
    /// A step after the first waits zero minutes.
    #[error("step {step} of the {severity} ladder must wait at least 1 minute")]
    ZeroDelay {
        /// The severity.
        severity: Severity,
        /// The step index.
        step: usize,
    },
    /// A step names a deputy rank the team does not have.
    #[error("step {step} of the {severity} ladder targets deputy rank {rank} but the team has {deputies} deputies")]
    DeputyOutOfRange {
        /// The severity.
        severity: Severity,
        /// The step index.
        step: usize,
        /// The missing rank.
        rank: usize,
        /// How many deputies there are.
        deputies: usize,
    },
    /// Reminders are enabled with a zero interval.
    #[error("the {0} reminder interval must be at least 1 minute")]
    ZeroReminderInterval(Severity),
    /// Too many reminders.
    #[error("the {severity} ladder asks for {count} reminders (at most {MAX_REMINDERS})")]
    TooManyReminders {
        /// The severity.
        severity: Severity,
        /// The requested count.
        count: u32,
    },
}

/// Who a step pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The patient's responsible physician.
    Responsible,
    /// The deputy of this rank (0 = first deputy).
    Deputy {
        /// Rank in [`CareTeam::deputies`].
        rank: usize,
    },
    /// Every deputy.
    AllDeputies,
    /// A named physician (for example the on-call physician of the service).
    Physician {
        /// The physician.
        id: PhysicianId,
    },
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationStep {
    /// For step 0: minutes after the episode reached this severity (usually 0).
    /// For later steps: minutes without acknowledgment after the previous step
    /// went out.
    pub after_minutes: u32,
    /// Who is paged.
    pub targets: Vec<Target>,
}

/// The ladder of one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ladder {
    /// Steps in order.
    pub steps: Vec<EscalationStep>,
    /// After the last step, remind everyone paged every this many minutes
    /// until acknowledgment (`None`: no reminders).
    #[serde(default)]
    pub remind_every_minutes: Option<u32>,
    /// At most this many reminders.
    #[serde(default)]
    pub max_reminders: u32,
}

impl Ladder {
    fn simple(escalate: Option<(u32, Target)>, remind: Option<u32>, max_reminders: u32) -> Self {
        let mut steps = vec![EscalationStep { after_minutes: 0, targets: vec![Target::Responsible] }];
        if let Some((after_minutes, target)) = escalate {
            steps.push(EscalationStep { after_minutes, targets: vec![target] });
        }
        Self { steps, remind_every_minutes: remind, max_reminders }
    }

    /// The delay of step `index` (see [`EscalationStep::after_minutes`]).
    pub fn delay(&self, index: usize) -> Duration {
        Duration::minutes(self.steps.get(index).map_or(0, |s| i64::from(s.after_minutes)))
    }

    /// The reminder interval, if reminders are on.
    pub fn reminder_interval(&self) -> Option<Duration> {
        match self.remind_every_minutes {
            Some(m) if m > 0 && self.max_reminders > 0 => Some(Duration::minutes(i64::from(m))),
            _ => None,
        }
    }

    fn validate(&self, severity: Severity, deputies: usize) -> Result<(), PolicyError> {
        if self.steps.is_empty() {
            return Err(PolicyError::EmptyLadder(severity));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(PolicyError::TooManySteps { severity, steps: self.steps.len() });
        }
        for (step, s) in self.steps.iter().enumerate() {
            if s.targets.is_empty() {
                return Err(PolicyError::EmptyStep { severity, step });
            }
            if step > 0 && s.after_minutes == 0 {
                return Err(PolicyError::ZeroDelay { severity, step });
            }
            for t in &s.targets {
                match t {
                    Target::Deputy { rank } if *rank >= deputies => {
                        return Err(PolicyError::DeputyOutOfRange { severity, step, rank: *rank, deputies });
                    }
                    Target::AllDeputies if deputies == 0 => {
                        return Err(PolicyError::DeputyOutOfRange { severity, step, rank: 0, deputies });
                    }
                    _ => {}
                }
            }
        }
        if self.remind_every_minutes == Some(0) && self.max_reminders > 0 {
            return Err(PolicyError::ZeroReminderInterval(severity));
        }
        if self.max_reminders > MAX_REMINDERS {
            return Err(PolicyError::TooManyReminders { severity, count: self.max_reminders });
        }
        Ok(())
    }
}

/// Escalation ladders per pageable severity (INFO is never paged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    /// LOW alerts.
    pub low: Ladder,
    /// MEDIUM alerts.
    pub medium: Ladder,
    /// HIGH alerts.
    pub high: Ladder,
    /// CRITICAL alerts.
    pub critical: Ladder,
}

impl Default for EscalationPolicy {
    /// A conservative default: LOW to the responsible physician only; MEDIUM
    /// escalates to the first deputy after 2 h; HIGH to every deputy after
    /// 15 min, reminders every 15 min (4); CRITICAL to every deputy after 5 min,
    /// reminders every 5 min (6).
    fn default() -> Self {
        Self {
            low: Ladder::simple(None, None, 0),
            medium: Ladder::simple(Some((120, Target::Deputy { rank: 0 })), Some(240), 1),
            high: Ladder::simple(Some((15, Target::AllDeputies)), Some(15), 4),
            critical: Ladder::simple(Some((5, Target::AllDeputies)), Some(5), 6),
        }
    }
}

impl EscalationPolicy {
    /// The ladder for a severity; `None` for INFO.
    pub fn ladder(&self, severity: Severity) -> Option<&Ladder> {
        match severity {
            Severity::Info => None,
            Severity::Low => Some(&self.low),
            Severity::Medium => Some(&self.medium),
            Severity::High => Some(&self.high),
            Severity::Critical => Some(&self.critical),
        }
    }

    /// Checks every ladder against a team with `deputies` deputies.
    pub fn validate(&self, deputies: usize) -> Result<(), PolicyError> {
        for s in [Severity::Low, Severity::Medium, Severity::High, Severity::Critical] {
            if let Some(l) = self.ladder(s) {
                l.validate(s, deputies)?;
            }
        }
        Ok(())
    }

    /// Physicians named explicitly by [`Target::Physician`].
    pub fn named_physicians(&self) -> impl Iterator<Item = &PhysicianId> {
        [&self.low, &self.medium, &self.high, &self.critical]
            .into_iter()
            .flat_map(|l| l.steps.iter())
            .flat_map(|s| s.targets.iter())
            .filter_map(|t| match t {
                Target::Physician { id } => Some(id),
                _ => None,
            })
    }
}

/// Resolves the targets of a step to physicians, deduplicated, in order.
/// Targets the team cannot satisfy (a missing deputy rank) are skipped.
pub fn resolve_targets(step: &EscalationStep, team: &CareTeam) -> Vec<PhysicianId> {
    let mut out: Vec<PhysicianId> = Vec::new();
    let mut push = |id: &PhysicianId| {
        if !out.contains(id) {
            out.push(id.clone());
        }
    };
    for t in &step.targets {
        match t {
            Target::Responsible => push(&team.responsible),
            Target::Deputy { rank } => {
                if let Some(d) = team.deputies.get(*rank) {
                    push(d);
                }
            }
            Target::AllDeputies => team.deputies.iter().for_each(&mut push),
            Target::Physician { id } => push(id),
        }
    }
    out
}
