//! The database: PostgreSQL/TimescaleDB in production, SQLite in embedded mode.
//! One trait, [`Store`], implemented once ([`registry::SqlStore`]) over the
//! [`db`] abstraction; the two engines differ only in their SQL (`sql/`) and
//! in their driver modules ([`postgres`], [`sqlite`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitalwatch_schemas::registry::RegistrySnapshot;
use vitalwatch_schemas::{Code, DeviceId, Observation, ObservationId, PatientId, Source, TimeSource, proto};

pub mod db;
pub mod pg_tls;
pub mod postgres;
pub mod registry;
pub mod sqlite;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connection lost, timeout, serialization failure: retry.
    #[error("transient database error: {0}")]
    Transient(String),
    /// A failure retrying cannot fix.
    #[error("database error: {0}")]
    Permanent(String),
    /// The database refuses this data for good (a data exception or an
    /// integrity violation: PostgreSQL SQLSTATE classes 22 and 23, a SQLite
    /// constraint): other data would go in. A consumer isolates and
    /// dead-letters the refused record instead of retrying it.
    #[error("database refused the data: {0}")]
    Rejected(String),
    /// A request that breaks a rule (e.g. enrolling an unknown device).
    #[error("{0}")]
    Invalid(String),
}

/// Marker of the database's refusal of an id that the other kind (device/patient) already has
/// (migration 0025 `principal_ids`).
pub const ID_COLLISION_MARKER: &str = "principal id collision";

/// The error for a device or patient id that the other kind already has: device and patient
/// ids are MQTT usernames in one namespace (`deploy/mosquitto/acl.conf`), so a device under a
/// patient's id could publish that patient's manual entries.
pub fn id_collision(kind: &str, id: &str, other: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{kind} id {id} is already a {other} id: device and patient ids share one MQTT username \
         namespace, so they must differ (e.g. prefixes dev-/pat-)"
    ))
}

/// What `migrate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied now.
    pub applied: Vec<i32>,
    /// True if TimescaleDB features were installed.
    pub timescale: bool,
}

/// A stored observation as read back (for tools and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredObservation {
    /// Measurement time.
    pub time: DateTime<Utc>,
    /// Patient.
    pub patient_id: String,
    /// LOINC code.
    pub code: String,
    /// Value (canonical unit).
    pub value: f64,
    /// UCUM unit.
    pub unit: String,
    /// `device` or `manual`.
    pub source: String,
    /// Device, for device readings.
    pub device_id: Option<String>,
}

/// A patient's rule configuration as stored (`patient_rules`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPatientRules {
    /// Patient.
    pub patient_id: String,
    /// JSON of `vitalwatch_rules::PatientRules`.
    pub rules: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The version in force (`patient_rules_versions.version`); 0 = no
    /// version recorded. Named in every alert these rules raise.
    pub version: i32,
}

/// The latest status of a device (`device_status`): battery, signal,
/// firmware, when it was last heard.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatusRow {
    /// Device.
    pub device_id: String,
    /// Patient the device was enrolled to when the status was received.
    pub patient_id: Option<String>,
    /// Status time (the device's clock, capped at receive time).
    pub time: DateTime<Utc>,
    /// When the platform received it.
    pub received_at: DateTime<Utc>,
    /// Battery, percent.
    pub battery_percent: Option<f64>,
    /// Radio signal, dBm.
    pub signal_dbm: Option<f64>,
    /// Firmware version.
    pub firmware: Option<String>,
}

impl DeviceStatusRow {
    /// The row of a status event from the bus.
    ///
    /// # Errors
    ///
    /// A message naming what is wrong: an invalid device id, or a time out of range.
    pub fn from_proto(s: &proto::DeviceStatus) -> Result<DeviceStatusRow, String> {
        let device = DeviceId::new(s.device_id.clone()).map_err(|e| format!("device_id: {e}"))?;
        let at =
            |us: i64, field: &str| DateTime::from_timestamp_micros(us).ok_or_else(|| format!("{field} out of range"));
        let received_at = at(s.received_at_unix_micros, "received_at_unix_micros")?;
        let time = match s.time_unix_micros {
            0 => received_at,
            t => at(t, "time_unix_micros")?,
        };
        let patient_id = (!s.patient_id.is_empty())
            .then(|| PatientId::new(s.patient_id.clone()).map(|p| p.as_str().to_owned()))
            .transpose()
            .map_err(|e| format!("patient_id: {e}"))?;
        Ok(DeviceStatusRow {
            device_id: device.as_str().to_owned(),
            patient_id,
            time: time.min(received_at),
            received_at,
            battery_percent: s.battery_percent.filter(|b| b.is_finite()).map(|b| b.clamp(0.0, 100.0)),
            signal_dbm: s.signal_dbm.filter(|v| v.is_finite()),
            firmware: (!s.firmware.is_empty()).then(|| s.firmware.clone()),
        })
    }
}

