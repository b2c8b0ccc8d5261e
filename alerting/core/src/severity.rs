//! Alert severities and delivery channels.

use std::fmt;

use serde::{Deserialize, Serialize};
use vitalwatch_schemas::proto;

/// Alert severity, lowest to highest (mirrors `vitalwatch.v1.Severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational: never paged, shown in digests only.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Urgent: always delivered, even in quiet hours and over caps.
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 5] =
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    /// Parses a lower-case name (`info` ... `critical`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Lower-case name used in keys, JSON and logs (`high`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Upper-case label for subjects and SMS (`HIGH`).
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Converts the protobuf enum value; `None` for `UNSPECIFIED` or unknown values.
    pub fn from_proto(value: i32) -> Option<Severity> {
        match proto::Severity::try_from(value).ok()? {
            proto::Severity::Unspecified => None,
            proto::Severity::Info => Some(Severity::Info),
            proto::Severity::Low => Some(Severity::Low),
            proto::Severity::Medium => Some(Severity::Medium),
            proto::Severity::High => Some(Severity::High),
            proto::Severity::Critical => Some(Severity::Critical),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email (SMTP or `.eml` files).
    Email,
    /// SMS (Twilio, webhook gateway or JSON lines).
    Sms,
}

impl Channel {
    /// Lower-case name used in keys and JSON (`email`, `sms`).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    /// The other channel, used as fallback after a permanent failure.
    pub fn other(self) -> Channel {
        match self {
            Channel::Email => Channel::Sms,
            Channel::Sms => Channel::Email,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
