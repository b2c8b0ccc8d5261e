//! API tokens: created and revoked by operators (the `api-token` CLI), looked
//! up by hash to authenticate API requests.

use serde_json::json;
use vitalwatch_alerting::PhysicianId;

use super::AdminService;
use crate::actor::{Actor, Role};
use crate::error::AdminError;
use crate::model::{Me, TokenView};
use crate::policy::Operation;
use crate::store::NewToken;
use crate::token;

impl AdminService {
    /// Creates a token; returns the secret (shown once) and its record.
    /// `role` is `operator` or `physician` (then `physician` names a known physician).
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        role: &str,
        physician: Option<&str>,
    ) -> Result<(String, TokenView), AdminError> {
        self.allow(actor, Operation::ManageTokens)?;
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(AdminError::Invalid("token names are 1-64 characters of A-Z a-z 0-9 _ . -".into()));
        }
        let physician_id = match (role, physician) {
            ("operator", None) => None,
            ("operator", Some(_)) => return Err(AdminError::Invalid("operator tokens name no physician".into())),
            ("physician", Some(p)) => {
                let id = PhysicianId::new(p.to_owned()).map_err(AdminError::invalid)?;
                if !self.alerting.physicians().await?.iter().any(|x| x.id == id) {
                    return Err(AdminError::Invalid(format!("unknown physician {id}")));
                }
                Some(id.to_string())
            }
            ("physician", None) => return Err(AdminError::Invalid("physician tokens need --physician ID".into())),
            (other, _) => return Err(AdminError::Invalid(format!("unknown role {other:?} (operator or physician)"))),
        };
        let secret = token::generate();
        let new = NewToken {
            name: name.to_owned(),
            hash: token::hash(&secret),
            role: role.to_owned(),
            physician_id: physician_id.clone(),
            created_by: actor.name.clone(),
        };
        let view = self.admin.create_token(&new).await?;
        self.record(actor, "token.create", ("token", name), None, json!({ "role": role, "physician": physician_id }))
            .await?;
        Ok((secret, view))
    }

    /// Revokes the active token `name`.
    pub async fn revoke_token(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        self.allow(actor, Operation::ManageTokens)?;
        if !self.admin.revoke_token(name).await? {
            return Err(AdminError::NotFound(format!("no active token named {name:?}")));
        }
        self.record(actor, "token.revoke", ("token", name), None, json!({})).await
    }

    /// All tokens (never their secrets).
    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<TokenView>, AdminError> {
        self.allow(actor, Operation::ManageTokens)?;
        Ok(self.admin.tokens().await?)
    }

    /// The actor a bearer token stands for (`Unauthenticated` if unknown or revoked).
    pub async fn authenticate(&self, secret: &str) -> Result<Actor, AdminError> {
        if !secret.starts_with(token::PREFIX) || secret.len() > 128 {
            return Err(AdminError::Unauthenticated);
        }
        let t = self.admin.token_by_hash(&token::hash(secret)).await?.ok_or(AdminError::Unauthenticated)?;
        match (t.role.as_str(), t.physician_id) {
            ("operator", _) => Ok(Actor::operator(format!("token:{}", t.name))),
            ("physician", Some(p)) => {
                Ok(Actor::physician(PhysicianId::new(p).map_err(|_| AdminError::Unauthenticated)?))
            }
            _ => Err(AdminError::Unauthenticated),
        }
    }

    /// Who the actor is.
    pub fn me(&self, actor: &Actor) -> Me {
        Me {
            name: actor.name.clone(),
            role: actor.role.name().into(),
            physician_id: match &actor.role {
                Role::Physician(p) => Some(p.to_string()),
                Role::Operator => None,
            },
        }
    }
}
