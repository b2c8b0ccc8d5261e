//! SQLite driver for embedded mode (`vitalwatch run`). A single connection in
//! WAL mode behind a mutex; every call runs on the blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use vitalwatch_schemas::registry::{BackfillGrant, DeviceEntry, EndReason, Enrolment, EnrolmentEnd, RegistrySnapshot};
use vitalwatch_schemas::{DeviceId, Observation, PatientId, migrations, proto};

use super::{
    EpisodeClose, MigrationReport, RowParts, Store, StoreError, StoredAlert, StoredObservation, StoredPatientRules,
    episode_status, event_kind_name, evidence_json, severity_name,
};

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: SharedConnection,
}

/// Classifies a SQLite error: busy and locked are transient; a constraint
/// (a trigger's `RAISE(ABORT)` included), a too-large value or a type
/// mismatch refuses this data ([`StoreError::Rejected`]).
pub fn err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            StoreError::Transient(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TooBig
                    | rusqlite::ErrorCode::TypeMismatch
            ) =>
        {
            StoreError::Rejected(e.to_string())
        }
        _ => StoreError::Permanent(e.to_string()),
    }
}

/// The refusal of migration 0025's trigger as a clear error; anything else as [`err`].
fn collision(e: rusqlite::Error, kind: &str, id: &str, other: &str) -> StoreError {
    if e.to_string().contains(super::ID_COLLISION_MARKER) {
        return super::id_collision(kind, id, other);
    }
    err(e)
}

/// One SQLite connection shared by async code: each call runs on the
/// blocking pool, one at a time (SQLite serializes writers anyway).
#[derive(Clone)]
pub struct SharedConnection(Arc<Mutex<Connection>>);

impl SharedConnection {
    /// Wraps an open connection.
    pub fn new(conn: Connection) -> Self {
        SharedConnection(Arc::new(Mutex::new(conn)))
    }

    /// Runs `f` on the connection. The outer error: the blocking task failed
    /// (panicked or was cancelled), with its reason.
    pub async fn call<T: Send + 'static, E: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, String> {
        let conn = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c)
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Runs `f` on the connection; a failed blocking task is a transient error.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.call(f).await.map_err(|e| StoreError::Transient(format!("database task failed: {e}")))?
    }
}

/// Opens a connection to the embedded database file (creating its folder),
/// in WAL mode with a busy timeout; `:memory:` for tests.
pub fn open_connection(path: &str) -> Result<Connection, StoreError> {
    if path != ":memory:"
        && let Some(dir) = Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        crate::private_fs::create_dir(dir)
            .map_err(|e| StoreError::Permanent(format!("creating {}: {e}", dir.display())))?;
    }
    if path != ":memory:" && !path.starts_with("file:") {
        private_db_files(Path::new(path))?;
    }
    let conn = Connection::open(path).map_err(err)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
        .map_err(err)?;
    Ok(conn)
}

/// Patient data: the database file is created 0600 before SQLite opens it (its
/// `-wal` and `-shm` files take the database file's mode), and existing ones
/// with wider permissions are restricted.
///
/// An existing database file is never opened here, only `chmod`ed by path:
/// closing any descriptor of a file drops every POSIX lock this process holds
/// on it, so an open-and-close while another connection of this process is
/// live would silently release SQLite's locks (another process could then
/// checkpoint and delete the WAL under it, and committed rows would be lost).
fn private_db_files(db: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let fail = |p: &Path, e: std::io::Error| StoreError::Permanent(format!("securing {}: {e}", p.display()));
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(db) {
        // A new, empty file: no connection can hold locks on it yet.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(db, e)),
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let p = std::path::PathBuf::from(p);
        match crate::private_fs::mode(&p) {
            Ok(m) if m & 0o077 != 0 => {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m & 0o700)).map_err(|e| fail(&p, e))?
            }
            _ => {}
        }
    }
    Ok(())
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

