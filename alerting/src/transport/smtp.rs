//! Email over SMTP with lettre's `AsyncSmtpTransport<Tokio1Executor>`.

use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::{DeliveryError, Outbound, Receipt, Secret, Transport, TransportConfigError, wrong_channel};
use crate::severity::Channel;

const NAME: &str = "smtp";

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    StartTls,
    /// STARTTLS when offered, plain otherwise. Not for production.
    Opportunistic,
    /// No encryption. Only for a relay on localhost or in tests.
    None,
}

/// SMTP settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpConfig {
    /// Server host name (also the TLS server name).
    pub host: String,
    /// Port (465 for TLS, 587 for STARTTLS, 25 for relays).
    pub port: u16,
    /// Encryption.
    pub security: SmtpSecurity,
    /// User name, if the server requires authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Name sent in EHLO.
    #[serde(default = "default_hello")]
    pub hello_name: String,
    /// Timeout of each SMTP command, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_hello() -> String {
    "vitalwatch.localdomain".to_string()
}

fn default_timeout() -> u64 {
    20
}

/// The SMTP transport.
#[derive(Clone)]
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTransport").finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Builds the transport (no connection is made until the first send).
    pub fn new(config: &SmtpConfig) -> Result<Self, TransportConfigError> {
        let err = |message: String| TransportConfigError { transport: NAME, message };
        if config.host.trim().is_empty() {
            return Err(err("host must not be empty".into()));
        }
        let tls_params = || TlsParameters::new(config.host.clone()).map_err(|e| err(format!("TLS setup failed: {e}")));
        let tls = match config.security {
            SmtpSecurity::Tls => Tls::Wrapper(tls_params()?),
            SmtpSecurity::StartTls => Tls::Required(tls_params()?),
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls_params()?),
            SmtpSecurity::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
            .port(config.port)
            .tls(tls)
            .hello_name(ClientId::Domain(config.hello_name.clone()))
            .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))));
        match (&config.username, &config.password) {
            (Some(u), Some(p)) => builder = builder.credentials(Credentials::new(u.clone(), p.0.clone())),
            (None, None) => {}
            _ => return Err(err("username and password must be set together".into())),
        }
        Ok(Self { inner: builder.build() })
    }
}

#[async_trait]
impl Transport for SmtpTransport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn channel(&self) -> Channel {
        Channel::Email
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, DeliveryError> {
        let Outbound::Email(email) = message else {
            return Err(wrong_channel(NAME));
        };
        match self.inner.send(email.message.clone()).await {
            Ok(resp) => {
                Ok(Receipt { transport: NAME.to_string(), provider_message_id: resp.first_line().map(str::to_string) })
            }
            Err(e) if e.is_permanent() => Err(DeliveryError::permanent(NAME, e.to_string())),
            Err(e) => Err(DeliveryError::transient(NAME, e.to_string())),
        }
    }
}
