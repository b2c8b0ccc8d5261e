//! Builds the notifier and transports of the role from its settings.

use std::path::Path;
use std::sync::Arc;

use crate::settings::{AlertTransportKind, AlertingSettings, SmsProviderKind, SmtpSecurityKind};

use super::InboundGuard;
use crate::ack::{AckCodeGenerator, AckSigner};
use crate::inbound::{GlobalLimiter, GuardPolicy, InboundAuth, MIN_INBOUND_SECRET_LEN, ReplayCache};
use crate::notifier::{Notifier, NotifierConfig};
use crate::retry::RetryPolicy;
use crate::team::PhoneNumber;
use crate::transport::file::{FileEmailTransport, FileSmsTransport};
use crate::transport::smtp::{SmtpConfig, SmtpSecurity, SmtpTransport};
use crate::transport::twilio::{TwilioConfig, TwilioTransport};
use crate::transport::webhook::{WebhookConfig, WebhookTransport};
use crate::transport::{Secret, Transport};

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// Invalid or missing setting.
    #[error("alerting settings: {0}")]
    Invalid(String),
    /// The embedded secret file could not be read or written.
    #[error("acknowledgment secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn invalid(e: impl std::fmt::Display) -> WiringError {
    WiringError::Invalid(e.to_string())
}

/// The acknowledgment secret: `alerting.ack_secret`, or with the `file`
/// transport (embedded mode) a random secret kept in `{file_dir}/ack.secret`.
pub fn ack_secret(s: &AlertingSettings) -> Result<Vec<u8>, WiringError> {
    if let Some(secret) = &s.ack_secret {
        if secret.expose().len() < crate::ack::MIN_SECRET_LEN {
            return Err(WiringError::Invalid(format!(
                "alerting.ack_secret must have at least {} bytes",
                crate::ack::MIN_SECRET_LEN
            )));
        }
        return Ok(secret.expose().as_bytes().to_vec());
    }
    if s.transport != AlertTransportKind::File {
        return Err(WiringError::Invalid(
            "alerting.ack_secret is required (at least 32 random bytes; e.g. VITALWATCH_ALERTING__ACK_SECRET)".into(),
        ));
    }
    embedded_secret(&s.file_dir.join("ack.secret"))
}

fn embedded_secret(path: &Path) -> Result<Vec<u8>, WiringError> {
    let file_err = |source| WiringError::SecretFile { path: path.display().to_string(), source };
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= crate::ack::MIN_SECRET_LEN => {
            return Ok(s.trim().as_bytes().to_vec());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_err(e)),
    }
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        vitalwatch_platform::private_fs::create_dir(dir).map_err(file_err)?;
    }
    // Created 0600 (never written readable first).
    vitalwatch_platform::private_fs::write_file(path, hex.as_bytes()).map_err(file_err)?;
    Ok(hex.into_bytes())
}

/// The domain of the sender address (for Message-IDs).
fn id_domain(from: &str) -> Result<String, WiringError> {
    let mailbox: lettre::message::Mailbox =
        from.parse().map_err(|e| WiringError::Invalid(format!("alerting.smtp.from {from:?}: {e}")))?;
    Ok(mailbox.email.domain().to_string())
}

/// The email transport and the SMS transport (if any).
pub type Transports = (Arc<dyn Transport>, Option<Arc<dyn Transport>>);

/// The email and SMS transports.
pub fn transports(s: &AlertingSettings) -> Result<Transports, WiringError> {
    if s.transport == AlertTransportKind::File {
        return Ok((
            Arc::new(FileEmailTransport::new(s.file_dir.clone())),
            Some(Arc::new(FileSmsTransport::new(s.file_dir.join("sms.jsonl")))),
        ));
    }
    let smtp = SmtpConfig {
        host: s.smtp.host.clone(),
        port: s.smtp.port,
        security: match s.smtp.security {
            SmtpSecurityKind::Tls => SmtpSecurity::Tls,
            SmtpSecurityKind::StartTls => SmtpSecurity::StartTls,
            SmtpSecurityKind::Opportunistic => SmtpSecurity::Opportunistic,
            SmtpSecurityKind::None => SmtpSecurity::None,
        },
        username: s.smtp.username.clone(),
        password: s.smtp.password.clone().map(Secret::from),
        hello_name: "vitalwatch.localdomain".into(),
        timeout_secs: s.smtp.timeout_secs,
    };
    let email: Arc<dyn Transport> = Arc::new(SmtpTransport::new(&smtp).map_err(invalid)?);
    let sms: Option<Arc<dyn Transport>> =
        match s.sms.provider {
            SmsProviderKind::None => None,
            SmsProviderKind::Twilio => {
                let from = s.sms.twilio_from.clone().map(PhoneNumber::new).transpose().map_err(invalid)?;
                let cfg =
                    TwilioConfig {
                        base_url: s.sms.twilio_base_url.clone(),
                        account_sid: s.sms.twilio_account_sid.clone(),
                        auth_token: Secret::from(s.sms.twilio_auth_token.clone().ok_or_else(|| {
                            WiringError::Invalid("alerting.sms.twilio_auth_token is required".into())
                        })?),
                        from,
                        messaging_service_sid: s.sms.twilio_messaging_service_sid.clone(),
                        timeout_secs: s.sms.timeout_secs,
                    };
                Some(Arc::new(TwilioTransport::new(&cfg).map_err(invalid)?))
            }
            SmsProviderKind::Webhook => {
                let cfg = WebhookConfig {
                    url: s.sms.webhook_url.clone(),
                    bearer_token: s.sms.webhook_bearer_token.clone().map(Secret::from),
                    signing_secret: s.sms.webhook_signing_secret.clone().map(Secret::from),
                    timeout_secs: s.sms.timeout_secs,
                };
                Some(Arc::new(WebhookTransport::new(&cfg).map_err(invalid)?))
            }
        };
    Ok((email, sms))
}

