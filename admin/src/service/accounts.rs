//! Accounts and web sessions of the clinician workspace: creation (operators),
//! sign-in by password or OpenID Connect, sessions with an idle timeout, and
//! each account's language and time zone.
//!
//! Sign-in failures never say whether the account exists: an unknown name is
//! checked against a dummy hash so it costs the same time as a wrong password,
//! and every refusal is the same [`LoginError::Refused`]. Five consecutive
//! failures lock the account for 15 minutes (audited as `user.locked`).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::AdminService;
use crate::account::{
    Account, AccountRole, NewAccount, dummy_hash, hash_password, validate_id, validate_language, validate_password,
    validate_time_zone, verify_password,
};
use crate::actor::Actor;
use crate::error::AdminError;
use crate::policy::Operation;
use crate::store::accounts as store;
use crate::token;

/// Consecutive failed sign-ins that lock an account.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// How long a locked account stays locked.
pub const LOCKOUT: TimeDelta = TimeDelta::minutes(15);
/// How long an OpenID Connect sign-in may take, from start to callback.
pub const OIDC_LOGIN_MAX_AGE: TimeDelta = TimeDelta::minutes(10);
/// A session's activity is written at most this often (not on every request).
const TOUCH_PRECISION: TimeDelta = TimeDelta::seconds(30);

/// Why a sign-in was refused. One variant on purpose for everything the
/// user could probe (unknown name, wrong password, disabled, locked).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong name or password, or the account cannot sign in.
    #[error("sign-in refused")]
    Refused,
    /// The OpenID Connect identity has no account here (or matches several).
    #[error("no account is linked to this identity")]
    NoAccount,
    /// The store failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: TimeDelta,
    /// A session ends this long after sign-in, whatever its use.
    pub absolute: TimeDelta,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy { idle: TimeDelta::minutes(30), absolute: TimeDelta::hours(12) }
    }
}

/// A new session: the cookie secret (shown once) and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The cookie value; only its SHA-256 is stored.
    pub secret: String,
    /// The session's CSRF token (hidden field of every form).
    pub csrf: String,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The signed-in account.
    pub account: Account,
    /// The session's CSRF token.
    pub csrf: String,
}

impl AdminService {
    /// Creates an account (operators); audited as `user.create`.
    pub async fn create_account(&self, actor: &Actor, new: &NewAccount) -> Result<Account, AdminError> {
        self.allow(actor, Operation::ManageUsers)?;
        validate_id(&new.id)?;
        let role = AccountRole::parse(&new.role)?;
        if new.display_name.trim().is_empty() {
            return Err(AdminError::Invalid("the display name is required".into()));
        }
        let language = new.language.clone().unwrap_or_else(|| "fr".into());
        validate_language(&language)?;
        let time_zone = new.time_zone.clone().unwrap_or_else(|| "Europe/Paris".into());
        validate_time_zone(&time_zone)?;
        let physician_id = match (role, &new.physician_id) {
            (AccountRole::Physician, Some(p)) => {
                if !self.alerting.physicians().await?.iter().any(|d| d.id.as_str() == p) {
                    return Err(AdminError::Invalid(format!("unknown physician {p}: add them to the directory first")));
                }
                Some(p.clone())
            }
            (AccountRole::Physician, None) => {
                return Err(AdminError::Invalid("a physician account needs the physician's directory id".into()));
            }
            (_, Some(_)) => return Err(AdminError::Invalid("only physician accounts have a directory id".into())),
            (_, None) => None,
        };
        let hash = match &new.password {
            Some(p) => {
                validate_password(p)?;
                Some(hash_password(p)?)
            }
            None => None,
        };
        let account = Account {
            id: new.id.clone(),
            display_name: new.display_name.trim().to_owned(),
            email: new.email.clone().filter(|e| !e.trim().is_empty()),
            role,
            physician_id,
            language,
            time_zone,
            oidc_subject: None,
            disabled: false,
        };
        let details = json!({ "role": role.as_str(), "local_password": hash.is_some() });
        let entry = self.entry(actor, "user.create", ("user", &account.id), None, details);
        let created = self
            .audited(async |c| {
                let ok = store::insert(c, &account, hash.as_deref(), Utc::now()).await?;
                Ok((ok, ok.then_some(entry)))
            })
            .await
            .map_err(|e| match e {
                AdminError::Invalid(m) => AdminError::Conflict(m),
                e => e,
            })?;
        if !created {
            return Err(AdminError::Conflict(format!("account {} already exists", account.id)));
        }
        Ok(account)
    }

