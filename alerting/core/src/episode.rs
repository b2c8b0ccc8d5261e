//! Episode state: what alerting knows about one alert episode, built from the
//! alert events of the rules engine plus acknowledgments, snoozes and the
//! notifications already issued. Plain serde data: store it as JSON.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind};
use vitalwatch_schemas::{Code, PatientId};

use crate::audit::{AuditEntry, AuditRecord};
use crate::notification::{NotificationKey, Route, Step};
use crate::severity::{Channel, Severity};
use crate::team::PhysicianId;

/// Longest snooze accepted.
pub const MAX_SNOOZE: Duration = Duration::hours(24);

/// Error for an alert event that cannot be applied, or an invalid operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpisodeError {
    /// A required field of the alert event is empty or invalid.
    #[error("alert event {event_id:?}: invalid field `{field}`: {reason}")]
    InvalidEvent {
        /// The event id (may be empty).
        event_id: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The event belongs to another episode.
    #[error("alert event {event_id:?} belongs to episode {got:?}, not {expected:?}")]
    WrongEpisode {
        /// The event id.
        event_id: String,
        /// The episode of this state.
        expected: String,
        /// The episode of the event.
        got: String,
    },
    /// The episode is already resolved.
    #[error("episode {0} is already resolved")]
    AlreadyResolved(String),
    /// The message (link or SMS code) was sent for a lower severity than the
    /// episode has now: it cannot acknowledge the rise.
    #[error(
        "this alert has become more severe since this message ({sent_for} -> {now}); acknowledge from the newest message"
    )]
    SeverityRose {
        /// The severity the message was sent for.
        sent_for: Severity,
        /// The current severity.
        now: Severity,
    },
    /// The snooze end is not in the future or too far away.
    #[error("snooze until {until} is invalid: it must be after now and at most 24 h away")]
    InvalidSnooze {
        /// The requested end.
        until: DateTime<Utc>,
    },
}

/// An episode identifier (1 to 128 characters of `A-Z a-z 0-9 _ . -`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EpisodeId(String);

impl EpisodeId {
    /// Validates and wraps an identifier.
    pub fn new(s: impl Into<String>) -> Result<Self, EpisodeError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(s))
        } else {
            Err(EpisodeError::InvalidEvent {
                event_id: String::new(),
                field: "episode_id",
                reason: format!(
                    "{:?} is not 1 to 128 characters of A-Z a-z 0-9 _ . -",
                    s.chars().take(80).collect::<String>()
                ),
            })
        }
    }

    /// The identifier as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EpisodeId {
    type Error = EpisodeError;
    fn try_from(s: String) -> Result<Self, EpisodeError> {
        Self::new(s)
    }
}

impl From<EpisodeId> for String {
    fn from(v: EpisodeId) -> String {
        v.0
    }
}

impl fmt::Display for EpisodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The clinical facts of the latest alert event, as shown in notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDetails {
    /// Stable rule id, e.g. `threshold.spo2.low`.
    pub rule_id: String,
    /// Rule kind: threshold, baseline, trend, news2, missing, device_silent.
    pub rule_kind: String,
    /// Care program.
    pub program: String,
    /// The vital the alert is about (`None` for multi-parameter scores).
    pub code: Option<Code>,
    /// The triggering value, in the code's UCUM unit, if known.
    pub value: Option<f64>,
    /// The UCUM unit of `value`, `threshold` and `baseline`.
    pub unit: String,
    /// Measurement time of the triggering reading.
    pub reading_time: DateTime<Utc>,
    /// When the rules engine decided.
    pub detected_at: DateTime<Utc>,
    /// The threshold crossed, if any.
    pub threshold: Option<f64>,
    /// The baseline compared against, if any.
    pub baseline: Option<f64>,
    /// Short summary without identifying data.
    pub summary: String,
    /// Trace id of the triggering reading.
    pub trace_id: String,
    /// The triggering reading arrived late (issue #14): notifications word it
    /// as a past reading, "measured at T, received at R".
    #[serde(default)]
    pub historical: bool,
    /// When the triggering reading was received (`None` when the event is not
    /// about a reading, or came from an engine that did not say).
    #[serde(default)]
    pub received_at: Option<DateTime<Utc>>,
}

impl AlertDetails {
    /// A technical alert (a device stopped sending heartbeats): it goes to
    /// the responsible physician's team by email only, never by SMS.
    pub fn is_technical(&self) -> bool {
        self.rule_kind == TECHNICAL_RULE_KIND
    }
}

