//! Errors of administrative operations, each with a stable code and an HTTP status.

use vitalwatch_alerting::store::{EngineError, StoreError as AlertStoreError};
use vitalwatch_platform::store::StoreError;

/// Why an administrative operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid credentials.
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// The bearer token is known but past its expiry.
    #[error("the bearer token has expired; ask an operator for a new one")]
    TokenExpired,
    /// The actor's role does not allow the operation.
    #[error("{0}")]
    Forbidden(String),
    /// Unknown (or, for a physician, not one of their patients: existence is not revealed).
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the current state (e.g. acknowledging a resolved episode).
    #[error("{0}")]
    Conflict(String),
    /// The database is unavailable for now; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::Unauthenticated => "unauthenticated",
            AdminError::TokenExpired => "token_expired",
            AdminError::Forbidden(_) => "forbidden",
            AdminError::NotFound(_) => "not_found",
            AdminError::Invalid(_) => "invalid",
            AdminError::Conflict(_) => "conflict",
            AdminError::Unavailable(_) => "unavailable",
            AdminError::Internal(_) => "internal",
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            AdminError::Unauthenticated | AdminError::TokenExpired => 401,
            AdminError::Forbidden(_) => 403,
            AdminError::NotFound(_) => 404,
            AdminError::Invalid(_) => 422,
            AdminError::Conflict(_) => 409,
            AdminError::Unavailable(_) => 503,
            AdminError::Internal(_) => 500,
        }
    }

    /// A store refusal of the request's data (e.g. a device id that is a patient id) as a 409.
    pub(crate) fn conflict(e: StoreError) -> AdminError {
        match e {
            StoreError::Invalid(m) => AdminError::Conflict(m),
            e => e.into(),
        }
    }

    pub(crate) fn invalid(e: impl std::fmt::Display) -> AdminError {
        AdminError::Invalid(e.to_string())
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Transient(m) => AdminError::Unavailable(format!("database unavailable: {m}")),
            StoreError::Permanent(m) | StoreError::Rejected(m) => AdminError::Internal(format!("database error: {m}")),
            StoreError::Invalid(m) => AdminError::Invalid(m),
        }
    }
}

impl From<AlertStoreError> for AdminError {
    fn from(e: AlertStoreError) -> Self {
        match e {
            AlertStoreError::Transient(m) => AdminError::Unavailable(format!("database unavailable: {m}")),
            AlertStoreError::Permanent(m) | AlertStoreError::Rejected(m) => {
                AdminError::Internal(format!("database error: {m}"))
            }
            AlertStoreError::Invalid(m) => AdminError::Invalid(m),
            AlertStoreError::Engine(EngineError::UnknownEpisode(id)) => {
                AdminError::NotFound(format!("unknown episode {id}"))
            }
            AlertStoreError::Engine(e) => AdminError::Conflict(e.to_string()),
        }
    }
}
