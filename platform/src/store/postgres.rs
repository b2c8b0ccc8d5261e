//! PostgreSQL / TimescaleDB driver (tokio-postgres). One connection per
//! process, re-established on failure; observation batches go in as
//! `INSERT ... SELECT * FROM UNNEST(...) ON CONFLICT DO NOTHING`, which skips
//! duplicates and works unchanged on TimescaleDB hypertables.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use vitalwatch_schemas::registry::{BackfillGrant, DeviceEntry, EndReason, Enrolment, EnrolmentEnd, RegistrySnapshot};
use vitalwatch_schemas::{DeviceId, Observation, PatientId, migrations, proto};

use super::pg_tls::{self, PgTls};
use super::{
    DbTimeouts, EpisodeClose, MigrationReport, RowParts, RuleStateInputs, Store, StoreError, StoredAlert,
    StoredObservation, StoredPatientRules, episode_status, event_kind_name, evidence_json, severity_name,
};

/// Advisory lock key that serializes concurrent `migrate` runs.
const MIGRATION_LOCK: i64 = 0x7669_7461_6c77;

/// Longest `migrate` call (instead of the statement timeout).
const MIGRATION_BOUND: std::time::Duration = std::time::Duration::from_secs(600);

const INSERT_SQL: &str = "INSERT INTO observations \
    (time, patient_id, code, value, unit, source, device_id, received_at, time_source, original_value, original_unit, msg_id, trace_id) \
    SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::text[], \
    $8::timestamptz[], $9::text[], $10::float8[], $11::text[], $12::text[], $13::text[]) \
    ON CONFLICT DO NOTHING";

/// The PostgreSQL store.
pub struct PgStore {
    chunk: usize,
    conn: PgConnection,
}

/// A few PostgreSQL connections, each (re)connected on demand: after the
/// server closed one, the next call through it connects again. A caller gets
/// the first idle connection, else waits its turn on one (round robin).
/// Shared by the platform, alerting and admin stores; a transaction holds its
/// connection until it ends.
///
/// Every connection is opened with [`connection_config`]: connecting is bounded
/// by the connect timeout, every statement by the server's
/// `statement_timeout`, and every call made through [`PgConnection::run`] by
/// the statement timeout on the client side too (a hung server, e.g. stopped
/// with SIGSTOP, cannot cancel anything itself). A call that times out drops
/// its connection (its state is unknown) and fails with
/// [`StoreError::Transient`].
pub struct PgConnection {
    url: String,
    timeouts: DbTimeouts,
    conns: Vec<Mutex<Option<Client>>>,
    next: std::sync::atomic::AtomicUsize,
}

/// The connection settings of every PostgreSQL client of every role: the URL
/// with the connect timeout and, as a startup parameter, the server-side
/// `statement_timeout`; and its TLS settings (libpq's `sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`, see [`super::pg_tls`]). The one place
/// that builds them (platform, alerting and admin stores).
///
/// # Errors
///
/// [`StoreError::Invalid`] for a URL tokio-postgres cannot parse or TLS
/// parameters that cannot work.
pub fn connection_config(url: &str, timeouts: DbTimeouts) -> Result<(tokio_postgres::Config, PgTls), StoreError> {
    let (plain, tls) = pg_tls::split_url(url)
        .map_err(|e| StoreError::Invalid(format!("database URL {}: {e}", crate::config::redact_url(url))))?;
    let mut config: tokio_postgres::Config = plain
        .parse()
        .map_err(|e| StoreError::Invalid(format!("bad database URL {}: {e}", crate::config::redact_url(url))))?;
    config.ssl_mode(tls.postgres_mode());
    config.connect_timeout(timeouts.connect);
    // Detects a peer that vanished (not one that hangs: see `run`).
    config.keepalives(true).keepalives_idle(std::time::Duration::from_secs(30));
    Ok((config, tls))
}

