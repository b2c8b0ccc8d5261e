//! API tokens: created and revoked by operators (the `api-token` CLI), looked
//! up by hash to authenticate API requests.

use chrono::{DateTime, Utc};
use serde_json::json;
use vitalwatch_alerting::PhysicianId;

use super::AdminService;
use crate::actor::{Actor, Role};
use crate::error::AdminError;
use crate::model::{Me, TokenView};
use crate::policy::Operation;
use crate::store::{NewToken, tables};
use crate::token;

/// `last_used_at` is written when the stored value is at least this old.
const LAST_USED_PRECISION: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

impl AdminService {
    /// Creates a token; returns the secret (shown once) and its record.
    /// `role` is `operator` or `physician` (then `physician` names a known physician).
    /// It expires at `expires_at` (in the future), by default after the
    /// service's token lifetime (`api.token_ttl_days`).
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        role: &str,
        physician: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(String, TokenView), AdminError> {
        self.allow(actor, Operation::ManageTokens)?;
        let now = Utc::now();
        let expires_at = expires_at.unwrap_or(now + self.token_ttl);
        if expires_at <= now {
            return Err(AdminError::Invalid(format!("the expiry {} is not in the future", expires_at.to_rfc3339())));
        }
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
            expires_at,
        };
        let details = json!({ "role": role, "physician": physician_id, "expires_at": expires_at });
        let entry = self.entry(actor, "token.create", ("token", name), None, details);
        let view = self.audited(async |c| Ok((tables::create_token(c, &new).await?, Some(entry)))).await?;
        Ok((secret, view))
    }

    /// Revokes the active token `name`.
    pub async fn revoke_token(&self, actor: &Actor, name: &str) -> Result<(), AdminError> {
        self.allow(actor, Operation::ManageTokens)?;
        let entry = self.entry(actor, "token.revoke", ("token", name), None, json!({}));
        self.audited(async |c| {
            if !tables::revoke_token(c, name).await? {
                return Err(AdminError::NotFound(format!("no active token named {name:?}")));
            }
            Ok(((), Some(entry)))
        })
        .await
    }

    /// All tokens (never their secrets).
    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<TokenView>, AdminError> {
        self.allow(actor, Operation::ManageTokens)?;
        Ok(self.admin.tokens().await?)
    }

    /// The actor a bearer token stands for (`Unauthenticated` if unknown or
    /// revoked, `TokenExpired` past its expiry). Records the use in
    /// `last_used_at` when the stored value is older than a minute (so at most
    /// one write per token and minute, not one per request).
    pub async fn authenticate(&self, secret: &str) -> Result<Actor, AdminError> {
        if !secret.starts_with(token::PREFIX) || secret.len() > 128 {
            return Err(AdminError::Unauthenticated);
        }
        let hash = token::hash(secret);
        let t = self.admin.token_by_hash(&hash).await?.ok_or(AdminError::Unauthenticated)?;
        let now = Utc::now();
        if t.expired(now) {
            tracing::info!(message = "Expired API token refused.", token = %t.name);
            return Err(AdminError::TokenExpired);
        }
        if t.last_used_at.is_none_or(|at| now - at >= LAST_USED_PRECISION)
            && let Err(e) = self.admin.touch_token(&hash, now).await
        {
            tracing::warn!(message = "Could not record the API token's last use.", token = %t.name, error = %e);
        }
        match (t.role.as_str(), t.physician_id) {
            ("operator", _) => Ok(Actor::operator(format!("token:{}", t.name)).with_origin("api")),
            ("physician", Some(p)) => {
                Ok(Actor::physician(PhysicianId::new(p).map_err(|_| AdminError::Unauthenticated)?).with_origin("api"))
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
                Role::Operator | Role::Nurse(_) | Role::Specialist(_) => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeDelta, Utc};

    use super::*;
    use crate::store::{AdminStore, NewToken};

    /// A service on a migrated SQLite file, and its admin store.
    async fn service(dir: &tempfile::TempDir) -> (AdminService, Arc<dyn AdminStore>) {
        let url = format!("sqlite://{}/vw.db", dir.path().display());
        let registry = vitalwatch_platform::store::open(&url, 100).await.unwrap();
        registry.migrate().await.unwrap();
        let admin = crate::store::open(&url).await.unwrap();
        (AdminService::open(&url, 100, 100).await.unwrap().with_token_ttl_days(30), admin)
    }

    #[tokio::test]
    async fn tokens_expire_and_record_their_last_use_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let (s, store) = service(&dir).await;
        let cli = Actor::operator("cli:test");

        let (secret, view) = s.create_token(&cli, "ops", "operator", None, None).await.unwrap();
        let ttl = view.expires_at.unwrap() - view.created_at;
        assert!((ttl - TimeDelta::days(30)).num_seconds().abs() < 5, "{ttl}");
        assert!(view.last_used_at.is_none());
        let past = Utc::now() - TimeDelta::seconds(1);
        assert!(matches!(s.create_token(&cli, "old", "operator", None, Some(past)).await, Err(AdminError::Invalid(_))));

        assert_eq!(s.authenticate(&secret).await.unwrap().name, "token:ops");
        let used = store.tokens().await.unwrap()[0].last_used_at.expect("last_used_at set on use");
        s.authenticate(&secret).await.unwrap();
        assert_eq!(store.tokens().await.unwrap()[0].last_used_at, Some(used), "written at most once a minute");

        // A token past its expiry (written directly: the service refuses to create one).
        let stale = token::generate();
        let new = NewToken {
            name: "stale".into(),
            hash: token::hash(&stale),
            role: "operator".into(),
            physician_id: None,
            created_by: "test".into(),
            expires_at: past,
        };
        store.create_token(&new).await.unwrap();
        assert!(matches!(s.authenticate(&stale).await, Err(AdminError::TokenExpired)));
        let row = store.tokens().await.unwrap().into_iter().find(|t| t.name == "stale").unwrap();
        assert!(row.expired(Utc::now()) && row.last_used_at.is_none(), "{row:?}");
        assert!(matches!(s.authenticate("vw_unknown").await, Err(AdminError::Unauthenticated)));
    }
}
