//! The clinician worklist and the episode's notes (issue #16).
//!
//! [`AdminService::worklist`]: the open episodes of the actor's patients,
//! most severe first, then oldest first, keyset paged, each row with the
//! current value (from the evidence), the patient's previous value and 7-day
//! mean before the episode (one query for the page), the acknowledgment,
//! the snooze, the escalation state (pages from the outbox, next step from the
//! episode state and the care team's ladder) and whether a tele-expertise
//! request waits for an answer. Two queries per page: the rows, then the
//! pages of their episodes.
//!
//! Notes and close outcomes are clinical data: stored in `episode_notes`,
//! never logged; the admin audit entry names the note id only.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use vitalwatch_alerting::policy::resolve_targets;
use vitalwatch_alerting::{CareTeam, EpisodeState, Notification, Step};

use super::AdminService;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::policy::Operation;
use crate::store::workspace::{NewNote, NoteView, PageRecord, WorklistFilter, WorklistRecord, insert_note};

/// The close outcomes a clinician picks from.
pub const OUTCOMES: [&str; 5] =
    ["patient_called", "treatment_adjusted", "consultation_scheduled", "sent_to_emergency", "no_action_needed"];

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 4000;

/// Filters and cursor of the worklist.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorklistQuery {
    /// One severity (`critical`, `high`, `medium`, `low`, `info`).
    pub severity: Option<String>,
    /// One care program.
    pub program: Option<String>,
    /// Only acknowledged (`true`) or unacknowledged (`false`) episodes.
    pub acknowledged: Option<bool>,
    /// Only snoozed (`true`) or not snoozed (`false`) episodes.
    pub snoozed: Option<bool>,
    /// One patient.
    pub patient: Option<String>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<String>,
    /// Page size (capped by the service's maximum).
    pub limit: Option<u32>,
}

/// One page of the worklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorklistPage {
    /// Rows, most severe then oldest first.
    pub items: Vec<WorklistRow>,
    /// Cursor of the next page, if any.
    pub next: Option<String>,
}

/// A value with its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValueAt {
    /// The value, in `unit`.
    pub value: f64,
    /// When measured (if known).
    pub at: Option<DateTime<Utc>>,
}

/// Who acknowledged, when, at which severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AckInfo {
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The severity acknowledged.
    pub severity: String,
    /// How (`link`, `sms_reply`, `web_app`).
    pub via: String,
}

/// A snooze in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnoozeInfo {
    /// Who.
    pub by: String,
    /// Until when.
    pub until: DateTime<Utc>,
}

/// One page (or all-clear) sent or pending, per recipient and channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PageInfo {
    /// Recipient (physician id).
    pub recipient: String,
    /// `email` or `sms`.
    pub channel: String,
    /// The step: `high.page0`, `high.remind1`, `resolved`.
    pub step: String,
    /// pending, sent, failed, cancelled.
    pub status: String,
    /// Queued at.
    pub queued_at: DateTime<Utc>,
    /// Sent at.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The next escalation step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NextStep {
    /// `page` (the next rung) or `reminder`.
    pub kind: String,
    /// The step, e.g. `high.page1`.
    pub step: String,
    /// Who will be paged.
    pub targets: Vec<String>,
    /// When (the scheduler's next wake-up), if known.
    pub at: Option<DateTime<Utc>>,
}

/// One worklist row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorklistRow {
    /// Episode.
    pub episode_id: String,
    /// Patient.
    pub patient_id: String,
    /// Care program.
    pub program: String,
    /// LOINC code.
    pub code: String,
    /// Severity.
    pub severity: String,
    /// Opening reading time.
    pub opened_at: DateTime<Utc>,
    /// Last event.
    pub last_event_at: DateTime<Utc>,
    /// Summary (no identifying data).
    pub summary: String,
    /// The triggering (latest) reading of the code, from the evidence.
    pub current: Option<ValueAt>,
    /// UCUM unit of the values.
    pub unit: Option<String>,
    /// The patient's last reading of the code before the episode.
    pub previous: Option<ValueAt>,
    /// Mean of the patient's readings of the code in the 7 days before the episode.
    pub mean_7d: Option<f64>,
    /// The acknowledgment at the current severity, if any (else the latest one).
    pub acknowledgment: Option<AckInfo>,
    /// Acknowledged at the current severity.
    pub acknowledged: bool,
    /// The snooze in force.
    pub snooze: Option<SnoozeInfo>,
    /// Pages sent or pending, oldest first.
    pub pages: Vec<PageInfo>,
    /// The next escalation step (none once acknowledged).
    pub next_step: Option<NextStep>,
    /// An unanswered tele-expertise request exists.
    pub expertise_open: bool,
}