/// What the rules worker reads to rebuild one patient's state: see
/// [`Store::rule_state_inputs`].
#[derive(Debug, Clone, Default)]
pub struct RuleStateInputs {
    /// The patient's stored rules, if any.
    pub rules: Option<StoredPatientRules>,
    /// Observations measured at or after `since`, in measurement order.
    pub observations: Vec<Observation>,
    /// Every physician close of the patient's episodes.
    pub closes: Vec<EpisodeClose>,
}

/// A physician's close of an alert episode (`episode_closes`), for the rules worker.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeClose {
    /// The episode.
    pub episode_id: String,
    /// Its patient.
    pub patient_id: String,
    /// Its rule.
    pub rule_id: String,
    /// Whether a rules worker already applied it (published its RESOLVED event).
    pub applied: bool,
}

/// An alert episode as stored (`alerts`), for tools and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// Deterministic episode id.
    pub episode_id: String,
    /// Patient.
    pub patient_id: String,
    /// Rule id.
    pub rule_id: String,
    /// Rule kind (threshold, baseline, trend, news2, missing, device_silent).
    pub rule_kind: String,
    /// Care program.
    pub program: String,
    /// LOINC code (empty for multi-parameter scores).
    pub code: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `open`, `resolved` or `closed`.
    pub status: String,
    /// Measurement time of the opening reading.
    pub opened_at: DateTime<Utc>,
    /// Detection time of the last event.
    pub last_event_at: DateTime<Utc>,
    /// Measurement time of the reading that resolved it.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Summary of the last event (no identifying data).
    pub summary: String,
    /// JSON evidence of the last event.
    pub evidence: String,
    /// Id of the last event.
    pub last_event_id: String,
}

/// Lower-case name of an alert severity.
pub fn severity_name(s: i32) -> &'static str {
    match proto::Severity::try_from(s) {
        Ok(proto::Severity::Info) => "info",
        Ok(proto::Severity::Low) => "low",
        Ok(proto::Severity::Medium) => "medium",
        Ok(proto::Severity::High) => "high",
        Ok(proto::Severity::Critical) => "critical",
        _ => "unspecified",
    }
}

/// Lower-case name of an alert event kind.
pub fn event_kind_name(k: i32) -> &'static str {
    match proto::AlertEventKind::try_from(k) {
        Ok(proto::AlertEventKind::Opened) => "opened",
        Ok(proto::AlertEventKind::Escalated) => "escalated",
        Ok(proto::AlertEventKind::Resolved) => "resolved",
        _ => "unspecified",
    }
}

/// The evidence of an alert event as JSON: triggering readings, threshold,
/// baseline, program, rule.
pub fn evidence_json(e: &proto::AlertEvent) -> String {
    let readings: Vec<serde_json::Value> = e
        .readings
        .iter()
        .map(|r| {
            serde_json::json!({
                "observation_id": r.observation_id,
                "code": r.code,
                "value": r.value,
                "unit": r.unit,
                "time_unix_micros": r.time_unix_micros,
            })
        })
        .collect();
    serde_json::json!({
        "rule_id": e.rule_id,
        "rule_kind": e.rule_kind,
        "program": e.program,
        "code": e.code,
        "severity": severity_name(e.severity),
        "previous_severity": severity_name(e.previous_severity),
        "threshold": e.threshold,
        "baseline": e.baseline,
        "readings": readings,
        "rules_version": e.rules_version,
    })
    .to_string()
}

/// The episode row values an event leads to: (status, resolved). A RESOLVED
/// event closes the episode (`closed`) when its `resolution` says a physician
/// closed it, and resolves it otherwise; the summary's wording plays no part.
pub(crate) fn episode_status(e: &proto::AlertEvent) -> (&'static str, bool) {
    if e.kind != proto::AlertEventKind::Resolved as i32 {
        ("open", false)
    } else if e.resolution == proto::AlertResolution::ClosedByPhysician as i32 {
        ("closed", true)
    } else {
        ("resolved", true)
    }
}

