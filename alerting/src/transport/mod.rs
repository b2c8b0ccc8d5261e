//! Transports: how a rendered message leaves the process.
//!
//! | transport | channel | module |
//! |---|---|---|
//! | SMTP (lettre, STARTTLS / TLS / plain, optional auth) | email | [`smtp`] |
//! | Twilio Messages API | SMS | [`twilio`] |
//! | generic JSON webhook | SMS | [`webhook`] |
//! | `.eml` files in a folder | email | [`file`] |
//! | JSON lines in a file | SMS | [`file`] |

pub mod file;
mod http;
pub mod smtp;
pub mod twilio;
pub mod webhook;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::severity::Channel;
use crate::team::{EmailAddress, PhoneNumber};

/// A rendered email ready to send.
#[derive(Debug, Clone)]
pub struct EmailOut {
    /// Idempotency key of the notification (or digest).
    pub key: String,
    /// Recipient address (also in the message headers).
    pub to: EmailAddress,
    /// The MIME message.
    pub message: lettre::Message,
}

/// A rendered SMS ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsOut {
    /// Idempotency key of the notification.
    pub key: String,
    /// Recipient number.
    pub to: PhoneNumber,
    /// Text.
    pub body: String,
}

/// A message for a transport.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An email.
    Email(EmailOut),
    /// An SMS.
    Sms(SmsOut),
}

impl Outbound {
    /// The channel of the message.
    pub fn channel(&self) -> Channel {
        match self {
            Outbound::Email(_) => Channel::Email,
            Outbound::Sms(_) => Channel::Sms,
        }
    }

    /// The idempotency key.
    pub fn key(&self) -> &str {
        match self {
            Outbound::Email(e) => &e.key,
            Outbound::Sms(s) => &s.key,
        }
    }
}

/// What a transport returns on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Transport name.
    pub transport: String,
    /// The provider's message id or response, if any.
    pub provider_message_id: Option<String>,
}

/// Whether a failure may succeed on retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Retry later (timeouts, connection errors, 429, 5xx, SMTP 4xx).
    Transient,
    /// Do not retry on this channel (HTTP 4xx, SMTP 5xx, bad recipient).
    Permanent,
}

/// A failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{transport}: {kind} failure: {message}")]
pub struct DeliveryError {
    /// Transport name.
    pub transport: &'static str,
    /// Transient or permanent.
    pub kind: FailureKind,
    /// What failed (no patient data).
    pub message: String,
    /// The provider asked to wait this long (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        })
    }
}

impl DeliveryError {
    /// A transient failure.
    pub fn transient(transport: &'static str, message: impl Into<String>) -> Self {
        Self { transport, kind: FailureKind::Transient, message: clip(message.into()), retry_after: None }
    }

    /// A permanent failure.
    pub fn permanent(transport: &'static str, message: impl Into<String>) -> Self {
        Self { transport, kind: FailureKind::Permanent, message: clip(message.into()), retry_after: None }
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        self.kind == FailureKind::Transient
    }
}

fn clip(mut s: String) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// Classifies an HTTP status: 429 and 5xx are transient, other 4xx permanent.
pub fn classify_http_status(status: u16) -> Option<FailureKind> {
    match status {
        200..=299 => None,
        408 | 425 | 429 => Some(FailureKind::Transient),
        500..=599 => Some(FailureKind::Transient),
        _ => Some(FailureKind::Permanent),
    }
}

/// A secret string whose `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<vitalwatch_platform::secret::Secret> for Secret {
    fn from(s: vitalwatch_platform::secret::Secret) -> Self {
        Secret(s.expose().to_owned())
    }
}

/// Error in a transport's configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {transport} configuration: {message}")]
pub struct TransportConfigError {
    /// Transport name.
    pub transport: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Sends messages of one channel.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Short name for audit records and logs (`smtp`, `twilio`, ...).
    fn name(&self) -> &'static str;
    /// The channel it carries.
    fn channel(&self) -> Channel;
    /// Sends one message. Must be safe to call again with the same key after
    /// an ambiguous failure (transports that can deduplicate do).
    async fn send(&self, message: &Outbound) -> Result<Receipt, DeliveryError>;
}

pub(crate) fn wrong_channel(transport: &'static str) -> DeliveryError {
    DeliveryError::permanent(transport, "message of the wrong channel for this transport")
}