impl SqliteStore {
    /// Opens (creating if needed) the database file; `:memory:` for tests.
    pub fn open(path: &str) -> Result<Self, StoreError> {
        Ok(SqliteStore { conn: SharedConnection::new(open_connection(path)?) })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.conn.run(|c| {
            let tx = c.transaction().map_err(err)?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
            )
            .map_err(err)?;
            let mut report = MigrationReport::default();
            for m in migrations::SQLITE {
                let done: Option<i64> = tx
                    .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [m.version], |r| r.get(0))
                    .optional()
                    .map_err(err)?;
                if done.is_some() {
                    continue;
                }
                tx.execute_batch(m.sql).map_err(err)?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    params![m.version, m.name, micros(Utc::now())],
                )
                .map_err(err)?;
                report.applied.push(m.version);
            }
            tx.commit().map_err(err)?;
            Ok(report)
        })
        .await
    }

    async fn insert_observations(&self, obs: &[Observation]) -> Result<u64, StoreError> {
        let obs = obs.to_vec();
        self.conn
            .run(move |c| {
                let tx = c.transaction().map_err(err)?;
                let mut n = 0;
                {
                    let mut st = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO observations (time, patient_id, code, value, unit, source, device_id, \
                         received_at, time_source, original_value, original_unit, msg_id, trace_id) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    )
                    .map_err(err)?;
                    for o in &obs {
                        n += st
                            .execute(params![
                                micros(o.time),
                                o.patient_id.as_str(),
                                o.code.loinc(),
                                o.value,
                                o.code.ucum(),
                                o.source.as_str(),
                                o.device_id.as_ref().map(|d| d.as_str()),
                                micros(o.received_at),
                                o.time_source.as_str(),
                                o.original_value,
                                o.original_unit,
                                o.msg_id,
                                o.trace_id,
                            ])
                            .map_err(err)? as u64;
                    }
                }
                tx.commit().map_err(err)?;
                Ok(n)
            })
            .await
    }

    async fn registry(&self) -> Result<RegistrySnapshot, StoreError> {
        self.conn
            .run(|c| {
                let mut snap = RegistrySnapshot::default();
                let mut st = c.prepare("SELECT patient_id FROM patients WHERE status = 'active'").map_err(err)?;
                for p in st.query_map([], |r| r.get::<_, String>(0)).map_err(err)? {
                    snap.patients.insert(p.map_err(err)?);
                }
                let mut st = c.prepare("SELECT device_id, retired_at FROM devices").map_err(err)?;
                let rows =
                    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))).map_err(err)?;
                for row in rows {
                    let (d, retired) = row.map_err(err)?;
                    snap.devices
                        .insert(d, DeviceEntry { retired_at: retired.map(from_micros), ..Default::default() });
                }
                let mut st = c
                    .prepare(
                        "SELECT device_id, patient_id, valid_from, valid_to, end_reason, end_recorded_at FROM enrolments",
                    )
                    .map_err(err)?;
                let rows = st
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                        ))
                    })
                    .map_err(err)?;
                for row in rows {
                    let (d, p, from, to, reason, recorded) = row.map_err(err)?;
                    let Ok(patient_id) = PatientId::new(p) else { continue };
                    let ended = reason.as_deref().and_then(EndReason::parse).zip(recorded).map(|(reason, at)| {
                        EnrolmentEnd { reason, recorded_at: from_micros(at) }
                    });
                    if let Some(e) = snap.devices.get_mut(&d) {
                        e.enrolments.push(Enrolment {
                            patient_id,
                            valid_from: from_micros(from),
                            valid_to: to.map(from_micros),
                            ended,
                        });
                    }
                }
                let mut st = c
                    .prepare("SELECT device_id, patient_id, valid_until FROM backfill_grants WHERE valid_until > ?1")
                    .map_err(err)?;
                let rows = st
                    .query_map([micros(Utc::now())], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                    })
                    .map_err(err)?;
                for row in rows {
                    let (d, p, until) = row.map_err(err)?;
                    let Ok(patient_id) = PatientId::new(p) else { continue };
                    if let Some(e) = snap.devices.get_mut(&d) {
                        e.backfill.push(BackfillGrant { patient_id, until: from_micros(until) });
                    }
                }
                Ok(snap)
            })
            .await
    }

    async fn add_patient(&self, patient: &PatientId) -> Result<bool, StoreError> {
        let p = patient.as_str().to_owned();
        self.conn
            .run(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO patients (patient_id, created_at) VALUES (?1, ?2)",
                    params![p, micros(Utc::now())],
                )
                .map(|n| n == 1)
                .map_err(|e| collision(e, "patient", &p, "device"))
            })
            .await
    }

    async fn add_device(&self, device: &DeviceId, kind: &str) -> Result<bool, StoreError> {
        let (d, k) = (device.as_str().to_owned(), kind.to_owned());
        self.conn
            .run(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO devices (device_id, kind, created_at) VALUES (?1, ?2, ?3)",
                    params![d, k, micros(Utc::now())],
                )
                .map(|n| n == 1)
                .map_err(|e| collision(e, "device", &d, "patient"))
            })
            .await
    }

    async fn enrol(&self, device: &DeviceId, patient: &PatientId, from: DateTime<Utc>) -> Result<(), StoreError> {
        let (d, p, f) = (device.as_str().to_owned(), patient.as_str().to_owned(), micros(from));
        self.conn
            .run(move |c| {
                let tx = c.transaction().map_err(err)?;
                let retired: Option<Option<i64>> = tx
                    .query_row("SELECT retired_at FROM devices WHERE device_id = ?1", [&d], |r| r.get(0))
                    .optional()
                    .map_err(err)?;
                match retired {
                    None => return Err(StoreError::Invalid("unknown device".into())),
                    Some(Some(_)) => return Err(StoreError::Invalid("the device is retired".into())),
                    Some(None) => {}
                }
                let known: Option<i64> = tx
                    .query_row("SELECT 1 FROM patients WHERE patient_id = ?1", [&p], |r| r.get(0))
                    .optional()
                    .map_err(err)?;
                if known.is_none() {
                    return Err(StoreError::Invalid("unknown patient".into()));
                }
                tx.execute(
                    "UPDATE enrolments SET valid_to = ?2, end_reason = 'moved', end_recorded_at = ?3 \
                     WHERE device_id = ?1 AND valid_to IS NULL AND valid_from < ?2",
                    params![d, f, micros(Utc::now())],
                )
                .map_err(err)?;
                let overlap: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM enrolments WHERE device_id = ?1 AND (valid_to IS NULL OR valid_to > ?2)",
                        params![d, f],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                if overlap.is_some() {
                    return Err(StoreError::Invalid("an enrolment of this device starts at or after that time".into()));
                }
                tx.execute(
                    "INSERT INTO enrolments (device_id, patient_id, valid_from) VALUES (?1, ?2, ?3)",
                    params![d, p, f],
                )
                .map_err(err)?;
                tx.commit().map_err(err)
            })
            .await
    }

    async fn unenrol(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (d, a) = (device.as_str().to_owned(), micros(at));
        self.conn
            .run(move |c| {
                c.execute(
                    "UPDATE enrolments SET valid_to = ?2, end_reason = 'unenrolled', end_recorded_at = ?3 \
                     WHERE device_id = ?1 AND valid_to IS NULL AND valid_from < ?2",
                    params![d, a, micros(Utc::now())],
                )
                .map(|_| ())
                .map_err(err)
            })
            .await
    }

    async fn retire_device(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let (d, a) = (device.as_str().to_owned(), micros(at));
        self.conn
            .run(move |c| {
                let tx = c.transaction().map_err(err)?;
                let n = tx
                    .execute(
                        "UPDATE devices SET status = 'retired', retired_at = ?2 WHERE device_id = ?1",
                        params![d, a],
                    )
                    .map_err(err)?;
                if n == 0 {
                    return Err(StoreError::Invalid("unknown device".into()));
                }
                tx.execute(
                    "UPDATE enrolments SET valid_to = ?2, end_reason = 'retired', end_recorded_at = ?3 \
                     WHERE device_id = ?1 AND valid_to IS NULL AND valid_from < ?2",
                    params![d, a, micros(Utc::now())],
                )
                .map_err(err)?;
                tx.commit().map_err(err)
            })
            .await
    }

    async fn grant_backfill(
        &self,
        device: &DeviceId,
        patient: &PatientId,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (d, p, u, why) =
            (device.as_str().to_owned(), patient.as_str().to_owned(), micros(until), reason.to_owned());
        self.conn
            .run(move |c| {
                let tx = c.transaction().map_err(err)?;
                let retired: Option<Option<i64>> = tx
                    .query_row("SELECT retired_at FROM devices WHERE device_id = ?1", [&d], |r| r.get(0))
                    .optional()
                    .map_err(err)?;
                match retired {
                    None => return Err(StoreError::Invalid("unknown device".into())),
                    Some(Some(_)) => return Err(StoreError::Invalid("the device is retired".into())),
                    Some(None) => {}
                }
                let ended: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM enrolments WHERE device_id = ?1 AND patient_id = ?2 AND end_reason IS NOT NULL",
                        params![d, p],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(err)?;
                if ended.is_none() {
                    return Err(StoreError::Invalid("the device has no ended enrolment to this patient".into()));
                }
                tx.execute(
                    "INSERT INTO backfill_grants (device_id, patient_id, granted_at, valid_until, reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![d, p, micros(Utc::now()), u, why],
                )
                .map_err(err)?;
                tx.commit().map_err(err)
            })
            .await
    }

    async fn observations(&self, patient: &PatientId, limit: i64) -> Result<Vec<StoredObservation>, StoreError> {
        let p = patient.as_str().to_owned();
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT time, patient_id, code, value, unit, source, device_id FROM observations \
                     WHERE patient_id = ?1 ORDER BY time, code LIMIT ?2",
                    )
                    .map_err(err)?;
                let rows = st
                    .query_map(params![p, limit], |r| {
                        Ok(StoredObservation {
                            time: from_micros(r.get(0)?),
                            patient_id: r.get(1)?,
                            code: r.get(2)?,
                            value: r.get(3)?,
                            unit: r.get(4)?,
                            source: r.get(5)?,
                            device_id: r.get(6)?,
                        })
                    })
                    .map_err(err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(err)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.conn.run(|c| c.execute_batch("SELECT 1").map_err(err)).await
    }

    async fn count_observations(&self) -> Result<i64, StoreError> {
        self.conn.run(|c| c.query_row("SELECT count(*) FROM observations", [], |r| r.get(0)).map_err(err)).await
    }

    async fn recent_observations(
        &self,
        patient: &PatientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        let (p, since) = (patient.clone(), micros(since));
        self.conn.run(move |c| {
            let mut st = c
                .prepare(
                    "SELECT time, code, value, source, device_id, received_at, time_source, original_value, original_unit, \
                     msg_id, trace_id FROM observations WHERE patient_id = ?1 AND time >= ?2 ORDER BY time, code",
                )
                .map_err(err)?;
            #[allow(clippy::type_complexity)]
            let rows = st
                .query_map(params![p.as_str(), since], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, f64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, f64>(7)?,
                        r.get::<_, String>(8)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, Option<String>>(10)?,
                    ))
                })
                .map_err(err)?;
            let mut out = Vec::new();
            for row in rows {
                let (time, code, value, source, device, received, ts, ov, ou, msg, trace) = row.map_err(err)?;
                if let Some(o) = super::rebuild_observation(
                    &p,
                    RowParts {
                        time: from_micros(time),
                        code: &code,
                        value,
                        source: &source,
                        device_id: device.as_deref(),
                        received_at: from_micros(received),
                        time_source: &ts,
                        original_value: ov,
                        original_unit: ou,
                        msg_id: msg,
                        trace_id: trace.unwrap_or_default(),
                    },
                ) {
                    out.push(o);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_patient_rules(&self, patient: &PatientId, rules_json: &str) -> Result<(), StoreError> {
        let (p, r) = (patient.as_str().to_owned(), rules_json.to_owned());
        self.conn
            .run(move |c| {
                c.execute(
                    "INSERT INTO patient_rules (patient_id, rules, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (patient_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                    params![p, r, micros(Utc::now())],
                )
                .map(|_| ())
                .map_err(err)
            })
            .await
    }

    async fn patient_rules(&self, patient: &PatientId) -> Result<Option<StoredPatientRules>, StoreError> {
        let p = patient.as_str().to_owned();
        self.conn
            .run(move |c| {
                c.query_row(
                    "SELECT patient_id, rules, updated_at FROM patient_rules WHERE patient_id = ?1",
                    [&p],
                    |r| {
                        Ok(StoredPatientRules {
                            patient_id: r.get(0)?,
                            rules: r.get(1)?,
                            updated_at: from_micros(r.get(2)?),
                        })
                    },
                )
                .optional()
                .map_err(err)
            })
            .await
    }

    async fn patient_rules_changed_since(&self, since: DateTime<Utc>) -> Result<Vec<StoredPatientRules>, StoreError> {
        let since = micros(since);
        self.conn.run(move |c| {
            let mut st = c
                .prepare("SELECT patient_id, rules, updated_at FROM patient_rules WHERE updated_at >= ?1 ORDER BY updated_at")
                .map_err(err)?;
            let rows = st
                .query_map([since], |r| {
                    Ok(StoredPatientRules { patient_id: r.get(0)?, rules: r.get(1)?, updated_at: from_micros(r.get(2)?) })
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }

    async fn pending_episode_closes(&self) -> Result<Vec<EpisodeClose>, StoreError> {
        self.conn
            .run(|c| {
                let mut st = c
                    .prepare(
                        "SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes \
                     WHERE applied_at IS NULL ORDER BY requested_at LIMIT 1000",
                    )
                    .map_err(err)?;
                let rows = st.query_map([], close_row).map_err(err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(err)
            })
            .await
    }

    async fn episode_closes(&self, patient: &PatientId) -> Result<Vec<EpisodeClose>, StoreError> {
        let p = patient.as_str().to_owned();
        self.conn
            .run(move |c| {
                let mut st = c
                    .prepare(
                        "SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes \
                     WHERE patient_id = ?1",
                    )
                    .map_err(err)?;
                let rows = st.query_map([p], close_row).map_err(err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(err)
            })
            .await
    }

    async fn mark_episode_closes_applied(&self, episode_ids: &[String]) -> Result<(), StoreError> {
        let ids = episode_ids.to_vec();
        let now = micros(Utc::now());
        self.conn
            .run(move |c| {
                let tx = c.transaction().map_err(err)?;
                for id in &ids {
                    tx.execute(
                        "UPDATE episode_closes SET applied_at = ?1 WHERE episode_id = ?2 AND applied_at IS NULL",
                        rusqlite::params![now, id],
                    )
                    .map_err(err)?;
                }
                tx.commit().map_err(err)
            })
            .await
    }

    async fn record_alert_events(&self, events: &[proto::AlertEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let events = events.to_vec();
        self.conn.run(move |c| {
            let tx = c.transaction().map_err(err)?;
            let mut new = 0;
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO alert_events (event_id, episode_id, patient_id, kind, severity, reading_time, \
                         detected_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(err)?;
                let mut up = tx
                    .prepare_cached(
                        "INSERT INTO alerts (episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, \
                         last_event_at, resolved_at, summary, evidence, last_event_id) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
                         ON CONFLICT (episode_id) DO UPDATE SET \
                           severity = CASE WHEN excluded.status = 'open' THEN excluded.severity ELSE alerts.severity END, \
                           status = excluded.status, last_event_at = excluded.last_event_at, resolved_at = excluded.resolved_at, \
                           summary = excluded.summary, evidence = excluded.evidence, last_event_id = excluded.last_event_id",
                    )
                    .map_err(err)?;
                for e in &events {
                    let n = ins
                        .execute(params![
                            e.event_id,
                            e.episode_id,
                            e.patient_id,
                            event_kind_name(e.kind),
                            severity_name(e.severity),
                            e.reading_time_unix_micros,
                            e.detected_at_unix_micros,
                            prost::Message::encode_to_vec(e),
                        ])
                        .map_err(err)?;
                    if n == 0 {
                        continue;
                    }
                    new += 1;
                    let (status, resolved) = episode_status(e);
                    up.execute(params![
                        e.episode_id,
                        e.patient_id,
                        e.rule_id,
                        e.rule_kind,
                        e.program,
                        e.code,
                        severity_name(e.severity),
                        status,
                        e.reading_time_unix_micros,
                        e.detected_at_unix_micros,
                        resolved.then_some(e.reading_time_unix_micros),
                        e.summary,
                        evidence_json(e),
                        e.event_id,
                    ])
                    .map_err(err)?;
                }
            }
            tx.commit().map_err(err)?;
            Ok(new)
        })
        .await
    }

    async fn alerts(&self, patient: Option<&PatientId>) -> Result<Vec<StoredAlert>, StoreError> {
        let p = patient.map(|p| p.as_str().to_owned());
        self.conn.run(move |c| {
            let mut st = c
                .prepare(
                    "SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, \
                     resolved_at, summary, evidence, last_event_id FROM alerts \
                     WHERE ?1 IS NULL OR patient_id = ?1 ORDER BY opened_at, episode_id",
                )
                .map_err(err)?;
            let rows = st
                .query_map([p], |r| {
                    Ok(StoredAlert {
                        episode_id: r.get(0)?,
                        patient_id: r.get(1)?,
                        rule_id: r.get(2)?,
                        rule_kind: r.get(3)?,
                        program: r.get(4)?,
                        code: r.get(5)?,
                        severity: r.get(6)?,
                        status: r.get(7)?,
                        opened_at: from_micros(r.get(8)?),
                        last_event_at: from_micros(r.get(9)?),
                        resolved_at: r.get::<_, Option<i64>>(10)?.map(from_micros),
                        summary: r.get(11)?,
                        evidence: r.get(12)?,
                        last_event_id: r.get(13)?,
                    })
                })
                .map_err(err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(err)
        })
        .await
    }
}

fn close_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EpisodeClose> {
    Ok(EpisodeClose { episode_id: r.get(0)?, patient_id: r.get(1)?, rule_id: r.get(2)?, applied: r.get(3)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_schemas::registry::Attribution;
    use vitalwatch_schemas::{Code, ObservationId, Source, TimeSource};

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
}
