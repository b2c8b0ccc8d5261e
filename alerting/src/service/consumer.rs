//! Alert events from the bus to episode transitions. Offsets are committed
//! only after the transitions of a batch are committed in the database; a
//! redelivered event is absorbed by the episode state (applied event ids)
//! and by the outbox's unique notification keys.
//!
//! An event that can never be applied (it does not decode, breaks the
//! contract, or the database refuses its data for good) goes to the
//! dead-letter topic with the reason, and the partition moves on. A transient
//! failure, and any other permanent one (nothing to do with the event's
//! data), is retried: an alert is never dropped because the database is away.

use std::time::Duration;

use prost::Message as _;
use vitalwatch_platform::bus::dead_letter::{DeadLetters, DeadReason};
use vitalwatch_platform::bus::{CommitTracker, Consumer, Message, next_batch, positions};
use vitalwatch_platform::retry::{Backoff, Class, RetryError, retry};
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_schemas::proto::AlertEvent;

use super::Alerting;
use crate::episode::EpisodeId;
use crate::store::{Action, Applied, StoreError};

/// Why one message was skipped.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not an `AlertEvent`.
    #[error("undecodable alert event: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Invalid episode id.
    #[error(transparent)]
    Episode(#[from] crate::episode::EpisodeError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies one alert event (decoded) to its episode.
pub async fn handle_event(a: &Alerting, event: AlertEvent) -> Result<Applied, EventError> {
    let episode = EpisodeId::new(event.episode_id.clone())?;
    let now = a.clock.now();
    let applied = a.store.transition(&episode, Action::Event(Box::new(event)), &a.options, now).await?;
    tracing::debug!(episode = %episode, queued = applied.outbox.len(), "alert event applied");
    if !applied.outbox.is_empty() {
        a.outbox_ready.notify_one();
    }
    Ok(applied)
}

/// Gives up on a message: to the dead-letter topic if there is one, else
/// logged and skipped. False if shutdown came before the bus took it.
async fn give_up(
    m: &Message,
    reason: DeadReason,
    error: &str,
    dead_letters: Option<&DeadLetters>,
    shutdown: &CancellationToken,
) -> bool {
    match dead_letters {
        Some(d) => d.send(m, reason, error, shutdown).await.is_ok(),
        None => {
            tracing::error!(message = "Alert event skipped.", reason = reason.as_str(), topic = %m.topic, partition = m.partition, offset = m.offset, error = %error);
            true
        }
    }
}

/// Handles one bus message, retrying transient store failures until
/// `shutdown`. Returns false if shutdown interrupted it (do not commit).
async fn handle_message(
    a: &Alerting,
    m: &Message,
    dead_letters: Option<&DeadLetters>,
    shutdown: &CancellationToken,
) -> bool {
    let event = match AlertEvent::decode(m.payload.as_slice()) {
        Ok(e) => e,
        Err(e) => {
            metrics::counter!("vitalwatch_undecodable_total", "role" => "alerting").increment(1);
            return give_up(m, DeadReason::Undecodable, &e.to_string(), dead_letters, shutdown).await;
        }
    };
    // Never drop an alert because the database is away: retry (the consumer
    // lag shows the stall); what is wrong with the event itself is permanent.
    let classify = |e: &EventError| match e {
        EventError::Store(e) if e.is_transient() || matches!(e, StoreError::Permanent(_)) => Class::Transient,
        _ => Class::Permanent,
    };
    let on_retry = |e: &EventError, _| {
        tracing::warn!(message = "Alert event not stored yet; retrying.", topic = %m.topic, partition = m.partition, offset = m.offset, error = %e);
    };
    let event_ref = &event;
    let apply = move || handle_event(a, event_ref.clone());
    match retry(&STORE_BACKOFF, Some(shutdown), classify, on_retry, apply).await {
        Ok(_) => {
            metrics::counter!("vitalwatch_alerting_events_total", "outcome" => "applied").increment(1);
            // No patient data: the episode, the event and the reading's trace.
            tracing::info!(
                message = "Alert event applied.",
                trace_id = %event.trace_id,
                episode_id = %event.episode_id,
                event_id = %event.event_id
            );
            true
        }
        Err(RetryError::Permanent(e)) => {
            metrics::counter!("vitalwatch_alerting_events_total", "outcome" => "rejected").increment(1);
            let reason = match &e {
                EventError::Store(StoreError::Rejected(_)) => DeadReason::PermanentStoreError,
                EventError::Decode(_) => DeadReason::Undecodable,
                _ => DeadReason::InvalidRecord,
            };
            give_up(m, reason, &e.to_string(), dead_letters, shutdown).await
        }
        Err(_) => false,
    }
}

/// Applying an event while the database fails: from 100 ms, doubling, at most 10 s apart.
const STORE_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));

