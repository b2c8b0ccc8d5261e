//! Care teams: physicians, their contact points and preferences, and who is
//! responsible for which patient.
//!
//! Every type here is plain serde data so that it can be stored as rows or JSON;
//! the validating constructors (and [`Physician::validate`] /
//! [`CareTeam::validate`] after deserialization) reject bad contact data with a
//! message that says what is wrong.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use vitalwatch_schemas::PatientId;

use crate::i18n::Language;
use crate::policy::{EscalationPolicy, PolicyError};
use crate::quiet_hours::QuietHours;
use crate::severity::{Channel, Severity};

/// Error for invalid care-team data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TeamError {
    /// The physician identifier is not acceptable.
    #[error("invalid physician id {0:?}: expected 1 to 64 characters of A-Z a-z 0-9 _ . -")]
    InvalidPhysicianId(String),
    /// The email address is not acceptable.
    #[error("invalid email address {value:?}: {reason}")]
    InvalidEmail {
        /// The rejected value (truncated).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The phone number is not in E.164 form.
    #[error("invalid mobile number {value:?}: {reason} (expected E.164, e.g. +33612345678)")]
    InvalidPhone {
        /// The rejected value (truncated).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The time zone is not an IANA time zone name.
    #[error("unknown time zone {0:?}: expected an IANA name such as \"Europe/Paris\"")]
    UnknownTimeZone(String),
    /// The physician has no display name.
    #[error("physician {0}: the name must not be empty")]
    EmptyName(String),
    /// The preferences route a severity to SMS but the physician has no mobile number.
    #[error("physician {physician}: {severity} alerts are routed to SMS but no mobile number is set")]
    MissingMobile {
        /// The physician.
        physician: String,
        /// The severity routed to SMS.
        severity: Severity,
    },
    /// A severity that must be paged has no channel.
    #[error("physician {physician}: no channel is configured for {severity} alerts")]
    NoChannel {
        /// The physician.
        physician: String,
        /// The severity without a channel.
        severity: Severity,
    },
    /// Two physicians share an id in the directory.
    #[error("physician id {0} appears twice in the directory")]
    DuplicatePhysician(String),
    /// The hourly cap is zero.
    #[error("physician {0}: the hourly cap must be at least 1 (omit it for no cap)")]
    ZeroCap(String),
    /// The care team references a physician that is not in the directory.
    #[error("patient {patient}: physician {physician} is not in the directory")]
    UnknownPhysician {
        /// The patient whose team is invalid.
        patient: String,
        /// The missing physician.
        physician: String,
    },
    /// The responsible physician is also listed as a deputy.
    #[error("patient {patient}: physician {physician} is listed twice in the care team")]
    DuplicateMember {
        /// The patient whose team is invalid.
        patient: String,
        /// The duplicated physician.
        physician: String,
    },
    /// The escalation policy is invalid.
    #[error("patient {patient}: {source}")]
    Policy {
        /// The patient whose policy is invalid.
        patient: String,
        /// What is wrong.
        #[source]
        source: PolicyError,
    },
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A physician identifier (1 to 64 characters of `A-Z a-z 0-9 _ . -`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhysicianId(String);

impl PhysicianId {
    /// Validates and wraps an identifier.
    pub fn new(s: impl Into<String>) -> Result<Self, TeamError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok { Ok(Self(s)) } else { Err(TeamError::InvalidPhysicianId(truncate(&s))) }
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhysicianId {
    type Error = TeamError;
    fn try_from(s: String) -> Result<Self, TeamError> {
        Self::new(s)
    }
}

impl From<PhysicianId> for String {
    fn from(v: PhysicianId) -> String {
        v.0
    }
}

impl fmt::Display for PhysicianId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated email address (`local@domain.tld`, ASCII, at most 254 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates an email address.
    pub fn new(s: impl Into<String>) -> Result<Self, TeamError> {
        let s: String = s.into();
        let err = |reason| TeamError::InvalidEmail { value: truncate(&s), reason };
        if s.len() > 254 {
            return Err(err("longer than 254 characters"));
        }
        if !s.is_ascii() || s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(err("only printable ASCII without spaces is accepted"));
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(err("missing '@'"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(err("the part before '@' must have 1 to 64 characters"));
        }
        if local.contains('@') || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(err("the part before '@' is malformed"));
        }
        if local
            .bytes()
            .any(|b| matches!(b, b'"' | b'(' | b')' | b',' | b':' | b';' | b'<' | b'>' | b'[' | b'\\' | b']'))
        {
            return Err(err("the part before '@' contains a character that needs quoting"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(err("the domain must contain a dot"));
        }
        for label in &labels {
            let valid = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return Err(err("the domain is malformed"));
            }
        }
        // The checks of lettre's `Address` parser (the SMTP transport parses
        // the address again): its local part and its domain (or IP literal).
        let domain_ok = email_address::EmailAddress::is_valid_domain(domain)
            || domain
                .strip_prefix('[')
                .and_then(|d| d.strip_suffix(']'))
                .unwrap_or(domain)
                .parse::<std::net::IpAddr>()
                .is_ok();
        if !email_address::EmailAddress::is_valid_local_part(local) || !domain_ok {
            return Err(err("not a valid mailbox address"));
        }
        Ok(Self(s))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = TeamError;
    fn try_from(s: String) -> Result<Self, TeamError> {
        Self::new(s)
    }
}

impl From<EmailAddress> for String {
    fn from(v: EmailAddress) -> String {
        v.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form: `+`, then 7 to 15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Validates an E.164 number. Spaces, dots, dashes and parentheses are not
    /// accepted: store the canonical form.
    pub fn new(s: impl Into<String>) -> Result<Self, TeamError> {
        let s: String = s.into();
        let err = |reason| TeamError::InvalidPhone { value: truncate(&s), reason };
        let Some(digits) = s.strip_prefix('+') else {
            return Err(err("must start with '+' and the country code"));
        };
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("only digits may follow '+'"));
        }
        if !(7..=15).contains(&digits.len()) {
            return Err(err("must have 7 to 15 digits"));
        }
        if digits.starts_with('0') {
            return Err(err("a country code never starts with 0"));
        }
        Ok(Self(s))
    }

    /// The number as a string (`+33612345678`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = TeamError;
    fn try_from(s: String) -> Result<Self, TeamError> {
        Self::new(s)
    }
}

impl From<PhoneNumber> for String {
    fn from(v: PhoneNumber) -> String {
        v.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA time zone, stored as its name (`"Europe/Paris"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(Tz);

impl TimeZone {
    /// Looks a zone up by its IANA name.
    pub fn new(name: &str) -> Result<Self, TeamError> {
        Tz::from_str(name).map(Self).map_err(|_| TeamError::UnknownTimeZone(truncate(name)))
    }

    /// The chrono-tz zone.
    pub fn tz(self) -> Tz {
        self.0
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl From<Tz> for TimeZone {
    fn from(tz: Tz) -> Self {
        Self(tz)
    }
}

impl TryFrom<String> for TimeZone {
    type Error = TeamError;
    fn try_from(s: String) -> Result<Self, TeamError> {
        Self::new(&s)
    }
}

impl From<TimeZone> for String {
    fn from(v: TimeZone) -> String {
        v.name().to_string()
    }
}

/// Which channels each severity is delivered on.
///
/// `info` is never paged: whatever is listed, info alerts only go to the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelPreferences {
    /// Channels for LOW alerts.
    pub low: Vec<Channel>,
    /// Channels for MEDIUM alerts.
    pub medium: Vec<Channel>,
    /// Channels for HIGH alerts.
    pub high: Vec<Channel>,
    /// Channels for CRITICAL alerts.
    pub critical: Vec<Channel>,
}

impl Default for ChannelPreferences {
    /// LOW and MEDIUM by email; HIGH and CRITICAL by email and SMS.
    fn default() -> Self {
        Self {
            low: vec![Channel::Email],
            medium: vec![Channel::Email],
            high: vec![Channel::Email, Channel::Sms],
            critical: vec![Channel::Email, Channel::Sms],
        }
    }
}

impl ChannelPreferences {
    /// The channels for a severity, deduplicated, in a stable order (email first).
    pub fn channels_for(&self, severity: Severity) -> Vec<Channel> {
        let list: &[Channel] = match severity {
            Severity::Info => &[],
            Severity::Low => &self.low,
            Severity::Medium => &self.medium,
            Severity::High => &self.high,
            Severity::Critical => &self.critical,
        };
        let mut out: Vec<Channel> = list.to_vec();
        out.sort();
        out.dedup();
        out
    }
}

/// A physician who can be notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Physician {
    /// Stable identifier.
    pub id: PhysicianId,
    /// Display name, used in the greeting.
    pub name: String,
    /// Email address.
    pub email: EmailAddress,
    /// Mobile number in E.164 form, if the physician accepts SMS.
    #[serde(default)]
    pub mobile: Option<PhoneNumber>,
    /// The physician's own time zone: reading times and quiet hours use it.
    pub time_zone: TimeZone,
    /// Quiet hours in the physician's time zone, if any.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Which severities go to which channel.
    #[serde(default)]
    pub channels: ChannelPreferences,
    /// At most this many notifications per rolling hour before low-severity
    /// alerts are folded into a digest (`None`: no cap).
    #[serde(default)]
    pub hourly_cap: Option<u32>,
    /// The language of this physician's emails, SMS and acknowledgment pages
    /// (`"fr"` or `"en"`; any other value is refused when the document is
    /// read). `None`: the deployment's `alerting.default_language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
}

impl Physician {
    /// Checks the invariants that serde alone cannot (names, SMS routing, caps).
    pub fn validate(&self) -> Result<(), TeamError> {
        if self.name.trim().is_empty() {
            return Err(TeamError::EmptyName(self.id.to_string()));
        }
        for severity in [Severity::Low, Severity::Medium, Severity::High, Severity::Critical] {
            let channels = self.channels.channels_for(severity);
            if channels.is_empty() {
                return Err(TeamError::NoChannel { physician: self.id.to_string(), severity });
            }
            if channels.contains(&Channel::Sms) && self.mobile.is_none() {
                return Err(TeamError::MissingMobile { physician: self.id.to_string(), severity });
            }
        }
        if self.hourly_cap == Some(0) {
            return Err(TeamError::ZeroCap(self.id.to_string()));
        }
        Ok(())
    }

    /// The language of this physician's messages: their own, else `default`
    /// (the deployment's `alerting.default_language`).
    pub fn language_or(&self, default: Language) -> Language {
        self.language.unwrap_or(default)
    }

    /// Whether this physician can be reached on `channel`.
    pub fn reachable_on(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => true,
            Channel::Sms => self.mobile.is_some(),
        }
    }
}

/// All known physicians, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directory {
    physicians: HashMap<PhysicianId, Physician>,
}

impl Directory {
    /// Builds a directory, validating every physician.
    pub fn new(physicians: impl IntoIterator<Item = Physician>) -> Result<Self, TeamError> {
        let mut map = HashMap::new();
        for p in physicians {
            p.validate()?;
            if map.contains_key(&p.id) {
                return Err(TeamError::DuplicatePhysician(p.id.to_string()));
            }
            map.insert(p.id.clone(), p);
        }
        Ok(Self { physicians: map })
    }

    /// Looks a physician up.
    pub fn get(&self, id: &PhysicianId) -> Option<&Physician> {
        self.physicians.get(id)
    }

    /// Number of physicians.
    pub fn len(&self) -> usize {
        self.physicians.len()
    }

    /// Whether the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.physicians.is_empty()
    }
}

/// The care team of one patient: who is responsible, who deputizes, and how
/// alerts escalate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CareTeam {
    /// The patient (pseudonymous id).
    pub patient_id: PatientId,
    /// The responsible physician: first to be paged.
    pub responsible: PhysicianId,
    /// Deputies in rank order (rank 0 first).
    #[serde(default)]
    pub deputies: Vec<PhysicianId>,
    /// Who is paged when, per severity.
    #[serde(default)]
    pub policy: EscalationPolicy,
}

impl CareTeam {
    /// Checks that every member exists in `directory`, that nobody is listed
    /// twice, and that the policy is consistent with the team.
    pub fn validate(&self, directory: &Directory) -> Result<(), TeamError> {
        let patient = self.patient_id.to_string();
        let mut seen: Vec<&PhysicianId> = Vec::new();
        for id in std::iter::once(&self.responsible).chain(self.deputies.iter()) {
            if directory.get(id).is_none() {
                return Err(TeamError::UnknownPhysician { patient, physician: id.to_string() });
            }
            if seen.contains(&id) {
                return Err(TeamError::DuplicateMember { patient, physician: id.to_string() });
            }
            seen.push(id);
        }
        self.policy
            .validate(self.deputies.len())
            .map_err(|source| TeamError::Policy { patient: patient.clone(), source })?;
        for id in self.policy.named_physicians() {
            if directory.get(id).is_none() {
                return Err(TeamError::UnknownPhysician { patient, physician: id.to_string() });
            }
        }
        Ok(())
    }
}
