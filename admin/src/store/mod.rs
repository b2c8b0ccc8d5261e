//! Durable state of the admin layer: API tokens (hashed), the append-only
//! admin audit trail, and the paged, patient-scoped queries the API lists need
//! (patients, alerts, audit trails, a physician's patients).
//!
//! One implementation on both engines, like the other stores
//! ([`tables::SqlAdminStore`]). The tables come from migration 20 (`admin`)
//! in `vitalwatch-schemas`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use vitalwatch_platform::store::StoreError;

use crate::model::{AlertView, AuditView, EpisodeAuditView, PatientView, TokenView};

pub mod accounts;
pub mod ingest_clients;
pub mod lifecycle;
pub mod patient_view;
pub mod report;
pub mod tables;
pub mod workspace;

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Unique among active tokens.
    pub name: String,
    /// SHA-256 of the secret.
    pub hash: String,
    /// `operator` or `physician`.
    pub role: String,
    /// For physician tokens.
    pub physician_id: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// An admin audit entry to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Role of who.
    pub actor_role: String,
    /// What.
    pub action: String,
    /// Kind of target.
    pub target_kind: String,
    /// Target id.
    pub target_id: String,
    /// Patient concerned.
    pub patient_id: Option<String>,
    /// Non-clinical details.
    pub details: serde_json::Value,
}

/// Filters of the admin audit query. `scope_patients` and `scope_actor`
/// restrict a physician to entries about their patients or made by them.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Who (exact).
    pub actor: Option<String>,
    /// What (exact).
    pub action: Option<String>,
    /// Target id.
    pub target_id: Option<String>,
    /// Patient.
    pub patient_id: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Entries with an id below this (newest first paging).
    pub before_id: Option<i64>,
    /// Scope: only these patients... (`None`: no restriction)
    pub scope_patients: Option<Vec<String>>,
    /// ...or entries made by this actor.
    pub scope_actor: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Filters of the episode audit query.
#[derive(Debug, Clone, Default)]
pub struct EpisodeAuditFilter {
    /// Episode.
    pub episode_id: Option<String>,
    /// Patient.
    pub patient_id: Option<String>,
    /// Entry type.
    pub entry_type: Option<String>,
    /// Records with an id below this.
    pub before_id: Option<i64>,
    /// Scope: only these patients (`None`: no restriction).
    pub scope_patients: Option<Vec<String>>,
    /// Page size.
    pub limit: u32,
}

/// Filters of the alert list (newest first).
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Patient.
    pub patient_id: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// Severity.
    pub severity: Option<String>,
    /// Cursor: episodes opened before (time, episode id).
    pub before: Option<(DateTime<Utc>, String)>,
    /// Scope: only these patients (`None`: no restriction).
    pub scope_patients: Option<Vec<String>>,
    /// Page size.
    pub limit: u32,
}

/// An alert row with its evidence JSON.
#[derive(Debug, Clone)]
pub struct AlertRow {
    /// The episode.
    pub view: AlertView,
    /// Evidence JSON text.
    pub evidence: String,
}

/// The admin layer's own queries and tables.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Checks the connection (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a token. `Invalid` if an active token has the same name.
    async fn create_token(&self, token: &NewToken) -> Result<TokenView, StoreError>;
    /// Revokes the active token `name`. Returns false if there is none.
    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError>;
    /// The active token with this hash.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenView>, StoreError>;
    /// All tokens (active and revoked), by name.
    async fn tokens(&self) -> Result<Vec<TokenView>, StoreError>;
    /// Sets `last_used_at` of the token with this hash to `at`.
    async fn touch_token(&self, hash: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Appends an admin audit entry; returns its id.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError>;
    /// Admin audit entries, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditView>, StoreError>;
    /// Episode audit records (`alert_audit`), newest first.
    async fn episode_audit(&self, filter: &EpisodeAuditFilter) -> Result<Vec<EpisodeAuditView>, StoreError>;

    /// Patients whose care team has `physician` as responsible or deputy, by id.
    async fn patients_of(&self, physician: &str) -> Result<Vec<String>, StoreError>;
    /// Patients by id after `after`, at most `limit`, within `scope` if given.
    async fn patients(
        &self,
        after: Option<&str>,
        limit: u32,
        scope: Option<&[String]>,
    ) -> Result<Vec<PatientView>, StoreError>;
    /// One patient.
    async fn patient(&self, id: &str) -> Result<Option<PatientView>, StoreError>;

    /// Alert episodes (rules engine `alerts` table), newest first.
    async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertView>, StoreError>;
    /// One alert episode with its evidence.
    async fn alert(&self, episode: &str) -> Result<Option<AlertRow>, StoreError>;
    /// The patient of an episode (from `alerts` or `alert_episodes`).
    async fn episode_patient(&self, episode: &str) -> Result<Option<String>, StoreError>;
    /// Marks an open episode `closed` in `alerts`. Returns false if it was not open.
    async fn close_alert(&self, episode: &str) -> Result<bool, StoreError>;
}

/// Opens the admin store of a `database.url`.
pub async fn open(url: &str) -> Result<Arc<dyn AdminStore>, StoreError> {
    open_with(url, vitalwatch_platform::store::DbTimeouts::default()).await
}

/// Opens the store named by a `postgres://` or `sqlite://` URL; PostgreSQL
/// connections use `timeouts` (connect and statement, as every role's).
pub async fn open_with(
    url: &str,
    timeouts: vitalwatch_platform::store::DbTimeouts,
) -> Result<Arc<dyn AdminStore>, StoreError> {
    match url.strip_prefix("sqlite://") {
        Some(path) => Ok(Arc::new(tables::SqlAdminStore::open(path)?)),
        None => Ok(Arc::new(tables::SqlAdminStore::connect(url, timeouts).await?)),
    }
}

pub(crate) fn parse_json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}
