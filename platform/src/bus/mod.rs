//! The message bus: Kafka in production, an in-process log in embedded mode.
//! Both give the same contract: a producer whose delivery future resolves only
//! once the message is durably accepted, and consumer groups that commit
//! explicitly after the work is done.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

pub mod continuity;
pub mod dead_letter;
pub mod delivery;
pub mod kafka;
pub mod kafka_security;
mod kafka_wake;
pub mod memory;
pub mod watch;

/// A bus failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// A failure that may pass (broker down, timeout, rebalance).
    #[error("transient bus error: {0}")]
    Transient(String),
    /// A failure retrying cannot fix (message too large, authorization).
    #[error("permanent bus error: {0}")]
    Permanent(String),
    /// The consumer was closed.
    #[error("bus consumer closed")]
    Closed,
}

impl BusError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::Transient(_) => "transient",
            BusError::Permanent(_) => "permanent",
            BusError::Closed => "closed",
        }
    }
}

pub use delivery::DeliveryGroup;

/// Resolves when the message is durably accepted by the bus.
pub type Delivery = BoxFuture<'static, Result<(), BusError>>;

/// Publishes messages.
#[async_trait]
pub trait Producer: Send + Sync {
    /// Enqueues a message. Waits while the producer queue is full
    /// (back-pressure); the returned future resolves on delivery.
    async fn send(&self, topic: &str, key: &[u8], payload: Vec<u8>) -> Result<Delivery, BusError>;
    /// Enqueues a message whose delivery `group` awaits together with the
    /// others handed to it ([`DeliveryGroup::delivered`]): one wake-up for
    /// the group, not a future per message. Waits while the producer queue
    /// is full. An error here means the message was not taken: the group
    /// fails with the same error, and does not wait for it.
    async fn send_grouped(
        &self,
        group: &DeliveryGroup,
        topic: &str,
        key: &[u8],
        payload: Vec<u8>,
    ) -> Result<(), BusError>;
    /// Waits for every queued message to be delivered, at most `timeout`.
    async fn flush(&self, timeout: Duration) -> Result<(), BusError>;
}

/// A consumed message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Payload.
    pub payload: Vec<u8>,
}