/// The notes of an episode or a patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotePage {
    /// Notes.
    pub items: Vec<NoteView>,
    /// Cursor of the next page (patient notes), if any.
    pub next: Option<String>,
}

/// A reading of the episode's code (for the chart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReadingPoint {
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// Value, in the episode's unit.
    pub value: f64,
}

/// An entry of the episode's timeline (alerting's audit trail: events,
/// decisions, deliveries, acknowledgments), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Entry type (`episode_opened`, `notification_sent`, `acknowledged`, ...).
    pub entry_type: String,
    /// The record.
    #[schema(value_type = Object)]
    pub record: serde_json::Value,
}

/// Everything the episode page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EpisodeView {
    /// The episode as the rules engine recorded it.
    pub alert: crate::model::AlertView,
    /// Evidence (readings, threshold, baseline).
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// The worklist's view of it: current and previous values, acknowledgment,
    /// snooze, pages, next step, open tele-expertise.
    pub row: WorklistRow,
    /// Every acknowledgment, oldest first.
    pub acknowledgments: Vec<AckInfo>,
    /// Readings of the code from 14 days before the episode to a day after its last event.
    pub readings: Vec<ReadingPoint>,
    /// Alerting's audit trail of the episode, oldest first (at most 500 entries).
    pub timeline: Vec<TimelineEntry>,
    /// Notes and the close outcome, oldest first.
    pub notes: Vec<NoteView>,
    /// Tele-expertise requests and their answers, oldest first.
    pub expertise: Vec<crate::store::workspace::ExpertiseView>,
}

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

fn cursor(r: &WorklistRecord) -> String {
    format!("{}~{}~{}", r.rank, r.opened_at.timestamp_micros(), r.episode_id)
}

fn parse_cursor(c: &str) -> Result<(i64, DateTime<Utc>, String), AdminError> {
    let bad = || AdminError::Invalid("invalid cursor `after`".into());
    let mut parts = c.splitn(3, '~');
    let rank = parts.next().and_then(|r| r.parse::<i64>().ok()).ok_or_else(bad)?;
    let t =
        parts.next().and_then(|t| t.parse::<i64>().ok()).and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    let id = parts.next().filter(|id| !id.is_empty()).ok_or_else(bad)?;
    Ok((rank, t, id.to_owned()))
}

/// The triggering reading of `code` in the evidence: the latest one (or the
/// evidence's own `value` and `unit`, when it has no readings).
fn current_value(evidence: &serde_json::Value, code: &str) -> Option<(ValueAt, String)> {
    readings_value(evidence, code).or_else(|| {
        let v = evidence.get("value")?.as_f64().filter(|v| v.is_finite())?;
        let unit = evidence.get("unit").and_then(|u| u.as_str()).unwrap_or_default().to_owned();
        Some((ValueAt { value: v, at: None }, unit))
    })
}

fn readings_value(evidence: &serde_json::Value, code: &str) -> Option<(ValueAt, String)> {
    evidence
        .get("readings")?
        .as_array()?
        .iter()
        .filter(|r| r.get("code").and_then(|c| c.as_str()) == Some(code))
        .filter_map(|r| {
            let v = r.get("value")?.as_f64().filter(|v| v.is_finite())?;
            let t = r.get("time_unix_micros").and_then(|t| t.as_i64());
            let unit = r.get("unit").and_then(|u| u.as_str()).unwrap_or_default().to_owned();
            Some((t, v, unit))
        })
        .max_by_key(|(t, _, _)| *t)
        .map(|(t, value, unit)| (ValueAt { value, at: t.and_then(DateTime::from_timestamp_micros) }, unit))
}

