//! Re-plans episodes whose `next_wakeup` has passed, so that escalation and
//! reminders happen without new events, queues the digest emails that are
//! due, and updates the `vitalwatch_notifications_awaiting_retry` gauge. Safe on several replicas: the transition locks the episode row,
//! the outbox keys are unique, and a physician's digest is formed by one
//! replica at a time.

use std::sync::Arc;

use vitalwatch_platform::shutdown::CancellationToken;

use super::Alerting;
use crate::store::{Action, StoreError};

/// Episodes re-planned per tick, at most.
pub const TICK_LIMIT: usize = 200;

/// Re-plans every due episode once, then queues due digests; returns how
/// many episodes were re-planned.
pub async fn tick(a: &Alerting) -> Result<usize, StoreError> {
    let now = a.clock.now();
    let due = a.store.due_episodes(now, TICK_LIMIT).await?;
    let mut n = 0;
    for episode in due {
        match a.store.transition(&episode, Action::Replan, &a.options, a.clock.now()).await {
            Ok(applied) => {
                n += 1;
                if !applied.outbox.is_empty() {
                    a.outbox_ready.notify_one();
                }
                tracing::debug!(episode = %episode, queued = applied.outbox.len(), "episode re-planned");
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(message = "Episode re-plan failed.", episode = %episode, error = %e)
            }
        }
    }
    match a.store.awaiting_retry().await {
        Ok(waiting) => metrics::gauge!("vitalwatch_notifications_awaiting_retry").set(waiting as f64),
        Err(e) => tracing::debug!(error = %e, "cannot count the notifications awaiting a retry"),
    }
    let digests = a.store.form_digests(&a.options.caps, a.clock.now(), TICK_LIMIT).await?;
    if !digests.is_empty() {
        a.outbox_ready.notify_one();
        tracing::debug!(count = digests.len(), "digests queued");
    }
    Ok(n)
}

/// Ticks every `scheduler_poll` until `shutdown`.
pub async fn run(a: Arc<Alerting>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(e) = tick(&a).await {
            tracing::warn!(message = "Escalation scheduler tick failed.", error = %e);
        }
        tokio::select! {
            _ = tokio::time::sleep(a.config.scheduler_poll) => {}
            _ = shutdown.cancelled() => break,
        }
    }
}