/// One plain client of `url` with its TLS settings (for tools: the load
/// simulator), its connection driven by a spawned task.
///
/// # Errors
///
/// [`StoreError::Invalid`] for bad settings, [`StoreError::Transient`] when
/// connecting fails.
pub async fn connect_client(url: &str, timeouts: DbTimeouts) -> Result<Client, StoreError> {
    let (config, tls) = connection_config(url, timeouts)?;
    let connector = tls.connector().map_err(|e| StoreError::Invalid(format!("database TLS settings: {e}")))?;
    let (client, connection) = config.connect(connector).await.map_err(|e| {
        StoreError::Transient(format!(
            "connecting to {} (sslmode={}): {}",
            crate::config::redact_url(url),
            tls.mode.as_str(),
            error_chain(&e)
        ))
    })?;
    tokio::spawn(connection);
    Ok(client)
}

/// An error and its causes, `: `-separated (tokio-postgres keeps the reason of
/// a failed TLS handshake, e.g. `invalid peer certificate: UnknownIssuer`, in
/// the source chain, not in its message).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Logs once, at startup, a connection to a remote server whose certificate is
/// not checked (`sslmode` `disable`, `prefer`, or `require` without a CA): it
/// does not stop an attacker in the middle.
fn warn_if_unverified(url: &str) {
    let Ok((config, tls)) = connection_config(url, DbTimeouts::default()) else { return };
    let remote = config.get_hosts().iter().any(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            !(name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
        }
        #[allow(unreachable_patterns)]
        _ => false,
    });
    if remote && !tls.mode.verifies(tls.root_cert.is_some()) {
        tracing::warn!(
            message = "The database server's certificate is not verified: set database.sslmode = \"verify-full\" and database.sslrootcert.",
            sslmode = tls.mode.as_str(),
        );
    }
}

impl PgConnection {
    /// One connection, not connected yet (see [`PgConnection::client`]).
    pub fn new(url: &str) -> Self {
        Self::pool(url, 1)
    }

    /// Up to `size` connections (at least one), opened as they are needed.
    pub fn pool(url: &str, size: usize) -> Self {
        warn_if_unverified(url);
        PgConnection {
            url: url.to_owned(),
            timeouts: DbTimeouts::default(),
            conns: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The same connections with other timeouts (default: [`DbTimeouts::default`]).
    pub fn with_timeouts(mut self, timeouts: DbTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> DbTimeouts {
        self.timeouts
    }

    fn timed_out(&self, what: &str, after: std::time::Duration) -> StoreError {
        StoreError::Transient(format!(
            "{what} {} timed out after {} ms",
            crate::config::redact_url(&self.url),
            after.as_millis()
        ))
    }

    /// A live client, connecting if the chosen slot has none or it was closed.
    /// Waiting for a busy slot and connecting are each bounded (statement and
    /// connect timeouts).
    ///
    /// # Errors
    ///
    /// [`StoreError::Transient`] when the server cannot be reached or does not
    /// answer in time (the URL's password is redacted in the message).
    pub async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let idle = self.conns.iter().find_map(|m| m.try_lock().ok());
        let mut g = match idle {
            Some(g) => g,
            None => {
                let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.conns.len();
                tokio::time::timeout(self.timeouts.statement, self.conns[i].lock())
                    .await
                    .map_err(|_| self.timed_out("waiting for a connection to", self.timeouts.statement))?
            }
        };
        if g.as_ref().is_none_or(Client::is_closed) {
            *g = None;
            let (config, tls) = connection_config(&self.url, self.timeouts)?;
            let connector = tls.connector().map_err(|e| StoreError::Invalid(format!("database TLS settings: {e}")))?;
            let connect = async {
                let (client, connection) = config.connect(connector).await.map_err(|e| {
                    StoreError::Transient(format!(
                        "connecting to {} (sslmode={}): {}",
                        crate::config::redact_url(&self.url),
                        tls.mode.as_str(),
                        error_chain(&e)
                    ))
                })?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(message = "PostgreSQL connection closed.", error = %e);
                    }
                });
                // A startup parameter would be simpler, but poolers and the
                // TimescaleDB test server ignore or refuse `options`.
                let ms = self.timeouts.statement.as_millis();
                client.batch_execute(&format!("SET statement_timeout = {ms}")).await.map_err(classify)?;
                Ok::<_, StoreError>(client)
            };
            let client = tokio::time::timeout(self.timeouts.connect, connect)
                .await
                .map_err(|_| self.timed_out("connecting to", self.timeouts.connect))??;
            *g = Some(client);
        }
        Ok(g)
    }

    /// Runs `f` on a live client, bounded by the statement timeout. On a
    /// timeout the connection is dropped (the next call connects again) and
    /// the error is [`StoreError::Transient`] ("timed out").
    ///
    /// # Errors
    ///
    /// Those of [`PgConnection::client`], a timeout, and what `f` returns.
    pub async fn run<T, E>(&self, f: impl AsyncFnOnce(&mut Client) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.run_bounded(self.timeouts.statement, f).await
    }

    /// [`PgConnection::run`] with another bound (migrations).
    ///
    /// # Errors
    ///
    /// As [`PgConnection::run`].
    pub async fn run_bounded<T, E>(
        &self,
        bound: std::time::Duration,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut g = self.client().await?;
        let Some(c) = g.as_mut() else { return Err(StoreError::Transient("no connection".into()).into()) };
        match tokio::time::timeout(bound, f(c)).await {
            Ok(r) => r,
            Err(_) => {
                *g = None;
                metrics::counter!("vitalwatch_db_timeouts_total").increment(1);
                Err(self.timed_out("a call to", bound).into())
            }
        }
    }
}

