//! Stall detection for consumer roles: a [`Watched`] consumer records, per
//! partition, the highest offset received and the highest committed. While a
//! received record is not committed (the role has work) and no commit has
//! advanced for `stall_after`, the role is *stalled*: `/readyz` fails naming
//! it (see [`Progress::check`]) and `vitalwatch_consumer_stalled_seconds{role}`
//! counts the seconds without progress (0 otherwise). A consumer with nothing
//! to do is never stalled, however long it idles.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{BusError, Consumer, Message};
use crate::shutdown::CancellationToken;

/// How often the assignment is re-read to forget revoked partitions.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// One partition's positions: the highest offset received (none yet when
/// only a commit was seen) and the highest committed.
#[derive(Debug)]
struct Part {
    topic: String,
    partition: i32,
    received: Option<i64>,
    committed: i64,
}

/// A consumer is assigned a handful of partitions: a vector searched in place
/// costs no allocation per record (a map keyed by an owned topic did two).
#[derive(Debug, Default)]
struct State {
    parts: Vec<Part>,
    /// When the role last made progress while it had work (or got work
    /// while it had none).
    since: Option<Instant>,
}

impl State {
    fn pending(&self) -> u64 {
        self.parts.iter().map(|p| p.received.map_or(0, |r| u64::try_from(r - p.committed).unwrap_or(0))).sum()
    }

    /// The partition's entry, created with `new` (received, committed) if absent.
    fn part(&mut self, topic: &str, partition: i32, new: (Option<i64>, i64)) -> &mut Part {
        let i = match self.parts.iter().position(|p| p.partition == partition && p.topic == topic) {
            Some(i) => i,
            None => {
                let (received, committed) = new;
                self.parts.push(Part { topic: topic.to_owned(), partition, received, committed });
                self.parts.len() - 1
            }
        };
        &mut self.parts[i]
    }
}

/// The progress of one consumer role (shared with its readiness check).
#[derive(Debug)]
pub struct Progress {
    role: &'static str,
    state: Mutex<State>,
}

impl Progress {
    /// The progress of `role` (`persist`, `rules`, `alerting`).
    pub fn new(role: &'static str) -> Arc<Self> {
        Arc::new(Progress { role, state: Mutex::default() })
    }

    /// The role.
    pub fn role(&self) -> &'static str {
        self.role
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a received message.
    pub fn received(&self, topic: &str, partition: i32, offset: i64) {
        self.received_each([(topic, partition, offset)]);
    }

    /// Records a batch of received messages (one lock for all).
    pub fn received_all(&self, batch: &[Message]) {
        self.received_each(batch.iter().map(|m| (m.topic.as_str(), m.partition, m.offset)));
    }

