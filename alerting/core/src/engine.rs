//! The pure step the stores run inside their episode transaction: apply an
//! [`Action`] to the episode state, re-plan, and say what to write.

use chrono::{DateTime, Duration, Utc};
use vitalwatch_schemas::proto::AlertEvent;

use crate::audit::AuditRecord;
use crate::caps::{CapPolicy, DigestEntry, RecentLoad};
use crate::episode::{AckVia, Acknowledgment, EpisodeError, EpisodeState};
use crate::notification::Notification;
use crate::planner::{PlanInput, plan};
use crate::team::{CareTeam, Directory, PhysicianId};

/// How long to wait before re-planning an episode whose patient has no care team yet.
pub const NO_TEAM_RETRY: Duration = Duration::minutes(1);

/// What happens to an episode.
#[derive(Debug, Clone)]
pub enum Action {
    /// An alert event from the rules engine (opens the episode if needed).
    Event(Box<AlertEvent>),
    /// A physician acknowledges.
    Ack {
        /// Who.
        by: PhysicianId,
        /// How.
        via: AckVia,
        /// The link nonce (single use), for link acknowledgments.
        nonce: Option<String>,
        /// The severity the link or SMS code was sent for (`None`: the web
        /// application, which acknowledges the current severity). A message
        /// sent before a rise cannot acknowledge it ([`EpisodeError::SeverityRose`]).
        sent_for: Option<crate::severity::Severity>,
    },
    /// A physician snoozes.
    Snooze {
        /// Who.
        by: PhysicianId,
        /// Until when.
        until: DateTime<Utc>,
        /// The severity the SMS code was sent for (`None`: the web application).
        /// A code sent before a rise cannot snooze it.
        sent_for: Option<crate::severity::Severity>,
    },
    /// Re-plan at the episode's wake-up time (reminders, escalation).
    Replan,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The episode state refused the action.
    #[error(transparent)]
    Episode(#[from] EpisodeError),
    /// No such episode.
    #[error("unknown episode {0}")]
    UnknownEpisode(String),
    /// The acknowledgment link was already used.
    #[error("this acknowledgment link was already used")]
    NonceUsed,
}

/// The care team context loaded inside the transaction.
#[derive(Debug, Clone, Default)]
pub struct TeamContext {
    /// The patient's care team, if configured.
    pub team: Option<CareTeam>,
    /// The physicians of that team.
    pub directory: Directory,
    /// Pages sent to them during the last hour.
    pub load: RecentLoad,
}

/// What to write after applying an action.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The new state.
    pub state: Option<EpisodeState>,
    /// Notifications to put into the outbox.
    pub outbox: Vec<Notification>,
    /// Folded notifications to add to their recipients' pending digests.
    pub digest: Vec<DigestEntry>,
    /// Audit records.
    pub audit: Vec<AuditRecord>,
    /// When to re-plan.
    pub next_wakeup: Option<DateTime<Utc>>,
    /// The new acknowledgment, to record.
    pub ack: Option<Acknowledgment>,
    /// False when a care team was missing and nothing could be planned.
    pub planned: bool,
}