/// Classifies a PostgreSQL error: connection (08), transaction rollback
/// (40: serialization failure, deadlock), insufficient resources (53),
/// operator intervention (57: statement timeout, shutdown), system errors
/// (58) and lock-not-available (55P03) are transient; data exceptions (22,
/// e.g. 22021 for a NUL byte in text) and integrity violations (23) refuse
/// this data ([`StoreError::Rejected`]); the rest is permanent. An error
/// without a SQLSTATE (I/O, a closed connection) is transient.
/// The refusal of migration 0025's trigger as a clear error; anything else unchanged.
fn collision(e: StoreError, kind: &str, id: &str, other: &str) -> StoreError {
    match &e {
        StoreError::Rejected(m) if m.contains(super::ID_COLLISION_MARKER) => super::id_collision(kind, id, other),
        _ => e,
    }
}

pub fn classify(e: tokio_postgres::Error) -> StoreError {
    if e.is_closed() {
        return StoreError::Transient(e.to_string());
    }
    match e.code() {
        None => StoreError::Transient(e.to_string()),
        Some(c) => {
            let class = &c.code()[..2];
            let msg = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| e.to_string());
            if matches!(class, "08" | "40" | "53" | "57" | "58") || c.code() == "55P03" {
                StoreError::Transient(msg)
            } else if matches!(class, "22" | "23") {
                StoreError::Rejected(format!("{msg} (SQLSTATE {})", c.code()))
            } else {
                StoreError::Permanent(format!("{msg} (SQLSTATE {})", c.code()))
            }
        }
    }
}

impl PgStore {
    /// Connects with the default timeouts (and fails fast if the database is unreachable).
    pub async fn connect(url: &str, chunk: usize) -> Result<Self, StoreError> {
        Self::connect_with(url, chunk, DbTimeouts::default()).await
    }

    /// Connects with `timeouts` (and fails fast if the database is unreachable).
    pub async fn connect_with(url: &str, chunk: usize, timeouts: DbTimeouts) -> Result<Self, StoreError> {
        // Two connections, the second opened only when two calls overlap
        // (persist writes two batches at once; see `persist.concurrent_writes`).
        let s = PgStore { chunk: chunk.max(1), conn: PgConnection::pool(url, 2).with_timeouts(timeouts) };
        drop(s.conn.client().await?);
        Ok(s)
    }

