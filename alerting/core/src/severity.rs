//! Alert severities and delivery channels.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Alert severity, lowest to highest: the one domain type of vitalwatch
/// (shared with the rules engine), defined in `vitalwatch-schemas`.
pub use vitalwatch_schemas::Severity;

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
