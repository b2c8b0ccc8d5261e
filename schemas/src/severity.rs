//! Alert severity: the one domain type the rules engine raises and alerting
//! pages on. The generated [`proto::Severity`] stays the wire type; the
//! conversions are [`Severity::to_proto`] / [`From<Severity>`] and
//! [`Severity::from_proto`] / [`TryFrom<proto::Severity>`].
//!
//! Serde names (`info` ... `critical`, in rule configuration and stored
//! episode JSON) and the order (lowest first) are part of the contract.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::proto;

/// Alert severity, lowest to highest (mirrors `vitalwatch.v1.Severity`; the
/// discriminants are the protobuf values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational: never paged, shown in digests only.
    Info = 1,
    /// Low.
    Low = 2,
    /// Medium.
    Medium = 3,
    /// High.
    High = 4,
    /// Urgent: always delivered, even in quiet hours and over caps.
    Critical = 5,
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

    /// The protobuf (wire) value.
    pub fn to_proto(self) -> proto::Severity {
        match self {
            Severity::Info => proto::Severity::Info,
            Severity::Low => proto::Severity::Low,
            Severity::Medium => proto::Severity::Medium,
            Severity::High => proto::Severity::High,
            Severity::Critical => proto::Severity::Critical,
        }
    }

    /// Converts the protobuf enum value of a message field; `None` for
    /// `UNSPECIFIED` or unknown values.
    pub fn from_proto(value: i32) -> Option<Severity> {
        proto::Severity::try_from(value).ok()?.try_into().ok()
    }
}

impl From<Severity> for proto::Severity {
    fn from(s: Severity) -> Self {
        s.to_proto()
    }
}

/// The wire value `UNSPECIFIED` has no domain severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("severity is unspecified")]
pub struct UnspecifiedSeverity;

impl TryFrom<proto::Severity> for Severity {
    type Error = UnspecifiedSeverity;

    fn try_from(p: proto::Severity) -> Result<Self, Self::Error> {
        match p {
            proto::Severity::Unspecified => Err(UnspecifiedSeverity),
            proto::Severity::Info => Ok(Severity::Info),
            proto::Severity::Low => Ok(Severity::Low),
            proto::Severity::Medium => Ok(Severity::Medium),
            proto::Severity::High => Ok(Severity::High),
            proto::Severity::Critical => Ok(Severity::Critical),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_names_and_order() {
        for s in Severity::ALL {
            assert_eq!(Severity::from_proto(s.to_proto() as i32), Some(s));
            assert_eq!(s as i32, proto::Severity::from(s) as i32, "discriminant is the wire value");
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(s.label(), s.as_str().to_uppercase());
        }
        assert_eq!(Severity::from_proto(0), None);
        assert_eq!(Severity::from_proto(99), None);
        assert_eq!(Severity::try_from(proto::Severity::Unspecified), Err(UnspecifiedSeverity));
        assert!(Severity::ALL.windows(2).all(|w| w[0] < w[1]));
    }
}
