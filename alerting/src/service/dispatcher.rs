//! The outbox dispatcher: claims due rows under a lease, sends each one
//! once, and records the outcome right after the send in one short
//! transaction (sent / retry at / failed + fallback).
//!
//! A transient failure keeps the row pending with its next attempt time and
//! attempt count ([`crate::retry::RetryPolicy`]: capped exponential backoff
//! with jitter, for up to the retry horizon, 24 h by default), is audited
//! (`DeliveryAttempt` with `retry_at`) and counted
//! (`vitalwatch_notification_retries_total{channel}`). Once it has lasted
//! `fallback_after`, the same step is also queued on the other channel
//! (`FallbackWhileRetrying`). Escalation does not wait: the planner's rungs
//! run on their own times. Only a permanent failure (or the horizon) ends a
//! delivery (`vitalwatch_notifications_failed_total{channel,kind}`): the
//! other channel is tried, or else the episode is re-planned at once and the
//! next rung (the deputy) is paged.
//!
//! Delivery is at-least-once with deterministic idempotency keys: a
//! dispatcher killed after the provider accepted a message but before the
//! "sent" row committed leaves the row claimed; after the lease another
//! dispatcher sends it again with the SAME Message-ID (email) or
//! Idempotency-Key (webhook SMS), so the downstream can drop the copy. This
//! window (one provider round trip plus one small commit) cannot be closed
//! without a transactional provider; it is kept as short as possible.

use futures::StreamExt as _;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use vitalwatch_platform::shutdown::CancellationToken;

use super::Alerting;
use crate::audit::{AuditEntry, AuditRecord};
use crate::caps::{DigestEntry, DigestItemStatus};
use crate::episode::EpisodeState;
use crate::notification::{Notification, Step};
use crate::notifier::DeliveryContext;
use crate::retry::RetryDecision;
use crate::store::{Claimed, Completion, StoreError};
use crate::team::Physician;
use crate::transport::{DeliveryError, Outbound, Receipt};

/// Whether a page is still needed: not if the episode is resolved or the
/// step's severity is acknowledged (the all-clear always goes).
fn still_needed(n: &Notification, episode: &EpisodeState) -> Option<&'static str> {
    let severity = n.step.severity()?;
    if episode.resolved_at.is_some() {
        return Some("episode resolved before delivery");
    }
    if episode.acks.iter().any(|a| a.severity >= severity) {
        return Some("episode acknowledged before delivery");
    }
    None
}

/// Claims and sends one batch; returns how many rows were claimed.
pub async fn dispatch_once(a: &Alerting) -> Result<usize, StoreError> {
    let now = a.clock.now();
    let lease = Duration::from_std(a.config.lease).unwrap_or(Duration::seconds(60));
    let claimed = a.store.claim(&a.config.worker_id, now, now + lease, a.config.batch).await?;
    let n = claimed.len();
    // Deliveries overlap (SMTP round trips, gateway calls, chart rendering);
    // each one records its own outcome. A store error is returned after all
    // settled; what did not complete is re-claimed when its lease expires.
    let results: Vec<Result<(), StoreError>> =
        futures::stream::iter(claimed.into_iter().map(|c| deliver(a, c))).buffer_unordered(CONCURRENCY).collect().await;
    results.into_iter().collect::<Result<(), StoreError>>()?;
    Ok(n)
}

/// Notifications one dispatcher delivers at the same time. Measured: one at
/// a time, a dispatcher sent about 20 emails a second (48 ms each, mostly the
/// SMTP exchange), so a burst of alerts queued for seconds.
const CONCURRENCY: usize = 8;

/// One attempt, bounded to three quarters of the lease so that its outcome
/// is recorded before another dispatcher may take the row over (which would
/// send it a second time). An attempt cut short is a transient failure.
async fn attempt_within_lease(
    a: &Alerting,
    n: &Notification,
    message: &Outbound,
    attempt: u32,
    now: DateTime<Utc>,
) -> (Result<Receipt, DeliveryError>, AuditRecord) {
    let limit = a.config.lease.mul_f64(0.75);
    match tokio::time::timeout(limit, a.notifier.attempt(n, message, attempt, now)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let transport = a.notifier.transport_for(n.channel).map_or("none", |t| t.name());
            let err = DeliveryError::transient(
                transport,
                format!("no outcome within {limit:?} (three quarters of the lease)"),
            );
            let record = a.notifier.attempt_record(n, transport, attempt, now, &Err(err.clone()));
            (Err(err), record)
        }
    }
}

