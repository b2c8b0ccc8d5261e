//! The administrative operations. Every operation takes the [`Actor`], checks
//! it against the [`policy`](crate::policy), applies the change through the
//! stores and appends an admin audit entry (who, when, what; ids only).
//!
//! One submodule per area: [`patients`], [`patient_view`] (the clinician's
//! patient page: overview, trend series, rules preview), [`devices`], [`rules`],
//! [`physicians`], [`care_teams`], [`alerts`], [`audit`], [`tokens`].
//!
//! The three stores share one database ([`Db`]): a change and its audit
//! entry are written in ONE transaction ([`AdminService::audited`]), so a
//! change whose audit entry cannot be written is not applied either.

use std::sync::Arc;

use chrono::Utc;
use vitalwatch_alerting::store::AlertStore;
use vitalwatch_platform::store::Store;
use vitalwatch_platform::store::db::{Conn, Db};
use vitalwatch_schemas::PatientId;

use crate::actor::Actor;
use crate::error::AdminError;
use crate::policy::{Operation, Scope, scope};
use crate::store::{AdminStore, NewAuditEntry};

pub mod access_log;
pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod care_teams;
pub mod devices;
pub mod erasure;
pub mod expertise;
pub mod fhir;
pub mod ingest_clients;
pub mod lifecycle;
pub mod patient_view;
pub mod patients;
pub mod physicians;
pub mod report;
pub mod rules;
pub mod tokens;
pub mod worklist;

/// Default page size.
pub const DEFAULT_PAGE: u32 = 50;

/// PostgreSQL connections of the admin service (the HTTP API serves several requests at once).
const POOL: usize = 4;

/// The service layer, shared by the CLI and the HTTP API.
#[derive(Clone)]
pub struct AdminService {
    db: Db,
    registry: Arc<dyn Store>,
    alerting: Arc<dyn AlertStore>,
    admin: Arc<dyn AdminStore>,
    workspace: crate::store::workspace::WorkspaceStore,
    mailer: Option<expertise::Mailer>,
    max_page: u32,
    token_ttl: chrono::TimeDelta,
}

/// Default lifetime of a new API token (`api.token_ttl_days`).
pub const DEFAULT_TOKEN_TTL_DAYS: u32 = 90;

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService").field("max_page", &self.max_page).finish_non_exhaustive()
    }
}

impl AdminService {
    /// A service over the three stores of one database (`insert_chunk`: see
    /// `database.insert_chunk`).
    pub fn new(db: Db, insert_chunk: usize, max_page: u32) -> AdminService {
        AdminService {
            registry: Arc::new(vitalwatch_platform::store::registry::SqlStore::new(db.clone(), insert_chunk)),
            alerting: Arc::new(vitalwatch_alerting::store::tables::SqlAlertStore::new(db.clone())),
            admin: Arc::new(crate::store::tables::SqlAdminStore::new(db.clone())),
            workspace: crate::store::workspace::WorkspaceStore::new(db.clone()),
            mailer: None,
            db,
            max_page: max_page.max(1),
            token_ttl: chrono::TimeDelta::days(i64::from(DEFAULT_TOKEN_TTL_DAYS)),
        }
    }

    /// New tokens expire `days` after their creation unless given an expiry.
    pub fn with_token_ttl_days(mut self, days: u32) -> AdminService {
        self.token_ttl = chrono::TimeDelta::days(i64::from(days.max(1)));
        self
    }

    /// Opens the stores of a `database.url` (migrations are not run), with
    /// the default timeouts.
    pub async fn open(url: &str, insert_chunk: usize, max_page: u32) -> Result<AdminService, AdminError> {
        let db = vitalwatch_platform::config::DatabaseSettings { url: url.into(), insert_chunk, ..Default::default() };
        Self::open_settings(&db, max_page).await
    }

    /// Opens the stores of the `database` settings (URL, chunk, timeouts).
    pub async fn open_settings(
        db: &vitalwatch_platform::config::DatabaseSettings,
        max_page: u32,
    ) -> Result<AdminService, AdminError> {
        let pool = Db::open(db.url.expose(), db.timeouts(), POOL).await?;
        Ok(AdminService::new(pool, db.insert_chunk, max_page))
    }

