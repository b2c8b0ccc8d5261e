//! The `persist` role: a consumer-group member that writes observations into
//! the store in batches and commits bus offsets only after the database
//! committed. Redelivered duplicates are absorbed by the table's unique key.
//! It also consumes the device-status topic and keeps each device's latest
//! status (battery, signal, firmware, last heard) in `device_status`
//! (an upsert where the newest status time wins, so redelivery is harmless).
//!
//! A record that can never be written never blocks a partition: a record that
//! does not decode, and a row the database refuses for good
//! ([`StoreError::Rejected`]: a data exception or an integrity violation), go
//! to the dead-letter topic with the reason ([`DeadLetters`]) and the offsets
//! move on. When a batch is refused, it is split in halves until the refused
//! rows are alone (a few extra round trips per bad row); the good rows are
//! stored. A transient failure (connection, timeout, serialization failure)
//! and any other permanent one (a missing table, a permission: nothing to do
//! with the data) are retried with backoff, never dead-lettered; the stall
//! then shows in `/readyz` and `vitalwatch_consumer_stalled_seconds`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::settings::PersistSettings;
use prost::Message as _;
use vitalwatch_platform::bus::dead_letter::{DeadLetters, DeadReason};
use vitalwatch_platform::bus::{CommitTracker, Consumer, Message, next_batch, positions};
use vitalwatch_platform::retry::{Backoff, Class, RetryError, retry};
use vitalwatch_platform::shutdown::CancellationToken;
use vitalwatch_platform::store::{DeviceStatusRow, Store, StoreError};
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
    /// Messages that could not be decoded (dead-lettered).
    pub undecodable: AtomicU64,
    /// Rows the database refused for good (dead-lettered).
    pub refused: AtomicU64,
    /// Device statuses written (`device_status`).
    pub statuses: AtomicU64,
    /// Database retries.
    pub db_retries: AtomicU64,
}

/// Runs until `shutdown` fires. The batches being written when it fires are
/// finished and committed first. Messages of `status_topic` are device
/// statuses (`proto::DeviceStatus`); every other message is an observation.
///
/// Up to `settings.concurrent_writes` batches are written at once (each on
/// its own database connection), so receiving and decoding the next batch,
/// and a second write, overlap the database round trips. Offsets are
/// committed strictly in batch order, each only after its batch and every
/// earlier one are stored: a crash loses nothing and redelivers at most the
/// batches in flight, which the unique key absorbs. Records that can never be
/// stored go to `dead_letters` first (see the module docs).
pub async fn run(
    consumer: &mut dyn Consumer,
    store: Arc<dyn Store>,
    settings: &PersistSettings,
    status_topic: &str,
    stats: Arc<PersistStats>,
    dead_letters: DeadLetters,
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
        // The decoded rows, and the index of each one's message in the batch.
        let (mut obs, mut index) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
        let (mut statuses, mut status_index) = (Vec::new(), Vec::new());
        let mut undecodable = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            if m.topic == status_topic {
                match proto::DeviceStatus::decode(m.payload.as_slice()) {
                    Ok(st) => match DeviceStatusRow::from_proto(&st) {
                        Ok(row) => {
                            statuses.push(row);
                            status_index.push(i);
                        }
                        Err(e) => undecodable.push((i, DeadReason::InvalidRecord, e)),
                    },
                    Err(e) => undecodable.push((i, DeadReason::Undecodable, e.to_string())),
                }
                continue;
            }
            match proto::Observation::decode(m.payload.as_slice())
                .map_err(|e| e.to_string())
                .and_then(Observation::from_proto)
            {
                Ok(o) => {
                    obs.push(o);
                    index.push(i);
                }
                Err(e) => undecodable.push((i, DeadReason::Undecodable, e)),
            }
        }
        stats.undecodable.fetch_add(undecodable.len() as u64, Ordering::Relaxed);
        metrics::counter!("vitalwatch_undecodable_total", "role" => "persist").increment(undecodable.len() as u64);
        let batch_positions = positions(&batch);
        let messages = batch.len() as u64;
        let (store, stats_w, shutdown_w, dl) = (store.clone(), stats.clone(), shutdown.clone(), dead_letters.clone());
        let task = tokio::spawn(async move {
            for (i, reason, e) in &undecodable {
                dl.send(&batch[*i], *reason, e, &shutdown_w).await.ok()?;
            }
            let rows = Rows::Observations(&obs);
            let (inserted, refused) =
                write_isolating(store.as_ref(), &batch, rows, &index, &dl, &stats_w, &shutdown_w).await?;
            if !statuses.is_empty() {
                let rows = Rows::Statuses(&statuses);
                let (_, refused_statuses) =
                    write_isolating(store.as_ref(), &batch, rows, &status_index, &dl, &stats_w, &shutdown_w).await?;
                let written = (statuses.len() - refused_statuses) as u64;
                stats_w.statuses.fetch_add(written, Ordering::Relaxed);
                stats_w.refused.fetch_add(refused_statuses as u64, Ordering::Relaxed);
                metrics::counter!("vitalwatch_persist_device_statuses_total").increment(written);
            }
            // Counted as soon as the rows are stored (the commit follows at
            // the loop's next turn).
            let rows = (obs.len() - refused) as u64;
            let duplicates = rows - inserted.min(rows);
            stats_w.inserted.fetch_add(inserted, Ordering::Relaxed);
            stats_w.duplicates.fetch_add(duplicates, Ordering::Relaxed);
            stats_w.refused.fetch_add(refused as u64, Ordering::Relaxed);
            metrics::counter!("vitalwatch_persist_rows_total").increment(inserted);
            metrics::counter!("vitalwatch_persist_duplicates_total").increment(duplicates);
            Some(())
        });
        writes.push_back(Write { task, positions: batch_positions, messages });
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

