//! The outbox dispatcher: claims due rows under a lease, sends each one
//! once, and records the outcome right after the send in one short
//! transaction (sent / retry at / failed + fallback).
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

use chrono::Duration;
use vitalwatch_platform::shutdown::CancellationToken;

use super::Alerting;
use crate::audit::{AuditEntry, AuditRecord};
use crate::caps::{DigestEntry, DigestItemStatus};
use crate::episode::EpisodeState;
use crate::notification::{Notification, Step};
use crate::notifier::DeliveryContext;
use crate::store::{Claimed, Completion, StoreError};
use crate::transport::DeliveryError;

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

async fn deliver(a: &Alerting, c: Claimed) -> Result<(), StoreError> {
    if c.notification.step == Step::Digest {
        return deliver_digest(a, c).await;
    }
    let n = &c.notification;
    let attempt = c.attempts + 1;
    let ctx = a.store.render_context(n).await?;
    let (Some(episode), Some(recipient)) = (&ctx.episode, &ctx.recipient) else {
        let error = "episode or recipient no longer exists".to_string();
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
        Ok(message) => a.notifier.attempt(n, &message, attempt, now).await,
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
            let retry_at = e
                .is_transient()
                .then(|| a.notifier.retry_policy().next_attempt_at(attempt, n.key.as_str(), e.retry_after, now))
                .flatten();
            if let Some(retry_at) = retry_at {
                return a
                    .store
                    .complete(
                        &n.key,
                        attempt,
                        Completion::Retry { retry_at, error: e.message.clone() },
                        &[record],
                        done,
                    )
                    .await;
            }
            let other = n.channel.other();
            let fallback = (n.fallback_from.is_none()
                && n.step != Step::Digest
                && recipient.reachable_on(other)
                && a.notifier.transport_for(other).is_some())
            .then(|| n.fallback());
            let mut audit = vec![record];
            match &fallback {
                Some(f) => {
                    tracing::warn!(key = %n.key, fallback = %f.key, kind = %e.kind, "delivery failed, falling back to the other channel");
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
                    tracing::error!(key = %n.key, kind = %e.kind, "notification could not be delivered on any channel");
                    audit.push(failed_record(a, n, &e.message));
                }
            }
            a.store
                .complete(&n.key, attempt, Completion::Failed { error: e.message.clone(), fallback }, &audit, done)
                .await
        }
    }
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
        Ok(message) => a.notifier.attempt(n, &message, attempt, now).await,
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
            let retry_at = e
                .is_transient()
                .then(|| a.notifier.retry_policy().next_attempt_at(attempt, n.key.as_str(), e.retry_after, now))
                .flatten();
            let (completion, audit) = match retry_at {
                Some(retry_at) => (Completion::Retry { retry_at, error: e.message.clone() }, vec![record]),
                None => {
                    tracing::error!(key = %n.key, kind = %e.kind, "digest could not be delivered");
                    let failed = failed_record(a, n, &e.message);
                    (Completion::Failed { error: e.message.clone(), fallback: None }, vec![record, failed])
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
