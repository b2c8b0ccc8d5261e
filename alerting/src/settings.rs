//! The `[alerting]` section of the alerting role: transports (SMTP, SMS
//! providers, files), inbound SMS limits, the outbox and retries.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vitalwatch_platform::config::{ConfigError, redact_url};
use vitalwatch_platform::secret::Secret;

use crate::i18n::Language;

/// How alert emails (and, with `file`, SMS) leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertTransportKind {
    /// Emails through `alerting.smtp`, SMS through `alerting.sms.provider`.
    Smtp,
    /// Emails as `.eml` files and SMS as JSON lines in `alerting.file_dir`.
    File,
}

/// SMTP connection security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurityKind {
    /// Implicit TLS (port 465).
    Tls,
    /// STARTTLS required (port 587).
    StartTls,
    /// STARTTLS when offered.
    Opportunistic,
    /// Plain text (tests and local relays only).
    None,
}

/// SMS provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProviderKind {
    /// No SMS: pages go by email only.
    None,
    /// Twilio's Messages API (or any API of that shape).
    Twilio,
    /// A JSON webhook (`{to, body, idempotency_key}`).
    Webhook,
}

/// Outgoing mail server of the alerting role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSmtpSettings {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Connection security.
    pub security: SmtpSecurityKind,
    /// User name, if the server requires authentication.
    pub username: Option<String>,
    /// Password (never printed).
    pub password: Option<Secret>,
    /// Sender mailbox, e.g. `vitalwatch <alerts@hospital.example>`; its domain
    /// is also used in Message-IDs.
    pub from: String,
    /// Timeout of one SMTP conversation, seconds.
    pub timeout_secs: u64,
}

impl Default for AlertSmtpSettings {
    fn default() -> Self {
        AlertSmtpSettings {
            host: "127.0.0.1".into(),
            port: 25,
            security: SmtpSecurityKind::Opportunistic,
            username: None,
            password: None,
            from: "vitalwatch <alerts@vitalwatch.localdomain>".into(),
            timeout_secs: 20,
        }
    }
}

/// SMS gateway of the alerting role (outgoing messages and inbound replies).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSmsSettings {
    /// Provider.
    pub provider: SmsProviderKind,
    /// Twilio API base URL.
    pub twilio_base_url: String,
    /// Twilio account SID.
    pub twilio_account_sid: String,
    /// Twilio auth token (never printed). When set, inbound SMS webhooks must
    /// carry a valid `X-Twilio-Signature`.
    pub twilio_auth_token: Option<Secret>,
    /// Sender number (E.164); or use `twilio_messaging_service_sid`.
    pub twilio_from: Option<String>,
    /// Twilio messaging service SID (instead of `twilio_from`).
    pub twilio_messaging_service_sid: Option<String>,
    /// Webhook URL (provider `webhook`).
    pub webhook_url: String,
    /// Bearer token for the webhook (never printed).
    pub webhook_bearer_token: Option<Secret>,
    /// HMAC-SHA256 secret to sign webhook bodies (never printed).
    pub webhook_signing_secret: Option<Secret>,
    /// Timeout of one provider request, seconds.
    pub timeout_secs: u64,
    /// Inbound SMS replies (`POST /sms/inbound`): authentication and limits.
    pub inbound: AlertSmsInboundSettings,
}

impl Default for AlertSmsSettings {
    fn default() -> Self {
        AlertSmsSettings {
            provider: SmsProviderKind::None,
            twilio_base_url: "https://api.twilio.com".into(),
            twilio_account_sid: String::new(),
            twilio_auth_token: None,
            twilio_from: None,
            twilio_messaging_service_sid: None,
            webhook_url: String::new(),
            webhook_bearer_token: None,
            webhook_signing_secret: None,
            timeout_secs: 15,
            inbound: AlertSmsInboundSettings::default(),
        }
    }
}

