//! Storage of the patient lifecycle (monitoring periods, discharge) and of
//! GDPR erasure / pseudonymisation. Every function runs inside the caller's
//! transaction (the change and its audit entry are one transaction).

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::StoreError;
use vitalwatch_platform::store::db::{Conn, Sql};
use vitalwatch_platform::{args, sql};

/// One monitoring period as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodRow {
    /// Id.
    pub id: i64,
    /// Programme.
    pub program: String,
    /// Prescribing physician id.
    pub prescriber: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// Planned end.
    pub planned_end: Option<DateTime<Utc>>,
    /// Consent date.
    pub consent_at: Option<DateTime<Utc>>,
    /// Who recorded the consent.
    pub consent_by: Option<String>,
    /// Who included the patient (account name).
    pub recorded_by: String,
    /// When the inclusion was recorded.
    pub recorded_at: DateTime<Utc>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// End reason.
    pub end_reason: Option<String>,
    /// Free-text note on the end.
    pub end_note: Option<String>,
}

/// A new period.
#[derive(Debug, Clone)]
pub struct NewPeriod<'a> {
    /// Patient.
    pub patient: &'a str,
    /// Programme.
    pub program: &'a str,
    /// Prescribing physician id.
    pub prescriber: &'a str,
    /// Start.
    pub start: DateTime<Utc>,
    /// Planned end.
    pub planned_end: DateTime<Utc>,
    /// Consent date.
    pub consent_at: DateTime<Utc>,
    /// Who recorded the consent.
    pub consent_by: &'a str,
    /// Who includes (account name).
    pub recorded_by: &'a str,
    /// When.
    pub recorded_at: DateTime<Utc>,
}

/// The patient's status (`active` / `discharged`), `None` if unknown.
///
/// # Errors
///
/// The database's.
pub async fn patient_status(c: &mut Conn, patient: &str) -> Result<Option<String>, StoreError> {
    c.query_opt(&sql!("lc_patient_status"), &args![patient]).await?.map(|r| r.get(0)).transpose()
}

/// True if the patient has an open period.
///
/// # Errors
///
/// The database's.
pub async fn has_open_period(c: &mut Conn, patient: &str) -> Result<bool, StoreError> {
    Ok(c.query_opt(&sql!("lc_open_period"), &args![patient]).await?.is_some())
}

/// Inserts a period and sets the patient active; returns the period id.
///
/// # Errors
///
/// The database's (a second open period breaks a unique index).
pub async fn open_period(c: &mut Conn, p: &NewPeriod<'_>) -> Result<i64, StoreError> {
    let id = c
        .query_one(
            &sql!("lc_insert_period"),
            &args![
                p.patient,
                p.program,
                p.prescriber,
                p.start,
                p.planned_end,
                p.consent_at,
                p.consent_by,
                p.recorded_by,
                p.recorded_at
            ],
        )
        .await?
        .get(0)?;
    c.execute(&sql!("lc_set_status"), &args![p.patient, "active"]).await?;
    Ok(id)
}

/// Ends the open period and sets the patient discharged; false if no period was open.
///
/// # Errors
///
/// The database's.
pub async fn end_period(
    c: &mut Conn,
    patient: &str,
    at: DateTime<Utc>,
    reason: &str,
    note: Option<&str>,
) -> Result<bool, StoreError> {
    let n = c.execute(&sql!("lc_end_period"), &args![patient, at, reason, note]).await?;
    c.execute(&sql!("lc_set_status"), &args![patient, "discharged"]).await?;
    Ok(n > 0)
}

/// Ends the patient's open device enrolments at `at` (reason `unenrolled`)
/// and drops enrolments scheduled to start later; returns how many ended.
///
/// # Errors
///
/// The database's.
pub async fn end_enrolments(c: &mut Conn, patient: &str, at: DateTime<Utc>) -> Result<u64, StoreError> {
    let n = c.execute(&sql!("lc_end_enrolments"), &args![patient, at]).await?;
    c.execute(&sql!("lc_drop_future_enrolments"), &args![patient, at]).await?;
    Ok(n)
}

/// The patient's open episodes (rules engine `alerts` table).
///
/// # Errors
///
/// The database's.
pub async fn open_alerts(c: &mut Conn, patient: &str) -> Result<Vec<String>, StoreError> {
    c.query(&sql!("lc_open_alerts"), &args![patient]).await?.iter().map(|r| r.get(0)).collect()
}

/// Stops reminders and escalation of the patient's episodes and cancels
/// their unsent notifications; returns how many notifications were cancelled.
///
/// # Errors
///
/// The database's.
pub async fn silence_alerting(c: &mut Conn, patient: &str) -> Result<u64, StoreError> {
    c.execute(&sql!("lc_stop_wakeups"), &args![patient]).await?;
    c.execute(&sql!("lc_cancel_outbox"), &args![patient]).await
}