    /// Every account (operators).
    pub async fn list_accounts(&self, actor: &Actor) -> Result<Vec<Account>, AdminError> {
        self.allow(actor, Operation::ManageUsers)?;
        let rows = self.db.run(async |c| store::list(c).await).await?;
        Ok(rows.into_iter().map(|r| r.account).collect())
    }

    /// Disables or re-enables an account (operators); disabling ends its sessions.
    pub async fn set_account_disabled(&self, actor: &Actor, id: &str, disabled: bool) -> Result<(), AdminError> {
        self.allow(actor, Operation::ManageUsers)?;
        let action = if disabled { "user.disable" } else { "user.enable" };
        let entry = self.entry(actor, action, ("user", id), None, json!({}));
        let found = self
            .audited(async |c| {
                let at = disabled.then(Utc::now);
                let ok = store::set_disabled(c, id, at).await?;
                if ok && disabled {
                    store::delete_sessions_of(c, id).await?;
                }
                Ok((ok, ok.then_some(entry)))
            })
            .await?;
        if found { Ok(()) } else { Err(AdminError::NotFound(format!("unknown account {id}"))) }
    }

    /// Sets an account's password: the account itself (with its current
    /// password) or an operator. Ends the account's other sessions.
    pub async fn set_account_password(
        &self,
        actor: &Actor,
        account: &Account,
        current: Option<&str>,
        new: &str,
    ) -> Result<(), AdminError> {
        let own = self.is_own_account(actor, account);
        if !own {
            self.allow(actor, Operation::ManageUsers)?;
        }
        validate_password(new)?;
        if own && actor.role.name() != "operator" {
            let row = self.db.run(async |c| store::by_id(c, &account.id).await).await?;
            let ok =
                row.and_then(|r| r.password_hash).is_none_or(|h| current.is_some_and(|cur| verify_password(cur, &h)));
            if !ok {
                return Err(AdminError::Invalid("the current password is wrong".into()));
            }
        }
        let hash = hash_password(new)?;
        let entry = self.entry(actor, "user.password", ("user", &account.id), None, json!({}));
        self.audited(async |c| {
            store::set_password(c, &account.id, &hash).await?;
            store::delete_sessions_of(c, &account.id).await?;
            Ok(((), Some(entry)))
        })
        .await
    }

    /// Sets an account's language and time zone (the account itself or an operator).
    pub async fn set_account_prefs(
        &self,
        actor: &Actor,
        account: &Account,
        language: &str,
        time_zone: &str,
    ) -> Result<(), AdminError> {
        if !self.is_own_account(actor, account) {
            self.allow(actor, Operation::ManageUsers)?;
        }
        validate_language(language)?;
        validate_time_zone(time_zone)?;
        // A physician's notifications follow their account's language: the
        // directory entry changes with it, in the same transaction.
        let mut directory = match (account.role, &account.physician_id) {
            (AccountRole::Physician, Some(p)) => {
                let id = vitalwatch_alerting::PhysicianId::new(p.clone()).map_err(AdminError::invalid)?;
                self.alerting.physician(&id).await?
            }
            _ => None,
        };
        if let Some(d) = directory.as_mut() {
            d.language = Some(vitalwatch_alerting::Language::parse(language).map_err(AdminError::invalid)?);
        }
        self.db
            .transaction(async |c| {
                store::set_prefs(c, &account.id, language, time_zone).await?;
                if let Some(d) = &directory {
                    vitalwatch_alerting::store::tables::upsert_physician(c, d).await?;
                }
                Ok::<_, AdminError>(())
            })
            .await
    }

    fn is_own_account(&self, actor: &Actor, account: &Account) -> bool {
        match account.role {
            AccountRole::Physician => actor.physician_id().map(|p| p.as_str()) == account.physician_id.as_deref(),
            AccountRole::Operator => actor.name == format!("user:{}", account.id),
            AccountRole::Nurse | AccountRole::Specialist => {
                actor.name == account.id && actor.role.name() == account.role.as_str()
            }
        }
    }

