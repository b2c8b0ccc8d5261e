//! The SQL of the FHIR API and of the read-access log, written once over
//! [`Db`] (statements in `sql/`; the list arguments and typed NULLs differ per
//! engine).

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::StoreError;
use vitalwatch_platform::store::db::{Db, Row, Value};
use vitalwatch_platform::{args, sql};

use super::map::ObsRow;
use super::search::{ObsCursor, Sort};
use crate::model::AccessLogEntry;

/// What an Observation page query selects.
#[derive(Debug, Clone)]
pub struct ObsQuery<'a> {
    /// Patient.
    pub patient: &'a str,
    /// Stored codes (empty: all).
    pub codes: &'a [String],
    /// Inclusive lower bound.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub until: Option<DateTime<Utc>>,
    /// Order.
    pub sort: Sort,
    /// Keyset cursor.
    pub cursor: Option<&'a ObsCursor>,
    /// Rows to read at most.
    pub limit: u32,
}

fn obs_row(patient: &str, r: &Row) -> Result<ObsRow, StoreError> {
    Ok(ObsRow {
        patient_id: patient.to_owned(),
        time: r.get(0)?,
        code: r.get(1)?,
        value: r.get(2)?,
        unit: r.get(3)?,
        source: r.get(4)?,
        device_id: r.get(5)?,
        received_at: r.get(6)?,
        time_source: r.get(7)?,
        original_value: r.get(8)?,
        original_unit: r.get(9)?,
    })
}

/// Rows of one patient in FHIR order (time, grouping code, code), after the cursor.
///
/// # Errors
///
/// The database's.
pub async fn observations(db: &Db, q: &ObsQuery<'_>) -> Result<Vec<ObsRow>, StoreError> {
    let codes = (!q.codes.is_empty()).then_some(q.codes);
    let args = args![
        q.patient,
        codes,
        q.since,
        q.until,
        q.cursor.map(|c| c.time),
        q.cursor.map(|c| c.group.as_str()),
        Value::Int(i64::from(q.limit)),
    ];
    let stmt = match q.sort {
        Sort::Asc => sql!("fhir_observations_asc", split),
        Sort::Desc => sql!("fhir_observations_desc", split),
    };
    let rows = db.run(async |c| c.query(&stmt, &args).await).await?;
    rows.iter().map(|r| obs_row(q.patient, r)).collect()
}

/// The rows of one patient at one measurement time.
///
/// # Errors
///
/// The database's.
pub async fn observations_at(db: &Db, patient: &str, time: DateTime<Utc>) -> Result<Vec<ObsRow>, StoreError> {
    let rows = db.run(async |c| c.query(&sql!("fhir_observations_at"), &args![patient, time]).await).await?;
    rows.iter().map(|r| obs_row(patient, r)).collect()
}

/// Every patient id.
///
/// # Errors
///
/// The database's.
pub async fn patient_ids(db: &Db) -> Result<Vec<String>, StoreError> {
    let rows = db.run(async |c| c.query(&sql!("fhir_patient_ids"), &[]).await).await?;
    rows.iter().map(|r| r.get(0)).collect()
}

/// A device with its enrolments (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEnrolments {
    /// Device id.
    pub id: String,
    /// Kind.
    pub kind: String,
    /// `active` or `retired`.
    pub status: String,
    /// (patient, from, to).
    pub enrolments: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)>,
}

impl DeviceEnrolments {
    /// The patient the device is enrolled to at `now`.
    pub fn current(&self, now: DateTime<Utc>) -> Option<&str> {
        self.enrolments
            .iter()
            .rev()
            .find(|(_, from, to)| *from <= now && to.is_none_or(|t| t > now))
            .map(|(p, _, _)| p.as_str())
    }
}

/// Devices (one, or all) ever enrolled to one of `patients` (`None`: any).
///
/// # Errors
///
/// The database's.
pub async fn devices(
    db: &Db,
    device: Option<&str>,
    patients: Option<&[String]>,
) -> Result<Vec<DeviceEnrolments>, StoreError> {
    let args = args![device, patients];
    let rows = db.run(async |c| c.query(&sql!("fhir_devices", split), &args).await).await?;
    let mut out: Vec<DeviceEnrolments> = Vec::new();
    for r in &rows {
        let id: String = r.get(0)?;
        if out.last().is_none_or(|d| d.id != id) {
            out.push(DeviceEnrolments { id: id.clone(), kind: r.get(1)?, status: r.get(2)?, enrolments: Vec::new() });
        }
        if let (Some(p), Some(from), Some(d)) =
            (r.get::<Option<String>>(3)?, r.get::<Option<DateTime<Utc>>>(4)?, out.last_mut())
        {
            d.enrolments.push((p, from, r.get(5)?));
        }
    }
    Ok(out)
}

/// One read-access record to append.
#[derive(Debug, Clone)]
pub struct NewAccess<'a> {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the actor's name).
    pub actor: &'a str,
    /// The actor's role.
    pub actor_role: &'a str,
    /// `api`, `fhir`, `web` or `cli`.
    pub interface: &'a str,
    /// What was read (a route or command, never values).
    pub what: &'a str,
}

/// Appends one access record per patient, in one transaction.
///
/// # Errors
///
/// The database's.
pub async fn append_access(db: &Db, a: &NewAccess<'_>, patients: &[String]) -> Result<(), StoreError> {
    let rows: Vec<Vec<Value>> =
        patients.iter().map(|p| args![a.at, a.actor, a.actor_role, p.as_str(), a.interface, a.what].to_vec()).collect();
    db.transaction(async |c| c.execute_many(&sql!("access_log_insert"), rows).await.map(drop)).await
}

/// Access records of a patient, newest first, with an id below `before`.
///
/// # Errors
///
/// The database's.
pub async fn access_log(db: &Db, patient: &str, before: i64, limit: u32) -> Result<Vec<AccessLogEntry>, StoreError> {
    let args = args![patient, before, Value::Int(i64::from(limit))];
    let rows = db.run(async |c| c.query(&sql!("access_log"), &args).await).await?;
    rows.iter()
        .map(|r| {
            Ok(AccessLogEntry {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                actor_role: r.get(3)?,
                patient_id: r.get(4)?,
                interface: r.get(5)?,
                what: r.get(6)?,
            })
        })
        .collect()
}