    /// Checks the database (readiness).
    pub async fn ping(&self) -> Result<(), AdminError> {
        Ok(self.admin.ping().await?)
    }

    /// The largest page size (`api.max_page_size`).
    pub fn max_page_size(&self) -> u32 {
        self.max_page
    }

    /// The page size for a requested `limit`.
    pub(crate) fn limit(&self, requested: Option<u32>) -> u32 {
        requested.unwrap_or(DEFAULT_PAGE).clamp(1, self.max_page)
    }

    /// Fails with 403 unless the role may perform `op` at all.
    pub(crate) fn allow(&self, actor: &Actor, op: Operation) -> Result<Scope, AdminError> {
        match scope(&actor.role, op) {
            Scope::Denied => Err(AdminError::Forbidden(format!("the {} role may not do this", actor.role.name()))),
            s => Ok(s),
        }
    }

    /// The patients `actor` may reach with `op`: `None` for all.
    pub(crate) async fn patient_scope(&self, actor: &Actor, op: Operation) -> Result<Option<Vec<String>>, AdminError> {
        match self.allow(actor, op)? {
            Scope::All => Ok(None),
            Scope::OwnPatients | Scope::OwnEntry => match &actor.role {
                crate::actor::Role::Physician(p) => Ok(Some(self.admin.patients_of(p.as_str()).await?)),
                crate::actor::Role::Nurse(n) => Ok(Some(self.nurse_patients(n).await?)),
                _ => Ok(Some(Vec::new())),
            },
            Scope::Denied => unreachable!("allow() refuses Denied"),
        }
    }

    /// Fails unless `actor` may reach `patient` with `op`; a physician asking
    /// about someone else's patient gets the same 404 as for an unknown one.
    pub(crate) async fn check_patient(&self, actor: &Actor, op: Operation, patient: &str) -> Result<(), AdminError> {
        match self.patient_scope(actor, op).await? {
            None => Ok(()),
            Some(mine) if mine.iter().any(|p| p == patient) => Ok(()),
            Some(_) => Err(unknown_patient(patient)),
        }
    }

    /// The audit entry of a change by `actor` (ids only, no clinical data).
    pub(crate) fn entry(
        &self,
        actor: &Actor,
        action: &str,
        target: (&str, &str),
        patient: Option<&str>,
        mut details: serde_json::Value,
    ) -> NewAuditEntry {
        // Where the change came from (web + client address, api, cli): the audit's "from where".
        if let (Some(origin), Some(map)) = (&actor.origin, details.as_object_mut()) {
            map.insert("origin".into(), serde_json::Value::String(origin.clone()));
        }
        NewAuditEntry {
            at: Utc::now(),
            actor: actor.name.clone(),
            actor_role: actor.role.name().into(),
            action: action.into(),
            target_kind: target.0.into(),
            target_id: target.1.into(),
            patient_id: patient.map(str::to_owned),
            details,
        }
    }

    /// Runs `change` and appends the audit entry it returns (if any) in ONE
    /// transaction: if the entry cannot be written, the change is rolled back
    /// and the operation fails.
    pub(crate) async fn audited<T>(
        &self,
        change: impl AsyncFnOnce(&mut Conn) -> Result<(T, Option<NewAuditEntry>), AdminError>,
    ) -> Result<T, AdminError> {
        let (out, entry) = self
            .db
            .transaction(async |c| {
                let (out, entry) = change(c).await?;
                if let Some(e) = &entry
                    && let Err(err) = crate::store::tables::append_audit(c, e).await
                {
                    tracing::error!(message = "Admin change not applied: its audit entry could not be written.", action = %e.action, error = %err);
                    return Err(AdminError::from(err));
                }
                Ok((out, entry))
            })
            .await?;
        if let Some(e) = entry {
            tracing::info!(message = "Admin change.", action = %e.action, role = %e.actor_role);
        }
        Ok(out)
    }
}

pub(crate) fn unknown_patient(id: &str) -> AdminError {
    AdminError::NotFound(format!("unknown patient {id}"))
}

pub(crate) fn patient_id(id: &str) -> Result<PatientId, AdminError> {
    PatientId::new(id.to_owned()).map_err(AdminError::invalid)
}