    /// Checks a local password sign-in; audited (`user.login`, `user.login_failed`, `user.locked`).
    pub async fn login_password(&self, id: &str, password: &str, origin: &str) -> Result<Account, LoginError> {
        let now = Utc::now();
        let row = self.db.run(async |c| store::by_id(c, id).await).await.map_err(AdminError::from)?;
        let Some(row) = row else {
            // Same work as for a wrong password: the timing tells nothing.
            let _ = verify_password(password, dummy_hash());
            tracing::info!(message = "Web sign-in refused.", reason = "unknown account");
            return Err(LoginError::Refused);
        };
        let locked = row.locked_until.is_some_and(|t| t > now);
        let ok = match &row.password_hash {
            Some(h) => verify_password(password, h),
            None => {
                let _ = verify_password(password, dummy_hash());
                false
            }
        };
        let system = Actor::operator("web:sign-in").with_origin(origin);
        if ok && !locked && !row.account.disabled {
            let who = row.account.actor(origin).unwrap_or_else(|_| system.clone());
            let entry = self.entry(&who, "user.login", ("user", id), None, json!({ "method": "password" }));
            self.audited(async |c| {
                store::login_ok(c, id).await?;
                Ok(((), Some(entry)))
            })
            .await?;
            return Ok(row.account);
        }
        let reason = if row.account.disabled {
            "disabled"
        } else if locked {
            "locked"
        } else {
            "wrong password"
        };
        tracing::info!(message = "Web sign-in refused.", reason);
        if !row.account.disabled && !locked {
            let now_locked = row.failed_logins + 1 >= i64::from(MAX_FAILED_LOGINS);
            let action = if now_locked { "user.locked" } else { "user.login_failed" };
            let entry = self.entry(&system, action, ("user", id), None, json!({ "method": "password" }));
            self.audited(async |c| {
                store::login_failed(c, id, MAX_FAILED_LOGINS, now + LOCKOUT).await?;
                Ok(((), Some(entry)))
            })
            .await?;
        }
        Err(LoginError::Refused)
    }

    /// The account of an OpenID Connect identity: the one bound to `subject`,
    /// else the one enabled, unbound account with this (provider-verified)
    /// e-mail address, which gets bound. Audited as `user.login`.
    pub async fn login_oidc(
        &self,
        subject: &str,
        email: Option<&str>,
        email_verified: bool,
        origin: &str,
    ) -> Result<Account, LoginError> {
        let system = Actor::operator("web:sign-in").with_origin(origin);
        let found = self.db.run(async |c| store::by_subject(c, subject).await).await.map_err(AdminError::from)?;
        let (account, bound) = match found {
            Some(r) => (r.account, false),
            None => {
                let Some(email) = email.filter(|_| email_verified) else { return Err(LoginError::NoAccount) };
                let mut rows =
                    self.db.run(async |c| store::by_email_unbound(c, email).await).await.map_err(AdminError::from)?;
                if rows.len() != 1 {
                    return Err(LoginError::NoAccount);
                }
                (rows.remove(0).account, true)
            }
        };
        if account.disabled {
            tracing::info!(message = "Web sign-in refused.", reason = "disabled");
            return Err(LoginError::Refused);
        }
        let who = account.actor(origin).unwrap_or(system);
        let entry =
            self.entry(&who, "user.login", ("user", &account.id), None, json!({ "method": "oidc", "bound": bound }));
        self.audited(async |c| {
            if bound {
                store::bind_subject(c, &account.id, subject).await?;
            }
            store::login_ok(c, &account.id).await?;
            Ok(((), Some(entry)))
        })
        .await?;
        Ok(Account { oidc_subject: Some(subject.to_owned()), ..account })
    }

    /// Opens a session for a signed-in account.
    pub async fn open_session(
        &self,
        account: &Account,
        policy: SessionPolicy,
        origin: &str,
    ) -> Result<NewSession, AdminError> {
        let now = Utc::now();
        let secret = token::generate();
        let csrf = token::generate();
        let hash = token::hash(&secret);
        self.db
            .run(async |c| {
                store::insert_session(c, &hash, &account.id, &csrf, now, now + policy.absolute, origin).await
            })
            .await?;
        Ok(NewSession { secret, csrf })
    }

    /// The live session of a cookie secret: `None` when unknown, past its end,
    /// idle too long, or its account disabled (such a session is deleted).
    pub async fn session(&self, secret: &str, policy: SessionPolicy) -> Result<Option<Session>, AdminError> {
        let now = Utc::now();
        let hash = token::hash(secret);
        let Some(row) = self.db.run(async |c| store::session(c, &hash).await).await? else { return Ok(None) };
        if row.expires_at <= now || now - row.last_seen_at >= policy.idle || row.account.account.disabled {
            self.db.run(async |c| store::delete_session(c, &hash).await).await?;
            return Ok(None);
        }
        if now - row.last_seen_at >= TOUCH_PRECISION {
            self.db.run(async |c| store::touch_session(c, &hash, now).await).await?;
        }
        Ok(Some(Session { account: row.account.account, csrf: row.csrf }))
    }

