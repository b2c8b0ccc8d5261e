//! The activity report's reads: one query per table for the whole report
//! (observations twice: days and counts), scoped by a patient list (`None`:
//! every patient). The figures are computed in [`crate::report`].

use chrono::{DateTime, Utc};
use vitalwatch_platform::store::db::Db;
use vitalwatch_platform::{args, sql};

use super::StoreError;
use crate::report::{ActivityFacts, EpisodeFact, MonthWindow};

/// Reads every aggregate of a report over `w` for `scope` (`None`: all patients).
///
/// # Errors
///
/// The database's.
pub async fn activity_facts(db: &Db, w: &MonthWindow, scope: Option<&[String]>) -> Result<ActivityFacts, StoreError> {
    let (from, to) = (w.from, w.to);
    let patients = db
        .run(async |c| c.query(&sql!("report_patients", split), &args![scope]).await)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<Vec<String>, _>>()?;
    let days = db
        .run(async |c| {
            let a = args![from, to, scope, w.bounds[0], w.bounds[1], w.offsets[0], w.offsets[1], w.offsets[2]];
            c.query(&sql!("report_days", split), &a).await
        })
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<Result<Vec<(String, i64)>, StoreError>>()?;
    let readings = db
        .run(async |c| c.query(&sql!("report_readings", split), &args![from, to, scope]).await)
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .collect::<Result<Vec<(String, String, i64)>, StoreError>>()?;
    let episodes = db
        .run(async |c| c.query(&sql!("report_episodes", split), &args![from, to, scope]).await)
        .await?
        .iter()
        .map(|r| {
            let opened: DateTime<Utc> = r.get(2)?;
            let detected: Option<DateTime<Utc>> = r.get(3)?;
            Ok(EpisodeFact {
                patient_id: r.get(0)?,
                severity: r.get(1)?,
                raised_at: detected.unwrap_or(opened),
                first_ack: r.get(4)?,
            })
        })
        .collect::<Result<Vec<EpisodeFact>, StoreError>>()?;
    let actions = db
        .run(async |c| c.query(&sql!("report_actions", split), &args![from, to, scope]).await)
        .await?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?, r.get::<Option<String>>(2)?.unwrap_or_default(), r.get(3)?)))
        .collect::<Result<Vec<(String, String, String, i64)>, StoreError>>()?;
    Ok(ActivityFacts { patients, days, readings, episodes, actions })
}