/// Applies one episode's events in order; false if shutdown interrupted.
async fn apply_in_order(
    a: &Alerting,
    msgs: &[&Message],
    dead_letters: Option<&DeadLetters>,
    shutdown: &CancellationToken,
) -> bool {
    for m in msgs {
        if !handle_message(a, m, dead_letters, shutdown).await {
            return false;
        }
    }
    true
}

/// Episodes whose events are applied at the same time (events of one episode
/// stay in order).
const CONCURRENCY: usize = 4;

/// Consumes until `shutdown`. A batch's events are grouped by episode: the
/// groups are applied concurrently, each group in order. The batch is
/// committed once every event is applied; if shutdown interrupts it, nothing
/// is committed and the bus redelivers (applying an event twice is a no-op).
/// Events that can never be applied are logged and skipped; see
/// [`run_with_dead_letters`] to keep them.
pub async fn run(a: &Alerting, consumer: &mut dyn Consumer, shutdown: &CancellationToken) -> anyhow::Result<()> {
    run_with_dead_letters(a, consumer, None, shutdown).await
}

/// [`run`], sending the events that can never be applied to `dead_letters`.
pub async fn run_with_dead_letters(
    a: &Alerting,
    consumer: &mut dyn Consumer,
    dead_letters: Option<&DeadLetters>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    // Asynchronous commits after each batch, a synchronous one at the end:
    // the next alert does not wait for the broker's round trip.
    let mut commits = CommitTracker::default();
    while !shutdown.is_cancelled() {
        // Alert events are few and urgent: a batch is what has arrived, no
        // wait for more.
        let Some(batch) = next_batch(consumer, 100, Duration::ZERO, shutdown).await else {
            break;
        };
        if batch.is_empty() {
            continue;
        }
        let mut groups: Vec<(String, Vec<&Message>)> = Vec::new();
        for m in &batch {
            let key = AlertEvent::decode(m.payload.as_slice()).map(|e| e.episode_id).unwrap_or_default();
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, g)) => g.push(m),
                None => groups.push((key, vec![m])),
            }
        }
        let work: Vec<_> = groups.iter().map(|(_, msgs)| apply_in_order(a, msgs, dead_letters, shutdown)).collect();
        let applied: Vec<bool> = futures::stream::iter(work).buffer_unordered(CONCURRENCY).collect().await;
        if applied.iter().any(|ok| !ok) {
            break; // shutting down mid-batch: commit nothing, the bus redelivers
        }
        metrics::histogram!("vitalwatch_consumer_batch_size", "role" => "alerting").record(batch.len() as f64);
        metrics::counter!("vitalwatch_consumer_messages_total", "role" => "alerting").increment(batch.len() as u64);
        if let Err(e) = commits.after_batch(consumer, &positions(&batch)).await {
            // The transitions are stored: a failed commit only means redelivery.
            tracing::warn!(message = "Offset commit failed.", error = %e);
        }
    }
    if let Err(e) = commits.finish(consumer).await {
        tracing::warn!(message = "Final offset commit failed; the last events will be redelivered.", error = %e);
    }
    Ok(())
}