/// The next rung or reminder of the episode's ladder, unless acknowledged or resolved.
fn next_step(state: &EpisodeState, team: Option<&CareTeam>, at: Option<DateTime<Utc>>) -> Option<NextStep> {
    if state.is_acknowledged() || state.resolved_at.is_some() {
        return None;
    }
    let team = team?;
    let ladder = team.policy.ladder(state.severity)?;
    let (mut rung, mut reminders) = (None::<u32>, 0u32);
    for i in &state.issued {
        match i.step {
            Step::Page { severity, index } if severity == state.severity => {
                rung = Some(rung.map_or(index, |r| r.max(index)));
            }
            Step::Reminder { severity, number } if severity == state.severity => reminders = reminders.max(number),
            _ => {}
        }
    }
    let next = rung.map_or(0, |r| r + 1);
    if let Some(step) = ladder.steps.get(next as usize) {
        let targets = resolve_targets(step, team).iter().map(ToString::to_string).collect();
        let step = Step::Page { severity: state.severity, index: next };
        return Some(NextStep { kind: "page".into(), step: step.to_string(), targets, at });
    }
    if ladder.reminder_interval().is_some() && reminders < ladder.max_reminders {
        let mut targets: Vec<String> = state
            .issued
            .iter()
            .filter(|i| i.step.is_page() && i.step.severity() == Some(state.severity))
            .map(|i| i.recipient.to_string())
            .collect();
        targets.sort();
        targets.dedup();
        let step = Step::Reminder { severity: state.severity, number: reminders + 1 };
        return Some(NextStep { kind: "reminder".into(), step: step.to_string(), targets, at });
    }
    None
}

fn row(r: WorklistRecord, pages: Vec<PageInfo>, now: DateTime<Utc>) -> WorklistRow {
    let state: Option<EpisodeState> = r.state.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let team: Option<CareTeam> = r.team.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let (current, unit) = match current_value(&r.evidence, &r.code) {
        Some((v, u)) => (Some(v), Some(u).filter(|u| !u.is_empty())),
        None => (None, state.as_ref().map(|s| s.details.unit.clone()).filter(|u| !u.is_empty())),
    };
    let acknowledged = state.as_ref().is_some_and(EpisodeState::is_acknowledged);
    let acknowledgment = state.as_ref().and_then(|s| {
        let a = s.acks.iter().rev().find(|a| a.severity >= s.severity).or_else(|| s.acks.last())?;
        let via = serde_json::to_value(a.via).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        Some(AckInfo { by: a.by.to_string(), at: a.at, severity: a.severity.as_str().into(), via })
    });
    let snooze = state
        .as_ref()
        .filter(|s| s.is_snoozed(now))
        .and_then(|s| s.snooze.as_ref())
        .map(|s| SnoozeInfo { by: s.by.to_string(), until: s.until });
    let next_step = state.as_ref().and_then(|s| next_step(s, team.as_ref(), r.next_wakeup));
    WorklistRow {
        episode_id: r.episode_id,
        patient_id: r.patient_id,
        program: r.program,
        code: r.code,
        severity: r.severity,
        opened_at: r.opened_at,
        last_event_at: r.last_event_at,
        summary: r.summary,
        current,
        unit,
        previous: r.previous_value.map(|value| ValueAt { value, at: r.previous_at }),
        mean_7d: r.mean_7d,
        acknowledgment,
        acknowledged,
        snooze,
        pages,
        next_step,
        expertise_open: r.expertise_open,
    }
}

fn page_info(p: &PageRecord) -> PageInfo {
    // The step from the notification; a row written by another tool may lack it.
    let step = serde_json::from_str::<Notification>(&p.notification).map(|n| n.step.to_string()).unwrap_or_default();
    PageInfo {
        recipient: p.recipient.clone(),
        channel: p.channel.clone(),
        step,
        status: p.status.clone(),
        queued_at: p.created_at,
        sent_at: p.sent_at,
    }
}

/// A note's text: trimmed, 1 to [`MAX_NOTE_CHARS`] characters (`allow_empty` for closes).
pub(crate) fn note_text(text: &str, allow_empty: bool) -> Result<String, AdminError> {
    let t = text.trim();
    if t.is_empty() && !allow_empty {
        return Err(AdminError::Invalid("the note is empty".into()));
    }
    if t.chars().count() > MAX_NOTE_CHARS {
        return Err(AdminError::Invalid(format!("the note is longer than {MAX_NOTE_CHARS} characters")));
    }
    Ok(t.to_owned())
}

