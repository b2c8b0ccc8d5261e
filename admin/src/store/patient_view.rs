//! The queries of the clinician's patient page and of the rules versions,
//! written once over the platform's [`Db`] / [`Conn`] (SQL in `sql/`; the
//! trend buckets and the adherence buckets differ per engine: PostgreSQL
//! reads the `observations_hourly` / `observations_daily` aggregates,
//! SQLite groups the observations itself).

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::db::{Conn, Db, Row};
use vitalwatch_platform::{args, sql};

use super::StoreError;

/// The newest reading of one code.
#[derive(Debug, Clone, PartialEq)]
pub struct LastReadingRow {
    /// LOINC code.
    pub code: String,
    /// Value, canonical unit.
    pub value: f64,
    /// UCUM unit.
    pub unit: String,
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// `device` or `manual`.
    pub source: String,
    /// The device, for device readings.
    pub device_id: Option<String>,
}

/// One trend bucket (an hour or a day) of one code.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRow {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Readings in it.
    pub n: i64,
    /// Mean value.
    pub mean: f64,
    /// Lowest value.
    pub min: f64,
    /// Highest value.
    pub max: f64,
}

/// One stored version of a patient's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesVersionRow {
    /// 1, 2, ...
    pub version: i32,
    /// `PatientRules` JSON.
    pub rules: String,
    /// Who made the change.
    pub author: String,
    /// Their role.
    pub author_role: String,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Why (free text).
    pub reason: Option<String>,
}

/// Width of the adherence buckets, seconds: every time zone's offset is a
/// multiple of 15 minutes, so a bucket never straddles a local midnight.
pub const ADHERENCE_BUCKET_SECS: i64 = 900;

/// The newest reading of each code of `patient`, by code.
///
/// # Errors
///
/// The database's.
pub async fn last_readings(db: &Db, patient: &str) -> Result<Vec<LastReadingRow>, StoreError> {
    let rows = db.run(async |c| c.query(&sql!("last_readings"), &args![patient]).await).await?;
    rows.iter()
        .map(|r| {
            Ok(LastReadingRow {
                code: r.get(0)?,
                value: r.get(1)?,
                unit: r.get(2)?,
                time: r.get(3)?,
                source: r.get(4)?,
                device_id: r.get(5)?,
            })
        })
        .collect()
}

/// The [`ADHERENCE_BUCKET_SECS`] buckets (unix time / bucket width) holding at
/// least one reading of `patient` in `[from, to)`.
///
/// # Errors
///
/// The database's.
pub async fn reading_buckets(
    db: &Db,
    patient: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    let rows = db.run(async |c| c.query(&sql!("adherence_buckets", split), &args![patient, from, to]).await).await?;
    rows.iter().map(|r| r.get(0)).collect()
}

/// Hourly (`hourly`) or daily buckets of `code` for `patient` from `from`, oldest first.
///
/// # Errors
///
/// The database's.
pub async fn series(
    db: &Db,
    patient: &str,
    code: &str,
    from: DateTime<Utc>,
    hourly: bool,
) -> Result<Vec<BucketRow>, StoreError> {
    let sql = if hourly { sql!("series_hourly", split) } else { sql!("series_daily", split) };
    let rows = db.run(async |c| c.query(&sql, &args![patient, code, from]).await).await?;
    rows.iter()
        .map(|r| Ok(BucketRow { start: r.get(0)?, n: r.get(1)?, mean: r.get(2)?, min: r.get(3)?, max: r.get(4)? }))
        .collect()
}

fn version_row(r: &Row) -> Result<RulesVersionRow, StoreError> {
    Ok(RulesVersionRow {
        version: r.get(0)?,
        rules: r.get(1)?,
        author: r.get(2)?,
        author_role: r.get(3)?,
        changed_at: r.get(4)?,
        reason: r.get(5)?,
    })
}

/// Every version of `patient`'s rules, newest first.
///
/// # Errors
///
/// The database's.
pub async fn rules_versions(db: &Db, patient: &str) -> Result<Vec<RulesVersionRow>, StoreError> {
    let rows = db.run(async |c| c.query(&sql!("rules_versions"), &args![patient]).await).await?;
    rows.iter().map(version_row).collect()
}

/// The newest version of `patient`'s rules, if any. Run it in the change's transaction.
///
/// # Errors
///
/// The database's.
pub async fn latest_rules_version(c: &mut Conn, patient: &str) -> Result<Option<RulesVersionRow>, StoreError> {
    c.query_opt(&sql!("latest_rules_version"), &args![patient]).await?.as_ref().map(version_row).transpose()
}

/// A version of a patient's rules to record.
#[derive(Debug, Clone)]
pub struct NewRulesVersion<'a> {
    /// Patient.
    pub patient: &'a str,
    /// Version number (the latest + 1).
    pub version: i32,
    /// `PatientRules` JSON.
    pub rules: &'a str,
    /// Who.
    pub author: &'a str,
    /// Their role.
    pub author_role: &'a str,
    /// Why.
    pub reason: Option<&'a str>,
}

/// Records a version (its time is the database's clock). Run it in the change's transaction.
///
/// # Errors
///
/// [`StoreError::Rejected`] when the version exists already (a concurrent
/// change); the database's.
pub async fn insert_rules_version(c: &mut Conn, v: &NewRulesVersion<'_>) -> Result<(), StoreError> {
    c.execute(&sql!("insert_rules_version"), &args![v.patient, v.version, v.rules, v.author, v.author_role, v.reason])
        .await
        .map(drop)
}