/// Inbound SMS replies (`POST /sms/inbound`, issue #13): every call is authenticated,
/// attempts are limited per sender number and per replica, and a sender that fails too
/// often is locked out (audited in `admin_audit`).
///
/// Authentication by provider: `twilio` verifies `X-Twilio-Signature` with
/// `alerting.sms.twilio_auth_token`; `webhook`, `none` and the `file` transport of `run`
/// verify `X-Vitalwatch-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`
/// with `X-Vitalwatch-Timestamp` (Unix seconds) within `max_skew_secs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertSmsInboundSettings {
    /// Whether `POST /sms/inbound` accepts replies. Unset: on for `twilio` and `webhook`
    /// and for the `file` transport of `run`, off for provider `none`. When on, the role
    /// refuses to start without its secret (`twilio_auth_token` for `twilio`, `secret`
    /// otherwise; `run` creates `{file_dir}/sms-inbound.secret`).
    pub enabled: Option<bool>,
    /// HMAC-SHA256 key of the generic webhook scheme, at least 32 bytes (never logged).
    pub secret: Option<Secret>,
    /// Largest difference between `X-Vitalwatch-Timestamp` and the clock, seconds.
    pub max_skew_secs: u64,
    /// Failed attempts (unknown number, unknown or wrong code) allowed per sender number
    /// within `failure_window_secs` before the number is locked out.
    pub max_failures: u32,
    /// Window of `max_failures`, seconds.
    pub failure_window_secs: u64,
    /// How long a locked-out number gets the neutral answer whatever it sends, seconds.
    pub lockout_secs: u64,
    /// Inbound requests one replica accepts per minute over all senders (token bucket).
    pub global_per_minute: u32,
}

impl Default for AlertSmsInboundSettings {
    fn default() -> Self {
        AlertSmsInboundSettings {
            enabled: None,
            secret: None,
            max_skew_secs: 300,
            max_failures: 5,
            failure_window_secs: 900,
            lockout_secs: 3600,
            global_per_minute: 120,
        }
    }
}

impl AlertingSettings {
    /// Checks the SMS code length and the inbound limits (the message names the key).
    pub fn check_sms(&self) -> Result<(), String> {
        if !(6..=10).contains(&self.ack_code_digits) {
            return Err(format!(
                "alerting.ack_code_digits must be 6 to 10 (got {}): shorter codes can be guessed",
                self.ack_code_digits
            ));
        }
        let i = &self.sms.inbound;
        if i.max_skew_secs == 0 || i.max_skew_secs > 3600 {
            return Err("alerting.sms.inbound.max_skew_secs must be 1 to 3600".into());
        }
        if i.max_failures == 0 || i.failure_window_secs == 0 || i.lockout_secs == 0 || i.global_per_minute == 0 {
            return Err("alerting.sms.inbound.max_failures, failure_window_secs, lockout_secs and global_per_minute must be at least 1".into());
        }
        Ok(())
    }
}