impl AdminService {
    /// The worklist: open episodes of the actor's patients, most severe then oldest first.
    pub async fn worklist(&self, actor: &Actor, q: &WorklistQuery) -> Result<WorklistPage, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadAlerts).await?;
        if let Some(s) = &q.severity
            && !SEVERITIES.contains(&s.as_str())
        {
            return Err(AdminError::Invalid("severity must be critical, high, medium, low or info".into()));
        }
        let limit = self.limit(q.limit);
        let now = Utc::now();
        let filter = WorklistFilter {
            scope_patients: scope,
            patient_id: q.patient.clone(),
            severity: q.severity.clone(),
            program: q.program.clone(),
            acknowledged: q.acknowledged,
            snoozed: q.snoozed,
            now,
            after: q.after.as_deref().map(parse_cursor).transpose()?,
            limit: limit + 1,
        };
        let mut records = self.workspace.worklist(&filter).await?;
        let next = (records.len() > limit as usize).then(|| {
            records.truncate(limit as usize);
            records.last().map(cursor).unwrap_or_default()
        });
        let ids: Vec<String> = records.iter().map(|r| r.episode_id.clone()).collect();
        let mut pages: HashMap<String, Vec<PageInfo>> = HashMap::new();
        for p in self.workspace.pages(&ids).await? {
            let info = page_info(&p);
            pages.entry(p.episode_id).or_default().push(info);
        }
        let items = records
            .into_iter()
            .map(|r| {
                let p = pages.remove(&r.episode_id).unwrap_or_default();
                row(r, p, now)
            })
            .collect();
        Ok(WorklistPage { items, next })
    }

    /// The episode page: the episode, its evidence, readings, timeline,
    /// pages, notes and tele-expertise; 404 outside the actor's scope.
    pub async fn episode_view(&self, actor: &Actor, episode: &str) -> Result<EpisodeView, AdminError> {
        self.episode_patient(actor, Operation::ReadAlerts, episode).await?;
        let unknown = || AdminError::NotFound(format!("unknown episode {episode}"));
        let alert = self.admin.alert(episode).await?.ok_or_else(unknown)?;
        let id = vitalwatch_alerting::EpisodeId::new(episode.to_owned()).map_err(AdminError::invalid)?;
        let state = self.alerting.episode(&id).await?;
        let team = self.alerting.care_team(&super::patient_id(&alert.view.patient_id)?).await?;
        let pages = self.workspace.pages(&[episode.to_owned()]).await?;
        let a = &alert.view;
        let (from, to) =
            (a.opened_at - chrono::Duration::days(14), a.last_event_at.max(a.opened_at) + chrono::Duration::days(1));
        let readings = self.workspace.readings(&a.patient_id, &a.code, from, to).await?;
        let before: Vec<&(DateTime<Utc>, f64, String)> = readings.iter().filter(|r| r.0 < a.opened_at).collect();
        let previous = before.last().map(|r| ValueAt { value: r.1, at: Some(r.0) });
        let week: Vec<f64> =
            before.iter().filter(|r| r.0 >= a.opened_at - chrono::Duration::days(7)).map(|r| r.1).collect();
        let mean_7d = (!week.is_empty()).then(|| week.iter().sum::<f64>() / week.len() as f64);
        let notes = self.workspace.episode_notes(episode).await?;
        let expertise = self.workspace.episode_expertise(episode).await?;
        let filter =
            crate::store::EpisodeAuditFilter { episode_id: Some(episode.into()), limit: 500, ..Default::default() };
        let mut timeline: Vec<TimelineEntry> = self
            .admin
            .episode_audit(&filter)
            .await?
            .into_iter()
            .map(|e| TimelineEntry { at: e.at, entry_type: e.entry_type, record: e.record })
            .collect();
        timeline.reverse();
        let acknowledgments = state
            .as_ref()
            .map(|s| {
                s.acks
                    .iter()
                    .map(|a| AckInfo {
                        by: a.by.to_string(),
                        at: a.at,
                        severity: a.severity.as_str().into(),
                        via: serde_json::to_value(a.via)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let record = WorklistRecord {
            episode_id: a.episode_id.clone(),
            patient_id: a.patient_id.clone(),
            program: a.program.clone(),
            code: a.code.clone(),
            severity: a.severity.clone(),
            opened_at: a.opened_at,
            last_event_at: a.last_event_at,
            summary: a.summary.clone(),
            evidence: crate::store::parse_json(&alert.evidence),
            state: state.as_ref().and_then(|s| serde_json::to_string(s).ok()),
            next_wakeup: None,
            team: team.as_ref().and_then(|t| serde_json::to_string(t).ok()),
            rank: 0,
            previous_value: previous.as_ref().map(|p| p.value),
            previous_at: previous.and_then(|p| p.at),
            mean_7d,
            expertise_open: expertise.iter().any(|x| x.answered_at.is_none()),
        };
        let evidence = record.evidence.clone();
        let mut row = row(record, pages.iter().map(page_info).collect(), Utc::now());
        if let Some(next) = &mut row.next_step {
            next.at = self.workspace.next_wakeup(episode).await?;
        }
        Ok(EpisodeView {
            alert: alert.view,
            evidence,
            row,
            acknowledgments,
            readings: readings.into_iter().map(|(time, value, _)| ReadingPoint { time, value }).collect(),
            timeline,
            notes,
            expertise,
        })
    }

    /// Adds a note to an episode; returns it.
    pub async fn add_note(&self, actor: &Actor, episode: &str, text: &str) -> Result<NoteView, AdminError> {
        let patient = self.episode_patient(actor, Operation::ActOnAlerts, episode).await?;
        let body = note_text(text, false)?;
        let at = Utc::now();
        let role = actor.role.name();
        let id = self
            .audited(async |c| {
                let n = NewNote {
                    episode_id: episode,
                    patient_id: &patient,
                    kind: "note",
                    outcome: None,
                    body: &body,
                    author: &actor.name,
                    author_role: role,
                    at,
                };
                let id = insert_note(c, &n).await?;
                let entry =
                    self.entry(actor, "alert.note", ("episode", episode), Some(&patient), json!({ "note_id": id }));
                Ok((id, Some(entry)))
            })
            .await?;
        Ok(NoteView {
            id,
            episode_id: episode.into(),
            patient_id: patient,
            kind: "note".into(),
            outcome: None,
            body,
            author: actor.name.clone(),
            author_role: role.into(),
            at,
        })
    }

    /// The notes and close outcomes of an episode, oldest first.
    pub async fn episode_notes(&self, actor: &Actor, episode: &str) -> Result<Vec<NoteView>, AdminError> {
        self.episode_patient(actor, Operation::ReadAlerts, episode).await?;
        Ok(self.workspace.episode_notes(episode).await?)
    }

    /// The notes of a patient's episodes, newest first (`after`: the previous page's `next`).
    pub async fn patient_notes(
        &self,
        actor: &Actor,
        patient: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<NotePage, AdminError> {
        self.check_patient(actor, Operation::ReadAlerts, patient).await?;
        let before = after
            .map(|a| a.parse::<i64>().map_err(|_| AdminError::Invalid("invalid cursor `after`".into())))
            .transpose()?;
        let limit = self.limit(limit);
        let mut items = self.workspace.patient_notes(patient, before, limit + 1).await?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            items.last().map(|n| n.id.to_string()).unwrap_or_default()
        });
        Ok(NotePage { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap();
        let c = format!("4~{}~ep~1", t.timestamp_micros());
        assert_eq!(parse_cursor(&c).unwrap(), (4, t, "ep~1".to_owned()));
        for bad in ["", "x~1~e", "4~x~e", "4~1", "4~1~"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_current_value_is_the_latest_reading_of_the_code() {
        let ev = json!({ "readings": [
            { "code": "59408-5", "value": 90.0, "unit": "%", "time_unix_micros": 1 },
            { "code": "59408-5", "value": 86.0, "unit": "%", "time_unix_micros": 3 },
            { "code": "8867-4", "value": 120.0, "unit": "/min", "time_unix_micros": 4 },
        ]});
        let (v, unit) = current_value(&ev, "59408-5").unwrap();
        assert_eq!((v.value, unit.as_str()), (86.0, "%"));
        assert!(current_value(&json!({}), "59408-5").is_none());
        let (v, unit) = current_value(&json!({ "value": 182, "unit": "mm[Hg]" }), "8480-6").unwrap();
        assert_eq!((v.value, unit.as_str()), (182.0, "mm[Hg]"));
    }

    #[test]
    fn notes_are_trimmed_and_bounded() {
        assert_eq!(note_text("  ok ", false).unwrap(), "ok");
        assert!(note_text("   ", false).is_err());
        assert_eq!(note_text("", true).unwrap(), "");
        assert!(note_text(&"x".repeat(MAX_NOTE_CHARS + 1), false).is_err());
    }
}
