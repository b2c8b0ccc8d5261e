//! Alert episodes: list, read, acknowledge, snooze, close.
//!
//! Acknowledge and snooze go through the alerting store's episode transition
//! (one transaction with its own audit records). Close acknowledges the
//! episode at its current severity (stopping reminders and escalation) and
//! marks it `closed` in the rules engine's `alerts` table. A later severity
//! rise still pages (an acknowledgment covers one severity) and sets the
//! episode back to `open`.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use vitalwatch_alerting::store::{Action, OutboxRow, TransitionOptions, tables};
use vitalwatch_alerting::{AckVia, EpisodeId, PhysicianId};

use super::AdminService;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::{AlertAction, AlertActionResult, AlertDetail, AlertPage, AlertQuery, SnoozeInput};
use crate::policy::Operation;
use crate::service::worklist::{OUTCOMES, note_text};
use crate::store::AlertFilter;
use crate::store::tables as store_tables;
use crate::store::workspace::{NewNote, insert_note};

fn episode_id(id: &str) -> Result<EpisodeId, AdminError> {
    EpisodeId::new(id.to_owned()).map_err(AdminError::invalid)
}

fn unknown_episode(id: &str) -> AdminError {
    AdminError::NotFound(format!("unknown episode {id}"))
}

fn options() -> TransitionOptions {
    TransitionOptions { codes: None, caps: Default::default() }
}

fn cursor(t: DateTime<Utc>, id: &str) -> String {
    format!("{}~{id}", t.timestamp_micros())
}

fn parse_cursor(c: &str) -> Result<(DateTime<Utc>, String), AdminError> {
    let bad = || AdminError::Invalid("invalid cursor `after`".into());
    let (t, id) = c.split_once('~').ok_or_else(bad)?;
    let t = t.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    Ok((t, id.to_owned()))
}