/// Rows of one kind to write.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// Observations (`insert_observations`).
    Observations(&'a [Observation]),
    /// Device statuses (`upsert_device_statuses`).
    Statuses(&'a [DeviceStatusRow]),
}

impl<'a> Rows<'a> {
    fn len(self) -> usize {
        match self {
            Rows::Observations(r) => r.len(),
            Rows::Statuses(r) => r.len(),
        }
    }

    fn part(self, range: std::ops::Range<usize>) -> Rows<'a> {
        match self {
            Rows::Observations(r) => Rows::Observations(&r[range]),
            Rows::Statuses(r) => Rows::Statuses(&r[range]),
        }
    }

    async fn write(self, store: &dyn Store) -> Result<u64, StoreError> {
        match self {
            Rows::Observations(r) => store.insert_observations(r).await,
            Rows::Statuses(r) => store.upsert_device_statuses(r).await,
        }
    }
}

/// Writes `rows` (`index[i]`: the index of row i's message in `batch`), isolating
/// the rows the database refuses for good: a refused batch is split in
/// halves until each refused row is alone, and that row's message is
/// dead-lettered. Returns (rows newly inserted, rows refused); `None` if
/// shutdown interrupted it (nothing of the batch may be committed then).
async fn write_isolating(
    store: &dyn Store,
    batch: &[Message],
    rows: Rows<'_>,
    index: &[usize],
    dead_letters: &DeadLetters,
    stats: &PersistStats,
    shutdown: &CancellationToken,
) -> Option<(u64, usize)> {
    let (mut inserted, mut refused) = (0, 0);
    // Ranges still to write, the next one last.
    let mut todo: Vec<std::ops::Range<usize>> = Vec::with_capacity(16);
    todo.push(0..rows.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match insert_with_retry(store, rows.part(range.clone()), stats, shutdown).await? {
            Ok(n) => inserted += n,
            Err(e) if range.len() == 1 => {
                refused += 1;
                let m = &batch[index[range.start]];
                dead_letters.send(m, DeadReason::PermanentStoreError, &e.to_string(), shutdown).await.ok()?;
            }
            Err(_) => {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
        }
    }
    Some((inserted, refused))
}

/// Writes `obs`, retrying every failure but a refusal of the data
/// ([`StoreError::Rejected`], returned as `Some(Err)`) until it succeeds.
/// `None` once shutdown fires while it fails.
async fn insert_with_retry(
    store: &dyn Store,
    obs: Rows<'_>,
    stats: &PersistStats,
    shutdown: &CancellationToken,
) -> Option<Result<u64, StoreError>> {
    let classify = |e: &StoreError| match e {
        StoreError::Rejected(_) => Class::Permanent,
        // Not about the data: retry (the stall shows in /readyz and the metrics).
        _ => Class::Transient,
    };
    let on_retry = |e: &StoreError, _| {
        stats.db_retries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("vitalwatch_db_retries_total", "role" => "persist").increment(1);
        match e {
            StoreError::Transient(_) => tracing::warn!(message = "Database write failed; retrying.", error = %e),
            _ => tracing::error!(message = "Database write failed; retrying.", error = %e),
        }
    };
    let insert = move || async move {
        let started = std::time::Instant::now();
        let n = obs.write(store).await?;
        metrics::histogram!("vitalwatch_persist_write_seconds").record(started.elapsed().as_secs_f64());
        Ok(n)
    };
    match retry(&DB_BACKOFF, Some(shutdown), classify, on_retry, insert).await {
        Ok(n) => Some(Ok(n)),
        Err(RetryError::Permanent(e)) => {
            if obs.len() > 1 {
                tracing::warn!(
                    message = "The database refused a batch; isolating the refused rows.",
                    rows = obs.len(),
                    error = %e
                );
            }
            Some(Err(e))
        }
        Err(_) => None,
    }
}

/// Database writes: from 100 ms, doubling, at most 10 s apart, until they succeed.
const DB_BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));

