//! The `[web]` section: the clinician workspace served by the `api` role (and
//! by `vitalwatch run`) next to the JSON admin API.

use serde::{Deserialize, Serialize};
use vitalwatch_admin::service::accounts::SessionPolicy;
use vitalwatch_platform::config::ConfigError;

use crate::i18n::Lang;

/// Web workspace settings (`[web]`, env `VITALWATCH_WEB__<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Serve the workspace (`/`, `/login`, ...) on the API listener.
    pub enabled: bool,
    /// The address users reach the workspace at, e.g. `https://rpm.chu-exemple.fr`
    /// (links in e-mails, the OpenID Connect redirect, the cookie's `Secure`
    /// flag: set unless this is plain `http://` on localhost).
    pub public_url: String,
    /// A session unused for this many minutes ends (sign in again).
    pub session_idle_minutes: u32,
    /// A session ends this many hours after sign-in, whatever its use.
    pub session_max_hours: u32,
    /// Language of pages before sign-in when the browser asks for neither
    /// French nor English, and of new accounts: `fr` or `en`.
    pub default_language: Lang,
    /// Time zone of new accounts and of patients without one (IANA name).
    pub default_time_zone: String,
    /// Allow sign-in with a local password (Argon2id). Turn off where every
    /// user signs in through OpenID Connect (e.g. Pro Santé Connect).
    pub local_accounts: bool,
    /// Take the client address from the first `X-Forwarded-For` entry (only
    /// behind a reverse proxy that sets it) for the audit trail.
    pub trust_forwarded_for: bool,
    /// Sign-in through an OpenID Connect provider (`[web.oidc]`; e.g. Pro Santé
    /// Connect or the hospital's directory). Absent: local accounts only. Not
    /// printed by `vitalwatch config` (it holds the client secret).
    #[serde(skip_serializing)]
    pub oidc: Option<crate::auth::oidc::OidcSettings>,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            enabled: true,
            public_url: "http://127.0.0.1:8090".into(),
            session_idle_minutes: 30,
            session_max_hours: 12,
            default_language: Lang::Fr,
            default_time_zone: "Europe/Paris".into(),
            local_accounts: true,
            trust_forwarded_for: false,
            oidc: None,
        }
    }
}

impl WebSettings {
    /// Checks values that serde cannot.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return Err(ConfigError::new("web.public_url must start with https:// (or http:// on localhost)"));
        }
        if self.session_idle_minutes == 0 || self.session_max_hours == 0 {
            return Err(ConfigError::new("web.session_idle_minutes and web.session_max_hours must be at least 1"));
        }
        if !self.local_accounts && self.oidc.is_none() {
            return Err(ConfigError::new("web.local_accounts = false needs [web.oidc]: nobody could sign in"));
        }
        if self.default_time_zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::new("web.default_time_zone must be an IANA time zone, e.g. Europe/Paris"));
        }
        Ok(())
    }

    /// The session lifetimes.
    pub fn session_policy(&self) -> SessionPolicy {
        SessionPolicy {
            idle: chrono::TimeDelta::minutes(i64::from(self.session_idle_minutes)),
            absolute: chrono::TimeDelta::hours(i64::from(self.session_max_hours)),
        }
    }

    /// Whether cookies get the `Secure` flag: always, except for a plain-HTTP
    /// public URL on a loopback host (the embedded `vitalwatch run`).
    pub fn secure_cookies(&self) -> bool {
        let Some(rest) = self.public_url.strip_prefix("http://") else { return true };
        let host = rest.split(['/', ':']).next().unwrap_or("");
        !matches!(host, "127.0.0.1" | "localhost" | "[" | "")
    }

    /// The default time zone.
    pub fn default_tz(&self) -> chrono_tz::Tz {
        self.default_time_zone.parse().unwrap_or(chrono_tz::Europe::Paris)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_except_on_plain_http_localhost() {
        let mut s = WebSettings::default();
        assert!(!s.secure_cookies());
        s.public_url = "https://rpm.example.fr".into();
        assert!(s.secure_cookies());
        s.public_url = "http://rpm.example.fr".into();
        assert!(s.secure_cookies(), "plain http on a real host still marks cookies Secure");
        s.public_url = "ftp://x".into();
        assert!(s.validate().is_err());
    }
}
