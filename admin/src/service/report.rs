//! The monthly activity report ([`crate::report`]) for one patient, for a
//! physician's patients (responsible or deputy), or for every patient the
//! actor may reach. Policy: [`Operation::ReadReports`] (operators: every
//! patient; physicians and nurses: their own patients; another physician's
//! patient or team is the same 404 as an unknown one).

use serde::Deserialize;
use utoipa::IntoParams;

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::{Actor, Role};
use crate::error::AdminError;
use crate::policy::Operation;
use crate::report::{self, ActivityReport, DEFAULT_REPORT_TIME_ZONE, Month, MonthWindow, ReportHeader};

/// Most days a month has: the largest meaningful `min_days`.
const MAX_MIN_DAYS: u32 = 31;

/// What report to build.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The calendar month, `YYYY-MM`.
    pub month: String,
    /// One patient.
    #[serde(default)]
    pub patient: Option<String>,
    /// A physician's patients (responsible or deputy).
    #[serde(default)]
    pub physician: Option<String>,
    /// IANA time zone of the calendar month (default Europe/Paris).
    #[serde(default)]
    pub tz: Option<String>,
    /// Flag the patients with at least this many days with data (the team's
    /// billing threshold; none by default).
    #[serde(default)]
    pub min_days: Option<u32>,
    /// `json` (default) or `csv` (HTTP only).
    #[serde(default)]
    pub format: Option<String>,
}

impl AdminService {
    /// The activity report of `q.month`.
    ///
    /// # Errors
    ///
    /// [`AdminError::Invalid`] for a bad month, zone or threshold, or both a
    /// patient and a physician; [`AdminError::NotFound`] for a patient or a
    /// physician's team outside the actor's scope; [`AdminError::Forbidden`]
    /// for specialists; the database's.
    pub async fn activity_report(&self, actor: &Actor, q: &ReportQuery) -> Result<ActivityReport, AdminError> {
        let month = Month::parse(&q.month)?;
        let tz = report::parse_time_zone(q.tz.as_deref().unwrap_or(DEFAULT_REPORT_TIME_ZONE))?;
        if q.min_days.is_some_and(|m| m == 0 || m > MAX_MIN_DAYS) {
            return Err(AdminError::Invalid(format!("min_days must be between 1 and {MAX_MIN_DAYS}")));
        }
        let window = MonthWindow::new(month, tz)?;
        let mine = self.patient_scope(actor, Operation::ReadReports).await?;
        let scope: Option<Vec<String>> = match (q.patient.as_deref(), q.physician.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(AdminError::Invalid("give a patient or a physician, not both".into()));
            }
            (Some(p), None) => {
                let p = patient_id(p)?;
                self.check_patient(actor, Operation::ReadReports, p.as_str()).await?;
                if self.admin.patient(p.as_str()).await?.is_none() {
                    return Err(unknown_patient(p.as_str()));
                }
                Some(vec![p.to_string()])
            }
            (None, Some(d)) => {
                if let Role::Physician(me) = &actor.role
                    && me.as_str() != d
                {
                    return Err(AdminError::NotFound(format!("no physician {d} among your care teams")));
                }
                let team = self.admin.patients_of(d).await?;
                Some(match mine {
                    None => team,
                    Some(mine) => team.into_iter().filter(|p| mine.contains(p)).collect(),
                })
            }
            (None, None) => mine,
        };
        let facts = crate::store::report::activity_facts(&self.db, &window, scope.as_deref()).await?;
        let header = ReportHeader {
            month,
            tz,
            window,
            patient: q.patient.clone(),
            physician: q.physician.clone(),
            min_days: q.min_days,
        };
        Ok(report::build(&header, &facts))
    }
}