#[cfg(test)]
mod tests {
    use vitalwatch_platform::bus::Producer as _;
    use vitalwatch_platform::bus::memory::MemoryBus;
    use vitalwatch_platform::store::sqlite::SqliteStore;

    use super::*;

    fn observation(patient: &str, second: i64, msg_id: &str) -> Vec<u8> {
        proto::Observation {
            patient_id: patient.to_owned(),
            code: "8867-4".into(),
            value: 70.0,
            unit: "/min".into(),
            time_unix_micros: (1_780_000_000 + second) * 1_000_000,
            received_at_unix_micros: 1_780_000_100 * 1_000_000,
            source: proto::Source::Manual as i32,
            time_source: proto::TimeSource::App as i32,
            original_value: 70.0,
            original_unit: "/min".into(),
            msg_id: msg_id.into(),
            trace_id: "0123456789abcdef".into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// Embedded mode (SQLite, in-process bus): a row the database refuses
    /// for good (here a trigger, as PostgreSQL refuses a NUL in text) and an
    /// undecodable record are dead-lettered; every other row is stored and
    /// the group commits past them.
    #[tokio::test]
    async fn refused_and_undecodable_records_are_dead_lettered_and_the_rest_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vw.db").display().to_string();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        store.migrate().await.unwrap();
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON observations WHEN NEW.msg_id = 'poison' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        let bus = MemoryBus::new(10_000);
        let mut consumer = bus.consumer("persist", &["obs"]);
        for k in 0..120 {
            let payload = match k {
                17 | 90 => observation(&format!("p{}", k % 7), k, "poison"),
                55 => vec![0xff, 0xff, 0xff, 0x01],
                _ => observation(&format!("p{}", k % 7), k, "good"),
            };
            bus.send("obs", b"k", payload).await.unwrap().await.unwrap();
        }
        let settings = PersistSettings { batch_size: 50, batch_wait_ms: 5, ..Default::default() };
        let (stats, shutdown) = (Arc::new(PersistStats::default()), CancellationToken::new());
        let dead = DeadLetters::new(Arc::new(bus.clone()), "dead", "persist");
        let task = {
            let (store, stats, shutdown) = (store.clone(), stats.clone(), shutdown.clone());
            tokio::spawn(async move { run(&mut consumer, store, &settings, "status", stats, dead, shutdown).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while stats.messages.load(Ordering::Relaxed) < 120 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(store.count_observations().await.unwrap(), 117, "every good row stored");
        assert_eq!(stats.refused.load(Ordering::Relaxed), 2);
        assert_eq!(stats.undecodable.load(Ordering::Relaxed), 1);
        let letters: Vec<proto::DeadLetter> =
            bus.snapshot("dead").iter().map(|(_, p)| proto::DeadLetter::decode(p.as_slice()).unwrap()).collect();
        let mut got: Vec<(i64, &str)> = letters.iter().map(|d| (d.offset, d.reason.as_str())).collect();
        got.sort();
        assert_eq!(got, vec![(17, "permanent_store_error"), (55, "undecodable"), (90, "permanent_store_error")]);
        assert!(letters.iter().all(|d| d.source_topic == "obs" && d.role == "persist" && !d.message.is_empty()));
        // Committed past everything: a new member of the group gets nothing.
        let mut next = bus.consumer("persist", &["obs"]);
        assert!(tokio::time::timeout(Duration::from_millis(200), next.recv()).await.is_err());
    }

    fn status(device: &str, patient: &str, second: i64, battery: Option<f64>, firmware: &str) -> Vec<u8> {
        proto::DeviceStatus {
            device_id: device.to_owned(),
            patient_id: patient.to_owned(),
            time_unix_micros: (1_780_000_000 + second) * 1_000_000,
            received_at_unix_micros: (1_780_000_000 + second) * 1_000_000 + 500,
            battery_percent: battery,
            signal_dbm: Some(-70.0),
            firmware: firmware.to_owned(),
        }
        .encode_to_vec()
    }

    /// Device statuses on the status topic land in `device_status`, one row
    /// per device: the newest status time wins whatever the arrival order, and
    /// the battery is the newest that carried one; an invalid status is
    /// dead-lettered; observations on the other topic are stored as before.
    #[tokio::test]
    async fn device_statuses_keep_the_latest_per_device() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(":memory:").unwrap());
        store.migrate().await.unwrap();
        let bus = MemoryBus::new(10_000);
        let mut consumer = bus.consumer("persist", &["obs", "status"]);
        for payload in [
            status("dev-1", "pat-1", 10, Some(80.0), "1.0"),
            status("dev-1", "pat-1", 30, None, ""),
            status("dev-1", "pat-1", 20, Some(50.0), "0.9"),
            status("dev-2", "", 5, Some(12.0), "2.1"),
            status("bad device", "pat-1", 5, None, ""),
        ] {
            bus.send("status", b"k", payload).await.unwrap().await.unwrap();
        }
        bus.send("obs", b"k", observation("pat-1", 1, "m")).await.unwrap().await.unwrap();
        let settings = PersistSettings { batch_size: 2, batch_wait_ms: 5, ..Default::default() };
        let (stats, shutdown) = (Arc::new(PersistStats::default()), CancellationToken::new());
        let dead = DeadLetters::new(Arc::new(bus.clone()), "dead", "persist");
        let task = {
            let (store, stats, shutdown) = (store.clone(), stats.clone(), shutdown.clone());
            tokio::spawn(async move { run(&mut consumer, store, &settings, "status", stats, dead, shutdown).await })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while stats.messages.load(Ordering::Relaxed) < 6 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(store.count_observations().await.unwrap(), 1);
        let rows = store.device_statuses(&["dev-1".into(), "dev-2".into(), "dev-9".into()]).await.unwrap();
        assert_eq!(rows.len(), 2);
        let d1 = &rows[0];
        assert_eq!(d1.device_id, "dev-1");
        assert_eq!(d1.time.timestamp(), 1_780_000_030, "the newest status time wins");
        // Batches are written concurrently: whatever the order, each field is
        // the newest status's that carried it.
        assert_eq!(d1.battery_percent, Some(50.0), "the newest status with a battery");
        assert_eq!((d1.firmware.as_deref(), d1.patient_id.as_deref()), (Some("0.9"), Some("pat-1")));
        assert_eq!((rows[1].patient_id.as_deref(), rows[1].battery_percent), (None, Some(12.0)));
        let letters = bus.snapshot("dead");
        assert_eq!(letters.len(), 1);
        let letter = proto::DeadLetter::decode(letters[0].1.as_slice()).unwrap();
        assert_eq!((letter.reason.as_str(), letter.source_topic.as_str()), ("invalid_record", "status"));
    }
}
