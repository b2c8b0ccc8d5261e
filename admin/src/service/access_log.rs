//! The read-access log (GDPR traceability): every read of a patient's data
//! through the JSON API, the FHIR API, the web workspace or the CLI appends
//! who, when, which patient, which interface and what.
//!
//! A read whose access record cannot be written is NOT served: the caller
//! gets 503 (`unavailable`). Tracing who read health data is a legal duty
//! (GDPR art. 5(2) and 32; in France, the traceability of access required of
//! telemonitoring providers), so silently serving untraced reads is worse
//! than refusing them while the database is unavailable.

use chrono::Utc;

use super::AdminService;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::fhir::store::{self, NewAccess};
use crate::model::{AccessInterface, AccessLogPage, PageQuery};
use crate::policy::Operation;

impl AdminService {
    /// Records that `actor` read `patient`'s data through `interface`
    /// (`what`: the route or command, never values). Fails (503) if the
    /// record cannot be written: the caller must then not serve the read.
    pub async fn log_access(
        &self,
        actor: &Actor,
        patient: &str,
        interface: AccessInterface,
        what: &str,
    ) -> Result<(), AdminError> {
        self.log_access_many(actor, &[patient.to_owned()], interface, what).await
    }

    /// [`log_access`](Self::log_access) for several patients at once (one transaction).
    pub async fn log_access_many(
        &self,
        actor: &Actor,
        patients: &[String],
        interface: AccessInterface,
        what: &str,
    ) -> Result<(), AdminError> {
        if patients.is_empty() {
            return Ok(());
        }
        let rec = NewAccess {
            at: Utc::now(),
            actor: &actor.name,
            actor_role: actor.role.name(),
            interface: interface.as_str(),
            what,
        };
        store::append_access(&self.db, &rec, patients).await.map_err(|e| {
            tracing::error!(message = "Read refused: its access record could not be written.", interface = interface.as_str(), error = %e);
            AdminError::Unavailable(format!("the read-access log could not be written: {e}"))
        })
    }

    /// A patient's read-access log, newest first (operators; physicians:
    /// their own patients). Reading it is not itself logged.
    pub async fn access_log(&self, actor: &Actor, patient: &str, q: &PageQuery) -> Result<AccessLogPage, AdminError> {
        self.check_patient(actor, Operation::ReadAccessLog, patient).await?;
        self.admin.patient(patient).await?.ok_or_else(|| super::unknown_patient(patient))?;
        let before = match q.after.as_deref() {
            Some(a) => a.parse::<i64>().map_err(|_| AdminError::Invalid("invalid cursor `after`".into()))?,
            None => i64::MAX,
        };
        let limit = self.limit(q.limit);
        let mut items = store::access_log(&self.db, patient, before, limit + 1).await?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string()).unwrap_or_default()
        });
        Ok(AccessLogPage { items, next })
    }
}
