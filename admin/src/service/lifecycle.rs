//! The patient lifecycle (French télésurveillance): inclusion in a monitoring
//! programme by a prescribing physician with recorded consent, discharge (end
//! of monitoring), readmission (a new period; history stays), and the list of
//! periods.
//!
//! A discharge, in ONE transaction with its audit entry: the open period ends
//! with its reason, `patients.status` becomes `discharged`, every open device
//! enrolment of the patient ends (`unenrolled`), every open episode is closed
//! (a close note records the end of monitoring; the rules worker publishes
//! the RESOLVED event), reminders and escalation stop and unsent
//! notifications are cancelled. No data is deleted. Afterwards ingest refuses
//! the patient's readings (`patient_not_monitored`), the rules workers drop
//! the patient (no alert, missing-data alerts included) and alerting queues
//! no notification for them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use vitalwatch_alerting::PhysicianId;

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::policy::Operation;
use crate::store::lifecycle::{self as store, NewPeriod, PeriodRow};
use crate::store::tables as store_tables;
use crate::store::workspace::{NewNote, insert_note};

/// Why a monitoring period ended (stored as text; a small closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The physician ended the monitoring (back to usual care).
    Discharged,
    /// The planned period (the programme's duration) is over.
    EndOfProgramme,
    /// The patient died.
    Deceased,
    /// The patient moved to another team or facility.
    Transferred,
    /// Anything else: the note says what.
    Other,
}

impl EndReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Discharged => "discharged",
            EndReason::EndOfProgramme => "end_of_programme",
            EndReason::Deceased => "deceased",
            EndReason::Transferred => "transferred",
            EndReason::Other => "other",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(s: &str) -> Option<EndReason> {
        [
            EndReason::Discharged,
            EndReason::EndOfProgramme,
            EndReason::Deceased,
            EndReason::Transferred,
            EndReason::Other,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// An inclusion (`POST /v1/patients/{id}/inclusions`). Times are RFC 3339 or
/// a day (`YYYY-MM-DD`, midnight UTC).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InclusionInput {
    /// The monitoring programme (e.g. `heart_failure`).
    pub program: String,
    /// The prescribing physician's id (in the physicians' directory).
    pub prescriber: String,
    /// Start of the monitoring (default: now).
    pub start: Option<String>,
    /// Planned end of the monitoring.
    pub planned_end: String,
    /// When the patient's consent was obtained.
    pub consent_date: String,
    /// Who recorded the consent (a staff member's name or id).
    pub consent_by: String,
}

/// A discharge (`POST /v1/patients/{id}/discharge`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DischargeInput {
    /// Why the monitoring ends.
    pub reason: EndReason,
    /// Free text (required for `other`).
    pub note: Option<String>,
    /// When (RFC 3339 or a day; default now; not in the future, not before the period's start).
    pub at: Option<String>,
}

/// One monitoring period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeriodView {
    /// Id.
    pub id: i64,
    /// Programme.
    pub program: String,
    /// Prescribing physician id.
    pub prescriber: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// Planned end (absent for periods opened by the migration).
    pub planned_end: Option<DateTime<Utc>>,
    /// Consent date (absent for periods opened by the migration).
    pub consent_date: Option<DateTime<Utc>>,
    /// Who recorded the consent.
    pub consent_by: Option<String>,
    /// Who recorded the inclusion.
    pub recorded_by: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// End, absent while monitored.
    pub ended_at: Option<DateTime<Utc>>,
    /// End reason.
    pub end_reason: Option<String>,
    /// Note on the end.
    pub end_note: Option<String>,
}

impl From<PeriodRow> for PeriodView {
    fn from(r: PeriodRow) -> Self {
        PeriodView {
            id: r.id,
            program: r.program,
            prescriber: r.prescriber,
            start: r.started_at,
            planned_end: r.planned_end,
            consent_date: r.consent_at,
            consent_by: r.consent_by,
            recorded_by: r.recorded_by,
            recorded_at: r.recorded_at,
            ended_at: r.ended_at,
            end_reason: r.end_reason,
            end_note: r.end_note,
        }
    }
}

/// A patient's monitoring status and periods.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PeriodsView {
    /// Patient id.
    pub patient: String,
    /// `active` (monitored) or `discharged`.
    pub status: String,
    /// Periods, oldest first.
    pub periods: Vec<PeriodView>,
}

/// The outcome of an inclusion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InclusionResult {
    /// The new period.
    pub period: PeriodView,
    /// True if the patient had an earlier period (a readmission).
    pub readmission: bool,
}

/// The outcome of a discharge.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DischargeResult {
    /// Patient id.
    pub patient: String,
    /// The period that ended (absent for a patient registered without an inclusion).
    pub period_id: Option<i64>,
    /// End time.
    pub ended_at: DateTime<Utc>,
    /// End reason.
    pub reason: EndReason,
    /// Device enrolments ended.
    pub enrolments_ended: u64,
    /// Episodes closed.
    pub episodes_closed: Vec<String>,
    /// Unsent notifications cancelled.
    pub notifications_cancelled: u64,
}

