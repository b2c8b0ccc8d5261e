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
    /// A nurse (therapeutic support, télésurveillance référentiels): reads and
    /// triages the patients whose care team lists them, never changes thresholds.
    Nurse(String),
    /// A specialist consulted by tele-expertise: sees only the requests
    /// addressed to them, with the evidence snapshot they carry.
    Specialist(String),
}

impl Role {
    /// The stored role name (`operator`, `physician`, `nurse` or `specialist`).
    pub fn name(&self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Physician(_) => "physician",
            Role::Nurse(_) => "nurse",
            Role::Specialist(_) => "specialist",
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
    /// Where the request came from, for the audit trail (`web 203.0.113.7`,
    /// `api`, `cli`); `None` when not known.
    pub origin: Option<String>,
}

impl Actor {
    /// An operator.
    pub fn operator(name: impl Into<String>) -> Actor {
        Actor { name: name.into(), role: Role::Operator, origin: None }
    }

    /// A physician (named by their id).
    pub fn physician(id: PhysicianId) -> Actor {
        Actor { name: id.to_string(), role: Role::Physician(id), origin: None }
    }

    /// A nurse (named by their id).
    pub fn nurse(id: impl Into<String>) -> Actor {
        let id = id.into();
        Actor { name: id.clone(), role: Role::Nurse(id), origin: None }
    }

    /// A specialist (named by their account id).
    pub fn specialist(id: impl Into<String>) -> Actor {
        let id = id.into();
        Actor { name: id.clone(), role: Role::Specialist(id), origin: None }
    }

    /// The same actor, recorded as acting from `origin`.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Actor {
        self.origin = Some(origin.into());
        self
    }

    /// The local operator of the command line: `cli:$USER`.
    pub fn cli() -> Actor {
        let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
        Actor::operator(format!("cli:{user}"))
    }

    /// The physician id, for physicians.
    pub fn physician_id(&self) -> Option<&PhysicianId> {
        match &self.role {
            Role::Physician(p) => Some(p),
            Role::Operator | Role::Nurse(_) | Role::Specialist(_) => None,
        }
    }
}
