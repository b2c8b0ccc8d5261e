//! The one implementation of [`Store`] (registry, observations, patient
//! rules, alert episodes, episode closes), written once over [`Db`]; the SQL
//! is in `sql/` (shared statements, with per-engine overrides where they
//! must differ). The operations the admin service runs inside its own
//! transaction (a change and its audit entry) are public functions over a
//! [`Conn`].

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitalwatch_schemas::registry::{BackfillGrant, DeviceEntry, EndReason, Enrolment, EnrolmentEnd, RegistrySnapshot};
use vitalwatch_schemas::{DeviceId, Observation, PatientId, migrations, proto};

use super::db::{Conn, Db, Dialect, Row, Sql, Value};
use super::{
    DbTimeouts, DeviceStatusRow, EpisodeClose, MigrationReport, RowParts, RuleStateInputs, Store, StoreError,
    StoredAlert, StoredObservation, StoredPatientRules, episode_status, event_kind_name, evidence_json, severity_name,
};
use crate::{args, sql};

/// Advisory lock key that serializes concurrent PostgreSQL `migrate` runs.
const MIGRATION_LOCK: i64 = 0x7669_7461_6c77;

/// Longest `migrate` call (instead of the statement timeout).
const MIGRATION_BOUND: std::time::Duration = std::time::Duration::from_secs(600);

/// PostgreSQL connections of a store: two, the second opened only when two
/// calls overlap (persist writes two batches at once; see `persist.concurrent_writes`).
const POOL: usize = 2;

/// The store, on PostgreSQL or SQLite.
#[derive(Clone, Debug)]
pub struct SqlStore {
    db: Db,
    chunk: usize,
}

impl SqlStore {
    /// The store on `db`; PostgreSQL observation batches go in `chunk` rows per statement.
    pub fn new(db: Db, chunk: usize) -> SqlStore {
        SqlStore { db, chunk: chunk.max(1) }
    }

    /// Opens (creating if needed) an embedded database file; `:memory:` for tests.
    ///
    /// # Errors
    ///
    /// [`StoreError::Permanent`] when the file cannot be created or opened.
    pub fn open(path: &str) -> Result<SqlStore, StoreError> {
        Ok(SqlStore::new(Db::Sqlite(super::sqlite::SqliteDb::open(path)?), 1))
    }

    /// Connects to PostgreSQL with the default timeouts (and fails fast if the database is unreachable).
    ///
    /// # Errors
    ///
    /// As [`Db::open`].
    pub async fn connect(url: &str, chunk: usize) -> Result<SqlStore, StoreError> {
        Self::connect_with(url, chunk, DbTimeouts::default()).await
    }

