//! Patients: list, register, read (with care team, rules and devices).

use chrono::Utc;
use serde_json::json;

use vitalwatch_platform::store::registry;

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::{Created, NewPatient, PageQuery, PatientDetail, PatientPage};
use crate::policy::Operation;

impl AdminService {
    /// Patients by id (a physician: their own), one page.
    pub async fn list_patients(&self, actor: &Actor, q: &PageQuery) -> Result<PatientPage, AdminError> {
        let scope = self.patient_scope(actor, Operation::ReadPatients).await?;
        let limit = self.limit(q.limit);
        let mut items = self.admin.patients(q.after.as_deref(), limit + 1, scope.as_deref()).await?;
        let next = (items.len() > limit as usize).then(|| {
            items.truncate(limit as usize);
            items.last().map(|p| p.id.clone()).unwrap_or_default()
        });
        Ok(PatientPage { items, next })
    }

    /// Registers a patient (idempotent). Operators only.
    pub async fn add_patient(&self, actor: &Actor, input: &NewPatient) -> Result<Created, AdminError> {
        self.allow(actor, Operation::AddPatient)?;
        let p = patient_id(&input.id)?;
        let created = self
            .audited(async |c| {
                if let Some((mode, at)) = crate::store::lifecycle::erasure_of(c, p.as_str()).await? {
                    return Err(AdminError::Conflict(format!(
                        "patient id {p} was erased ({mode}, {}); an erased id is never reused",
                        at.to_rfc3339()
                    )));
                }
                let created = registry::add_patient(c, &p).await.map_err(AdminError::conflict)?;
                let entry = self.entry(actor, "patient.add", ("patient", p.as_str()), Some(p.as_str()), json!({}));
                Ok((created, created.then_some(entry)))
            })
            .await?;
        Ok(Created { id: p.to_string(), created })
    }

    /// A patient with care team, rules and currently enrolled devices.
    pub async fn patient(&self, actor: &Actor, id: &str) -> Result<PatientDetail, AdminError> {
        self.check_patient(actor, Operation::ReadPatients, id).await?;
        let p = patient_id(id)?;
        let patient = self.admin.patient(p.as_str()).await?.ok_or_else(|| unknown_patient(id))?;
        let care_team = self.alerting.care_team(&p).await?.map(|t| serde_json::to_value(t).unwrap_or_default());
        let rules = self.registry.patient_rules(&p).await?.map(|r| crate::store::parse_json(&r.rules));
        let now = Utc::now();
        let snapshot = self.registry.registry().await?;
        let mut devices: Vec<String> = snapshot
            .devices
            .iter()
            .filter(|(_, d)| d.enrolments.iter().any(|e| e.patient_id == p && e.covers(now)))
            .map(|(id, _)| id.clone())
            .collect();
        devices.sort();
        Ok(PatientDetail { patient, care_team, rules, devices })
    }
}