/// Alerting role settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSettings {
    /// Kafka consumer group of the alert-event consumer.
    pub group: String,
    /// Listen address of the acknowledgment / SMS webhook / health server.
    pub http_addr: String,
    /// Public base URL of that server, used in acknowledgment links
    /// (`{public_base_url}/ack?t=...`) and to verify Twilio signatures
    /// (`{public_base_url}/sms/inbound`).
    pub public_base_url: String,
    /// Secret for acknowledgment links and SMS codes, at least 32 bytes (never
    /// printed). Required by `vitalwatch alerting`; in `run`, a random secret is
    /// created in `file_dir` (mode 0600) when unset.
    pub ack_secret: Option<Secret>,
    /// Validity of acknowledgment links, hours.
    pub ack_link_ttl_hours: u32,
    /// Digits of SMS acknowledgment codes (6 to 10; see docs/alerting.md for the odds of guessing).
    pub ack_code_digits: u32,
    /// Transport kind.
    pub transport: AlertTransportKind,
    /// Folder of the `file` transport (`{data_dir}` is replaced by the data folder).
    pub file_dir: PathBuf,
    /// Outgoing mail server (transport `smtp`).
    pub smtp: AlertSmtpSettings,
    /// SMS gateway (transport `smtp`).
    pub sms: AlertSmsSettings,
    /// How long a dispatcher owns the outbox rows it claimed, seconds: rows of
    /// a dispatcher that died are retried after this.
    pub outbox_lease_secs: u64,
    /// Outbox poll period, milliseconds.
    pub outbox_poll_ms: u64,
    /// Outbox rows claimed at once.
    pub outbox_batch: usize,
    /// Period of the escalation scheduler, milliseconds.
    pub scheduler_poll_ms: u64,
    /// Delay before the second attempt after a transient failure,
    /// milliseconds (doubles, with jitter).
    pub retry_base_delay_ms: u64,
    /// Longest delay between attempts, milliseconds.
    pub retry_max_delay_ms: u64,
    /// How long a notification failing transiently (connection refused,
    /// timeout, SMTP 4xx, HTTP 5xx/408/429) is retried after it became due,
    /// seconds (at least 86400). Acknowledgment or resolution of the episode
    /// stops the retries earlier; after the horizon the delivery fails like a
    /// permanent failure (fallback channel, else the next rung).
    pub retry_horizon_secs: u64,
    /// After this many seconds of transient failures, the same page is also
    /// sent on the recipient's other channel (email <-> SMS) while the first
    /// one keeps being retried.
    pub retry_fallback_after_secs: u64,
    /// Language of emails, SMS and acknowledgment pages for physicians whose
    /// directory entry names none (`"fr"` or `"en"`; default `"fr"`, a French
    /// deployment). Also the language of the SMS answers that must not tell
    /// whether the sender is a physician (unknown number, wrong code, lockout, help).
    pub default_language: Language,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        AlertingSettings {
            group: "vitalwatch-alerting".into(),
            http_addr: "0.0.0.0:8080".into(),
            public_base_url: "http://127.0.0.1:8080".into(),
            ack_secret: None,
            ack_link_ttl_hours: 72,
            ack_code_digits: 8,
            transport: AlertTransportKind::Smtp,
            file_dir: PathBuf::from("{data_dir}/alerts"),
            smtp: AlertSmtpSettings::default(),
            sms: AlertSmsSettings::default(),
            outbox_lease_secs: 60,
            outbox_poll_ms: 500,
            outbox_batch: 20,
            scheduler_poll_ms: 1000,
            retry_base_delay_ms: 5_000,
            retry_max_delay_ms: 300_000,
            retry_horizon_secs: 86_400,
            retry_fallback_after_secs: 60,
            default_language: Language::Fr,
        }
    }
}

impl AlertingSettings {
    /// Checks values that serde cannot (the message names the key).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.outbox_lease_secs == 0 || self.outbox_batch == 0 {
            return Err(ConfigError::new("alerting.outbox_lease_secs and alerting.outbox_batch must be at least 1"));
        }
        if self.retry_horizon_secs < 86_400 {
            return Err(ConfigError::new(
                "alerting.retry_horizon_secs must be at least 86400 (24 h): a page is not given up sooner",
            ));
        }
        self.check_sms().map_err(ConfigError::new)
    }

    /// Replaces `{data_dir}` in `file_dir` with the data folder.
    pub fn resolve_data_dir(&mut self, data_dir: &str) {
        let file_dir = self.file_dir.display().to_string();
        if file_dir.contains("{data_dir}") {
            self.file_dir = PathBuf::from(file_dir.replace("{data_dir}", data_dir));
        }
    }

    /// Masks the credentials of the URLs of this section (webhook, Twilio,
    /// public base URL), for printing.
    pub fn redact_urls(&mut self) {
        for url in [&mut self.sms.webhook_url, &mut self.sms.twilio_base_url, &mut self.public_base_url] {
            *url = redact_url(url);
        }
    }
}
