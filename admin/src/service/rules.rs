//! A patient's care program and thresholds (`PatientRules`), picked up by the
//! running rules workers without a restart. Physicians may change their own
//! patients' rules: thresholds are a clinical decision.

use serde_json::json;
use vitalwatch_rules_core::PatientRules;

use vitalwatch_platform::store::registry;

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::RulesView;
use crate::policy::Operation;

/// Parses a rules document (unknown fields are errors).
pub fn parse_rules(v: serde_json::Value) -> Result<PatientRules, AdminError> {
    serde_json::from_value(v).map_err(|e| AdminError::Invalid(format!("invalid rules: {e}")))
}

impl AdminService {
    /// A patient's stored rules and the effective rule ids.
    pub async fn rules(&self, actor: &Actor, patient: &str) -> Result<RulesView, AdminError> {
        self.check_patient(actor, Operation::ReadRules, patient).await?;
        let p = patient_id(patient)?;
        let row = self
            .registry
            .patient_rules(&p)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no rules stored for {p}; the default program applies")))?;
        let rules: PatientRules = serde_json::from_str(&row.rules)
            .map_err(|e| AdminError::Internal(format!("the stored rules do not parse: {e}")))?;
        let effective = rules.effective().map(|s| s.ids().map(str::to_owned).collect()).unwrap_or_default();
        Ok(RulesView {
            patient_id: p.to_string(),
            rules: serde_json::to_value(&rules).unwrap_or_default(),
            effective,
            updated_at: Some(row.updated_at),
        })
    }

    /// Validates and stores a patient's rules (the patient must be registered).
    pub async fn set_rules(&self, actor: &Actor, patient: &str, rules: &PatientRules) -> Result<RulesView, AdminError> {
        self.check_patient(actor, Operation::EditRules, patient).await?;
        let p = patient_id(patient)?;
        let set = rules.effective().map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        rules.check_enrolment().map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        if !self.registry.registry().await?.patients.contains(p.as_str()) {
            return Err(unknown_patient(p.as_str()));
        }
        let text = serde_json::to_string(rules).map_err(|e| AdminError::Internal(e.to_string()))?;
        let effective: Vec<String> = set.ids().map(str::to_owned).collect();
        // The program names a condition: keep it out of the audit details.
        let details = json!({ "rules": effective.len() });
        let entry = self.entry(actor, "rules.set", ("patient", p.as_str()), Some(p.as_str()), details);
        self.audited(async |c| Ok((registry::set_patient_rules(c, &p, &text).await?, Some(entry)))).await?;
        Ok(RulesView {
            patient_id: p.to_string(),
            rules: serde_json::to_value(rules).unwrap_or_default(),
            effective,
            updated_at: None,
        })
    }
}

impl AdminService {
    /// Checks that `actor` may change `patient`'s rules (before parsing them).
    pub async fn check_rules_access(&self, actor: &Actor, patient: &str) -> Result<(), AdminError> {
        self.check_patient(actor, Operation::EditRules, patient).await
    }
}
