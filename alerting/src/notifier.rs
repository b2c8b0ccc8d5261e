//! Composing and sending notifications: renders a [`Notification`] for its
//! channel, sends it through the channel's [`Transport`], retries transient
//! failures with backoff (up to the retry horizon) and falls back to the
//! other channel after a permanent failure (or once the horizon has passed).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use crate::ack::{AckCode, AckCodeGenerator, AckSigner};
use crate::audit::{AttemptOutcome, AuditEntry, AuditRecord};
use crate::caps::{DigestEntry, DigestItemStatus, DigestLine};
use crate::episode::EpisodeState;
use crate::i18n::Language;
use crate::notification::Notification;
use crate::render::RenderError;
use crate::render::email::{AlertEmailInput, render_alert_email, render_digest_email};
use crate::render::sms::render_sms;
use crate::retry::{RetryDecision, RetryPolicy};
use crate::severity::Channel;
use crate::team::Physician;
use crate::transport::{DeliveryError, EmailOut, Outbound, Receipt, SmsOut, Transport};

/// Error building or using a [`Notifier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifierError {
    /// Invalid configuration.
    #[error("invalid notifier configuration: {0}")]
    Config(String),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// No transport is configured for the channel.
    #[error("no transport configured for {0}")]
    NoTransport(Channel),
}

/// Notifier settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifierConfig {
    /// Sender mailbox, e.g. `vitalwatch <alerts@hospital.example>`.
    pub from: String,
    /// Acknowledgment endpoint; the token is appended as `?t=`.
    pub ack_base_url: String,
    /// Validity of acknowledgment links, hours.
    #[serde(default = "default_ttl")]
    pub ack_link_ttl_hours: u32,
    /// Domain used in Message-ID and Content-ID.
    pub id_domain: String,
    /// Retry timing.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Language of recipients whose directory entry names none
    /// (`alerting.default_language`).
    #[serde(default)]
    pub default_language: Language,
}

fn default_ttl() -> u32 {
    72
}

/// What the renderer needs besides the notification.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryContext<'a> {
    /// The episode.
    pub episode: &'a EpisodeState,
    /// The recipient.
    pub recipient: &'a Physician,
    /// The acknowledgment code assigned to (episode, recipient); when `None`,
    /// the first deterministic candidate is used.
    pub ack_code: Option<&'a AckCode>,
    /// The last 14 days of the vital, for the email chart.
    pub history: &'a [(DateTime<Utc>, f64)],
}

/// The result of [`Notifier::deliver`].
#[derive(Debug, Clone, Default)]
pub struct DeliveryReport {
    /// The notification that got through (the original or its fallback) and the receipt.
    pub delivered: Option<(Notification, Receipt)>,
    /// The fallback notification, if one was tried: record it as issued.
    pub fallback: Option<Notification>,
    /// Attempts made, all channels together.
    pub attempts: u32,
    /// The last error, if nothing got through.
    pub error: Option<DeliveryError>,
    /// Audit records of every attempt and decision.
    pub audit: Vec<AuditRecord>,
}

/// Renders and sends notifications.
pub struct Notifier {
    email: Arc<dyn Transport>,
    sms: Option<Arc<dyn Transport>>,
    signer: AckSigner,
    codes: AckCodeGenerator,
    from: Mailbox,
    config: NotifierConfig,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("email", &self.email.name())
            .field("sms", &self.sms.as_ref().map(|s| s.name()))
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Builds a notifier from its settings, signing keys and transports.
    pub fn new(
        config: NotifierConfig,
        signer: AckSigner,
        codes: AckCodeGenerator,
        email: Arc<dyn Transport>,
        sms: Option<Arc<dyn Transport>>,
    ) -> Result<Self, NotifierError> {
        let from: Mailbox =
            config.from.parse().map_err(|e| NotifierError::Config(format!("from {:?}: {e}", config.from)))?;
        if !(config.ack_base_url.starts_with("https://") || config.ack_base_url.starts_with("http://")) {
            return Err(NotifierError::Config("ack_base_url must be an http(s) URL".into()));
        }
        if config.id_domain.is_empty() || config.id_domain.contains(['<', '>', '@', ' ']) {
            return Err(NotifierError::Config("id_domain must be a plain domain name".into()));
        }
        if email.channel() != Channel::Email || sms.as_ref().is_some_and(|s| s.channel() != Channel::Sms) {
            return Err(NotifierError::Config("transports are plugged into the wrong channel".into()));
        }
        Ok(Self { email, sms, signer, codes, from, config })
    }

