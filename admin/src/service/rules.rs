//! A patient's care program and thresholds (`PatientRules`), picked up by the
//! running rules workers without a restart. Physicians may change their own
//! patients' rules: thresholds are a clinical decision (nurses may read them,
//! not change them).
//!
//! Every change is a new version (`patient_rules_versions`: the rules, who,
//! when, why); `patient_rules` keeps the version in force, which the rules
//! engine reads. Earlier versions stay ([`AdminService::rules_history`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use vitalwatch_rules_core::PatientRules;

use vitalwatch_platform::store::{StoreError, registry};

use super::{AdminService, patient_id, unknown_patient};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::model::RulesView;
use crate::policy::Operation;
use crate::store::patient_view::{self as store, NewRulesVersion};

/// Longest reason for a rules change, characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Parses a rules document (unknown fields are errors).
pub fn parse_rules(v: serde_json::Value) -> Result<PatientRules, AdminError> {
    serde_json::from_value(v).map_err(|e| AdminError::Invalid(format!("invalid rules: {e}")))
}

/// Splits a `PUT /v1/patients/{id}/rules` body into the rules and the
/// optional `reason` of the change (a top-level string next to the
/// `PatientRules` fields).
pub fn parse_rules_change(mut v: serde_json::Value) -> Result<(PatientRules, Option<String>), AdminError> {
    let reason = match v.as_object_mut().and_then(|o| o.remove("reason")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => return Err(AdminError::Invalid("reason must be a string".into())),
    };
    Ok((parse_rules(v)?, reason))
}

/// The reason of a change, trimmed: at most [`MAX_REASON_CHARS`] characters,
/// no control characters but line breaks and tabs; empty is none.
pub fn check_reason(reason: Option<&str>) -> Result<Option<String>, AdminError> {
    let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(None) };
    if r.chars().count() > MAX_REASON_CHARS {
        return Err(AdminError::Invalid(format!("reason must be at most {MAX_REASON_CHARS} characters")));
    }
    if r.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(AdminError::Invalid("reason must not contain control characters".into()));
    }
    Ok(Some(r.to_owned()))
}

/// One version of a patient's rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulesVersion {
    /// 1, 2, ... (the highest is in force).
    pub version: i32,
    /// The `PatientRules` of this version.
    pub rules: serde_json::Value,
    /// Its care program.
    pub program: Option<String>,
    /// Who made the change (`system` for the rules in force when versioning began).
    pub author: String,
    /// Their role.
    pub author_role: String,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Why.
    pub reason: Option<String>,
}

fn unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Rejected(m) if m.contains("23505") || m.contains("UNIQUE constraint"))
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
        let version = store::rules_versions(&self.db, p.as_str()).await?.first().map(|v| v.version);
        Ok(RulesView {
            patient_id: p.to_string(),
            rules: serde_json::to_value(&rules).unwrap_or_default(),
            effective,
            updated_at: Some(row.updated_at),
            version,
        })
    }

    /// Validates and stores a patient's rules (the patient must be registered)
    /// as a new version, with `actor` as its author and `reason` (optional
    /// here; the web editor requires one).
    pub async fn set_rules(
        &self,
        actor: &Actor,
        patient: &str,
        rules: &PatientRules,
        reason: Option<&str>,
    ) -> Result<RulesView, AdminError> {
        self.check_patient(actor, Operation::EditRules, patient).await?;
        let p = patient_id(patient)?;
        let reason = check_reason(reason)?;
        let set = rules.effective().map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        rules.check_enrolment().map_err(|e| AdminError::Invalid(format!("the rules are not valid: {e}")))?;
        if !self.registry.registry().await?.patients.contains(p.as_str()) {
            return Err(unknown_patient(p.as_str()));
        }
        let text = serde_json::to_string(rules).map_err(|e| AdminError::Internal(e.to_string()))?;
        let effective: Vec<String> = set.ids().map(str::to_owned).collect();
        let version = self
            .audited(async |c| {
                let latest = store::latest_rules_version(c, p.as_str()).await?;
                let mut next = latest.as_ref().map_or(1, |v| v.version + 1);
                // Rules written around the admin service (a tool, a test) are kept as a version too.
                let current = registry::current_patient_rules(c, &p).await?;
                if let Some(cur) = current.filter(|cur| latest.as_ref().is_none_or(|v| v.rules != cur.rules)) {
                    let earlier = NewRulesVersion {
                        patient: p.as_str(),
                        version: next,
                        rules: &cur.rules,
                        author: "system",
                        author_role: "system",
                        reason: Some("rules set outside the admin service"),
                    };
                    store::insert_rules_version(c, &earlier).await?;
                    next += 1;
                }
                registry::set_patient_rules(c, &p, &text, next).await?;
                let new = NewRulesVersion {
                    patient: p.as_str(),
                    version: next,
                    rules: &text,
                    author: &actor.name,
                    author_role: actor.role.name(),
                    reason: reason.as_deref(),
                };
                store::insert_rules_version(c, &new).await.map_err(|e| {
                    if unique_violation(&e) {
                        AdminError::Conflict(
                            "the rules were changed by someone else at the same time; reload them and try again".into(),
                        )
                    } else {
                        e.into()
                    }
                })?;
                // The program names a condition, the reason is clinical: both stay out of the audit details.
                let details = json!({ "rules": effective.len(), "version": next });
                let entry = self.entry(actor, "rules.set", ("patient", p.as_str()), Some(p.as_str()), details);
                Ok((next, Some(entry)))
            })
            .await?;
        Ok(RulesView {
            patient_id: p.to_string(),
            rules: serde_json::to_value(rules).unwrap_or_default(),
            effective,
            updated_at: None,
            version: Some(version),
        })
    }

    /// Every version of a patient's rules, newest first (empty: none was ever
    /// set, the default program applies).
    pub async fn rules_history(&self, actor: &Actor, patient: &str) -> Result<Vec<RulesVersion>, AdminError> {
        self.check_patient(actor, Operation::ReadRules, patient).await?;
        let p = patient_id(patient)?;
        if self.admin.patient(p.as_str()).await?.is_none() {
            return Err(unknown_patient(patient));
        }
        Ok(store::rules_versions(&self.db, p.as_str())
            .await?
            .into_iter()
            .map(|v| {
                let rules = crate::store::parse_json(&v.rules);
                RulesVersion {
                    program: rules.get("program").and_then(|p| p.as_str()).map(str::to_owned),
                    rules,
                    version: v.version,
                    author: v.author,
                    author_role: v.author_role,
                    changed_at: v.changed_at,
                    reason: v.reason,
                }
            })
            .collect())
    }
}

impl AdminService {
    /// Checks that `actor` may change `patient`'s rules (before parsing them).
    pub async fn check_rules_access(&self, actor: &Actor, patient: &str) -> Result<(), AdminError> {
        self.check_patient(actor, Operation::EditRules, patient).await
    }
}