/// The database operations vitalwatch needs.
#[async_trait]
pub trait Store: Send + Sync {
    /// A round trip to the database (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies pending migrations; safe to run concurrently and repeatedly.
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;
    /// Inserts observations in one transaction; duplicates (same patient,
    /// code and time) are skipped. Returns how many rows were new.
    async fn insert_observations(&self, obs: &[Observation]) -> Result<u64, StoreError>;
    /// The current registry.
    async fn registry(&self) -> Result<RegistrySnapshot, StoreError>;
    /// Ids of the discharged patients (registered, no longer monitored).
    async fn discharged_patients(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.registry().await?.discharged.into_iter().collect())
    }
    /// True if `patient` is registered and discharged (a point check).
    async fn is_discharged(&self, patient: &PatientId) -> Result<bool, StoreError> {
        Ok(self.registry().await?.discharged.contains(patient.as_str()))
    }
    /// Registers a patient (idempotent). Returns true if new.
    async fn add_patient(&self, patient: &PatientId) -> Result<bool, StoreError>;
    /// Registers a device (idempotent). Returns true if new.
    async fn add_device(&self, device: &DeviceId, kind: &str) -> Result<bool, StoreError>;
    /// Enrols `device` to `patient` from `from`, closing any enrolment of the
    /// device still open at that time.
    async fn enrol(&self, device: &DeviceId, patient: &PatientId, from: DateTime<Utc>) -> Result<(), StoreError>;
    /// Ends the device's open enrolment at `at`.
    async fn unenrol(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Retires a device at `at` (its open enrolment ends then too).
    async fn retire_device(&self, device: &DeviceId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Lets `device` file readings of its ended enrolment(s) to `patient`
    /// until `until` (wall clock): readings stored on the device before a
    /// move. The caller records who asked, in the audit trail.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for an unknown or retired device, or a device
    /// that has no ended enrolment to `patient`.
    async fn grant_backfill(
        &self,
        device: &DeviceId,
        patient: &PatientId,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// Observations of a patient, oldest first (tools and tests).
    async fn observations(&self, patient: &PatientId, limit: i64) -> Result<Vec<StoredObservation>, StoreError>;
    /// Number of stored observations (tools and tests).
    async fn count_observations(&self) -> Result<i64, StoreError>;
    /// Observations of a patient measured at or after `since`, with every
    /// field the rules engine needs (receive time included), in measurement
    /// order. Used to rebuild a patient's rule state.
    async fn recent_observations(
        &self,
        patient: &PatientId,
        since: DateTime<Utc>,
    ) -> Result<Vec<Observation>, StoreError>;
    /// Stores (replaces) a patient's rules JSON as a new version by
    /// `system` (`patient_rules_versions`, same transaction); `updated_at`
    /// becomes now. Clinicians change rules through the admin service, which
    /// records its author and reason.
    async fn set_patient_rules(&self, patient: &PatientId, rules_json: &str) -> Result<(), StoreError>;
    /// A patient's stored rules, if any.
    async fn patient_rules(&self, patient: &PatientId) -> Result<Option<StoredPatientRules>, StoreError>;
    /// Rules changed at or after `since`, oldest change first.
    async fn patient_rules_changed_since(&self, since: DateTime<Utc>) -> Result<Vec<StoredPatientRules>, StoreError>;
    /// Physician closes no rules worker has applied yet.
    async fn pending_episode_closes(&self) -> Result<Vec<EpisodeClose>, StoreError>;
    /// Every physician close of a patient's episodes (to re-apply after a rebuild).
    async fn episode_closes(&self, patient: &PatientId) -> Result<Vec<EpisodeClose>, StoreError>;
    /// The rebuild inputs of several patients at once (rules, observations
    /// measured at or after `since`, closes), in the order of `patients`.
    /// PostgreSQL answers in one round trip per table, so a worker that sees
    /// thousands of patients for the first time (a start, a rebalance) does
    /// not pay three round trips per patient.
    async fn rule_state_inputs(
        &self,
        patients: &[PatientId],
        since: DateTime<Utc>,
    ) -> Result<Vec<RuleStateInputs>, StoreError> {
        let mut out = Vec::with_capacity(patients.len());
        for p in patients {
            out.push(RuleStateInputs {
                rules: self.patient_rules(p).await?,
                observations: self.recent_observations(p, since).await?,
                closes: self.episode_closes(p).await?,
            });
        }
        Ok(out)
    }
    /// Marks closes as applied by the rules engine.
    async fn mark_episode_closes_applied(&self, episode_ids: &[String]) -> Result<(), StoreError>;
    /// In one transaction: inserts every event into `alert_events` (an event
    /// already there is skipped) and, for each new one, upserts its episode in
    /// `alerts`. Returns how many events were new. Safe to call again with
    /// the same events (redelivery, replay).
    async fn record_alert_events(&self, events: &[proto::AlertEvent]) -> Result<u64, StoreError>;
    /// Alert episodes of a patient (all patients if `None`), by opening time
    /// (tools and tests).
    async fn alerts(&self, patient: Option<&PatientId>) -> Result<Vec<StoredAlert>, StoreError>;
    /// Upserts device statuses into `device_status` (one row per device): the
    /// row's time is the newest status's; battery, signal and firmware are each
    /// the newest status's that carried one, whatever the order statuses
    /// arrive in (concurrent batches, redelivery). Returns how many statements
    /// applied. Safe to call again with the same statuses.
    async fn upsert_device_statuses(&self, statuses: &[DeviceStatusRow]) -> Result<u64, StoreError>;
    /// The stored statuses of these devices (unknown ones are absent), by device id.
    async fn device_statuses(&self, devices: &[String]) -> Result<Vec<DeviceStatusRow>, StoreError>;
}

/// Connect and statement timeouts of a database client (see
/// `database.connect_timeout_ms` and `database.statement_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTimeouts {
    /// Longest wait for a new connection (TCP connect and startup).
    pub connect: std::time::Duration,
    /// Longest call: the server's `statement_timeout` and a client-side bound.
    pub statement: std::time::Duration,
}

impl Default for DbTimeouts {
    /// 5 s to connect, 30 s per call (the configuration defaults).
    fn default() -> Self {
        DbTimeouts { connect: std::time::Duration::from_secs(5), statement: std::time::Duration::from_secs(30) }
    }
}

/// Opens the store named by a `postgres://` or `sqlite://` URL, with the
/// default timeouts (see [`open_with`]).
pub async fn open(url: &str, insert_chunk: usize) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(url, insert_chunk, DbTimeouts::default()).await
}