    fn received_each<'a>(&self, records: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        let mut s = self.lock();
        let had_work = s.pending() > 0;
        for (topic, partition, offset) in records {
            // A partition's first record: the group resumes right after its last commit.
            let p = s.part(topic, partition, (Some(offset), offset - 1));
            p.received = Some(p.received.map_or(offset, |r| r.max(offset)));
        }
        if !had_work && s.pending() > 0 {
            s.since = Some(Instant::now());
        }
    }

    /// Records committed positions (processed up to and including each offset).
    pub fn committed(&self, positions: &[(String, i32, i64)]) {
        let mut s = self.lock();
        let mut advanced = false;
        for (t, p, o) in positions {
            let part = s.part(t, *p, (None, -1));
            if *o > part.committed {
                part.committed = *o;
                advanced = true;
            }
        }
        if advanced {
            s.since = (s.pending() > 0).then(Instant::now);
        }
    }

    /// Forgets partitions no longer assigned (their records are another
    /// member's work now).
    pub fn retain(&self, assignment: &[(String, i32)]) {
        let mut s = self.lock();
        let before = s.pending();
        s.parts.retain(|k| assignment.iter().any(|(t, p)| *t == k.topic && *p == k.partition));
        if before > 0 && s.pending() == 0 {
            s.since = None;
        }
    }

    /// Records received and not committed yet, and for how long the role
    /// has had work without progress (`None` without work).
    pub fn status(&self) -> (u64, Option<Duration>) {
        let s = self.lock();
        let pending = s.pending();
        (pending, if pending > 0 { s.since.map(|t| t.elapsed()) } else { None })
    }

    /// The readiness verdict: an error naming the role when it has had work
    /// and no progress for `stall_after` or longer.
    ///
    /// # Errors
    ///
    /// The role is stalled (the message says how many records wait and for how long).
    pub fn check(&self, stall_after: Duration) -> Result<(), String> {
        match self.status() {
            (pending, Some(idle)) if idle >= stall_after => Err(format!(
                "{} consumer stalled: {pending} records received and not committed, no progress for {} s",
                self.role,
                idle.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// Publishes `vitalwatch_consumer_stalled_seconds{role}` every second
    /// until `shutdown`: seconds without progress while the role has work, else 0.
    pub fn spawn_gauge(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let gauge = metrics::gauge!("vitalwatch_consumer_stalled_seconds", "role" => me.role);
            loop {
                gauge.set(me.status().1.map_or(0.0, |d| d.as_secs_f64().floor()));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// A consumer whose progress is recorded in a [`Progress`].
pub struct Watched {
    inner: Box<dyn Consumer>,
    progress: Arc<Progress>,
    pruned: Instant,
}

impl Watched {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Consumer>, progress: Arc<Progress>) -> Self {
        Watched { inner, progress, pruned: Instant::now() }
    }

    /// Forgets the partitions no longer assigned, at most once a second.
    fn prune(&mut self) {
        if self.pruned.elapsed() >= PRUNE_EVERY {
            self.pruned = Instant::now();
            self.progress.retain(&self.inner.assignment());
        }
    }
}

#[async_trait]
impl Consumer for Watched {
    async fn recv(&mut self) -> Result<Message, BusError> {
        self.prune();
        let m = self.inner.recv().await?;
        self.progress.received(&m.topic, m.partition, m.offset);
        Ok(m)
    }

    async fn recv_batch(&mut self, max: usize, wait: Duration, idle: Duration) -> Result<Vec<Message>, BusError> {
        self.prune();
        let batch = self.inner.recv_batch(max, wait, idle).await?;
        self.progress.received_all(&batch);
        Ok(batch)
    }

    async fn commit(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError> {
        self.inner.commit(positions).await?;
        self.progress.committed(positions);
        Ok(())
    }

    async fn commit_async(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError> {
        self.inner.commit_async(positions).await?;
        self.progress.committed(positions);
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.inner.assignment()
    }

    async fn partition_count(&mut self, topic: &str) -> Option<i32> {
        self.inner.partition_count(topic).await
    }

    async fn committed(
        &mut self,
        group: Option<&str>,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, BusError> {
        self.inner.committed(group, partitions).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_without_progress_is_a_stall_and_idling_is_not() {
        let p = Progress::new("persist");
        assert_eq!(p.status(), (0, None));
        assert!(p.check(Duration::ZERO).is_ok(), "idle is not stalled");
        p.received("obs", 0, 8);
        p.received("obs", 0, 10);
        p.received("obs", 1, 3);
        let (pending, since) = p.status();
        assert_eq!(pending, 3 + 1, "from the first record received");
        assert!(since.is_some());
        let err = p.check(Duration::ZERO).unwrap_err();
        assert!(err.contains("persist consumer stalled: 4 records"), "{err}");
        assert!(p.check(Duration::from_secs(3600)).is_ok(), "not for long enough");
        p.committed(&[("obs".into(), 0, 10)]);
        assert_eq!(p.status().0, 1, "partition 1 still waits");
        p.committed(&[("obs".into(), 1, 3)]);
        assert_eq!(p.status(), (0, None));
        p.received("obs", 1, 5);
        assert_eq!(p.status().0, 2);
        p.retain(&[("obs".into(), 0)]);
        assert_eq!(p.status(), (0, None), "a revoked partition is not our work");
    }

    /// An in-process bus with `n` messages on topic `t`.
    async fn bus_with(n: u8) -> crate::bus::memory::MemoryBus {
        use crate::bus::Producer as _;
        let bus = crate::bus::memory::MemoryBus::new(100);
        for i in 0..n {
            bus.send("t", b"k", vec![i]).await.unwrap().await.unwrap();
        }
        bus
    }

    #[tokio::test]
    async fn the_wrapper_records_receives_and_commits() {
        let bus = bus_with(3).await;
        let p = Progress::new("rules");
        let mut c = Watched::new(Box::new(bus.consumer("g", &["t"])), p.clone());
        let mut last = None;
        for _ in 0..3 {
            last = Some(c.recv().await.unwrap());
        }
        assert_eq!(p.status().0, 3);
        let m = last.unwrap();
        c.commit(&[(m.topic.clone(), m.partition, m.offset)]).await.unwrap();
        assert_eq!(p.status(), (0, None));
    }

    #[tokio::test]
    async fn the_wrapper_records_a_batch_received_at_once() {
        let bus = bus_with(5).await;
        let p = Progress::new("persist");
        let mut c = Watched::new(Box::new(bus.consumer("g", &["t"])), p.clone());
        let batch = c.recv_batch(4, Duration::ZERO, Duration::from_secs(1)).await.unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(p.status().0, 4, "every record of the batch is work");
        c.commit_async(&[("t".into(), 0, 1)]).await.unwrap();
        assert_eq!(p.status().0, 2);
        let rest = c.recv_batch(4, Duration::ZERO, Duration::from_secs(1)).await.unwrap();
        assert_eq!(rest.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![4]);
        c.commit(&[("t".into(), 0, 4)]).await.unwrap();
        assert_eq!(p.status(), (0, None));
    }
}
