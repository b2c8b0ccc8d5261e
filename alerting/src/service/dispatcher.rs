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

use std::sync::Arc;

use chrono::Duration;
use vitalwatch_platform::shutdown::CancellationToken;

use super::Alerting;
use crate::audit::{AuditEntry, AuditRecord};
use crate::episode::EpisodeState;
use crate::notification::Notification;
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
    for c in claimed {
        deliver(a, c).await?;
    }
    Ok(n)
}

async fn deliver(a: &Alerting, c: Claimed) -> Result<(), StoreError> {
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

fn failed_record(a: &Alerting, n: &Notification, error: &str) -> AuditRecord {
    AuditRecord {
        at: a.clock.now(),
        episode_id: n.episode_id.clone(),
        entry: AuditEntry::DeliveryFailed { key: n.key.clone(), error: error.to_string() },
    }
}

/// Dispatches until `shutdown`; polls every `outbox_poll_ms` when idle.
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
                _ = shutdown.cancelled() => break,
            }
        }
    }
}
