//! The `persist` role: a consumer-group member that writes observations into
//! the store in batches and commits bus offsets only after the database
//! committed. Redelivered duplicates are absorbed by the table's unique key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use vitalwatch_platform::bus::{Consumer, next_batch, positions};
use vitalwatch_platform::config::PersistSettings;
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::{Store, StoreError};
use vitalwatch_schemas::{Observation, proto};

/// Counters of the persist role.
#[derive(Debug, Default)]
pub struct PersistStats {
    /// Batches committed.
    pub batches: AtomicU64,
    /// Bus messages consumed and committed.
    pub messages: AtomicU64,
    /// Rows newly inserted.
    pub inserted: AtomicU64,
    /// Messages that were already stored (redeliveries).
    pub duplicates: AtomicU64,
    /// Messages that could not be decoded (skipped, logged with their offset).
    pub undecodable: AtomicU64,
    /// Database retries.
    pub db_retries: AtomicU64,
}

/// Runs until `shutdown` fires. The batch being written when it fires is
/// finished and committed first.
pub async fn run(
    consumer: &mut dyn Consumer,
    store: Arc<dyn Store>,
    settings: &PersistSettings,
    stats: Arc<PersistStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let wait = Duration::from_millis(settings.batch_wait_ms);
    while !shutdown.is_cancelled() {
        let Some(batch) = next_batch(consumer, settings.batch_size, wait, &shutdown).await else {
            break;
        };
        if batch.is_empty() {
            continue;
        }
        metrics::histogram!("vitalwatch_consumer_batch_size", "role" => "persist").record(batch.len() as f64);
        let mut obs = Vec::with_capacity(batch.len());
        for m in &batch {
            match proto::Observation::decode(m.payload.as_slice())
                .map_err(|e| e.to_string())
                .and_then(|p| Observation::from_proto(&p))
            {
                Ok(o) => obs.push(o),
                Err(e) => {
                    stats.undecodable.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("vitalwatch_undecodable_total", "role" => "persist").increment(1);
                    tracing::error!(
                        message = "Undecodable observation skipped.",
                        topic = %m.topic, partition = m.partition, offset = m.offset, error = %e
                    );
                }
            }
        }
        let Some(inserted) = insert_with_retry(store.as_ref(), &obs, &stats, &shutdown).await else {
            // Shutting down with the database unavailable: nothing committed, the bus redelivers.
            break;
        };
        let pos = positions(&batch);
        let mut delay = Duration::from_millis(100);
        loop {
            match consumer.commit(&pos).await {
                Ok(()) => break,
                Err(e) => {
                    // The rows are stored: a failed commit only means redelivery, which the unique key absorbs.
                    tracing::warn!(message = "Offset commit failed.", error = %e);
                    if shutdown.is_cancelled() || delay > Duration::from_secs(2) {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        let duplicates = obs.len() as u64 - inserted.min(obs.len() as u64);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.messages.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.inserted.fetch_add(inserted, Ordering::Relaxed);
        stats.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        metrics::counter!("vitalwatch_consumer_messages_total", "role" => "persist").increment(batch.len() as u64);
        metrics::counter!("vitalwatch_persist_rows_total").increment(inserted);
        metrics::counter!("vitalwatch_persist_duplicates_total").increment(duplicates);
    }
    tracing::info!(
        message = "Persist stopped.",
        batches = stats.batches.load(Ordering::Relaxed),
        inserted = stats.inserted.load(Ordering::Relaxed),
        duplicates = stats.duplicates.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn insert_with_retry(
    store: &dyn Store,
    obs: &[Observation],
    stats: &PersistStats,
    shutdown: &CancellationToken,
) -> Option<u64> {
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        match store.insert_observations(obs).await {
            Ok(n) => {
                metrics::histogram!("vitalwatch_persist_write_seconds").record(started.elapsed().as_secs_f64());
                return Some(n);
            }
            Err(e) => {
                stats.db_retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("vitalwatch_db_retries_total", "role" => "persist").increment(1);
                // Never skip a batch: keep retrying (the consumer lag shows the stall).
                match &e {
                    StoreError::Transient(_) => {
                        tracing::warn!(message = "Database write failed; retrying.", error = %e)
                    }
                    _ => tracing::error!(message = "Database write failed; retrying.", error = %e),
                }
                if shutdown.is_cancelled() {
                    return None;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