/// `rule_kind` of the technical heartbeat-loss alert of the rules engine.
pub const TECHNICAL_RULE_KIND: &str = "device_heartbeat_lost";

/// How an acknowledgment arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckVia {
    /// The signed link in an email or SMS.
    Link,
    /// An SMS reply with the acknowledgment code.
    SmsReply,
    /// The clinical web application.
    WebApp,
}

/// A physician's acknowledgment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgment {
    /// Who.
    pub by: PhysicianId,
    /// When.
    pub at: DateTime<Utc>,
    /// How.
    pub via: AckVia,
    /// The episode severity when acknowledged: a later rise pages again.
    pub severity: Severity,
}

/// A snooze: no pages until `until`, unless the severity rises above `severity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snooze {
    /// Who snoozed.
    pub by: PhysicianId,
    /// Until when.
    pub until: DateTime<Utc>,
    /// The severity when snoozed: anything more severe breaks the snooze.
    pub severity: Severity,
}

/// A notification (or digest entry) already issued for this episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// Idempotency key.
    pub key: NotificationKey,
    /// Recipient.
    pub recipient: PhysicianId,
    /// Step.
    pub step: Step,
    /// Channel or digest.
    pub route: Route,
    /// When the planner issued it.
    pub at: DateTime<Utc>,
    /// For a fallback: the channel that failed permanently (not used again
    /// for this recipient in this episode).
    #[serde(default)]
    pub fallback_from: Option<Channel>,
    /// The delivery failed for good on this channel (permanent failure, or
    /// the retry horizon passed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

/// Everything alerting knows about one episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeState {
    /// The episode.
    pub episode_id: EpisodeId,
    /// The patient (pseudonymous id).
    pub patient_id: PatientId,
    /// When alerting learned about the episode.
    pub opened_at: DateTime<Utc>,
    /// Current severity.
    pub severity: Severity,
    /// When alerting learned about the current severity: the escalation ladder
    /// of that severity runs from here (not from detection time, so that a
    /// consumer backlog never fires several rungs at once).
    pub severity_since: DateTime<Utc>,
    /// Clinical facts of the latest applied event.
    pub details: AlertDetails,
    /// Acknowledgments, oldest first.
    #[serde(default)]
    pub acks: Vec<Acknowledgment>,
    /// The current snooze, if any.
    #[serde(default)]
    pub snooze: Option<Snooze>,
    /// When the episode was resolved.
    #[serde(default)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Notifications and digest entries already issued.
    #[serde(default)]
    pub issued: Vec<Issued>,
    /// Alert events already applied (redelivery-safe).
    #[serde(default)]
    pub applied_events: Vec<String>,
}

fn micros(event_id: &str, field: &'static str, v: i64) -> Result<DateTime<Utc>, EpisodeError> {
    DateTime::from_timestamp_micros(v).filter(|_| v > 0).ok_or_else(|| EpisodeError::InvalidEvent {
        event_id: event_id.to_string(),
        field,
        reason: format!("{v} is not a valid time"),
    })
}

fn details_of(event: &AlertEvent) -> Result<AlertDetails, EpisodeError> {
    let eid = event.event_id.as_str();
    let code = if event.code.is_empty() { None } else { Code::from_loinc(&event.code) };
    let reading_time = micros(eid, "reading_time_unix_micros", event.reading_time_unix_micros)?;
    let detected_at = micros(eid, "detected_at_unix_micros", event.detected_at_unix_micros)?;
    // The triggering value: the evidence reading of the primary code at the
    // reading time, else the latest reading of that code.
    let value = code.and_then(|c| {
        let of_code = event.readings.iter().filter(|r| Code::from_loinc(&r.code) == Some(c) && r.value.is_finite());
        of_code
            .clone()
            .find(|r| r.time_unix_micros == event.reading_time_unix_micros)
            .or_else(|| of_code.max_by_key(|r| r.time_unix_micros))
            .map(|r| r.value)
    });
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    let received_at = match event.received_at_unix_micros {
        0 => None,
        us => Some(micros(eid, "received_at_unix_micros", us)?),
    };
    Ok(AlertDetails {
        rule_id: event.rule_id.clone(),
        rule_kind: event.rule_kind.clone(),
        program: event.program.clone(),
        code,
        value,
        unit: code.map(|c| c.ucum().to_string()).unwrap_or_default(),
        reading_time,
        detected_at,
        threshold: finite(event.threshold),
        baseline: finite(event.baseline),
        summary: event.summary.clone(),
        trace_id: event.trace_id.clone(),
        historical: event.historical,
        received_at,
    })
}