impl AdminService {
    /// Alert episodes, newest first (a physician: their patients').
    pub async fn list_alerts(&self, actor: &Actor, q: &AlertQuery) -> Result<AlertPage, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadAlerts).await?;
        if let Some(s) = &q.status
            && !["open", "resolved", "closed"].contains(&s.as_str())
        {
            return Err(AdminError::Invalid("status must be open, resolved or closed".into()));
        }
        let limit = self.limit(q.limit);
        let filter = AlertFilter {
            patient_id: q.patient.clone(),
            status: q.status.clone(),
            severity: q.severity.clone(),
            before: q.after.as_deref().map(parse_cursor).transpose()?,
            scope_patients: scope,
            limit: limit + 1,
        };
        let mut items = self.admin.alerts(&filter).await?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            items.last().map(|a| cursor(a.opened_at, &a.episode_id)).unwrap_or_default()
        });
        Ok(AlertPage { items, next })
    }

    /// The patient of an episode, checked against the actor's scope (404 otherwise).
    pub(crate) async fn episode_patient(
        &self,
        actor: &Actor,
        op: Operation,
        episode: &str,
    ) -> Result<String, AdminError> {
        self.allow(actor, op)?;
        let patient = self.admin.episode_patient(episode).await?.ok_or_else(|| unknown_episode(episode))?;
        self.check_patient(actor, op, &patient).await.map_err(|_| unknown_episode(episode))?;
        Ok(patient)
    }

    /// One episode: rules view, evidence, alerting state.
    pub async fn alert(&self, actor: &Actor, episode: &str) -> Result<AlertDetail, AdminError> {
        self.episode_patient(actor, Operation::ReadAlerts, episode).await?;
        let row = self.admin.alert(episode).await?;
        let state = self.alerting.episode(&episode_id(episode)?).await?;
        Ok(AlertDetail {
            evidence: row.as_ref().map(|r| crate::store::parse_json(&r.evidence)),
            alert: row.map(|r| r.view),
            alerting: state.map(|s| serde_json::to_value(s).unwrap_or_default()),
        })
    }

    /// Outbox rows of an episode (delivery status).
    pub async fn alert_outbox(&self, actor: &Actor, episode: &str) -> Result<Vec<OutboxRow>, AdminError> {
        self.episode_patient(actor, Operation::ReadAlerts, episode).await?;
        Ok(self.alerting.outbox(&episode_id(episode)?).await?)
    }

    /// Who acts: a physician acts in their own name; an operator names the physician.
    fn acting_physician(actor: &Actor, by: Option<&str>) -> Result<PhysicianId, AdminError> {
        // A nurse acknowledges and snoozes in their own name (their account id).
        if let crate::actor::Role::Nurse(me) = &actor.role {
            return match by {
                Some(b) if b != me => Err(AdminError::Forbidden("nurses act in their own name only".into())),
                _ => PhysicianId::new(me.clone()).map_err(AdminError::invalid),
            };
        }
        match (actor.physician_id(), by) {
            (Some(me), None) => Ok(me.clone()),
            (Some(me), Some(b)) if b == me.as_str() => Ok(me.clone()),
            (Some(_), Some(_)) => Err(AdminError::Forbidden("physicians act in their own name only".into())),
            (None, Some(b)) => PhysicianId::new(b.to_owned()).map_err(AdminError::invalid),
            (None, None) => Err(AdminError::Invalid("`by` (the physician acting) is required for operators".into())),
        }
    }

    /// Acknowledges an episode (stops escalation at its severity).
    pub async fn ack_alert(
        &self,
        actor: &Actor,
        episode: &str,
        input: &AlertAction,
    ) -> Result<AlertActionResult, AdminError> {
        let patient = self.episode_patient(actor, Operation::ActOnAlerts, episode).await?;
        let by = Self::acting_physician(actor, input.by.as_deref())?;
        let action = Action::Ack { by: by.clone(), via: AckVia::WebApp, nonce: None, sent_for: None };
        let (id, entry) = (
            episode_id(episode)?,
            self.entry(actor, "alert.ack", ("episode", episode), Some(&patient), json!({ "by": by.as_str() })),
        );
        self.audited(async |c| {
            tables::transition(c, &id, &action, &options(), Utc::now()).await?;
            Ok(((), Some(entry)))
        })
        .await?;
        Ok(AlertActionResult { episode_id: episode.into(), outcome: "acknowledged".into(), until: None })
    }

    /// Snoozes an episode for 1 to 1440 minutes (a severity rise breaks it).
    pub async fn snooze_alert(
        &self,
        actor: &Actor,
        episode: &str,
        input: &SnoozeInput,
    ) -> Result<AlertActionResult, AdminError> {
        if !(1..=1440).contains(&input.minutes) {
            return Err(AdminError::Invalid("minutes must be between 1 and 1440".into()));
        }
        let patient = self.episode_patient(actor, Operation::ActOnAlerts, episode).await?;
        let by = Self::acting_physician(actor, input.by.as_deref())?;
        let until = Utc::now() + Duration::minutes(i64::from(input.minutes));
        let action = Action::Snooze { by: by.clone(), until, sent_for: None };
        let details = json!({ "by": by.as_str(), "minutes": input.minutes });
        let (id, entry) =
            (episode_id(episode)?, self.entry(actor, "alert.snooze", ("episode", episode), Some(&patient), details));
        self.audited(async |c| {
            tables::transition(c, &id, &action, &options(), Utc::now()).await?;
            Ok(((), Some(entry)))
        })
        .await?;
        Ok(AlertActionResult { episode_id: episode.into(), outcome: "snoozed".into(), until: Some(until) })
    }

    /// Closes an episode: acknowledged in alerting (if still unresolved there)
    /// and marked `closed` in `alerts`.
    pub async fn close_alert(
        &self,
        actor: &Actor,
        episode: &str,
        input: &AlertAction,
    ) -> Result<AlertActionResult, AdminError> {
        let patient = self.episode_patient(actor, Operation::ActOnAlerts, episode).await?;
        let by = Self::acting_physician(actor, input.by.as_deref())?;
        let outcome = match input.outcome.as_deref() {
            Some(o) if OUTCOMES.contains(&o) => Some(o),
            Some(_) => return Err(AdminError::Invalid(format!("outcome must be one of {}", OUTCOMES.join(", ")))),
            None => None,
        };
        let note = input.note.as_deref().map(|n| note_text(n, true)).transpose()?;
        if outcome.is_none() && note.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(AdminError::Invalid("a close note needs an outcome".into()));
        }
        let id = episode_id(episode)?;
        let state = self.alerting.episode(&id).await?;
        self.audited(async |c| {
            let mut changed = false;
            if let Some(state) = state
                && state.resolved_at.is_none()
                && !state.is_acknowledged()
            {
                let action = Action::Ack { by: by.clone(), via: AckVia::WebApp, nonce: None, sent_for: None };
                tables::transition(c, &id, &action, &options(), Utc::now()).await?;
                changed = true;
            }
            changed |= store_tables::close_alert(c, episode).await?;
            if !changed {
                return Err(AdminError::Conflict(format!("episode {episode} is not open")));
            }
            let mut details = json!({ "by": by.as_str() });
            if let Some(outcome) = outcome {
                let at = Utc::now();
                let n = NewNote {
                    episode_id: episode,
                    patient_id: &patient,
                    kind: "close",
                    outcome: Some(outcome),
                    body: note.as_deref().unwrap_or_default(),
                    author: &actor.name,
                    author_role: actor.role.name(),
                    at,
                };
                let note_id = insert_note(c, &n).await?;
                details = json!({ "by": by.as_str(), "outcome": outcome, "note_id": note_id });
            }
            Ok(((), Some(self.entry(actor, "alert.close", ("episode", episode), Some(&patient), details))))
        })
        .await?;
        Ok(AlertActionResult { episode_id: episode.into(), outcome: "closed".into(), until: None })
    }
}
