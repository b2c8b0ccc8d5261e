//! The database: PostgreSQL/TimescaleDB in production, SQLite in embedded mode.
//! One trait, two drivers; the SQL of each lives next to its driver.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitalwatch_schemas::registry::RegistrySnapshot;
use vitalwatch_schemas::{DeviceId, Observation, PatientId};

pub mod postgres;
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
    /// A request that breaks a rule (e.g. enrolling an unknown device).
    #[error("{0}")]
    Invalid(String),
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

/// The database operations vitalwatch needs.
#[async_trait]
pub trait Store: Send + Sync {
    /// Applies pending migrations; safe to run concurrently and repeatedly.
    async fn migrate(&self) -> Result<MigrationReport, StoreError>;
    /// Inserts observations in one transaction; duplicates (same patient,
    /// code and time) are skipped. Returns how many rows were new.
    async fn insert_observations(&self, obs: &[Observation]) -> Result<u64, StoreError>;
    /// The current registry.
    async fn registry(&self) -> Result<RegistrySnapshot, StoreError>;
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
    /// Observations of a patient, oldest first (tools and tests).
    async fn observations(&self, patient: &PatientId, limit: i64) -> Result<Vec<StoredObservation>, StoreError>;
    /// Number of stored observations (tools and tests).
    async fn count_observations(&self) -> Result<i64, StoreError>;
}

/// Opens the store named by a `postgres://` or `sqlite://` URL.
pub async fn open(url: &str, insert_chunk: usize) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PgStore::connect(url, insert_chunk).await?))
    } else {
        Err(StoreError::Invalid(format!(
            "unsupported database URL scheme in {}",
            crate::config::redact_url(url)
        )))
    }
}
