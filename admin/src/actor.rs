//! Who performs an administrative operation.

use vitalwatch_alerting::PhysicianId;

/// The role of an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Operations staff: every operation.
    Operator,
    /// A physician: only their own patients (those whose care team has them as
    /// responsible or deputy).
    Physician(PhysicianId),
    /// A nurse (named by their account id): sees and triages the patients of
    /// the care teams that list them in `nurses`; may not change rules or
    /// thresholds.
    Nurse(String),
}

impl Role {
    /// The stored role name (`operator`, `physician` or `nurse`).
    pub fn name(&self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Physician(_) => "physician",
            Role::Nurse(_) => "nurse",
        }
    }
}

/// Who acts: a name for the audit trail and a role for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Recorded in the audit trail: `cli:<user>`, `token:<name>` for operator
    /// tokens, the physician id for physicians.
    pub name: String,
    /// What the actor may do.
    pub role: Role,
}

impl Actor {
    /// An operator.
    pub fn operator(name: impl Into<String>) -> Actor {
        Actor { name: name.into(), role: Role::Operator }
    }

    /// A physician (named by their id).
    pub fn physician(id: PhysicianId) -> Actor {
        Actor { name: id.to_string(), role: Role::Physician(id) }
    }

    /// The local operator of the command line: `cli:$USER`.
    pub fn cli() -> Actor {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Actor::operator(format!("cli:{user}"))
    }

    /// A nurse (named by their id).
    pub fn nurse(id: impl Into<String>) -> Actor {
        let id = id.into();
        Actor { name: id.clone(), role: Role::Nurse(id) }
    }

    /// The physician id, for physicians.
    pub fn physician_id(&self) -> Option<&PhysicianId> {
        match &self.role {
            Role::Physician(p) => Some(p),
            Role::Operator | Role::Nurse(_) => None,
        }
    }

    /// The nurse id, for nurses.
    pub fn nurse_id(&self) -> Option<&str> {
        match &self.role {
            Role::Nurse(n) => Some(n),
            Role::Operator | Role::Physician(_) => None,
        }
    }
}