    /// Connects to PostgreSQL with `timeouts` (and fails fast if the database is unreachable).
    ///
    /// # Errors
    ///
    /// As [`Db::open`].
    pub async fn connect_with(url: &str, chunk: usize, timeouts: DbTimeouts) -> Result<SqlStore, StoreError> {
        Ok(SqlStore::new(Db::open(url, timeouts, POOL).await?, chunk))
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// The refusal of migration 0025's trigger as a clear error; anything else unchanged.
fn collision(e: StoreError, kind: &str, id: &str, other: &str) -> StoreError {
    match &e {
        StoreError::Rejected(m) if m.contains(super::ID_COLLISION_MARKER) => super::id_collision(kind, id, other),
        _ => e,
    }
}

/// Registers a patient (idempotent). Returns true if new.
///
/// # Errors
///
/// [`StoreError::Invalid`] for an id that is a device's; the database's errors.
pub async fn add_patient(c: &mut Conn, patient: &PatientId) -> Result<bool, StoreError> {
    c.execute(&sql!("add_patient"), &args![patient.as_str()])
        .await
        .map(|n| n == 1)
        .map_err(|e| collision(e, "patient", patient.as_str(), "device"))
}

/// Registers a device (idempotent). Returns true if new.
///
/// # Errors
///
/// [`StoreError::Invalid`] for an id that is a patient's; the database's errors.
pub async fn add_device(c: &mut Conn, device: &DeviceId, kind: &str) -> Result<bool, StoreError> {
    c.execute(&sql!("add_device"), &args![device.as_str(), kind])
        .await
        .map(|n| n == 1)
        .map_err(|e| collision(e, "device", device.as_str(), "patient"))
}

/// Locks a device row; `Invalid` if unknown or retired.
async fn live_device(c: &mut Conn, device: &DeviceId) -> Result<(), StoreError> {
    let Some(row) = c.query_opt(&sql!("lock_device", split), &args![device.as_str()]).await? else {
        return Err(StoreError::Invalid("unknown device".into()));
    };
    if row.get::<Option<DateTime<Utc>>>(0)?.is_some() {
        return Err(StoreError::Invalid("the device is retired".into()));
    }
    Ok(())
}

/// Enrols `device` to `patient` from `from` (see [`Store::enrol`]); run it in a transaction.
///
/// # Errors
///
/// [`StoreError::Invalid`] for an unknown or retired device, an unknown
/// patient, or an enrolment that starts at or after `from`.
pub async fn enrol(
    c: &mut Conn,
    device: &DeviceId,
    patient: &PatientId,
    from: DateTime<Utc>,
) -> Result<(), StoreError> {
    live_device(c, device).await?;
    if c.query_opt(&sql!("patient_exists"), &args![patient.as_str()]).await?.is_none() {
        return Err(StoreError::Invalid("unknown patient".into()));
    }
    c.execute(&sql!("end_enrolment"), &args![device.as_str(), from, EndReason::Moved.as_str()]).await?;
    if c.query_opt(&sql!("enrolment_overlap"), &args![device.as_str(), from]).await?.is_some() {
        return Err(StoreError::Invalid("an enrolment of this device starts at or after that time".into()));
    }
    c.execute(&sql!("insert_enrolment"), &args![device.as_str(), patient.as_str(), from]).await?;
    Ok(())
}

/// Ends the device's open enrolment at `at`.
///
/// # Errors
///
/// The database's.
pub async fn unenrol(c: &mut Conn, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
    c.execute(&sql!("end_enrolment"), &args![device.as_str(), at, EndReason::Unenrolled.as_str()]).await.map(drop)
}

/// Retires a device at `at` (its open enrolment ends then too); run it in a transaction.
///
/// # Errors
///
/// [`StoreError::Invalid`] for an unknown device.
pub async fn retire_device(c: &mut Conn, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
    if c.execute(&sql!("retire_device"), &args![device.as_str(), at]).await? == 0 {
        return Err(StoreError::Invalid("unknown device".into()));
    }
    c.execute(&sql!("end_enrolment"), &args![device.as_str(), at, EndReason::Retired.as_str()]).await.map(drop)
}

/// Grants a backfill window (see [`Store::grant_backfill`]); run it in a transaction.
///
/// # Errors
///
/// As [`Store::grant_backfill`].
pub async fn grant_backfill(
    c: &mut Conn,
    device: &DeviceId,
    patient: &PatientId,
    until: DateTime<Utc>,
    reason: &str,
) -> Result<(), StoreError> {
    live_device(c, device).await?;
    if c.query_opt(&sql!("ended_enrolment"), &args![device.as_str(), patient.as_str()]).await?.is_none() {
        return Err(StoreError::Invalid("the device has no ended enrolment to this patient".into()));
    }
    c.execute(&sql!("insert_backfill_grant"), &args![device.as_str(), patient.as_str(), until, reason]).await.map(drop)
}

/// Stores (replaces) a patient's rules JSON as `version` (the
/// `patient_rules_versions` row the caller writes in the same transaction);
/// `updated_at` becomes now.
///
/// # Errors
///
/// The database's.
pub async fn set_patient_rules(
    c: &mut Conn,
    patient: &PatientId,
    rules_json: &str,
    version: i32,
) -> Result<(), StoreError> {
    c.execute(&sql!("set_patient_rules"), &args![patient.as_str(), rules_json, version]).await.map(drop)
}

/// Stores a patient's rules set outside the admin service (a tool, the
/// simulator, a test) as a new version by `system`, in one transaction on
/// `c`; returns the version.
///
/// # Errors
///
/// The database's (a concurrent change of the same patient's rules: a
/// unique violation).
pub async fn set_patient_rules_as_system(
    c: &mut Conn,
    patient: &PatientId,
    rules_json: &str,
) -> Result<i32, StoreError> {
    let version: i32 = c.query_one(&sql!("next_rules_version"), &args![patient.as_str()]).await?.get(0)?;
    c.execute(&sql!("insert_system_rules_version"), &args![patient.as_str(), version, rules_json]).await?;
    set_patient_rules(c, patient, rules_json, version).await?;
    Ok(version)
}

/// Upserts device statuses (see [`Store::upsert_device_statuses`]), one
/// statement each (PostgreSQL refuses two rows of one key in one upsert),
/// oldest first. The result does not depend on the order: see the SQL.
///
/// # Errors
///
/// The database's.
pub async fn upsert_device_statuses(c: &mut Conn, statuses: &[DeviceStatusRow]) -> Result<u64, StoreError> {
    let mut rows: Vec<&DeviceStatusRow> = statuses.iter().collect();
    rows.sort_by(|a, b| (a.time, &a.device_id).cmp(&(b.time, &b.device_id)));
    let args = rows
        .iter()
        .map(|s| {
            let at = |present: bool| present.then_some(s.time);
            args![
                s.device_id.as_str(),
                s.patient_id.as_deref(),
                s.time,
                s.received_at,
                s.battery_percent,
                at(s.battery_percent.is_some()),
                s.signal_dbm,
                at(s.signal_dbm.is_some()),
                s.firmware.as_deref(),
                at(s.firmware.is_some()),
            ]
            .to_vec()
        })
        .collect();
    c.execute_many(&sql!("upsert_device_status"), args).await
}

fn device_status_row(r: &Row) -> Result<DeviceStatusRow, StoreError> {
    Ok(DeviceStatusRow {
        device_id: r.get(0)?,
        patient_id: r.get(1)?,
        time: r.get(2)?,
        received_at: r.get(3)?,
        battery_percent: r.get(4)?,
        signal_dbm: r.get(5)?,
        firmware: r.get(6)?,
    })
}

/// A patient's stored rules, if any (see [`Store::patient_rules`]), on a
/// connection: read inside the transaction that changes them.
///
/// # Errors
///
/// The database's.
pub async fn current_patient_rules(
    c: &mut Conn,
    patient: &PatientId,
) -> Result<Option<StoredPatientRules>, StoreError> {
    c.query_opt(&sql!("patient_rules"), &args![patient.as_str()]).await?.as_ref().map(rules_row).transpose()
}

/// The current registry.
///
/// # Errors
///
/// The database's.
pub async fn registry(c: &mut Conn) -> Result<RegistrySnapshot, StoreError> {
    let mut snap = RegistrySnapshot::default();
    for r in c.query(&sql!("registry_patients"), &[]).await? {
        snap.patients.insert(r.get(0)?);
    }
    for r in c.query(&sql!("registry_discharged"), &[]).await? {
        snap.discharged.insert(r.get(0)?);
    }
    for r in c.query(&sql!("registry_devices"), &[]).await? {
        snap.devices.insert(r.get(0)?, DeviceEntry { retired_at: r.get(1)?, ..Default::default() });
    }
    for r in c.query(&sql!("registry_enrolments"), &[]).await? {
        let device: String = r.get(0)?;
        let Ok(patient_id) = PatientId::new(r.get::<String>(1)?) else { continue };
        let ended = enrolment_end(r.get::<Option<String>>(4)?.as_deref(), r.get(5)?);
        if let Some(d) = snap.devices.get_mut(&device) {
            d.enrolments.push(Enrolment { patient_id, valid_from: r.get(2)?, valid_to: r.get(3)?, ended });
        }
    }
    for r in c.query(&sql!("registry_grants"), &[]).await? {
        let device: String = r.get(0)?;
        let Ok(patient_id) = PatientId::new(r.get::<String>(1)?) else { continue };
        if let Some(d) = snap.devices.get_mut(&device) {
            d.backfill.push(BackfillGrant { patient_id, until: r.get(2)? });
        }
    }
    Ok(snap)
}

/// The recorded end of an enrolment row (`end_reason`, `end_recorded_at`).
pub(crate) fn enrolment_end(reason: Option<&str>, recorded_at: Option<DateTime<Utc>>) -> Option<EnrolmentEnd> {
    Some(EnrolmentEnd { reason: EndReason::parse(reason?)?, recorded_at: recorded_at? })
}

/// An observation row of `recent_observations` / `observations_of` (the
/// first 11 columns, in that order); `None` if it no longer parses.
fn observation_row(patient: &PatientId, r: &Row) -> Result<Option<Observation>, StoreError> {
    let (code, source, device, time_source): (String, String, Option<String>, String) =
        (r.get(1)?, r.get(3)?, r.get(4)?, r.get(6)?);
    Ok(super::rebuild_observation(
        patient,
        RowParts {
            time: r.get(0)?,
            code: &code,
            value: r.get(2)?,
            source: &source,
            device_id: device.as_deref(),
            received_at: r.get(5)?,
            time_source: &time_source,
            original_value: r.get(7)?,
            original_unit: r.get(8)?,
            msg_id: r.get(9)?,
            trace_id: r.get::<Option<String>>(10)?.unwrap_or_default(),
        },
    ))
}

fn rules_row(r: &Row) -> Result<StoredPatientRules, StoreError> {
    Ok(StoredPatientRules { patient_id: r.get(0)?, rules: r.get(1)?, updated_at: r.get(2)?, version: r.get(3)? })
}

fn close_row(r: &Row) -> Result<EpisodeClose, StoreError> {
    Ok(EpisodeClose { episode_id: r.get(0)?, patient_id: r.get(1)?, rule_id: r.get(2)?, applied: r.get(3)? })
}

/// An observation as the arguments of the SQLite insert.
fn observation_args(o: &Observation) -> Vec<Value> {
    args![
        o.time,
        o.patient_id.as_str(),
        o.code.loinc(),
        o.value,
        o.code.ucum(),
        o.source.as_str(),
        o.device_id.as_ref().map(|d| d.as_str()),
        o.received_at,
        o.time_source.as_str(),
        o.original_value,
        o.original_unit.as_str(),
        o.msg_id.as_deref(),
        o.trace_id.as_str(),
    ]
    .to_vec()
}

async fn insert_observations(c: &mut Conn, obs: &[Observation], chunk: usize) -> Result<u64, StoreError> {
    let sql = sql!("insert_observations", split);
    if c.dialect() == Dialect::Sqlite {
        return c.execute_many(&sql, obs.iter().map(observation_args).collect()).await;
    }
    // PostgreSQL: `chunk` rows per statement, as typed arrays (UNNEST) that
    // borrow the rows' text.
    let mut inserted = 0;
    for part in obs.chunks(chunk) {
        fn col<'a, T>(part: &'a [Observation], f: impl Fn(&'a Observation) -> T) -> Vec<T> {
            part.iter().map(f).collect()
        }
        let time = col(part, |o| o.time);
        let patient = col(part, |o| o.patient_id.as_str());
        let code = col(part, |o| o.code.loinc());
        let value = col(part, |o| o.value);
        let unit = col(part, |o| o.code.ucum());
        let source = col(part, |o| o.source.as_str());
        let device = col(part, |o| o.device_id.as_ref().map(|d| d.as_str()));
        let received = col(part, |o| o.received_at);
        let time_source = col(part, |o| o.time_source.as_str());
        let original_value = col(part, |o| o.original_value);
        let original_unit = col(part, |o| o.original_unit.as_str());
        let msg_id = col(part, |o| o.msg_id.as_deref());
        let trace = col(part, |o| o.trace_id.as_str());
        inserted += c
            .execute_postgres(
                &sql,
                &[
                    &time,
                    &patient,
                    &code,
                    &value,
                    &unit,
                    &source,
                    &device,
                    &received,
                    &time_source,
                    &original_value,
                    &original_unit,
                    &msg_id,
                    &trace,
                ],
            )
            .await?;
    }
    Ok(inserted)
}

/// Records alert events and their episodes (see [`Store::record_alert_events`]); run it in a transaction.
async fn record_alert_events(c: &mut Conn, events: &[proto::AlertEvent]) -> Result<u64, StoreError> {
    let mut new = 0;
    for e in events {
        let reading = DateTime::from_timestamp_micros(e.reading_time_unix_micros).unwrap_or_default();
        let detected = DateTime::from_timestamp_micros(e.detected_at_unix_micros).unwrap_or_default();
        let n = c
            .execute(
                &sql!("insert_alert_event"),
                &args![
                    e.event_id.as_str(),
                    e.episode_id.as_str(),
                    e.patient_id.as_str(),
                    event_kind_name(e.kind),
                    severity_name(e.severity),
                    reading,
                    detected,
                    prost::Message::encode_to_vec(e),
                ],
            )
            .await?;
        if n == 0 {
            continue;
        }
        new += 1;
        let (status, resolved) = episode_status(e);
        c.execute(
            &sql!("upsert_alert"),
            &args![
                e.episode_id.as_str(),
                e.patient_id.as_str(),
                e.rule_id.as_str(),
                e.rule_kind.as_str(),
                e.program.as_str(),
                e.code.as_str(),
                severity_name(e.severity),
                status,
                reading,
                detected,
                resolved.then_some(reading),
                e.summary.as_str(),
                evidence_json(e),
                e.event_id.as_str(),
                e.rules_version,
            ],
        )
        .await?;
    }
    Ok(new)
}

/// PostgreSQL migrations: serialized by an advisory lock, TimescaleDB
/// features when the extension is available, each migration in its own
/// transaction (TimescaleDB ones statement by statement).
async fn migrate_postgres(c: &mut Conn) -> Result<MigrationReport, StoreError> {
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let available: bool = c
        .query_one(
            &Sql::shared("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"),
            &[],
        )
        .await?
        .get(0)?;
    if available {
        c.batch("CREATE EXTENSION IF NOT EXISTS timescaledb").await?;
    }
    let applied: Vec<i32> = c
        .query(&Sql::shared("SELECT version FROM schema_migrations"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect::<Result<_, _>>()?;
    let record = Sql::shared("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)");
    let mut report = MigrationReport { applied: Vec::new(), timescale: available };
    for m in migrations::POSTGRES {
        if applied.contains(&m.version) || (m.timescale_only && !available) {
            continue;
        }
        if m.timescale_only {
            for stmt in migrations::statements(m.sql) {
                c.batch(stmt).await?;
            }
            c.execute(&record, &args![m.version, m.name]).await?;
        } else {
            c.batch("BEGIN").await?;
            let r = async {
                c.batch(m.sql).await?;
                c.execute(&record, &args![m.version, m.name]).await
            }
            .await;
            c.batch(if r.is_ok() { "COMMIT" } else { "ROLLBACK" }).await?;
            r?;
        }
        report.applied.push(m.version);
    }
    Ok(report)
}

/// SQLite migrations, all in the caller's transaction.
async fn migrate_sqlite(c: &mut Conn) -> Result<MigrationReport, StoreError> {
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
         applied_at INTEGER NOT NULL)",
    )
    .await?;
    let done = Sql::shared("SELECT version FROM schema_migrations WHERE version = $1");
    let record = Sql::shared("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())");
    let mut report = MigrationReport::default();
    for m in migrations::SQLITE {
        if c.query_opt(&done, &args![m.version]).await?.is_some() {
            continue;
        }
        c.batch(m.sql).await?;
        c.execute(&record, &args![m.version, m.name]).await?;
        report.applied.push(m.version);
    }
    Ok(report)
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run(async |c| c.query(&sql!("ping"), &[]).await.map(drop)).await
    }

    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        match &self.db {
            Db::Sqlite(_) => self.db.transaction(async |c| migrate_sqlite(c).await).await,
            Db::Postgres(pool) => {
                // Migrations may wait for another process's (advisory lock) and
                // build indexes: no statement timeout, a generous bound on the whole.
                let restore = format!("SET statement_timeout = {}", pool.timeouts().statement.as_millis());
                self.db
                    .run_bounded(MIGRATION_BOUND, async |c| {
                        c.batch("SET statement_timeout = 0").await?;
                        c.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).await?;
                        let result = migrate_postgres(c).await;
                        let unlock = c.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).await;
                        let reset = c.batch(&restore).await;
                        let report = result?;
                        unlock?;
                        reset?;
                        Ok(report)
                    })
                    .await
            }
        }
    }

    async fn insert_observations(&self, obs: &[Observation]) -> Result<u64, StoreError> {
        if obs.is_empty() {
            return Ok(0);
        }
        if self.db.dialect() == Dialect::Postgres && obs.len() <= self.chunk {
            // One statement is atomic on its own: no BEGIN and COMMIT round trips.
            return self.db.run(async |c| insert_observations(c, obs, self.chunk).await).await;
        }
        self.db.transaction(async |c| insert_observations(c, obs, self.chunk).await).await
    }

    async fn registry(&self) -> Result<RegistrySnapshot, StoreError> {
        self.db.run(async |c| registry(c).await).await
    }

    async fn discharged_patients(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .run(async |c| c.query(&sql!("registry_discharged"), &[]).await?.iter().map(|r| r.get(0)).collect())
            .await
    }

    async fn is_discharged(&self, patient: &PatientId) -> Result<bool, StoreError> {
        self.db
            .run(async |c| {
                let row = c.query_opt(&sql!("patient_status"), &args![patient.as_str()]).await?;
                Ok(row.map(|r| r.get::<String>(0)).transpose()?.as_deref() == Some("discharged"))
            })
            .await
    }

    async fn add_patient(&self, patient: &PatientId) -> Result<bool, StoreError> {
        self.db.run(async |c| add_patient(c, patient).await).await
    }

    async fn add_device(&self, device: &DeviceId, kind: &str) -> Result<bool, StoreError> {
        self.db.run(async |c| add_device(c, device, kind).await).await
    }

    async fn enrol(&self, device: &DeviceId, patient: &PatientId, from: DateTime<Utc>) -> Result<(), StoreError> {
        self.db.transaction(async |c| enrol(c, device, patient, from).await).await
    }

    async fn unenrol(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.db.run(async |c| unenrol(c, device, at).await).await
    }

    async fn retire_device(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.db.transaction(async |c| retire_device(c, device, at).await).await
    }

    async fn grant_backfill(
        &self,
        device: &DeviceId,
        patient: &PatientId,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.db.transaction(async |c| grant_backfill(c, device, patient, until, reason).await).await
    }

    async fn observations(&self, patient: &PatientId, limit: i64) -> Result<Vec<StoredObservation>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("observations"), &args![patient.as_str(), limit]).await).await?;
        rows.iter()
            .map(|r| {
                Ok(StoredObservation {
                    time: r.get(0)?,
                    patient_id: r.get(1)?,
                    code: r.get(2)?,
                    value: r.get(3)?,
                    unit: r.get(4)?,
                    source: r.get(5)?,
                    device_id: r.get(6)?,
                })
            })
            .collect()
    }

    async fn count_observations(&self) -> Result<i64, StoreError> {
        self.db.run(async |c| c.query_one(&sql!("count_observations"), &[]).await?.get(0)).await
    }

    async fn recent_observations(
        &self,
        patient: &PatientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        let rows =
            self.db.run(async |c| c.query(&sql!("recent_observations"), &args![patient.as_str(), since]).await).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.extend(observation_row(patient, r)?);
        }
        Ok(out)
    }

    async fn rule_state_inputs(
        &self,
        patients: &[PatientId],
        since: DateTime<Utc>,
    ) -> Result<Vec<RuleStateInputs>, StoreError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = patients.iter().map(|p| p.as_str().to_owned()).collect();
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
        let (by_ids, by_ids_since) = (args![&ids], args![&ids, since]);
        let (rules_sql, obs_sql, closes_sql) =
            (sql!("rules_of", split), sql!("observations_of", split), sql!("closes_of", split));
        // PostgreSQL: pipelined on one connection, a single round trip.
        let mut all = self
            .db
            .run(async |c| {
                c.query_all(&[(&rules_sql, &by_ids[..]), (&obs_sql, &by_ids_since[..]), (&closes_sql, &by_ids[..])])
                    .await
            })
            .await?
            .into_iter();
        let (rules, obs, closes) =
            (all.next().unwrap_or_default(), all.next().unwrap_or_default(), all.next().unwrap_or_default());
        let mut out = vec![RuleStateInputs::default(); patients.len()];
        for r in &rules {
            let row = rules_row(r)?;
            if let Some(&i) = index.get(row.patient_id.as_str()) {
                out[i].rules = Some(row);
            }
        }
        for r in &obs {
            let Some(&i) = index.get(r.get::<String>(11)?.as_str()) else { continue };
            if let Some(o) = observation_row(&patients[i], r)? {
                out[i].observations.push(o);
            }
        }
        for r in &closes {
            let c = close_row(r)?;
            if let Some(&i) = index.get(c.patient_id.as_str()) {
                out[i].closes.push(c);
            }
        }
        Ok(out)
    }

    async fn set_patient_rules(&self, patient: &PatientId, rules_json: &str) -> Result<(), StoreError> {
        self.db.transaction(async |c| set_patient_rules_as_system(c, patient, rules_json).await.map(drop)).await
    }

    async fn patient_rules(&self, patient: &PatientId) -> Result<Option<StoredPatientRules>, StoreError> {
        let row = self.db.run(async |c| c.query_opt(&sql!("patient_rules"), &args![patient.as_str()]).await).await?;
        row.as_ref().map(rules_row).transpose()
    }

    async fn patient_rules_changed_since(&self, since: DateTime<Utc>) -> Result<Vec<StoredPatientRules>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("patient_rules_changed_since"), &args![since]).await).await?;
        rows.iter().map(rules_row).collect()
    }

    async fn pending_episode_closes(&self) -> Result<Vec<EpisodeClose>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("pending_episode_closes"), &[]).await).await?;
        rows.iter().map(close_row).collect()
    }

    async fn episode_closes(&self, patient: &PatientId) -> Result<Vec<EpisodeClose>, StoreError> {
        let rows = self.db.run(async |c| c.query(&sql!("episode_closes"), &args![patient.as_str()]).await).await?;
        rows.iter().map(close_row).collect()
    }

    async fn mark_episode_closes_applied(&self, episode_ids: &[String]) -> Result<(), StoreError> {
        if episode_ids.is_empty() {
            return Ok(());
        }
        self.db.run(async |c| c.execute(&sql!("mark_closes_applied", split), &args![episode_ids]).await.map(drop)).await
    }

    async fn record_alert_events(&self, events: &[proto::AlertEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        self.db.transaction(async |c| record_alert_events(c, events).await).await
    }

    async fn upsert_device_statuses(&self, statuses: &[DeviceStatusRow]) -> Result<u64, StoreError> {
        if statuses.is_empty() {
            return Ok(0);
        }
        self.db.transaction(async |c| upsert_device_statuses(c, statuses).await).await
    }

    async fn device_statuses(&self, devices: &[String]) -> Result<Vec<DeviceStatusRow>, StoreError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.db.run(async |c| c.query(&sql!("device_statuses", split), &args![devices]).await).await?;
        rows.iter().map(device_status_row).collect()
    }

    async fn alerts(&self, patient: Option<&PatientId>) -> Result<Vec<StoredAlert>, StoreError> {
        let p = patient.map(PatientId::as_str);
        let rows = self.db.run(async |c| c.query(&sql!("alerts"), &args![p]).await).await?;
        rows.iter()
            .map(|r| {
                Ok(StoredAlert {
                    episode_id: r.get(0)?,
                    patient_id: r.get(1)?,
                    rule_id: r.get(2)?,
                    rule_kind: r.get(3)?,
                    program: r.get(4)?,
                    code: r.get(5)?,
                    severity: r.get(6)?,
                    status: r.get(7)?,
                    opened_at: r.get(8)?,
                    last_event_at: r.get(9)?,
                    resolved_at: r.get(10)?,
                    summary: r.get(11)?,
                    evidence: r.get(12)?,
                    last_event_id: r.get(13)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use vitalwatch_schemas::registry::Attribution;
    use vitalwatch_schemas::{Code, ObservationId, Source, TimeSource};

    fn from_micros(us: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(us).unwrap_or_default()
    }

    fn obs(p: &str, t: i64, v: f64) -> Observation {
        let time = from_micros(t);
        Observation {
            id: ObservationId::compute(p, Code::BodyWeight, t),
            patient_id: PatientId::new(p).unwrap(),
            code: Code::BodyWeight,
            value: v,
            time,
            received_at: time,
            source: Source::Manual,
            device_id: None,
            time_source: TimeSource::App,
            original_value: v,
            original_unit: "kg".into(),
            msg_id: None,
            trace_id: "t".into(),
        }
    }

    #[tokio::test]
    async fn migrate_twice_insert_dedupes_and_registry_round_trips() {
        let s = SqliteStore::open(":memory:").unwrap();
        let all: Vec<i32> = migrations::SQLITE.iter().map(|m| m.version).collect();
        assert_eq!(s.migrate().await.unwrap().applied, all);
        assert!(s.migrate().await.unwrap().applied.is_empty());
        assert_eq!(s.insert_observations(&[obs("p1", 1, 80.0), obs("p1", 2, 80.1)]).await.unwrap(), 2);
        assert_eq!(s.insert_observations(&[obs("p1", 1, 80.0), obs("p1", 3, 80.2)]).await.unwrap(), 1);
        assert_eq!(s.count_observations().await.unwrap(), 3);

        let (p, d) = (PatientId::new("p1").unwrap(), DeviceId::new("d1").unwrap());
        assert!(s.enrol(&d, &p, from_micros(0)).await.is_err(), "unknown device");
        s.add_patient(&p).await.unwrap();
        s.add_device(&d, "scale").await.unwrap();
        s.enrol(&d, &p, from_micros(10)).await.unwrap();
        let p2 = PatientId::new("p2").unwrap();
        s.add_patient(&p2).await.unwrap();
        s.enrol(&d, &p2, from_micros(20)).await.unwrap();
        let snap = s.registry().await.unwrap();
        let at = |m| (from_micros(m), from_micros(m));
        let (t, now) = at(15);
        assert_eq!(snap.patient_for(&d, t, now).unwrap(), &p);
        let (t, now) = at(25);
        assert_eq!(snap.patient_for(&d, t, now).unwrap(), &p2);
        // The move is recorded (now): p's period accepts no more readings.
        assert_eq!(snap.patient_for(&d, from_micros(15), Utc::now()), Err(Attribution::Reassigned));
        s.retire_device(&d, from_micros(30)).await.unwrap();
        let snap = s.registry().await.unwrap();
        let (t, now) = at(35);
        assert!(snap.patient_for(&d, t, now).is_err());
        let (t, now) = at(25);
        assert_eq!(snap.patient_for(&d, t, now).unwrap(), &p2);
        assert_eq!(snap.patient_for(&d, from_micros(25), Utc::now()), Err(Attribution::Retired));
    }

    /// A transaction whose caller gave up (a timeout, a cancelled task) is
    /// rolled back and leaves the connection usable.
    #[tokio::test]
    async fn a_cancelled_transaction_is_rolled_back() {
        let s = SqliteStore::open(":memory:").unwrap();
        s.migrate().await.unwrap();
        let p = PatientId::new("p-cancel").unwrap();
        let (began, started) = tokio::sync::oneshot::channel();
        let stuck = s.db().transaction(async |c| {
            add_patient(c, &p).await?;
            let _ = began.send(());
            std::future::pending::<()>().await;
            Ok::<_, StoreError>(())
        });
        tokio::select! {
            _ = stuck => unreachable!("pending"),
            _ = started => {}
        }
        assert!(!s.registry().await.unwrap().patients.contains("p-cancel"));
        assert!(s.add_patient(&p).await.unwrap());
    }
}