    /// Runs `f` on the live client, bounded by the statement timeout.
    async fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, StoreError> {
        self.conn.run(async |c| f(c).await.map_err(classify)).await
    }
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        // Migrations may wait for another process's (advisory lock) and build
        // indexes: no statement timeout, a generous bound on the whole.
        let restore = format!("SET statement_timeout = {}", self.conn.timeouts().statement.as_millis());
        self.conn
            .run_bounded(MIGRATION_BOUND, async |c| {
                let run = async {
                    c.batch_execute("SET statement_timeout = 0").await?;
                    c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).await?;
                    let result = migrate_locked(c).await;
                    let unlock = c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).await;
                    let report = result?;
                    unlock?;
                    Ok(report)
                };
                let result: Result<MigrationReport, tokio_postgres::Error> = run.await;
                let reset = c.batch_execute(&restore).await;
                let report = result.map_err(classify)?;
                reset.map_err(classify)?;
                Ok::<_, StoreError>(report)
            })
            .await
    }

    async fn insert_observations(&self, obs: &[Observation]) -> Result<u64, StoreError> {
        if obs.is_empty() {
            return Ok(0);
        }
        let chunk = self.chunk;
        self.with(async |c| {
            let tx = c.transaction().await?;
            let stmt = tx.prepare(INSERT_SQL).await?;
            let mut inserted = 0;
            for part in obs.chunks(chunk) {
                let time: Vec<DateTime<Utc>> = part.iter().map(|o| o.time).collect();
                let patient: Vec<&str> = part.iter().map(|o| o.patient_id.as_str()).collect();
                let code: Vec<&str> = part.iter().map(|o| o.code.loinc()).collect();
                let value: Vec<f64> = part.iter().map(|o| o.value).collect();
                let unit: Vec<&str> = part.iter().map(|o| o.code.ucum()).collect();
                let source: Vec<&str> = part.iter().map(|o| o.source.as_str()).collect();
                let device: Vec<Option<&str>> = part.iter().map(|o| o.device_id.as_ref().map(|d| d.as_str())).collect();
                let received: Vec<DateTime<Utc>> = part.iter().map(|o| o.received_at).collect();
                let time_source: Vec<&str> = part.iter().map(|o| o.time_source.as_str()).collect();
                let orig_v: Vec<f64> = part.iter().map(|o| o.original_value).collect();
                let orig_u: Vec<&str> = part.iter().map(|o| o.original_unit.as_str()).collect();
                let msg: Vec<Option<&str>> = part.iter().map(|o| o.msg_id.as_deref()).collect();
                let trace: Vec<&str> = part.iter().map(|o| o.trace_id.as_str()).collect();
                inserted += tx
                    .execute(
                        &stmt,
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
                            &orig_v,
                            &orig_u,
                            &msg,
                            &trace,
                        ],
                    )
                    .await?;
            }
            tx.commit().await?;
            Ok(inserted)
        })
        .await
    }

    async fn registry(&self) -> Result<RegistrySnapshot, StoreError> {
        let (patients, devices, enrolments, grants) = self
            .with(async |c| {
                let p = c.query("SELECT patient_id FROM patients WHERE status = 'active'", &[]).await?;
                let d = c.query("SELECT device_id, retired_at FROM devices", &[]).await?;
                let e = c
                    .query(
                        "SELECT device_id, patient_id, valid_from, valid_to, end_reason, end_recorded_at FROM enrolments",
                        &[],
                    )
                    .await?;
                let g = c
                    .query("SELECT device_id, patient_id, valid_until FROM backfill_grants WHERE valid_until > now()", &[])
                    .await?;
                Ok((p, d, e, g))
            })
            .await?;
        let mut snap = RegistrySnapshot::default();
        for r in patients {
            snap.patients.insert(r.get(0));
        }
        for r in devices {
            snap.devices.insert(r.get(0), DeviceEntry { retired_at: r.get(1), ..Default::default() });
        }
        for r in enrolments {
            let device: String = r.get(0);
            let Ok(patient_id) = PatientId::new(r.get::<_, String>(1)) else { continue };
            let ended = enrolment_end(r.get(4), r.get(5));
            if let Some(d) = snap.devices.get_mut(&device) {
                d.enrolments.push(Enrolment { patient_id, valid_from: r.get(2), valid_to: r.get(3), ended });
            }
        }
        for r in grants {
            let device: String = r.get(0);
            let Ok(patient_id) = PatientId::new(r.get::<_, String>(1)) else { continue };
            if let Some(d) = snap.devices.get_mut(&device) {
                d.backfill.push(BackfillGrant { patient_id, until: r.get(2) });
            }
        }
        Ok(snap)
    }

    async fn add_patient(&self, patient: &PatientId) -> Result<bool, StoreError> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO patients (patient_id) VALUES ($1) ON CONFLICT (patient_id) DO NOTHING",
                &[&patient.as_str()],
            )
            .await
        })
        .await
        .map(|n| n == 1)
        .map_err(|e| collision(e, "patient", patient.as_str(), "device"))
    }

    async fn add_device(&self, device: &DeviceId, kind: &str) -> Result<bool, StoreError> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO devices (device_id, kind) VALUES ($1, $2) ON CONFLICT (device_id) DO NOTHING",
                &[&device.as_str(), &kind],
            )
            .await
        })
        .await
        .map(|n| n == 1)
        .map_err(|e| collision(e, "device", device.as_str(), "patient"))
    }

    async fn enrol(&self, device: &DeviceId, patient: &PatientId, from: DateTime<Utc>) -> Result<(), StoreError> {
        let outcome = self
            .with(async |c| {
                let tx = c.transaction().await?;
                let d = tx
                    .query_opt("SELECT retired_at FROM devices WHERE device_id = $1 FOR UPDATE", &[&device.as_str()])
                    .await?;
                let p = tx.query_opt("SELECT 1 FROM patients WHERE patient_id = $1", &[&patient.as_str()]).await?;
                let Some(d) = d else { return Ok(Err("unknown device")) };
                if p.is_none() {
                    return Ok(Err("unknown patient"));
                }
                if d.get::<_, Option<DateTime<Utc>>>(0).is_some() {
                    return Ok(Err("the device is retired"));
                }
                tx.execute(
                    "UPDATE enrolments SET valid_to = $2, end_reason = 'moved', end_recorded_at = clock_timestamp() \
                     WHERE device_id = $1 AND valid_to IS NULL AND valid_from < $2",
                    &[&device.as_str(), &from],
                )
                .await?;
                let overlap = tx
                    .query_opt(
                        "SELECT 1 FROM enrolments WHERE device_id = $1 AND (valid_to IS NULL OR valid_to > $2)",
                        &[&device.as_str(), &from],
                    )
                    .await?;
                if overlap.is_some() {
                    return Ok(Err("an enrolment of this device starts at or after that time"));
                }
                tx.execute(
                    "INSERT INTO enrolments (device_id, patient_id, valid_from) VALUES ($1, $2, $3)",
                    &[&device.as_str(), &patient.as_str(), &from],
                )
                .await?;
                tx.commit().await?;
                Ok(Ok(()))
            })
            .await?;
        outcome.map_err(|m| StoreError::Invalid(m.to_owned()))
    }

    async fn unenrol(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with(async |c| {
            c.execute(
                "UPDATE enrolments SET valid_to = $2, end_reason = 'unenrolled', end_recorded_at = clock_timestamp() \
                 WHERE device_id = $1 AND valid_to IS NULL AND valid_from < $2",
                &[&device.as_str(), &at],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    async fn retire_device(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let n = self
            .with(async |c| {
                let tx = c.transaction().await?;
                let n = tx
                    .execute(
                        "UPDATE devices SET status = 'retired', retired_at = $2 WHERE device_id = $1",
                        &[&device.as_str(), &at],
                    )
                    .await?;
                tx.execute(
                    "UPDATE enrolments SET valid_to = $2, end_reason = 'retired', end_recorded_at = clock_timestamp() \
                     WHERE device_id = $1 AND valid_to IS NULL AND valid_from < $2",
                    &[&device.as_str(), &at],
                )
                .await?;
                tx.commit().await?;
                Ok(n)
            })
            .await?;
        if n == 0 { Err(StoreError::Invalid("unknown device".into())) } else { Ok(()) }
    }

    async fn grant_backfill(
        &self,
        device: &DeviceId,
        patient: &PatientId,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        let outcome = self
            .with(async |c| {
                let tx = c.transaction().await?;
                let d = tx
                    .query_opt("SELECT retired_at FROM devices WHERE device_id = $1 FOR UPDATE", &[&device.as_str()])
                    .await?;
                let Some(d) = d else { return Ok(Err("unknown device")) };
                if d.get::<_, Option<DateTime<Utc>>>(0).is_some() {
                    return Ok(Err("the device is retired"));
                }
                let ended = tx
                    .query_opt(
                        "SELECT 1 FROM enrolments WHERE device_id = $1 AND patient_id = $2 AND end_reason IS NOT NULL",
                        &[&device.as_str(), &patient.as_str()],
                    )
                    .await?;
                if ended.is_none() {
                    return Ok(Err("the device has no ended enrolment to this patient"));
                }
                tx.execute(
                    "INSERT INTO backfill_grants (device_id, patient_id, granted_at, valid_until, reason) \
                     VALUES ($1, $2, clock_timestamp(), $3, $4)",
                    &[&device.as_str(), &patient.as_str(), &until, &reason],
                )
                .await?;
                tx.commit().await?;
                Ok(Ok(()))
            })
            .await?;
        outcome.map_err(|m| StoreError::Invalid(m.to_owned()))
    }

    async fn observations(&self, patient: &PatientId, limit: i64) -> Result<Vec<StoredObservation>, StoreError> {
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT time, patient_id, code, value, unit, source, device_id FROM observations \
                     WHERE patient_id = $1 ORDER BY time, code LIMIT $2",
                    &[&patient.as_str(), &limit],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredObservation {
                time: r.get(0),
                patient_id: r.get(1),
                code: r.get(2),
                value: r.get(3),
                unit: r.get(4),
                source: r.get(5),
                device_id: r.get(6),
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(async |c| c.simple_query("SELECT 1").await.map(|_| ())).await
    }

    async fn count_observations(&self) -> Result<i64, StoreError> {
        self.with(async |c| c.query_one("SELECT count(*) FROM observations", &[]).await.map(|r| r.get(0))).await
    }

    async fn recent_observations(
        &self,
        patient: &PatientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError> {
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT time, code, value, source, device_id, received_at, time_source, original_value, original_unit, \
                     msg_id, trace_id FROM observations WHERE patient_id = $1 AND time >= $2 ORDER BY time, code",
                    &[&patient.as_str(), &since],
                )
                .await
            })
            .await?;
        Ok(rows.iter().filter_map(|r| observation_row(patient, r)).collect())
    }

    async fn rule_state_inputs(
        &self,
        patients: &[PatientId],
        since: DateTime<Utc>,
    ) -> Result<Vec<RuleStateInputs>, StoreError> {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = patients.iter().map(PatientId::as_str).collect();
        let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let (rules, obs, closes) = self
            .with(async |c| {
                // Pipelined on the one connection: a single round trip.
                let c = &*c;
                let (by_ids, by_ids_since): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 2]) =
                    ([&ids], [&ids, &since]);
                tokio::try_join!(
                    c.query(
                        "SELECT patient_id, rules, updated_at FROM patient_rules WHERE patient_id = ANY($1)",
                        &by_ids
                    ),
                    c.query(
                        "SELECT time, code, value, source, device_id, received_at, time_source, original_value, \
                         original_unit, msg_id, trace_id, patient_id FROM observations \
                         WHERE patient_id = ANY($1) AND time >= $2 ORDER BY patient_id, time, code",
                        &by_ids_since,
                    ),
                    c.query(
                        "SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes \
                         WHERE patient_id = ANY($1)",
                        &by_ids,
                    ),
                )
            })
            .await?;
        let mut out = vec![RuleStateInputs::default(); patients.len()];
        for r in &rules {
            let row = StoredPatientRules { patient_id: r.get(0), rules: r.get(1), updated_at: r.get(2) };
            if let Some(&i) = index.get(row.patient_id.as_str()) {
                out[i].rules = Some(row);
            }
        }
        for r in &obs {
            let Some(&i) = index.get(r.get::<_, &str>(11)) else { continue };
            if let Some(o) = observation_row(&patients[i], r) {
                out[i].observations.push(o);
            }
        }
        for r in &closes {
            let c = close_row(r);
            if let Some(&i) = index.get(c.patient_id.as_str()) {
                out[i].closes.push(c);
            }
        }
        Ok(out)
    }

    async fn set_patient_rules(&self, patient: &PatientId, rules_json: &str) -> Result<(), StoreError> {
        self.with(async |c| {
            c.execute(
                "INSERT INTO patient_rules (patient_id, rules, updated_at) VALUES ($1, $2, clock_timestamp()) \
                 ON CONFLICT (patient_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
                &[&patient.as_str(), &rules_json],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    async fn patient_rules(&self, patient: &PatientId) -> Result<Option<StoredPatientRules>, StoreError> {
        let row = self
            .with(async |c| {
                c.query_opt(
                    "SELECT patient_id, rules, updated_at FROM patient_rules WHERE patient_id = $1",
                    &[&patient.as_str()],
                )
                .await
            })
            .await?;
        Ok(row.map(|r| StoredPatientRules { patient_id: r.get(0), rules: r.get(1), updated_at: r.get(2) }))
    }

    async fn patient_rules_changed_since(&self, since: DateTime<Utc>) -> Result<Vec<StoredPatientRules>, StoreError> {
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT patient_id, rules, updated_at FROM patient_rules WHERE updated_at >= $1 ORDER BY updated_at",
                    &[&since],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredPatientRules { patient_id: r.get(0), rules: r.get(1), updated_at: r.get(2) })
            .collect())
    }

    async fn pending_episode_closes(&self) -> Result<Vec<EpisodeClose>, StoreError> {
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes \
                     WHERE applied_at IS NULL ORDER BY requested_at LIMIT 1000",
                    &[],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(close_row).collect())
    }

    async fn episode_closes(&self, patient: &PatientId) -> Result<Vec<EpisodeClose>, StoreError> {
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT episode_id, patient_id, rule_id, applied_at IS NOT NULL FROM episode_closes \
                     WHERE patient_id = $1",
                    &[&patient.as_str()],
                )
                .await
            })
            .await?;
        Ok(rows.iter().map(close_row).collect())
    }

    async fn mark_episode_closes_applied(&self, episode_ids: &[String]) -> Result<(), StoreError> {
        if episode_ids.is_empty() {
            return Ok(());
        }
        self.with(async |c| {
            c.execute(
                "UPDATE episode_closes SET applied_at = now() WHERE episode_id = ANY($1) AND applied_at IS NULL",
                &[&episode_ids],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    async fn record_alert_events(&self, events: &[proto::AlertEvent]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        self.with(async |c| {
            let tx = c.transaction().await?;
            let ins = tx
                .prepare(
                    "INSERT INTO alert_events (event_id, episode_id, patient_id, kind, severity, reading_time, detected_at, payload) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING",
                )
                .await?;
            let up = tx
                .prepare(
                    "INSERT INTO alerts (episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, \
                     last_event_at, resolved_at, summary, evidence, last_event_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::text::jsonb, $14) \
                     ON CONFLICT (episode_id) DO UPDATE SET \
                       severity = CASE WHEN excluded.status = 'open' THEN excluded.severity ELSE alerts.severity END, \
                       status = excluded.status, last_event_at = excluded.last_event_at, resolved_at = excluded.resolved_at, \
                       summary = excluded.summary, evidence = excluded.evidence, last_event_id = excluded.last_event_id",
                )
                .await?;
            let mut new = 0;
            for e in events {
                let reading = DateTime::from_timestamp_micros(e.reading_time_unix_micros).unwrap_or_default();
                let detected = DateTime::from_timestamp_micros(e.detected_at_unix_micros).unwrap_or_default();
                let n = tx
                    .execute(
                        &ins,
                        &[
                            &e.event_id,
                            &e.episode_id,
                            &e.patient_id,
                            &event_kind_name(e.kind),
                            &severity_name(e.severity),
                            &reading,
                            &detected,
                            &prost::Message::encode_to_vec(e),
                        ],
                    )
                    .await?;
                if n == 0 {
                    continue;
                }
                new += 1;
                let (status, resolved) = episode_status(e);
                let resolved_at = resolved.then_some(reading);
                tx.execute(
                    &up,
                    &[
                        &e.episode_id,
                        &e.patient_id,
                        &e.rule_id,
                        &e.rule_kind,
                        &e.program,
                        &e.code,
                        &severity_name(e.severity),
                        &status,
                        &reading,
                        &detected,
                        &resolved_at,
                        &e.summary,
                        &evidence_json(e),
                        &e.event_id,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(new)
        })
        .await
    }

    async fn alerts(&self, patient: Option<&PatientId>) -> Result<Vec<StoredAlert>, StoreError> {
        let p = patient.map(|p| p.as_str().to_owned());
        let rows = self
            .with(async |c| {
                c.query(
                    "SELECT episode_id, patient_id, rule_id, rule_kind, program, code, severity, status, opened_at, last_event_at, \
                     resolved_at, summary, evidence::text, last_event_id FROM alerts \
                     WHERE $1::text IS NULL OR patient_id = $1 ORDER BY opened_at, episode_id",
                    &[&p],
                )
                .await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| StoredAlert {
                episode_id: r.get(0),
                patient_id: r.get(1),
                rule_id: r.get(2),
                rule_kind: r.get(3),
                program: r.get(4),
                code: r.get(5),
                severity: r.get(6),
                status: r.get(7),
                opened_at: r.get(8),
                last_event_at: r.get(9),
                resolved_at: r.get(10),
                summary: r.get(11),
                evidence: r.get(12),
                last_event_id: r.get(13),
            })
            .collect())
    }
}

async fn migrate_locked(c: &mut Client) -> Result<MigrationReport, tokio_postgres::Error> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let available = c
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')", &[])
        .await?
        .get::<_, bool>(0);
    if available {
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb").await?;
    }
    let applied: Vec<i32> =
        c.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    let mut report = MigrationReport { applied: Vec::new(), timescale: available };
    for m in migrations::POSTGRES {
        if applied.contains(&m.version) || (m.timescale_only && !available) {
            continue;
        }
        if m.timescale_only {
            for stmt in migrations::statements(m.sql) {
                c.batch_execute(stmt).await?;
            }
            c.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name]).await?;
        } else {
            let tx = c.transaction().await?;
            tx.batch_execute(m.sql).await?;
            tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name]).await?;
            tx.commit().await?;
        }
        report.applied.push(m.version);
    }
    Ok(report)
}

/// An observation row of `recent_observations` / `rule_state_inputs` (the
/// first 11 columns, in that order); `None` if it no longer parses.
fn observation_row(patient: &PatientId, r: &tokio_postgres::Row) -> Option<Observation> {
    let code: &str = r.get(1);
    let source: &str = r.get(3);
    let device: Option<&str> = r.get(4);
    let time_source: &str = r.get(6);
    let trace: Option<String> = r.get(10);
    super::rebuild_observation(
        patient,
        RowParts {
            time: r.get(0),
            code,
            value: r.get(2),
            source,
            device_id: device,
            received_at: r.get(5),
            time_source,
            original_value: r.get(7),
            original_unit: r.get(8),
            msg_id: r.get(9),
            trace_id: trace.unwrap_or_default(),
        },
    )
}

/// The recorded end of an enrolment row (`end_reason`, `end_recorded_at`).
pub(crate) fn enrolment_end(reason: Option<&str>, recorded_at: Option<DateTime<Utc>>) -> Option<EnrolmentEnd> {
    Some(EnrolmentEnd { reason: EndReason::parse(reason?)?, recorded_at: recorded_at? })
}

fn close_row(r: &tokio_postgres::Row) -> EpisodeClose {
    EpisodeClose { episode_id: r.get(0), patient_id: r.get(1), rule_id: r.get(2), applied: r.get(3) }
}