async fn deliver(a: &Alerting, c: Claimed) -> Result<(), StoreError> {
    if c.notification.step == Step::Digest {
        return deliver_digest(a, c).await;
    }
    let n = &c.notification;
    let attempt = c.attempts + 1;
    let ctx = a.store.render_context(n).await?;
    let (Some(episode), Some(recipient)) = (&ctx.episode, &ctx.recipient) else {
        let error = "episode or recipient no longer exists".to_string();
        failed_metric(n, "no_recipient");
        let audit = [failed_record(a, n, &error)];
        return a
            .store
            .complete(&n.key, attempt, Completion::Failed { error, fallback: None }, &audit, a.clock.now())
            .await;
    };
    if let Some(reason) = still_needed(n, episode) {
        tracing::debug!(key = %n.key, reason, "notification cancelled");
        return a
            .store
            .complete(&n.key, c.attempts, Completion::Cancelled { reason: reason.into() }, &[], a.clock.now())
            .await;
    }
    let dctx = DeliveryContext { episode, recipient, ack_code: ctx.ack_code.as_ref(), history: &ctx.history };
    let now = a.clock.now();
    let (result, record) = match a.notifier.compose(n, &dctx, now) {
        Ok(message) => attempt_within_lease(a, n, &message, attempt, now).await,
        Err(e) => {
            let err = DeliveryError::permanent("render", e.to_string());
            let record = AuditRecord {
                at: now,
                episode_id: n.episode_id.clone(),
                entry: AuditEntry::DeliveryFailed { key: n.key.clone(), error: err.message.clone() },
            };
            (Err(err), record)
        }
    };
    // Record the outcome immediately: the shorter this gap, the smaller the
    // at-least-once window.
    let done = a.clock.now();
    match result {
        Ok(receipt) => {
            a.store
                .complete(
                    &n.key,
                    attempt,
                    Completion::Sent { provider_message_id: receipt.provider_message_id },
                    &[record],
                    done,
                )
                .await
        }
        Err(e) => {
            let (kind, error) = match retry_or_fail(a, n, &e, attempt, now) {
                Ok(retry_at) => {
                    let mut audit = vec![record];
                    // The page is not through yet: tell the recipient on the
                    // other channel meanwhile (this one keeps being retried).
                    let other = n.channel.other();
                    let standby = (a.notifier.retry_policy().fallback_due(n.due_at, now)
                        && can_fall_back(a, n, recipient)
                        && !episode.was_issued(&n.fallback().key))
                    .then(|| n.fallback());
                    if let Some(f) = &standby {
                        tracing::warn!(key = %n.key, fallback = %f.key, "delivery still failing, also sending on the other channel");
                        audit.push(AuditRecord {
                            at: done,
                            episode_id: n.episode_id.clone(),
                            entry: AuditEntry::FallbackWhileRetrying {
                                retrying: n.key.clone(),
                                fallback: f.key.clone(),
                                from: n.channel,
                                to: other,
                            },
                        });
                    }
                    let completion = Completion::Retry { retry_at, error: e.message.clone(), fallback: standby };
                    return a.store.complete(&n.key, attempt, completion, &audit, done).await;
                }
                Err(failure) => failure,
            };
            failed_metric(n, kind);
            let other = n.channel.other();
            let fallback = can_fall_back(a, n, recipient).then(|| n.fallback());
            let mut audit = vec![record];
            match &fallback {
                Some(f) => {
                    tracing::warn!(key = %n.key, fallback = %f.key, kind, "delivery failed, falling back to the other channel");
                    audit.push(AuditRecord {
                        at: done,
                        episode_id: n.episode_id.clone(),
                        entry: AuditEntry::FallbackScheduled {
                            failed: n.key.clone(),
                            fallback: f.key.clone(),
                            from: n.channel,
                            to: other,
                        },
                    });
                }
                None => {
                    tracing::error!(key = %n.key, kind, "notification could not be delivered on this channel; re-planning the episode");
                    audit.push(failed_record(a, n, &error));
                }
            }
            a.store.complete(&n.key, attempt, Completion::Failed { error, fallback }, &audit, done).await
        }
    }
}

/// Whether the same step can go out on the other channel: not for a fallback
/// or a digest, and only if the recipient and a transport have that channel.
fn can_fall_back(a: &Alerting, n: &Notification, recipient: &Physician) -> bool {
    let other = n.channel.other();
    n.fallback_from.is_none()
        && n.step != Step::Digest
        && recipient.reachable_on(other)
        && a.notifier.transport_for(other).is_some()
}

