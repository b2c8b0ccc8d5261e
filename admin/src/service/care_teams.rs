//! Care teams: responsible physician, deputies, escalation policy. Operators
//! set them (the rota); physicians read their own patients' teams.

use serde_json::json;
use vitalwatch_alerting::{CareTeam, EscalationPolicy, PhysicianId};

use vitalwatch_alerting::store::tables;

use super::{AdminService, patient_id};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::CareTeamInput;
use crate::policy::Operation;

impl AdminService {
    /// A patient's care team (JSON).
    pub async fn care_team(&self, actor: &Actor, patient: &str) -> Result<serde_json::Value, AdminError> {
        self.check_patient(actor, Operation::ReadCareTeam, patient).await?;
        let p = patient_id(patient)?;
        let team = self
            .alerting
            .care_team(&p)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("patient {p} has no care team")))?;
        serde_json::to_value(team).map_err(|e| AdminError::Internal(e.to_string()))
    }

    /// Sets (replaces) a patient's care team, validated against the directory.
    pub async fn set_care_team(
        &self,
        actor: &Actor,
        patient: &str,
        input: &CareTeamInput,
    ) -> Result<serde_json::Value, AdminError> {
        self.allow(actor, Operation::SetCareTeam)?;
        let policy: EscalationPolicy = match &input.policy {
            None => EscalationPolicy::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| AdminError::Invalid(format!("invalid escalation policy: {e}")))?,
        };
        let pid = |s: &String| PhysicianId::new(s.clone()).map_err(AdminError::invalid);
        let team = CareTeam {
            patient_id: patient_id(patient)?,
            responsible: pid(&input.responsible)?,
            deputies: input.deputies.iter().map(pid).collect::<Result<_, _>>()?,
            policy,
        };
        if let Some(nurses) = &input.nurses {
            self.check_nurse_accounts(nurses).await?;
        }
        let details = json!({ "responsible": input.responsible, "deputies": input.deputies, "nurses": input.nurses });
        let entry = self.entry(actor, "care_team.set", ("patient", patient), Some(patient), details);
        self.audited(async |c| {
            tables::set_care_team(c, &team).await?;
            if let Some(nurses) = &input.nurses {
                crate::store::accounts::set_care_team_nurses(c, patient, nurses).await?;
            }
            Ok(((), Some(entry)))
        })
        .await?;
        serde_json::to_value(team).map_err(|e| AdminError::Internal(e.to_string()))
    }
}