/// Longest free text (programme, names, notes), characters.
const MAX_TEXT: usize = 500;

/// A required short text without control characters.
pub(crate) fn text(field: &str, v: &str, max: usize) -> Result<String, AdminError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(AdminError::Invalid(format!("{field} is required")));
    }
    if v.chars().count() > max {
        return Err(AdminError::Invalid(format!("{field} is longer than {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!("{field} holds control characters")));
    }
    Ok(v.to_owned())
}

/// RFC 3339, or a day (`YYYY-MM-DD`, midnight UTC).
pub fn parse_when(field: &str, s: &str) -> Result<DateTime<Utc>, AdminError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc()).ok_or_else(
        || AdminError::Invalid(format!("{field} must be RFC 3339 (2026-12-01T09:00:00Z) or a day (2026-12-01)")),
    )
}

/// Clock skew tolerated for "not in the future" checks.
const SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl AdminService {
    /// Includes a patient in a monitoring programme: a new period (a
    /// readmission after a discharge), the patient active again. 409 if the
    /// patient is already monitored.
    pub async fn include_patient(
        &self,
        actor: &Actor,
        id: &str,
        input: &InclusionInput,
    ) -> Result<InclusionResult, AdminError> {
        self.check_patient(actor, Operation::ManageLifecycle, id).await?;
        let p = patient_id(id)?;
        let program = text("program", &input.program, 64)?;
        let prescriber = PhysicianId::new(input.prescriber.trim().to_owned()).map_err(AdminError::invalid)?;
        let consent_by = text("consent_by", &input.consent_by, MAX_TEXT)?;
        let now = Utc::now();
        let start = input.start.as_deref().map(|s| parse_when("start", s)).transpose()?.unwrap_or(now);
        let planned_end = parse_when("planned_end", &input.planned_end)?;
        let consent_at = parse_when("consent_date", &input.consent_date)?;
        if planned_end <= start {
            return Err(AdminError::Invalid("planned_end must be after start".into()));
        }
        if consent_at > now + SKEW {
            return Err(AdminError::Invalid("consent_date is in the future: consent is recorded once obtained".into()));
        }
        if consent_at > start.max(now) {
            return Err(AdminError::Invalid("consent_date is after the start: consent comes first".into()));
        }
        if self.alerting.physician(&prescriber).await?.is_none() {
            return Err(AdminError::Invalid(format!("prescriber {prescriber} is not in the physicians' directory")));
        }
        let out = self
            .audited(async |c| {
                match store::patient_status(c, p.as_str()).await? {
                    None => return Err(unknown_patient(id)),
                    Some(_) if store::has_open_period(c, p.as_str()).await? => {
                        return Err(AdminError::Conflict(format!(
                            "patient {id} is already under monitoring; discharge them first to start a new period"
                        )));
                    }
                    Some(_) => {}
                }
                let earlier = store::periods(c, p.as_str()).await?;
                if let Some(end) = earlier.iter().filter_map(|r| r.ended_at).max()
                    && start < end
                {
                    return Err(AdminError::Invalid(format!(
                        "start must not be before the end of the previous period ({})",
                        end.to_rfc3339()
                    )));
                }
                let period_id = store::open_period(
                    c,
                    &NewPeriod {
                        patient: p.as_str(),
                        program: &program,
                        prescriber: prescriber.as_str(),
                        start,
                        planned_end,
                        consent_at,
                        consent_by: &consent_by,
                        recorded_by: &actor.name,
                        recorded_at: now,
                    },
                )
                .await
                .map_err(AdminError::conflict)?;
                let readmission = !earlier.is_empty();
                let period = store::periods(c, p.as_str())
                    .await?
                    .into_iter()
                    .find(|r| r.id == period_id)
                    .ok_or_else(|| AdminError::Internal("the new period was not stored".into()))?;
                // Ids only: the programme names a pathology, it stays out of the audit.
                let details =
                    json!({ "period_id": period_id, "prescriber": prescriber.as_str(), "readmission": readmission });
                let entry = self.entry(actor, "patient.include", ("patient", p.as_str()), Some(p.as_str()), details);
                Ok((InclusionResult { period: period.into(), readmission }, Some(entry)))
            })
            .await?;
        Ok(out)
    }

    /// Ends a patient's monitoring (see the module documentation). 409 if
    /// the patient is not monitored.
    pub async fn discharge_patient(
        &self,
        actor: &Actor,
        id: &str,
        input: &DischargeInput,
    ) -> Result<DischargeResult, AdminError> {
        self.check_patient(actor, Operation::ManageLifecycle, id).await?;
        let p = patient_id(id)?;
        let note = input.note.as_deref().map(|n| text("note", n, MAX_TEXT)).transpose()?;
        if input.reason == EndReason::Other && note.is_none() {
            return Err(AdminError::Invalid("reason `other` needs a note saying why".into()));
        }
        let now = Utc::now();
        let at = input.at.as_deref().map(|s| parse_when("at", s)).transpose()?.unwrap_or(now);
        if at > now + SKEW {
            return Err(AdminError::Invalid("at is in the future: record a discharge when it happens".into()));
        }
        let at = at.min(now);
        self.audited(async |c| {
            let status = store::patient_status(c, p.as_str()).await?.ok_or_else(|| unknown_patient(id))?;
            // A patient registered without an inclusion (`patient add`) is
            // monitored until discharged, without a period to end.
            let open = store::periods(c, p.as_str()).await?.into_iter().find(|r| r.ended_at.is_none());
            if open.is_none() && status != "active" {
                return Err(AdminError::Conflict(format!("patient {id} is not under monitoring (already discharged)")));
            }
            if let Some(period) = &open
                && at < period.started_at
            {
                return Err(AdminError::Invalid(format!(
                    "at must not be before the period's start ({})",
                    period.started_at.to_rfc3339()
                )));
            }
            let period_id = open.as_ref().map(|r| r.id);
            store::end_period(c, p.as_str(), at, input.reason.as_str(), note.as_deref()).await?;
            let enrolments_ended = store::end_enrolments(c, p.as_str(), at).await?;
            let episodes = store::open_alerts(c, p.as_str()).await?;
            let body = match &note {
                Some(n) => format!("Closed at the end of monitoring ({}): {n}", input.reason.as_str()),
                None => format!("Closed at the end of monitoring ({}).", input.reason.as_str()),
            };
            for episode in &episodes {
                store_tables::close_alert(c, episode).await?;
                let n = NewNote {
                    episode_id: episode,
                    patient_id: p.as_str(),
                    kind: "close",
                    outcome: Some("no_action_needed"),
                    body: &body,
                    author: &actor.name,
                    author_role: actor.role.name(),
                    at: now,
                };
                insert_note(c, &n).await?;
            }
            let notifications_cancelled = store::silence_alerting(c, p.as_str()).await?;
            let details = json!({
                "period_id": period_id,
                "reason": input.reason.as_str(),
                "enrolments_ended": enrolments_ended,
                "episodes_closed": episodes,
                "notifications_cancelled": notifications_cancelled,
            });
            let entry = self.entry(actor, "patient.discharge", ("patient", p.as_str()), Some(p.as_str()), details);
            let out = DischargeResult {
                patient: p.to_string(),
                period_id,
                ended_at: at,
                reason: input.reason,
                enrolments_ended,
                episodes_closed: episodes,
                notifications_cancelled,
            };
            Ok((out, Some(entry)))
        })
        .await
    }

    /// A patient's monitoring status and periods (anyone who may read the patient).
    pub async fn patient_periods(&self, actor: &Actor, id: &str) -> Result<PeriodsView, AdminError> {
        self.check_patient(actor, Operation::ReadPatients, id).await?;
        let p = patient_id(id)?;
        self.db
            .run(async |c| {
                let status = store::patient_status(c, p.as_str()).await?.ok_or_else(|| unknown_patient(id))?;
                let periods = store::periods(c, p.as_str()).await?.into_iter().map(PeriodView::from).collect();
                Ok::<_, AdminError>(PeriodsView { patient: p.to_string(), status, periods })
            })
            .await
    }
}

impl AdminService {
    /// The patient a monitoring period belongs to, if the period exists
    /// (unscoped: callers check the patient).
    pub(crate) async fn period_patient(&self, period: i64) -> Result<Option<String>, AdminError> {
        Ok(self.db.run(async |c| store::period_patient(c, period).await).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_round_trip() {
        for r in [
            EndReason::Discharged,
            EndReason::EndOfProgramme,
            EndReason::Deceased,
            EndReason::Transferred,
            EndReason::Other,
        ] {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::Value::String(r.as_str().into()));
        }
        assert_eq!(EndReason::parse("healed"), None);
    }

    #[test]
    fn times_are_rfc3339_or_days() {
        assert_eq!(parse_when("t", "2026-12-01").unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(parse_when("t", "2026-12-01T10:00:00+01:00").unwrap().to_rfc3339(), "2026-12-01T09:00:00+00:00");
        assert!(matches!(parse_when("t", "01/12/2026"), Err(AdminError::Invalid(_))));
        assert!(matches!(text("x", " \u{0}a ", 10), Err(AdminError::Invalid(_))));
        assert!(matches!(text("x", "   ", 10), Err(AdminError::Invalid(_))));
        assert_eq!(text("x", " a ", 10).unwrap(), "a");
    }
}