/// Applies `action` to `current` and re-plans. Pure.
pub fn apply(
    current: Option<EpisodeState>,
    action: &Action,
    ctx: &TeamContext,
    caps: &CapPolicy,
    now: DateTime<Utc>,
) -> Result<Applied, EngineError> {
    let mut out = Applied::default();
    let mut state = match (current, action) {
        (None, Action::Event(event)) => {
            let (state, audit) = EpisodeState::from_event(event, now)?;
            out.audit.extend(audit);
            state
        }
        (None, _) => return Err(EngineError::UnknownEpisode(String::new())),
        (Some(mut state), Action::Event(event)) => {
            out.audit.extend(state.apply_event(event, now)?);
            state
        }
        (Some(mut state), Action::Ack { by, via, sent_for, .. }) => {
            if let Some(record) = state.acknowledge(by.clone(), *via, *sent_for, now)? {
                let delay = (now - state.opened_at).num_milliseconds().max(0) as f64 / 1000.0;
                let via_label = match via {
                    crate::episode::AckVia::Link => "link",
                    crate::episode::AckVia::SmsReply => "sms_reply",
                    crate::episode::AckVia::WebApp => "web_app",
                };
                metrics::histogram!("vitalwatch_alerting_ack_delay_seconds", "via" => via_label).record(delay);
                out.audit.push(record);
                out.ack = state.acks.last().cloned();
            }
            state
        }
        (Some(mut state), Action::Snooze { by, until, sent_for }) => {
            if let Some(sent_for) = *sent_for
                && sent_for < state.severity
            {
                return Err(EpisodeError::SeverityRose { sent_for, now: state.severity }.into());
            }
            out.audit.push(state.snooze(by.clone(), *until, now)?);
            state
        }
        (Some(state), Action::Replan) => state,
    };
    match &ctx.team {
        Some(team) => {
            let p = plan(PlanInput { episode: &state, team, directory: &ctx.directory, load: &ctx.load, caps, now });
            state.record_plan(&p);
            out.audit.extend(p.audit);
            for n in &p.notifications {
                let kind = match n.step {
                    crate::notification::Step::Page { index, .. } if index > 0 => "escalation",
                    crate::notification::Step::Reminder { .. } => "reminder",
                    _ => continue,
                };
                metrics::counter!("vitalwatch_alerting_escalations_total", "kind" => kind).increment(1);
            }
            out.outbox = p.notifications;
            out.digest = p.digest;
            out.next_wakeup = p.next_wakeup;
            out.planned = true;
        }
        None => {
            // Keep the state; try again once a care team is configured.
            out.next_wakeup = state.resolved_at.is_none().then(|| now + NO_TEAM_RETRY);
        }
    }
    out.state = Some(state);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode::EpisodeId;

    #[test]
    fn unknown_episode_and_missing_team() {
        let now = Utc::now();
        let ack =
            Action::Ack { by: PhysicianId::new("dr-a").unwrap(), via: AckVia::WebApp, nonce: None, sent_for: None };
        let ctx = TeamContext::default();
        assert!(matches!(apply(None, &ack, &ctx, &CapPolicy::default(), now), Err(EngineError::UnknownEpisode(_))));
        let event = AlertEvent {
            event_id: "e1".into(),
            episode_id: "ep-1".into(),
            patient_id: "pt-1".into(),
            kind: vitalwatch_schemas::proto::AlertEventKind::Opened as i32,
            severity: vitalwatch_schemas::proto::Severity::High as i32,
            reading_time_unix_micros: now.timestamp_micros() - 1,
            detected_at_unix_micros: now.timestamp_micros(),
            ..AlertEvent::default()
        };
        let applied = apply(None, &Action::Event(Box::new(event)), &ctx, &CapPolicy::default(), now).unwrap();
        assert!(!applied.planned && applied.outbox.is_empty());
        assert_eq!(applied.next_wakeup, Some(now + NO_TEAM_RETRY));
        let state = applied.state.unwrap();
        assert_eq!(state.episode_id, EpisodeId::new("ep-1").unwrap());
        let applied = apply(Some(state), &ack, &ctx, &CapPolicy::default(), now).unwrap();
        assert!(applied.ack.is_some());
    }

    fn event(
        id: &str,
        kind: vitalwatch_schemas::proto::AlertEventKind,
        sev: vitalwatch_schemas::proto::Severity,
        now: DateTime<Utc>,
    ) -> Action {
        Action::Event(Box::new(AlertEvent {
            event_id: id.into(),
            episode_id: "ep-1".into(),
            patient_id: "pt-1".into(),
            kind: kind as i32,
            severity: sev as i32,
            reading_time_unix_micros: now.timestamp_micros() - 1,
            detected_at_unix_micros: now.timestamp_micros(),
            ..AlertEvent::default()
        }))
    }

    /// Issue #13, defect 2: a link or code sent for MEDIUM cannot acknowledge (or
    /// snooze) the episode once it rose to CRITICAL; one sent for CRITICAL can.
    #[test]
    fn a_message_sent_before_a_rise_cannot_acknowledge_it() {
        use crate::severity::Severity;
        use vitalwatch_schemas::proto::{AlertEventKind as K, Severity as S};
        let now = Utc::now();
        let (ctx, caps) = (TeamContext::default(), CapPolicy::default());
        let opened = apply(None, &event("e1", K::Opened, S::Medium, now), &ctx, &caps, now).unwrap().state;
        let risen =
            apply(opened, &event("e2", K::Escalated, S::Critical, now), &ctx, &caps, now).unwrap().state.unwrap();
        let by = PhysicianId::new("dr-a").unwrap();
        let ack = |sent_for| Action::Ack { by: by.clone(), via: AckVia::Link, nonce: None, sent_for };
        let rose =
            EngineError::Episode(EpisodeError::SeverityRose { sent_for: Severity::Medium, now: Severity::Critical });
        assert_eq!(apply(Some(risen.clone()), &ack(Some(Severity::Medium)), &ctx, &caps, now).unwrap_err(), rose);
        let snooze =
            Action::Snooze { by: by.clone(), until: now + Duration::minutes(30), sent_for: Some(Severity::Medium) };
        assert_eq!(apply(Some(risen.clone()), &snooze, &ctx, &caps, now).unwrap_err(), rose);
        assert!(rose.to_string().contains("more severe since this message"), "{rose}");
        let ok = apply(Some(risen.clone()), &ack(Some(Severity::Critical)), &ctx, &caps, now).unwrap();
        assert_eq!(ok.ack.map(|a| a.severity), Some(Severity::Critical));
        // The web application acknowledges what it shows: the current severity.
        assert!(apply(Some(risen), &ack(None), &ctx, &caps, now).unwrap().ack.is_some());
    }
}