fn kind_of(event: &AlertEvent) -> Result<AlertEventKind, EpisodeError> {
    match AlertEventKind::try_from(event.kind) {
        Ok(AlertEventKind::Unspecified) | Err(_) => Err(EpisodeError::InvalidEvent {
            event_id: event.event_id.clone(),
            field: "kind",
            reason: format!("unknown alert event kind {}", event.kind),
        }),
        Ok(k) => Ok(k),
    }
}

fn severity_of(event: &AlertEvent) -> Result<Severity, EpisodeError> {
    Severity::from_proto(event.severity).ok_or_else(|| EpisodeError::InvalidEvent {
        event_id: event.event_id.clone(),
        field: "severity",
        reason: format!("unknown severity {}", event.severity),
    })
}

impl EpisodeState {
    /// Starts an episode from its first event (normally OPENED; an ESCALATED
    /// or RESOLVED event whose OPENED was lost also starts one). `now` is when
    /// alerting received the event.
    pub fn from_event(event: &AlertEvent, now: DateTime<Utc>) -> Result<(Self, Vec<AuditRecord>), EpisodeError> {
        if event.event_id.is_empty() {
            return Err(EpisodeError::InvalidEvent {
                event_id: String::new(),
                field: "event_id",
                reason: "must not be empty".into(),
            });
        }
        let episode_id = EpisodeId::new(event.episode_id.clone()).map_err(|e| match e {
            EpisodeError::InvalidEvent { field, reason, .. } => {
                EpisodeError::InvalidEvent { event_id: event.event_id.clone(), field, reason }
            }
            other => other,
        })?;
        let patient_id = PatientId::new(event.patient_id.clone()).map_err(|e| EpisodeError::InvalidEvent {
            event_id: event.event_id.clone(),
            field: "patient_id",
            reason: e.to_string(),
        })?;
        let kind = kind_of(event)?;
        let severity = severity_of(event)?;
        let details = details_of(event)?;
        let mut state = EpisodeState {
            episode_id: episode_id.clone(),
            patient_id,
            opened_at: now,
            severity,
            severity_since: now,
            details,
            acks: Vec::new(),
            snooze: None,
            resolved_at: None,
            issued: Vec::new(),
            applied_events: vec![event.event_id.clone()],
        };
        let mut audit = vec![AuditRecord {
            at: now,
            episode_id,
            entry: AuditEntry::EpisodeOpened { event_id: event.event_id.clone(), severity },
        }];
        if kind == AlertEventKind::Resolved {
            state.resolved_at = Some(now);
            audit.push(state.record(now, AuditEntry::EpisodeResolved { event_id: event.event_id.clone() }));
        }
        Ok((state, audit))
    }

    fn record(&self, at: DateTime<Utc>, entry: AuditEntry) -> AuditRecord {
        AuditRecord { at, episode_id: self.episode_id.clone(), entry }
    }

    /// Applies a further alert event. A redelivered event changes nothing and
    /// returns no record; late or out-of-order events are recorded as ignored.
    pub fn apply_event(&mut self, event: &AlertEvent, now: DateTime<Utc>) -> Result<Vec<AuditRecord>, EpisodeError> {
        if event.episode_id != self.episode_id.as_str() {
            return Err(EpisodeError::WrongEpisode {
                event_id: event.event_id.clone(),
                expected: self.episode_id.to_string(),
                got: event.episode_id.chars().take(128).collect(),
            });
        }
        if self.applied_events.contains(&event.event_id) {
            return Ok(Vec::new());
        }
        let kind = kind_of(event)?;
        let severity = severity_of(event)?;
        let eid = event.event_id.clone();
        let ignore = |s: &Self, reason: &str| {
            vec![s.record(now, AuditEntry::EventIgnored { event_id: eid.clone(), reason: reason.to_string() })]
        };
        let out = if self.resolved_at.is_some() {
            ignore(self, "episode already resolved")
        } else {
            match kind {
                AlertEventKind::Resolved => {
                    self.resolved_at = Some(now);
                    self.snooze = None;
                    vec![self.record(now, AuditEntry::EpisodeResolved { event_id: eid.clone() })]
                }
                AlertEventKind::Opened | AlertEventKind::Escalated | AlertEventKind::Unspecified => {
                    if severity <= self.severity {
                        ignore(self, "severity not above the current one (duplicate or out of order)")
                    } else {
                        let details = details_of(event)?;
                        let from = self.severity;
                        self.severity = severity;
                        self.severity_since = now;
                        self.details = details;
                        let mut out = vec![
                            self.record(now, AuditEntry::SeverityRaised { event_id: eid.clone(), from, to: severity }),
                        ];
                        if let Some(s) = self.snooze.take_if(|s| s.severity < severity) {
                            out.push(self.record(now, AuditEntry::SnoozeBroken { snoozed: s.severity, now: severity }));
                        }
                        out
                    }
                }
            }
        };
        self.applied_events.push(event.event_id.clone());
        Ok(out)
    }

