//! User accounts of the web workspace (issue #16): who signs in, with which
//! role, language and time zone, and the password rules.
//!
//! Pure: password hashing (Argon2id, the OWASP-recommended default parameters
//! of the `argon2` crate: 19 MiB, 2 passes, 1 lane) and validation. The
//! accounts themselves are stored by [`crate::store::accounts`] and managed by
//! the service ([`crate::service::accounts`]).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use serde::{Deserialize, Serialize};
use vitalwatch_alerting::PhysicianId;

use crate::actor::Actor;
use crate::error::AdminError;

/// Minimum password length (ANSSI and NIST SP 800-63B: length over composition rules).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Maximum password length accepted (bounds the hashing work an attacker can ask for).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The role of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountRole {
    /// Operations staff: everything.
    Operator,
    /// A physician (linked to their entry in the physicians' directory).
    Physician,
    /// A nurse or care coordinator of care teams.
    Nurse,
    /// A specialist consulted by tele-expertise.
    Specialist,
}

impl AccountRole {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountRole::Operator => "operator",
            AccountRole::Physician => "physician",
            AccountRole::Nurse => "nurse",
            AccountRole::Specialist => "specialist",
        }
    }

    /// Parses a stored or typed role name.
    pub fn parse(s: &str) -> Result<AccountRole, AdminError> {
        match s {
            "operator" => Ok(AccountRole::Operator),
            "physician" => Ok(AccountRole::Physician),
            "nurse" => Ok(AccountRole::Nurse),
            "specialist" => Ok(AccountRole::Specialist),
            other => Err(AdminError::Invalid(format!(
                "unknown role {other:?}: expected operator, physician, nurse or specialist"
            ))),
        }
    }
}

/// A user account (never its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The sign-in name (also the actor name in the audit trail, except for
    /// physicians, who act under their directory id).
    pub id: String,
    /// Shown in the app.
    pub display_name: String,
    /// For notifications (tele-expertise answers) and OpenID Connect linking.
    pub email: Option<String>,
    /// What the account may do.
    pub role: AccountRole,
    /// The physicians' directory entry of a physician account.
    pub physician_id: Option<String>,
    /// `fr` or `en`.
    pub language: String,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub time_zone: String,
    /// The OpenID Connect subject bound to the account, once signed in that way.
    pub oidc_subject: Option<String>,
    /// Disabled accounts cannot sign in and their sessions end.
    pub disabled: bool,
}

impl Account {
    /// The actor this account acts as, recorded as acting from `origin`.
    pub fn actor(&self, origin: &str) -> Result<Actor, AdminError> {
        let actor = match self.role {
            AccountRole::Operator => Actor::operator(format!("user:{}", self.id)),
            AccountRole::Physician => {
                let id = self.physician_id.as_deref().ok_or_else(|| {
                    AdminError::Internal(format!("physician account {} has no directory id", self.id))
                })?;
                Actor::physician(PhysicianId::new(id.to_owned()).map_err(AdminError::invalid)?)
            }
            AccountRole::Nurse => Actor::nurse(self.id.clone()),
            AccountRole::Specialist => Actor::specialist(self.id.clone()),
        };
        Ok(actor.with_origin(origin))
    }
}

/// A new account.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// Sign-in name: 3–64 characters of `a-z 0-9 . _ @ -`.
    pub id: String,
    /// Shown in the app.
    pub display_name: String,
    /// Optional e-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// `operator`, `physician`, `nurse` or `specialist`.
    pub role: String,
    /// Required for physicians: their directory id.
    #[serde(default)]
    pub physician_id: Option<String>,
    /// `fr` (default) or `en`.
    #[serde(default)]
    pub language: Option<String>,
    /// IANA time zone (default `Europe/Paris`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A password for local sign-in; `None` for OpenID-Connect-only accounts.
    #[serde(default)]
    pub password: Option<String>,
}

/// Checks a sign-in name.
pub fn validate_id(id: &str) -> Result<(), AdminError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '@' | '-');
    if !(3..=64).contains(&id.len()) || !id.chars().all(ok_char) {
        return Err(AdminError::Invalid(format!(
            "invalid account id {id:?}: 3 to 64 characters among a-z, 0-9, '.', '_', '@', '-'"
        )));
    }
    Ok(())
}

/// Checks a language code.
pub fn validate_language(l: &str) -> Result<(), AdminError> {
    match l {
        "fr" | "en" => Ok(()),
        other => Err(AdminError::Invalid(format!("unsupported language {other:?}: expected fr or en"))),
    }
}

/// Checks an IANA time zone name.
pub fn validate_time_zone(tz: &str) -> Result<(), AdminError> {
    tz.parse::<chrono_tz::Tz>()
        .map(drop)
        .map_err(|_| AdminError::Invalid(format!("unknown time zone {tz:?} (an IANA name, e.g. Europe/Paris)")))
}

/// Checks a new password against the length rules.
pub fn validate_password(p: &str) -> Result<(), AdminError> {
    let n = p.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(AdminError::Invalid(format!("the password must have at least {MIN_PASSWORD_CHARS} characters")));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(AdminError::Invalid(format!("the password must have at most {MAX_PASSWORD_CHARS} characters")));
    }
    Ok(())
}

/// Hashes a password (Argon2id, random salt; a PHC string).
pub fn hash_password(p: &str) -> Result<String, AdminError> {
    // 16 random bytes from the OS-seeded CSPRNG (the salt length the PHC format recommends).
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes).map_err(|e| AdminError::Internal(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(p.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AdminError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `p` matches the stored PHC `hash` (false for a malformed hash).
pub fn verify_password(p: &str, hash: &str) -> bool {
    if p.chars().count() > MAX_PASSWORD_CHARS {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
}

/// A hash of a random password, verified against when the account does not
/// exist, so an unknown name costs the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&crate::token::generate()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("correct horse battery", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn validation_gives_specific_messages() {
        assert!(validate_id("dr.martin@chu").is_ok());
        assert!(validate_id("Dr Martin").unwrap_err().to_string().contains("invalid account id"));
        assert!(validate_password("short").unwrap_err().to_string().contains("at least 12"));
        assert!(validate_language("de").unwrap_err().to_string().contains("fr or en"));
        assert!(validate_time_zone("Europe/Paris").is_ok());
        assert!(validate_time_zone("Mars/Olympus").is_err());
        assert_eq!(AccountRole::parse("nurse").unwrap(), AccountRole::Nurse);
        assert!(AccountRole::parse("admin").is_err());
    }

    #[test]
    fn accounts_act_as_their_role() {
        let mut a = Account {
            id: "ide.durand".into(),
            display_name: "Durand".into(),
            email: None,
            role: AccountRole::Nurse,
            physician_id: None,
            language: "fr".into(),
            time_zone: "Europe/Paris".into(),
            oidc_subject: None,
            disabled: false,
        };
        let n = a.actor("web 127.0.0.1").unwrap();
        assert_eq!(n.role, crate::actor::Role::Nurse("ide.durand".into()));
        assert_eq!(n.origin.as_deref(), Some("web 127.0.0.1"));
        a.role = AccountRole::Physician;
        assert!(a.actor("web").is_err(), "a physician account needs a directory id");
        a.physician_id = Some("dr-a".into());
        assert_eq!(a.actor("web").unwrap().name, "dr-a");
    }
}
