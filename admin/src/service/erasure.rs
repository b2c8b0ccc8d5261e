//! GDPR erasure and pseudonymisation of a patient's data (art. 17), on a
//! valid request or after the retention period ([`AdminService::purge_discharged`]).
//!
//! Operators only (the data protection officer's task), and only for a
//! patient no longer monitored (discharge first: 409 otherwise). In ONE
//! transaction with its audit entry and its record in `patient_erasures`
//! (who, when, mode, reason, rows per table; also the id's tombstone: the id
//! can never be registered again):
//!
//! - `erase` deletes every row about the patient: readings, device status,
//!   alert episodes with their notifications, acknowledgment codes,
//!   acknowledgments and digest entries, the rules engine's episodes and
//!   events, close requests, notes, tele-expertise requests, rules and their
//!   versions, care team, enrolments, backfill grants, monitoring periods,
//!   and the patient row.
//! - `pseudonymise` first moves the readings to a new random id
//!   (`pseudo-<32 hex>`, a discharged patient), dropping their device,
//!   message and trace ids (the audit trail and enrolment history could link
//!   them back), then erases the rest as above. The pseudonym is recorded
//!   nowhere with the original id: the link is gone.
//!
//! What stays, and why (also in every erasure record, `remaining`):
//! - `admin_audit` and `alert_audit` are append-only (database triggers):
//!   the legal duty to trace who did what with health data and alerts is an
//!   exception to erasure (GDPR art. 17(3)(b), legal obligation; art.
//!   17(3)(c), public health). They hold ids, never readings or names.
//! - Kafka: records keyed by the patient id (observations, device status,
//!   alert events, dead letters) cannot be deleted from an append-only log;
//!   they go when the topics' retention (`retention.ms`) expires. Topics are
//!   not compacted, so no tombstone record would help. Dead letters are only
//!   in Kafka (the database holds none).

use std::collections::BTreeMap;

use chrono::{TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::lifecycle::text;
use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::policy::Operation;
use crate::store::lifecycle::{self as store, NewErasure};

/// What an erasure leaves, and why (stored with every erasure record).
pub const REMAINING: &str = "admin_audit and alert_audit keep their entries about this id (append-only: legal \
    traceability duty, GDPR art. 17(3)(b); ids only, no readings). Kafka topics keep records keyed by this id \
    until their retention (retention.ms) expires: an append-only log cannot delete them and the topics are not \
    compacted.";

/// Default retention of the purge, days: 20 years, as French hospital
/// medical records are kept 20 years after the last stay (Code de la santé
/// publique, art. R1112-7). A remote-monitoring record may fall under
/// another rule: the controller decides and sets `--retention-days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 7300;

/// How to erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureMode {
    /// Delete everything about the patient.
    Erase,
    /// Keep the readings under a random pseudonym (statistics), delete the rest.
    Pseudonymise,
}

impl ErasureMode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureMode::Erase => "erase",
            ErasureMode::Pseudonymise => "pseudonymise",
        }
    }

    /// Parses `erase` / `pseudonymise`.
    pub fn parse(s: &str) -> Option<ErasureMode> {
        match s {
            "erase" => Some(ErasureMode::Erase),
            "pseudonymise" => Some(ErasureMode::Pseudonymise),
            _ => None,
        }
    }
}

/// An erasure request (`POST /v1/patients/{id}/erasure`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureInput {
    /// `erase` or `pseudonymise`.
    pub mode: ErasureMode,
    /// Why (the request's reference, or the retention rule).
    pub reason: String,
}

/// The record of one erasure.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErasureResult {
    /// The erased id.
    pub patient: String,
    /// Mode.
    pub mode: ErasureMode,
    /// Record id in `patient_erasures`.
    pub erasure_id: i64,
    /// Rows deleted per table (`observations_pseudonymised`: readings kept under the pseudonym).
    pub counts: BTreeMap<String, u64>,
    /// What could not be erased, and why.
    pub remaining: String,
}

/// A new pseudonym: `pseudo-` and 128 random bits in hex.
fn pseudonym() -> String {
    let bytes: [u8; 16] = rand::random();
    let mut s = String::from("pseudo-");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl AdminService {
    /// Erases or pseudonymises a discharged patient's data (see the module documentation).
    pub async fn erase_patient(
        &self,
        actor: &Actor,
        id: &str,
        input: &ErasureInput,
    ) -> Result<ErasureResult, AdminError> {
        self.allow(actor, Operation::ErasePatientData)?;
        let p = patient_id(id)?;
        let reason = text("reason", &input.reason, 500)?;
        let mode = input.mode;
        self.audited(async |c| {
            let Some(status) = store::patient_status(c, p.as_str()).await? else {
                return Err(match store::erasure_of(c, p.as_str()).await? {
                    Some((m, at)) => {
                        AdminError::Conflict(format!("patient {id} was already erased ({m}, {})", at.to_rfc3339()))
                    }
                    None => unknown_patient(id),
                });
            };
            if status == "active" || store::has_open_period(c, p.as_str()).await? {
                return Err(AdminError::Conflict(format!(
                    "patient {id} is still under monitoring; discharge them first"
                )));
            }
            let mut counts = BTreeMap::new();
            if mode == ErasureMode::Pseudonymise {
                let moved = store::pseudonymise_observations(c, p.as_str(), &pseudonym()).await?;
                counts.insert("observations_pseudonymised".to_owned(), moved);
            }
            for (table, sql) in store::erase_steps() {
                let n = c.execute(&sql, &vitalwatch_platform::args![p.as_str()]).await?;
                counts.insert(table.to_owned(), n);
            }
            let counts_json = serde_json::to_string(&counts).map_err(|e| AdminError::Internal(e.to_string()))?;
            let erasure_id = store::insert_erasure(
                c,
                &NewErasure {
                    patient: p.as_str(),
                    mode: mode.as_str(),
                    reason: &reason,
                    actor: &actor.name,
                    actor_role: actor.role.name(),
                    at: Utc::now(),
                    counts: &counts_json,
                    remaining: REMAINING,
                },
            )
            .await?;
            let details = json!({ "mode": mode.as_str(), "erasure_id": erasure_id, "counts": counts });
            let entry = self.entry(actor, "patient.erase", ("patient", p.as_str()), Some(p.as_str()), details);
            let out =
                ErasureResult { patient: p.to_string(), mode, erasure_id, counts, remaining: REMAINING.to_owned() };
            Ok((out, Some(entry)))
        })
        .await
    }

    /// Applies `mode` to every patient discharged more than `retention_days`
    /// ago (every period ended before then); one transaction per patient.
    pub async fn purge_discharged(
        &self,
        actor: &Actor,
        retention_days: u32,
        mode: ErasureMode,
    ) -> Result<Vec<ErasureResult>, AdminError> {
        self.allow(actor, Operation::ErasePatientData)?;
        let before = Utc::now() - TimeDelta::days(i64::from(retention_days));
        let due = self.db.run(async |c| store::discharged_before(c, before).await).await?;
        let reason = format!("retention period elapsed: discharged more than {retention_days} days ago");
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            out.push(self.erase_patient(actor, &id, &ErasureInput { mode, reason: reason.clone() }).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_random_and_shaped() {
        let (a, b) = (pseudonym(), pseudonym());
        assert_ne!(a, b);
        assert_eq!(a.len(), "pseudo-".len() + 32);
        assert!(vitalwatch_schemas::PatientId::new(a).is_ok());
        assert_eq!(ErasureMode::parse("pseudonymise"), Some(ErasureMode::Pseudonymise));
        assert_eq!(ErasureMode::parse("delete"), None);
    }
}