/// After failed attempt `attempt` (started at `now`): the time of the next
/// attempt for a transient failure within the retry horizon (counted in
/// `vitalwatch_notification_retries_total`), else why the delivery ends
/// (`kind` label of `vitalwatch_notifications_failed_total`) and the error to
/// record.
fn retry_or_fail(
    a: &Alerting,
    n: &Notification,
    e: &DeliveryError,
    attempt: u32,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, (&'static str, String)> {
    if !e.is_transient() {
        return Err(("permanent", e.message.clone()));
    }
    match a.notifier.retry_policy().decide(attempt, n.key.as_str(), e.retry_after, n.due_at, now) {
        RetryDecision::RetryAt(at) => {
            metrics::counter!("vitalwatch_notification_retries_total", "channel" => n.channel.as_str()).increment(1);
            Ok(at)
        }
        RetryDecision::GiveUp => {
            let hours = a.notifier.retry_policy().horizon_ms / 3_600_000;
            Err(("horizon", format!("still failing after the {hours} h retry horizon: {}", e.message)))
        }
    }
}

fn failed_metric(n: &Notification, kind: &'static str) {
    metrics::counter!("vitalwatch_notifications_failed_total", "channel" => n.channel.as_str(), "kind" => kind)
        .increment(1);
}

/// Where an episode listed in a digest stands now.
fn digest_status(entry: &DigestEntry, episode: &EpisodeState) -> DigestItemStatus {
    if let Some(at) = episode.resolved_at {
        return DigestItemStatus::Resolved { at };
    }
    match episode.acks.iter().find(|ack| ack.severity >= entry.severity) {
        Some(ack) => DigestItemStatus::Acknowledged { by: ack.by.clone(), at: ack.at },
        None => DigestItemStatus::Open,
    }
}

/// Sends one digest email: lists its entries with the current status of
/// their episodes (acknowledged and resolved ones are kept, marked, without
/// an acknowledgment link), then records the outcome like any outbox row.
/// Email only: a digest has no SMS fallback.
async fn deliver_digest(a: &Alerting, c: Claimed) -> Result<(), StoreError> {
    let n = &c.notification;
    let attempt = c.attempts + 1;
    let entries = a.store.digest_entries(&n.key).await?;
    let Some(recipient) = a.store.render_context(n).await?.recipient else {
        let error = "digest recipient no longer exists".to_string();
        failed_metric(n, "no_recipient");
        let audit = [failed_record(a, n, &error)];
        return a
            .store
            .complete(&n.key, attempt, Completion::Failed { error, fallback: None }, &audit, a.clock.now())
            .await;
    };
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(episode) = a.store.episode(&e.episode_id).await? {
            let status = digest_status(&e, &episode);
            items.push((e, status));
        }
    }
    if items.is_empty() {
        let reason = "digest lists no existing episode".to_string();
        return a.store.complete(&n.key, c.attempts, Completion::Cancelled { reason }, &[], a.clock.now()).await;
    }
    let now = a.clock.now();
    let (result, record) = match a.notifier.compose_digest(n, &recipient, items.clone(), now) {
        Ok(message) => attempt_within_lease(a, n, &message, attempt, now).await,
        Err(e) => {
            let err = DeliveryError::permanent("render", e.to_string());
            (Err(err.clone()), failed_record(a, n, &err.message))
        }
    };
    let done = a.clock.now();
    match result {
        Ok(receipt) => {
            let mut audit = vec![record];
            audit.extend(items.iter().map(|(e, status)| {
                AuditRecord {
                    at: done,
                    episode_id: e.episode_id.clone(),
                    entry: AuditEntry::DigestDelivered {
                        digest: n.key.clone(),
                        key: e.key.clone(),
                        recipient: recipient.id.clone(),
                        status: match status {
                            DigestItemStatus::Open => "open",
                            DigestItemStatus::Acknowledged { .. } => "acknowledged",
                            DigestItemStatus::Resolved { .. } => "resolved",
                        }
                        .to_string(),
                    },
                }
            }));
            a.store
                .complete(
                    &n.key,
                    attempt,
                    Completion::Sent { provider_message_id: receipt.provider_message_id },
                    &audit,
                    done,
                )
                .await
        }
        Err(e) => {
            let (completion, audit) = match retry_or_fail(a, n, &e, attempt, now) {
                Ok(retry_at) => {
                    (Completion::Retry { retry_at, error: e.message.clone(), fallback: None }, vec![record])
                }
                Err((kind, error)) => {
                    tracing::error!(key = %n.key, kind, "digest could not be delivered");
                    failed_metric(n, kind);
                    let failed = failed_record(a, n, &error);
                    (Completion::Failed { error, fallback: None }, vec![record, failed])
                }
            };
            a.store.complete(&n.key, attempt, completion, &audit, done).await
        }
    }
}

fn failed_record(a: &Alerting, n: &Notification, error: &str) -> AuditRecord {
    AuditRecord {
        at: a.clock.now(),
        episode_id: n.episode_id.clone(),
        entry: AuditEntry::DeliveryFailed { key: n.key.clone(), error: error.to_string() },
    }
}

/// Dispatches until `shutdown`; when idle, waits for `outbox_poll_ms` or
/// until this replica queued outbox rows (rows queued by other replicas, and
/// retries, are found by the poll).
pub async fn run(a: Arc<Alerting>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let idle = match dispatch_once(&a).await {
            Ok(n) => n == 0,
            Err(e) => {
                tracing::warn!(message = "Outbox dispatch failed; retrying.", error = %e);
                true
            }
        };
        if idle {
            tokio::select! {
                _ = tokio::time::sleep(a.config.poll) => {}
                _ = a.outbox_ready.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