    /// Ends a session (sign-out).
    pub async fn close_session(&self, secret: &str) -> Result<(), AdminError> {
        let hash = token::hash(secret);
        self.db.run(async |c| store::delete_session(c, &hash).await).await?;
        Ok(())
    }

    /// Deletes ended and idle sessions; returns how many.
    pub async fn purge_sessions(&self, policy: SessionPolicy, now: DateTime<Utc>) -> Result<u64, AdminError> {
        Ok(self.db.run(async |c| store::purge_sessions(c, now, now - policy.idle).await).await?)
    }

    /// Records an OpenID Connect sign-in in progress: `state` and `binding`
    /// (the browser cookie) are stored as SHA-256 hashes, `pending` (the
    /// relying party's state, nonce and PKCE verifier) as given. Sign-ins older
    /// than 10 minutes are purged on the way.
    pub async fn begin_oidc_login(
        &self,
        state: &str,
        binding: &str,
        pending: &str,
        next: &str,
    ) -> Result<(), AdminError> {
        let now = Utc::now();
        let row = store::OidcLoginRow {
            binding_hash: token::hash(binding),
            pending: pending.to_owned(),
            next: next.to_owned(),
            created_at: now,
        };
        let state_hash = token::hash(state);
        self.db
            .run(async |c| {
                store::purge_oidc_logins(c, now - OIDC_LOGIN_MAX_AGE).await?;
                store::insert_oidc_login(c, &state_hash, &row).await
            })
            .await?;
        Ok(())
    }

    /// Takes the sign-in begun with `state` by the browser holding `binding`:
    /// `(pending, next)`, once. `None` when unknown, already used, older than
    /// 10 minutes, or begun by another browser.
    pub async fn take_oidc_login(&self, state: &str, binding: &str) -> Result<Option<(String, String)>, AdminError> {
        let state_hash = token::hash(state);
        let row = self.db.run(async |c| store::take_oidc_login(c, &state_hash).await).await?;
        Ok(row.and_then(|r| {
            let fresh = Utc::now() - r.created_at < OIDC_LOGIN_MAX_AGE;
            let same_browser = crate::token::hash(binding) == r.binding_hash;
            (fresh && same_browser).then_some((r.pending, r.next))
        }))
    }

    /// The nurses of a patient's care team.
    pub async fn care_team_nurses(&self, actor: &Actor, patient: &str) -> Result<Vec<String>, AdminError> {
        self.check_patient(actor, Operation::ReadCareTeam, patient).await?;
        Ok(self.db.run(async |c| store::care_team_nurses(c, patient).await).await?)
    }

    /// Replaces the nurses of a patient's care team (operators); each must be a
    /// nurse account. Audited as `care_team.nurses`.
    pub async fn set_care_team_nurses(
        &self,
        actor: &Actor,
        patient: &str,
        nurses: &[String],
    ) -> Result<(), AdminError> {
        self.allow(actor, Operation::SetCareTeam)?;
        self.check_nurse_accounts(nurses).await?;
        let entry =
            self.entry(actor, "care_team.nurses", ("patient", patient), Some(patient), json!({ "nurses": nurses }));
        self.audited(async |c| {
            store::set_care_team_nurses(c, patient, nurses).await?;
            Ok(((), Some(entry)))
        })
        .await
    }

    /// Fails unless every id is a nurse account.
    pub(crate) async fn check_nurse_accounts(&self, nurses: &[String]) -> Result<(), AdminError> {
        for n in nurses {
            let row = self.db.run(async |c| store::by_id(c, n).await).await?;
            if row.is_none_or(|r| r.account.role != AccountRole::Nurse) {
                return Err(AdminError::Invalid(format!("{n} is not a nurse account")));
            }
        }
        Ok(())
    }

    /// The patients of a nurse's care teams.
    pub(crate) async fn nurse_patients(&self, nurse: &str) -> Result<Vec<String>, AdminError> {
        Ok(self.db.run(async |c| store::nurse_patients(c, nurse).await).await?)
    }
}
