//! The `persist` role: a consumer-group member that writes observations into
//! the store in batches and commits bus offsets only after the database
//! committed. Redelivered duplicates are absorbed by the table's unique key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message as _;
use vitalwatch_platform::bus::{CommitTracker, Consumer, next_batch, positions};
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

/// Runs until `shutdown` fires. The batches being written when it fires are
/// finished and committed first.
///
/// Up to `settings.concurrent_writes` batches are written at once (each on
/// its own database connection), so receiving and decoding the next batch,
/// and a second write, overlap the database round trips. Offsets are
/// committed strictly in batch order, each only after its batch and every
/// earlier one are stored: a crash loses nothing and redelivers at most the
/// batches in flight, which the unique key absorbs.
pub async fn run(
    consumer: &mut dyn Consumer,
    store: Arc<dyn Store>,
    settings: &PersistSettings,
    stats: Arc<PersistStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let wait = Duration::from_millis(settings.batch_wait_ms);
    let limit = settings.concurrent_writes.max(1);
    let mut commits = CommitTracker::default();
    let mut writes: std::collections::VecDeque<Write> = std::collections::VecDeque::new();
    let mut abandoned = false;
    'batches: while !shutdown.is_cancelled() {
        // Commit what is stored, in order; at the limit, wait for the oldest.
        while writes.front().is_some_and(|w| writes.len() >= limit || w.task.is_finished()) {
            let Some(w) = writes.pop_front() else { break };
            if !w.finish(consumer, &mut commits, &stats).await {
                abandoned = true;
                break 'batches;
            }
        }
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
        let (store, stats_w, shutdown_w) = (store.clone(), stats.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            let inserted = insert_with_retry(store.as_ref(), &obs, &stats_w, &shutdown_w).await?;
            // Counted as soon as the rows are stored (the commit follows at
            // the loop's next turn).
            let rows = obs.len() as u64;
            let duplicates = rows - inserted.min(rows);
            stats_w.inserted.fetch_add(inserted, Ordering::Relaxed);
            stats_w.duplicates.fetch_add(duplicates, Ordering::Relaxed);
            metrics::counter!("vitalwatch_persist_rows_total").increment(inserted);
            metrics::counter!("vitalwatch_persist_duplicates_total").increment(duplicates);
            Some(())
        });
        writes.push_back(Write { task, positions: positions(&batch), messages: batch.len() as u64 });
    }
    // Finish the writes in flight, in order (a write retries until shutdown
    // only while the database is down). After an abandoned write nothing more
    // is committed: a later batch's offsets would cover its unstored rows.
    if !abandoned {
        while let Some(w) = writes.pop_front() {
            if !w.finish(consumer, &mut commits, &stats).await {
                break;
            }
        }
    }
    if let Err(e) = commits.finish(consumer).await {
        tracing::warn!(message = "Final offset commit failed; the last messages will be redelivered.", error = %e);
    }
    tracing::info!(
        message = "Persist stopped.",
        batches = stats.batches.load(Ordering::Relaxed),
        inserted = stats.inserted.load(Ordering::Relaxed),
        duplicates = stats.duplicates.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A batch being written.
struct Write {
    task: tokio::task::JoinHandle<Option<()>>,
    positions: Vec<(String, i32, i64)>,
    messages: u64,
}

impl Write {
    /// Waits for the write and commits its offsets (asynchronously: the next
    /// batch does not wait for the broker; a lost commit only means
    /// redelivery, which the unique key absorbs). False if the write was
    /// abandoned (shutting down with the database down): nothing from here
    /// on may be committed.
    async fn finish(self, consumer: &mut dyn Consumer, commits: &mut CommitTracker, stats: &PersistStats) -> bool {
        match self.task.await {
            Ok(Some(())) => {}
            Ok(None) => return false,
            Err(e) => {
                tracing::error!(message = "A database write task failed; its batch is not committed.", error = %e);
                return false;
            }
        }
        if let Err(e) = commits.after_batch(consumer, &self.positions).await {
            tracing::warn!(message = "Offset commit failed.", error = %e);
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.messages.fetch_add(self.messages, Ordering::Relaxed);
        metrics::counter!("vitalwatch_consumer_messages_total", "role" => "persist").increment(self.messages);
        true
    }
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