/// Consumes messages as a member of a consumer group.
#[async_trait]
pub trait Consumer: Send {
    /// The next message. Cancel-safe: dropping the future before it
    /// completes loses no message ([`recv_batch`] times it out).
    async fn recv(&mut self) -> Result<Message, BusError>;
    /// Marks everything up to and including these positions (topic,
    /// partition, offset) as processed. Call only after the work is durable.
    async fn commit(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError>;
    /// Like [`commit`](Consumer::commit), but may return before the broker
    /// stored the offsets (Kafka: an asynchronous commit, sent in order with
    /// the next ones), so a loop that commits after every batch does not make
    /// the next batch wait for the round trip. A commit that is lost (a crash
    /// right after) only means redelivery; end with [`commit`](Consumer::commit)
    /// (see [`CommitTracker`]).
    async fn commit_async(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError> {
        self.commit(positions).await
    }
    /// Receives up to `max` messages, waiting at most `wait` after the first
    /// one; an empty batch only if `idle` passes with no message at all. The
    /// default receives one message at a time ([`recv_each`]); a backend that
    /// holds fetched records can hand them out without a timer or a wake-up
    /// per record (Kafka). Cancelling it drops what it had taken, none of it
    /// committed: the group delivers it again after a restart or a rebalance
    /// (roles cancel it only when they stop).
    async fn recv_batch(&mut self, max: usize, wait: Duration, idle: Duration) -> Result<Vec<Message>, BusError> {
        recv_each(self, max, wait, idle).await
    }
    /// Partitions currently assigned (for telemetry and tests).
    fn assignment(&self) -> Vec<(String, i32)>;
    /// How many partitions `topic` has (to tell which keys an assignment
    /// covers, see [`partition_for_key`]); `None` if it cannot be known now.
    async fn partition_count(&mut self, topic: &str) -> Option<i32>;
    /// The committed offsets (next offset to consume) of `group`, or of this
    /// consumer's own group if `None`, on `partitions`, in order; `None` for
    /// a partition the group never committed. Only reads: never joins
    /// `group`. The rules role uses it to wait until `persist` has stored
    /// what the previous owner of a partition consumed.
    ///
    /// # Errors
    ///
    /// The offsets cannot be read now.
    async fn committed(
        &mut self,
        group: Option<&str>,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, BusError>;
}

/// Receives up to `max` messages, waiting at most `wait` after the first one.
/// Returns an empty batch only if `idle` passes with no message at all
/// ([`Consumer::recv_batch`]).
pub async fn recv_batch(
    consumer: &mut dyn Consumer,
    max: usize,
    wait: Duration,
    idle: Duration,
) -> Result<Vec<Message>, BusError> {
    consumer.recv_batch(max, wait, idle).await
}

/// [`Consumer::recv_batch`] one [`Consumer::recv`] at a time, each under a
/// timeout (the default for backends without a batch of their own).
pub async fn recv_each<C: Consumer + ?Sized>(
    consumer: &mut C,
    max: usize,
    wait: Duration,
    idle: Duration,
) -> Result<Vec<Message>, BusError> {
    let mut batch = Vec::new();
    match tokio::time::timeout(idle, consumer.recv()).await {
        Ok(m) => batch.push(m?),
        Err(_) => return Ok(batch),
    }
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(batch)
}

/// The next batch for a consumer role: waits for messages (see [`recv_batch`]),
/// retries bus errors after a pause, and returns `None` once `shutdown` fires.
/// An empty batch means nothing arrived for a while (time to do periodic work).
pub async fn next_batch(
    consumer: &mut dyn Consumer,
    max: usize,
    wait: Duration,
    shutdown: &crate::shutdown::CancellationToken,
) -> Option<Vec<Message>> {
    loop {
        let batch = tokio::select! {
            b = recv_batch(consumer, max, wait, Duration::from_millis(500)) => b,
            _ = shutdown.cancelled() => return None,
        };
        match batch {
            Ok(b) => return Some(b),
            Err(e) => {
                tracing::warn!(message = "Bus receive failed; retrying.", error = %e);
                if !crate::retry::sleep_until_cancelled(Duration::from_millis(500), Some(shutdown)).await {
                    return None;
                }
            }
        }
    }
}

/// The partition a message with this (non-empty) key goes to, among
/// `partitions`: CRC-32 of the key modulo the partition count. This is
/// librdkafka's `consistent_random` partitioner, which the producer sets
/// explicitly; consumers use it to know which patients their assignment
/// covers (the rules engine watches those for missing measurements).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    (crc32fast::hash(key) % partitions.unsigned_abs()) as i32
}

/// Commits for a batch loop: an asynchronous commit after each batch (or,
/// with [`CommitTracker::at_most_every`], after the first batch of each
/// interval), and a synchronous one of the last positions when the loop ends,
/// so a clean stop leaves every processed offset committed.
#[derive(Debug, Default)]
pub struct CommitTracker {
    last: std::collections::BTreeMap<(String, i32), i64>,
    /// The assignment the positions belong to.
    assignment: Vec<(String, i32)>,
    /// Shortest time between two asynchronous commits (zero: every batch).
    interval: Duration,
    /// When the last asynchronous commit was sent.
    sent_at: Option<std::time::Instant>,
    /// Positions recorded since then and not sent.
    unsent: bool,
}

impl CommitTracker {
    /// A tracker that sends at most one asynchronous commit per `interval`:
    /// for loops whose batches are small and many (they take what has
    /// arrived, without waiting), where a commit request per batch would
    /// cost the broker more than the batch. Call [`flush`](Self::flush) when
    /// the loop idles, so nothing processed stays uncommitted meanwhile.
    pub fn at_most_every(interval: Duration) -> Self {
        CommitTracker { interval, ..Default::default() }
    }

    /// Commits a processed batch's positions without waiting for the broker
    /// (held back, with the positions after it, until the interval has passed).
    ///
    /// # Errors
    ///
    /// The commit could not be queued.
    pub async fn after_batch(
        &mut self,
        consumer: &mut dyn Consumer,
        positions: &[(String, i32, i64)],
    ) -> Result<(), BusError> {
        let mut assigned = consumer.assignment();
        assigned.sort();
        if assigned != self.assignment {
            // Partitions moved: positions from before are not ours to commit
            // (another member may have gone further since).
            self.last.clear();
            self.assignment = assigned;
        }
        for (t, p, o) in positions {
            let e = self.last.entry((t.clone(), *p)).or_insert(*o);
            *e = (*e).max(*o);
        }
        if self.interval.is_zero() {
            return consumer.commit_async(positions).await;
        }
        self.unsent = true;
        if self.sent_at.is_some_and(|at| at.elapsed() < self.interval) {
            return Ok(());
        }
        self.flush(consumer).await
    }

    /// Sends what [`after_batch`](Self::after_batch) held back, if anything.
    ///
    /// # Errors
    ///
    /// The commit could not be queued.
    pub async fn flush(&mut self, consumer: &mut dyn Consumer) -> Result<(), BusError> {
        if !self.unsent {
            return Ok(());
        }
        let pos: Vec<(String, i32, i64)> = self.last.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
        self.sent_at = Some(std::time::Instant::now());
        self.unsent = false;
        consumer.commit_async(&pos).await
    }

    /// Commits, and waits for, the last positions of the partitions still
    /// assigned.
    ///
    /// # Errors
    ///
    /// The broker did not take the commit.
    pub async fn finish(&mut self, consumer: &mut dyn Consumer) -> Result<(), BusError> {
        let assigned = consumer.assignment();
        let pos: Vec<(String, i32, i64)> = std::mem::take(&mut self.last)
            .into_iter()
            .filter(|((t, p), _)| assigned.iter().any(|(at, ap)| at == t && ap == p))
            .map(|((t, p), o)| (t, p, o))
            .collect();
        consumer.commit(&pos).await
    }
}

/// The highest offset per (topic, partition) of a batch, for committing.
pub fn positions(batch: &[Message]) -> Vec<(String, i32, i64)> {
    let mut out: Vec<(String, i32, i64)> = Vec::new();
    for m in batch {
        match out.iter_mut().find(|(t, p, _)| *t == m.topic && *p == m.partition) {
            Some(e) => e.2 = e.2.max(m.offset),
            None => out.push((m.topic.clone(), m.partition, m.offset)),
        }
    }
    out
}