/// The patient's periods, oldest first.
///
/// # Errors
///
/// The database's.
pub async fn periods(c: &mut Conn, patient: &str) -> Result<Vec<PeriodRow>, StoreError> {
    let mut out = Vec::new();
    for r in c.query(&sql!("lc_periods"), &args![patient]).await? {
        out.push(PeriodRow {
            id: r.get(0)?,
            program: r.get(1)?,
            prescriber: r.get(2)?,
            started_at: r.get(3)?,
            planned_end: r.get(4)?,
            consent_at: r.get(5)?,
            consent_by: r.get(6)?,
            recorded_by: r.get(7)?,
            recorded_at: r.get(8)?,
            ended_at: r.get(9)?,
            end_reason: r.get(10)?,
            end_note: r.get(11)?,
        });
    }
    Ok(out)
}

/// The patient of a monitoring period, if it exists.
///
/// # Errors
///
/// The database's.
pub async fn period_patient(c: &mut Conn, period: i64) -> Result<Option<String>, StoreError> {
    match c.query_opt(&sql!("lc_period_patient"), &args![period]).await? {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

/// Patients whose every period ended before `before` (discharged), by id.
///
/// # Errors
///
/// The database's.
pub async fn discharged_before(c: &mut Conn, before: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
    c.query(&sql!("lc_discharged_before"), &args![before]).await?.iter().map(|r| r.get(0)).collect()
}

/// The erasure of a patient id, if it was erased: mode and time.
///
/// # Errors
///
/// The database's.
pub async fn erasure_of(c: &mut Conn, patient: &str) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
    match c.query_opt(&sql!("lc_erasure_of"), &args![patient]).await? {
        Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
        None => Ok(None),
    }
}

/// The tables erasure deletes a patient's rows from, in order (rows keyed by
/// the patient's episodes first, the patient row last).
pub fn erase_steps() -> Vec<(&'static str, Sql)> {
    vec![
        ("alert_outbox", sql!("er_alert_outbox")),
        ("alert_ack_codes", sql!("er_alert_ack_codes")),
        ("alert_acknowledgments", sql!("er_alert_acknowledgments")),
        ("alert_digest_entries", sql!("er_alert_digest_entries")),
        ("observations", sql!("er_observations")),
        ("device_status", sql!("er_device_status")),
        ("alert_episodes", sql!("er_alert_episodes")),
        ("alert_events", sql!("er_alert_events")),
        ("alerts", sql!("er_alerts")),
        ("episode_closes", sql!("er_episode_closes")),
        ("episode_notes", sql!("er_episode_notes")),
        ("expertise_requests", sql!("er_expertise_requests")),
        ("patient_rules", sql!("er_patient_rules")),
        ("patient_rules_versions", sql!("er_patient_rules_versions")),
        ("alert_care_teams", sql!("er_alert_care_teams")),
        ("care_team_nurses", sql!("er_care_team_nurses")),
        ("backfill_grants", sql!("er_backfill_grants")),
        ("ingest_client_grants", sql!("er_ingest_client_grants")),
        ("enrolments", sql!("er_enrolments")),
        ("monitoring_periods", sql!("er_monitoring_periods")),
        ("patients", sql!("er_patients")),
    ]
}

/// Registers `pseudonym` as a discharged patient and moves the readings of
/// `patient` to it (device, message and trace ids dropped); returns how many
/// readings moved.
///
/// # Errors
///
/// The database's.
pub async fn pseudonymise_observations(c: &mut Conn, patient: &str, pseudonym: &str) -> Result<u64, StoreError> {
    c.execute(&sql!("ps_insert_patient"), &args![pseudonym]).await?;
    c.execute(&sql!("ps_observations"), &args![patient, pseudonym]).await
}

/// One erasure record.
#[derive(Debug, Clone)]
pub struct NewErasure<'a> {
    /// The erased id.
    pub patient: &'a str,
    /// `erase` or `pseudonymise`.
    pub mode: &'a str,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub actor: &'a str,
    /// Their role.
    pub actor_role: &'a str,
    /// When.
    pub at: DateTime<Utc>,
    /// Rows per table (JSON object).
    pub counts: &'a str,
    /// What remains and why (text).
    pub remaining: &'a str,
}

/// Records an erasure (the id's tombstone); returns its id.
///
/// # Errors
///
/// The database's.
pub async fn insert_erasure(c: &mut Conn, e: &NewErasure<'_>) -> Result<i64, StoreError> {
    c.query_one(
        &sql!("lc_insert_erasure"),
        &args![e.patient, e.mode, e.reason, e.actor, e.actor_role, e.at, e.counts, e.remaining],
    )
    .await?
    .get(0)
}