/// The acknowledgment endpoint of links: `{public_base_url}/ack`.
pub fn ack_url(s: &AlertingSettings) -> String {
    format!("{}/ack", s.public_base_url.trim_end_matches('/'))
}

/// The inbound SMS endpoint as the provider calls it: `{public_base_url}/sms/inbound`.
pub fn sms_inbound_url(s: &AlertingSettings) -> String {
    format!("{}/sms/inbound", s.public_base_url.trim_end_matches('/'))
}

/// The retry policy.
pub fn retry_policy(s: &AlertingSettings) -> RetryPolicy {
    RetryPolicy {
        base_delay_ms: s.retry_base_delay_ms,
        max_delay_ms: s.retry_max_delay_ms.max(1),
        horizon_ms: s.retry_horizon_secs.saturating_mul(1000),
        fallback_after_ms: s.retry_fallback_after_secs.saturating_mul(1000),
    }
}

/// Signer, code generator and notifier.
pub fn notifier(s: &AlertingSettings, secret: &[u8]) -> Result<(AckSigner, AckCodeGenerator, Notifier), WiringError> {
    let signer = AckSigner::new(secret).map_err(invalid)?;
    let codes = AckCodeGenerator::new(secret, s.ack_code_digits).map_err(invalid)?;
    let (email, sms) = transports(s)?;
    let config = NotifierConfig {
        from: s.smtp.from.clone(),
        ack_base_url: ack_url(s),
        ack_link_ttl_hours: s.ack_link_ttl_hours.max(1),
        id_domain: id_domain(&s.smtp.from)?,
        retry: retry_policy(s),
        default_language: s.default_language,
    };
    let notifier = Notifier::new(config, signer.clone(), codes.clone(), email, sms).map_err(invalid)?;
    Ok((signer, codes, notifier))
}

/// The Twilio auth token, if configured (the one place that reads it for inbound checks).
fn twilio_token(s: &AlertingSettings) -> Option<String> {
    s.sms.twilio_auth_token.as_ref().map(|t| t.expose().to_owned()).filter(|t| !t.is_empty())
}

/// Whether `POST /sms/inbound` is on: `alerting.sms.inbound.enabled`, else on for the
/// `twilio` and `webhook` providers and for the `file` transport of `run`, off for `none`.
pub fn inbound_enabled(s: &AlertingSettings) -> bool {
    s.sms.inbound.enabled.unwrap_or(s.transport == AlertTransportKind::File || s.sms.provider != SmsProviderKind::None)
}

/// How inbound SMS is authenticated. Refuses (naming the key) an enabled inbound
/// endpoint without its secret: provider `twilio` needs `alerting.sms.twilio_auth_token`
/// (`X-Twilio-Signature`); any other provider needs `alerting.sms.inbound.secret`
/// (HMAC-SHA256, at least 32 bytes), which `run` (transport `file`) creates in
/// `{file_dir}/sms-inbound.secret` when unset.
pub fn inbound_auth(s: &AlertingSettings) -> Result<InboundAuth, WiringError> {
    if !inbound_enabled(s) {
        return Ok(InboundAuth::Disabled);
    }
    if s.sms.provider == SmsProviderKind::Twilio {
        let auth_token = twilio_token(s).ok_or_else(|| {
            WiringError::Invalid(
                "alerting.sms.twilio_auth_token is required: it authenticates inbound SMS (X-Twilio-Signature); \
                 or set alerting.sms.inbound.enabled = false"
                    .into(),
            )
        })?;
        return Ok(InboundAuth::Twilio { auth_token, url: sms_inbound_url(s) });
    }
    let max_skew = chrono::Duration::seconds(i64::try_from(s.sms.inbound.max_skew_secs).unwrap_or(300));
    let secret = match &s.sms.inbound.secret {
        Some(secret) => {
            let secret = secret.expose().as_bytes().to_vec();
            if secret.len() < MIN_INBOUND_SECRET_LEN {
                return Err(WiringError::Invalid(format!(
                    "alerting.sms.inbound.secret must have at least {MIN_INBOUND_SECRET_LEN} bytes"
                )));
            }
            secret
        }
        None if s.transport == AlertTransportKind::File => embedded_secret(&s.file_dir.join("sms-inbound.secret"))?,
        None => {
            return Err(WiringError::Invalid(format!(
                "alerting.sms.inbound.secret is required: inbound SMS is enabled (provider {:?}) and every call must be \
                 signed (X-Vitalwatch-Signature, HMAC-SHA256); set at least {MIN_INBOUND_SECRET_LEN} random bytes \
                 (VITALWATCH_ALERTING__SMS__INBOUND__SECRET) or alerting.sms.inbound.enabled = false",
                s.sms.provider
            )));
        }
    };
    Ok(InboundAuth::Hmac { secret, max_skew })
}

/// Authentication, replay cache, global bucket and per-number policy of the inbound endpoint.
pub fn inbound_guard(
    s: &AlertingSettings,
    ack_secret: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<InboundGuard, WiringError> {
    let i = &s.sms.inbound;
    let secs = |v: u64| chrono::Duration::seconds(i64::try_from(v).unwrap_or(i64::MAX / 1000).max(1));
    Ok(InboundGuard {
        auth: inbound_auth(s)?,
        replays: ReplayCache::new(secs(i.max_skew_secs) * 2, 100_000),
        global: GlobalLimiter::new(i.global_per_minute, now),
        policy: GuardPolicy {
            max_failures: i.max_failures.max(1),
            window: secs(i.failure_window_secs),
            lockout: secs(i.lockout_secs),
        },
        sender_secret: ack_secret.to_vec(),
    })
}
