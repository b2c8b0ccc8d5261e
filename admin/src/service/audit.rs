//! The audit trails: admin changes (`admin_audit`) and episode decisions and
//! deliveries (`alert_audit`), newest first, with filters and paging.
//! A physician sees entries about their patients (and the changes they made).

use super::AdminService;
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::{AuditPage, AuditQuery, EpisodeAuditPage, EpisodeAuditQuery};
use crate::policy::Operation;
use crate::store::{AuditFilter, EpisodeAuditFilter};

fn before(after: Option<&str>) -> Result<Option<i64>, AdminError> {
    after.map(|a| a.parse::<i64>().map_err(|_| AdminError::Invalid("invalid cursor `after`".into()))).transpose()
}

impl AdminService {
    /// Admin changes, newest first.
    pub async fn audit(&self, actor: &Actor, q: &AuditQuery) -> Result<AuditPage, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadAudit).await?;
        let limit = self.limit(q.limit);
        let filter = AuditFilter {
            actor: q.actor.clone(),
            action: q.action.clone(),
            target_id: q.target.clone(),
            patient_id: q.patient.clone(),
            since: q.since,
            until: q.until,
            before_id: before(q.after.as_deref())?,
            scope_actor: scope.as_ref().map(|_| actor.name.clone()),
            scope_patients: scope,
            limit: limit + 1,
        };
        let mut items = self.admin.audit(&filter).await?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            items.last().map(|a| a.id.to_string()).unwrap_or_default()
        });
        Ok(AuditPage { items, next })
    }

    /// Episode audit records, newest first.
    pub async fn episode_audit(&self, actor: &Actor, q: &EpisodeAuditQuery) -> Result<EpisodeAuditPage, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadAudit).await?;
        let limit = self.limit(q.limit);
        let filter = EpisodeAuditFilter {
            episode_id: q.episode.clone(),
            patient_id: q.patient.clone(),
            entry_type: q.entry_type.clone(),
            before_id: before(q.after.as_deref())?,
            scope_patients: scope,
            limit: limit + 1,
        };
        let mut items = self.admin.episode_audit(&filter).await?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            items.last().map(|a| a.id.to_string()).unwrap_or_default()
        });
        Ok(EpisodeAuditPage { items, next })
    }
}