    /// Whether the current severity is acknowledged.
    pub fn is_acknowledged(&self) -> bool {
        self.acks.iter().any(|a| a.severity >= self.severity)
    }

    /// Whether a snooze hides the current severity at `now`.
    pub fn is_snoozed(&self, now: DateTime<Utc>) -> bool {
        self.snooze.as_ref().is_some_and(|s| now < s.until && self.severity <= s.severity)
    }

    /// Records an acknowledgment (idempotent per physician and severity).
    /// `sent_for` is the severity the link or SMS code was sent for (`None` for
    /// the web application, which shows the current state): a message sent
    /// before the severity rose cannot acknowledge the rise.
    pub fn acknowledge(
        &mut self,
        by: PhysicianId,
        via: AckVia,
        sent_for: Option<Severity>,
        now: DateTime<Utc>,
    ) -> Result<Option<AuditRecord>, EpisodeError> {
        if self.resolved_at.is_some() {
            return Err(EpisodeError::AlreadyResolved(self.episode_id.to_string()));
        }
        let severity = self.severity;
        if let Some(sent_for) = sent_for
            && sent_for < severity
        {
            return Err(EpisodeError::SeverityRose { sent_for, now: severity });
        }
        if self.acks.iter().any(|a| a.by == by && a.severity >= severity) {
            return Ok(None);
        }
        self.acks.push(Acknowledgment { by: by.clone(), at: now, via, severity });
        Ok(Some(self.record(now, AuditEntry::Acknowledged { by, via, severity })))
    }

    /// Snoozes the episode until `until` (at most [`MAX_SNOOZE`] from `now`).
    pub fn snooze(
        &mut self,
        by: PhysicianId,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<AuditRecord, EpisodeError> {
        if self.resolved_at.is_some() {
            return Err(EpisodeError::AlreadyResolved(self.episode_id.to_string()));
        }
        if until <= now || until - now > MAX_SNOOZE {
            return Err(EpisodeError::InvalidSnooze { until });
        }
        let severity = self.severity;
        self.snooze = Some(Snooze { by: by.clone(), until, severity });
        Ok(self.record(now, AuditEntry::Snoozed { by, until, severity }))
    }

    /// Whether a key was already issued.
    pub fn was_issued(&self, key: &NotificationKey) -> bool {
        self.issued.iter().any(|i| &i.key == key)
    }

    /// Whether `channel` failed permanently for `recipient` in this episode
    /// (a fallback to the other channel was issued in its place).
    pub fn channel_failed(&self, recipient: &PhysicianId, channel: Channel) -> bool {
        self.issued.iter().any(|i| &i.recipient == recipient && i.fallback_from == Some(channel))
    }

    /// Whether every notification issued for `step` on a channel failed for
    /// good (`false` when none was issued): nobody was told at that step.
    pub fn step_undeliverable(&self, step: Step) -> bool {
        let mut on_channels = self.issued.iter().filter(|i| i.step == step && matches!(i.route, Route::Channel(_)));
        let mut any = false;
        let all = on_channels.all(|i| {
            any = true;
            i.failed
        });
        any && all
    }

    /// Marks the notification `key` as failed for good (see [`Issued::failed`]).
    pub fn record_failed(&mut self, key: &NotificationKey) {
        if let Some(i) = self.issued.iter_mut().find(|i| &i.key == key) {
            i.failed = true;
        }
    }

    /// The (recipient, channel) pairs paged so far, in first-paged order,
    /// fallbacks included and channels that failed permanently excluded.
    pub fn paged(&self) -> Vec<(PhysicianId, Channel)> {
        let mut out: Vec<(PhysicianId, Channel)> = Vec::new();
        for i in &self.issued {
            if let (Route::Channel(c), true) = (i.route, i.step.is_page())
                && !self.channel_failed(&i.recipient, c)
                && !out.iter().any(|(r, ch)| *r == i.recipient && *ch == c)
            {
                out.push((i.recipient.clone(), c));
            }
        }
        out
    }
}