/// Opens the store of the `database` settings (URL, chunk, timeouts).
pub async fn open_settings(db: &crate::config::DatabaseSettings) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(db.url.expose(), db.insert_chunk, db.timeouts()).await
}

/// Opens the store named by a `postgres://` or `sqlite://` URL. PostgreSQL
/// connections use `timeouts` (SQLite is in-process: a busy timeout applies).
pub async fn open_with(
    url: &str,
    insert_chunk: usize,
    timeouts: DbTimeouts,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(registry::SqlStore::open(path)?))
    } else {
        Ok(std::sync::Arc::new(registry::SqlStore::connect_with(url, insert_chunk, timeouts).await?))
    }
}

/// The columns of a stored observation, as read back for the rules engine.
pub(crate) struct RowParts<'a> {
    pub time: DateTime<Utc>,
    pub code: &'a str,
    pub value: f64,
    pub source: &'a str,
    pub device_id: Option<&'a str>,
    pub received_at: DateTime<Utc>,
    pub time_source: &'a str,
    pub original_value: f64,
    pub original_unit: String,
    pub msg_id: Option<String>,
    pub trace_id: String,
}

/// Rebuilds an [`Observation`] from its row; `None` for a row that no longer
/// parses (unknown code: skipped rather than failing a whole rebuild).
pub(crate) fn rebuild_observation(patient: &PatientId, r: RowParts<'_>) -> Option<Observation> {
    let code = Code::from_loinc(r.code)?;
    let source = match r.source {
        "device" => Source::Device,
        _ => Source::Manual,
    };
    let time_source = match r.time_source {
        "device" => TimeSource::Device,
        "app" => TimeSource::App,
        _ => TimeSource::Received,
    };
    Some(Observation {
        id: ObservationId::compute(patient.as_str(), code, r.time.timestamp_micros()),
        patient_id: patient.clone(),
        code,
        value: r.value,
        time: r.time,
        received_at: r.received_at,
        source,
        device_id: r.device_id.and_then(|d| DeviceId::new(d.to_owned()).ok()),
        time_source,
        original_value: r.original_value,
        original_unit: r.original_unit,
        msg_id: r.msg_id,
        trace_id: r.trace_id,
    })
}