    /// The transport of a channel.
    pub fn transport_for(&self, channel: Channel) -> Option<&Arc<dyn Transport>> {
        match channel {
            Channel::Email => Some(&self.email),
            Channel::Sms => self.sms.as_ref(),
        }
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    /// The deployment's language: recipients without one of their own get it.
    pub fn default_language(&self) -> Language {
        self.config.default_language
    }

    /// The language `recipient` reads: their own, else the deployment's.
    pub fn language_of(&self, recipient: &Physician) -> Language {
        recipient.language_or(self.config.default_language)
    }

    /// Renders a notification for its channel, with a signed acknowledgment
    /// link (emails) and the acknowledgment code.
    pub fn compose(
        &self,
        n: &Notification,
        ctx: &DeliveryContext<'_>,
        now: DateTime<Utc>,
    ) -> Result<Outbound, NotifierError> {
        let code = match ctx.ack_code {
            Some(c) => c.clone(),
            None => self.codes.candidate(&n.episode_id, &n.recipient, 0),
        };
        match n.channel {
            Channel::Email => {
                let link = n.step.is_page().then(|| {
                    let expires = now + Duration::hours(i64::from(self.config.ack_link_ttl_hours.max(1)));
                    let (token, _) = self.signer.issue(n, expires);
                    AckSigner::link(&self.config.ack_base_url, &token)
                });
                let rendered = render_alert_email(&AlertEmailInput {
                    notification: n,
                    episode: ctx.episode,
                    recipient: ctx.recipient,
                    language: self.language_of(ctx.recipient),
                    ack_link: link.as_deref(),
                    ack_code: ctx.recipient.mobile.is_some().then_some(&code),
                    history: ctx.history,
                    id_domain: &self.config.id_domain,
                })?;
                let message = rendered.to_message(&self.from, ctx.recipient, now)?;
                Ok(Outbound::Email(EmailOut { key: n.key.to_string(), to: ctx.recipient.email.clone(), message }))
            }
            Channel::Sms => {
                let to =
                    ctx.recipient.mobile.clone().ok_or(RenderError::Recipient("the physician has no mobile number"))?;
                let body =
                    render_sms(n, ctx.episode, ctx.recipient, self.language_of(ctx.recipient), Some(&code), now)?;
                Ok(Outbound::Sms(SmsOut { key: n.key.to_string(), to, body }))
            }
        }
    }

    /// Renders the digest email `n` (step [`Step::Digest`]) for `recipient`:
    /// one line per entry with its episode's status, and a signed
    /// acknowledgment link for the episodes still open. The Message-ID derives
    /// from the digest key (see [`crate::caps::digest_key`]).
    pub fn compose_digest(
        &self,
        n: &Notification,
        recipient: &Physician,
        items: Vec<(DigestEntry, DigestItemStatus)>,
        now: DateTime<Utc>,
    ) -> Result<Outbound, NotifierError> {
        let expires = now + Duration::hours(i64::from(self.config.ack_link_ttl_hours.max(1)));
        let lines: Vec<DigestLine> = items
            .into_iter()
            .map(|(entry, status)| {
                let ack_link = (status == DigestItemStatus::Open).then(|| {
                    let target = Notification {
                        key: entry.key.clone(),
                        episode_id: entry.episode_id.clone(),
                        patient_id: entry.patient_id.clone(),
                        recipient: recipient.id.clone(),
                        channel: Channel::Email,
                        step: entry.step,
                        severity: entry.severity,
                        due_at: now,
                        deferred_from: None,
                        fallback_from: None,
                    };
                    let (token, _) = self.signer.issue(&target, expires);
                    AckSigner::link(&self.config.ack_base_url, &token)
                });
                DigestLine { entry, status, ack_link }
            })
            .collect();
        let rendered =
            render_digest_email(recipient, self.language_of(recipient), &lines, n.key.as_str(), &self.config.id_domain);
        let message = rendered.to_message(&self.from, recipient, now)?;
        Ok(Outbound::Email(EmailOut { key: n.key.to_string(), to: recipient.email.clone(), message }))
    }

    /// One delivery attempt (number `attempt`, from 1), classified, with its
    /// audit record. For outbox workers that schedule retries themselves.
    pub async fn attempt(
        &self,
        n: &Notification,
        message: &Outbound,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> (Result<Receipt, DeliveryError>, AuditRecord) {
        let transport = match self.transport_for(n.channel) {
            Some(t) => t,
            None => {
                let err = DeliveryError::permanent("none", format!("no transport configured for {}", n.channel));
                let record = self.attempt_record(n, "none", attempt, now, &Err(err.clone()));
                return (Err(err), record);
            }
        };
        let result = transport.send(message).await;
        let outcome = match &result {
            Ok(_) => "delivered",
            Err(e) if e.is_transient() => "transient",
            Err(_) => "permanent",
        };
        metrics::counter!(
            "vitalwatch_alerting_notifications_total",
            "channel" => n.channel.as_str(),
            "transport" => transport.name(),
            "outcome" => outcome
        )
        .increment(1);
        match &result {
            Ok(_) => {
                tracing::debug!(key = %n.key, transport = transport.name(), attempt, "delivered")
            }
            Err(e) => {
                tracing::debug!(key = %n.key, transport = transport.name(), attempt, kind = %e.kind, "delivery attempt failed")
            }
        }
        let record = self.attempt_record(n, transport.name(), attempt, now, &result);
        (result, record)
    }

    /// The audit record of one attempt and its outcome (for a transient
    /// failure, with the next attempt time of the retry policy).
    pub fn attempt_record(
        &self,
        n: &Notification,
        transport: &str,
        attempt: u32,
        now: DateTime<Utc>,
        result: &Result<Receipt, DeliveryError>,
    ) -> AuditRecord {
        let outcome = match result {
            Ok(r) => AttemptOutcome::Delivered { provider_message_id: r.provider_message_id.clone() },
            Err(e) if e.is_transient() => AttemptOutcome::Transient {
                error: e.message.clone(),
                retry_at: match self.config.retry.decide(attempt, n.key.as_str(), e.retry_after, n.due_at, now) {
                    RetryDecision::RetryAt(at) => Some(at),
                    RetryDecision::GiveUp => None,
                },
            },
            Err(e) => AttemptOutcome::Permanent { error: e.message.clone() },
        };
        AuditRecord {
            at: now,
            episode_id: n.episode_id.clone(),
            entry: AuditEntry::DeliveryAttempt {
                key: n.key.clone(),
                channel: n.channel,
                transport: transport.to_string(),
                attempt,
                outcome,
            },
        }
    }

    async fn send_with_retries(
        &self,
        n: &Notification,
        ctx: &DeliveryContext<'_>,
        report: &mut DeliveryReport,
    ) -> Result<Receipt, DeliveryError> {
        let message = match self.compose(n, ctx, Utc::now()) {
            Ok(m) => m,
            Err(e) => return Err(DeliveryError::permanent("render", e.to_string())),
        };
        // In process, the horizon runs from the first attempt.
        let n = &Notification { due_at: Utc::now(), ..n.clone() };
        let mut attempt = 1;
        loop {
            let now = Utc::now();
            let (result, record) = self.attempt(n, &message, attempt, now).await;
            report.attempts += 1;
            report.audit.push(record);
            match result {
                Ok(r) => return Ok(r),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => match self.config.retry.decide(attempt, n.key.as_str(), e.retry_after, n.due_at, now) {
                    RetryDecision::GiveUp => return Err(e),
                    RetryDecision::RetryAt(at) => {
                        tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
                        attempt += 1;
                    }
                },
            }
        }
    }

    /// Sends with in-process retries (until the policy's horizon, counted from
    /// the first attempt); after a permanent failure or at the horizon, falls back once to the other channel if the recipient has it.
    /// For the embedded mode and tests; outbox workers use [`Self::attempt`].
    pub async fn deliver(&self, n: &Notification, ctx: &DeliveryContext<'_>) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        let err = match self.send_with_retries(n, ctx, &mut report).await {
            Ok(r) => {
                report.delivered = Some((n.clone(), r));
                return report;
            }
            Err(e) => e,
        };
        let other = n.channel.other();
        if n.fallback_from.is_none() && ctx.recipient.reachable_on(other) && self.transport_for(other).is_some() {
            let fallback = n.fallback();
            tracing::warn!(key = %n.key, fallback = %fallback.key, kind = %err.kind, "delivery failed, falling back to the other channel");
            report.audit.push(AuditRecord {
                at: Utc::now(),
                episode_id: n.episode_id.clone(),
                entry: AuditEntry::FallbackScheduled {
                    failed: n.key.clone(),
                    fallback: fallback.key.clone(),
                    from: n.channel,
                    to: other,
                },
            });
            report.fallback = Some(fallback.clone());
            match self.send_with_retries(&fallback, ctx, &mut report).await {
                Ok(r) => {
                    report.delivered = Some((fallback, r));
                    return report;
                }
                Err(e2) => {
                    self.failed(&fallback, &e2, &mut report);
                    report.error = Some(e2);
                    return report;
                }
            }
        }
        self.failed(n, &err, &mut report);
        report.error = Some(err);
        report
    }

    fn failed(&self, n: &Notification, e: &DeliveryError, report: &mut DeliveryReport) {
        tracing::warn!(key = %n.key, kind = %e.kind, "notification could not be delivered");
        report.audit.push(AuditRecord {
            at: Utc::now(),
            episode_id: n.episode_id.clone(),
            entry: AuditEntry::DeliveryFailed { key: n.key.clone(), error: e.message.clone() },
        });
    }
}
