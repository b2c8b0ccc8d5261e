//! An in-process bus for `vitalwatch run`: one append-only log per topic (one
//! partition), consumer groups with committed offsets, truncation once every
//! group has committed past an entry. Delivery is immediate: the process is
//! the durability boundary in embedded mode, and the store dedupes replays.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{BusError, Consumer, Delivery, DeliveryGroup, Message, Producer};

#[derive(Default)]
struct TopicLog {
    base: i64,
    entries: VecDeque<(Vec<u8>, Vec<u8>)>,
    groups: HashMap<String, i64>,
}

#[derive(Default)]
struct Inner {
    topics: Mutex<HashMap<String, TopicLog>>,
    notify: Notify,
}

/// The in-process bus. Clone it to share.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
    capacity: usize,
}

impl MemoryBus {
    /// A bus keeping at most `capacity` unconsumed entries per topic (beyond
    /// that the producer waits: back-pressure).
    pub fn new(capacity: usize) -> Self {
        MemoryBus { inner: Arc::default(), capacity }
    }

    /// A consumer in `group` reading `topics` from the group's committed
    /// position (from the beginning for a new group).
    pub fn consumer(&self, group: &str, topics: &[&str]) -> MemoryConsumer {
        let mut map = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        let mut positions = HashMap::new();
        for t in topics {
            let log = map.entry((*t).to_owned()).or_default();
            let base = log.base;
            let committed = *log.groups.entry(group.to_owned()).or_insert(base);
            positions.insert((*t).to_owned(), committed);
        }
        MemoryConsumer { bus: self.clone(), group: group.to_owned(), positions }
    }

    /// Every entry currently retained in `topic` (for tests and tools).
    pub fn snapshot(&self, topic: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let map = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        map.get(topic).map(|l| l.entries.iter().cloned().collect()).unwrap_or_default()
    }

    /// Appends to `topic`'s log, waiting while a consumed log is full.
    async fn append(&self, topic: &str, key: &[u8], payload: Vec<u8>) {
        let mut payload = Some(payload);
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut map = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
                // No allocation for a topic that exists (every send but the first).
                if !map.contains_key(topic) {
                    map.insert(topic.to_owned(), TopicLog::default());
                }
                let Some(log) = map.get_mut(topic) else { continue };
                if self.capacity == 0 || log.groups.is_empty() || log.entries.len() < self.capacity {
                    if let Some(p) = payload.take() {
                        log.entries.push_back((key.to_vec(), p));
                        if log.groups.is_empty() && self.capacity > 0 && log.entries.len() > self.capacity {
                            // Nobody consumes this topic (e.g. dead letters in embedded mode): keep a window.
                            log.entries.pop_front();
                            log.base += 1;
                        }
                    }
                    drop(map);
                    self.inner.notify.notify_waiters();
                    return;
                }
            }
            notified.await;
        }
    }

    /// True when every consumer group has committed everything appended to
    /// the topics it reads (topics nobody consumes, such as dead letters in
    /// embedded mode, do not count): what was produced has been taken.
    pub fn caught_up(&self) -> bool {
        let map = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        map.values().all(|log| {
            let end = log.base + log.entries.len() as i64;
            log.groups.values().all(|&committed| committed >= end)
        })
    }

    /// Total number of messages ever appended to `topic`.
    pub fn end_offset(&self, topic: &str) -> i64 {
        let map = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        map.get(topic).map(|l| l.base + l.entries.len() as i64).unwrap_or(0)
    }
}

#[async_trait]
impl Producer for MemoryBus {
    async fn send(&self, topic: &str, key: &[u8], payload: Vec<u8>) -> Result<Delivery, BusError> {
        self.append(topic, key, payload).await;
        Ok(Box::pin(async { Ok(()) }))
    }

    /// Delivered once appended: the group does not wait for it.
    async fn send_grouped(
        &self,
        _group: &DeliveryGroup,
        topic: &str,
        key: &[u8],
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        self.append(topic, key, payload).await;
        Ok(())
    }

    async fn flush(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// A consumer of the in-process bus.
pub struct MemoryConsumer {
    bus: MemoryBus,
    group: String,
    positions: HashMap<String, i64>,
}

/// Moves up to `max - out.len()` messages that are there now, from the
/// consumer's `positions` on, into `out` (one lock for all); returns how many.
fn take_into(bus: &Inner, positions: &mut HashMap<String, i64>, out: &mut Vec<Message>, max: usize) -> usize {
    let before = out.len();
    {
        let map = bus.topics.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, pos) in positions.iter_mut() {
            let Some(log) = map.get(topic) else { continue };
            if *pos < log.base {
                *pos = log.base;
            }
            while out.len() < max {
                let Some((k, v)) = log.entries.get((*pos - log.base) as usize) else { break };
                out.push(Message {
                    topic: topic.clone(),
                    partition: 0,
                    offset: *pos,
                    key: Some(k.clone()),
                    payload: v.clone(),
                });
                *pos += 1;
            }
        }
    }
    out.len() - before
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn recv(&mut self) -> Result<Message, BusError> {
        let mut one = Vec::with_capacity(1);
        loop {
            // Created before looking: a send in between still wakes it.
            let notified = self.bus.inner.notify.notified();
            if take_into(&self.bus.inner, &mut self.positions, &mut one, 1) == 1 {
                return one.pop().ok_or(BusError::Closed);
            }
            notified.await;
        }
    }

    /// Waits for the first message (at most `idle`), then lets the window
    /// `wait` pass in one sleep and takes what came meanwhile: not a wake-up
    /// per message produced (every send wakes the waiting consumers).
    async fn recv_batch(&mut self, max: usize, wait: Duration, idle: Duration) -> Result<Vec<Message>, BusError> {
        let mut batch = Vec::new();
        let first = tokio::time::timeout(idle, async {
            loop {
                let notified = self.bus.inner.notify.notified();
                if take_into(&self.bus.inner, &mut self.positions, &mut batch, max) > 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
        if first.is_err() || batch.len() >= max || wait.is_zero() {
            return Ok(batch);
        }
        tokio::time::sleep(wait).await;
        take_into(&self.bus.inner, &mut self.positions, &mut batch, max);
        Ok(batch)
    }

    async fn commit(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError> {
        {
            let mut map = self.bus.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
            for (topic, _, offset) in positions {
                let Some(log) = map.get_mut(topic) else { continue };
                let c = log.groups.entry(self.group.clone()).or_insert(0);
                *c = (*c).max(offset + 1);
                let min = log.groups.values().copied().min().unwrap_or(log.base);
                while log.base < min && !log.entries.is_empty() {
                    log.entries.pop_front();
                    log.base += 1;
                }
            }
        }
        self.bus.inner.notify.notify_waiters();
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.positions.keys().map(|t| (t.clone(), 0)).collect()
    }

    async fn partition_count(&mut self, _topic: &str) -> Option<i32> {
        Some(1)
    }

    async fn committed(
        &mut self,
        group: Option<&str>,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, BusError> {
        let group = group.unwrap_or(&self.group);
        let map = self.bus.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
        Ok(partitions.iter().map(|(t, _)| map.get(t).and_then(|log| log.groups.get(group).copied())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_read_everything_and_truncate_after_commit() {
        let bus = MemoryBus::new(100);
        let mut a = bus.consumer("a", &["t"]);
        let mut b = bus.consumer("b", &["t"]);
        for i in 0..5u8 {
            bus.send("t", b"k", vec![i]).await.unwrap().await.unwrap();
        }
        for i in 0..5u8 {
            assert_eq!(a.recv().await.unwrap().payload, vec![i]);
            assert_eq!(b.recv().await.unwrap().payload, vec![i]);
        }
        a.commit(&[("t".into(), 0, 4)]).await.unwrap();
        assert_eq!(bus.snapshot("t").len(), 5, "b has not committed");
        b.commit(&[("t".into(), 0, 2)]).await.unwrap();
        assert_eq!(bus.snapshot("t").len(), 2);
        // A restarted member of b resumes after its commit.
        let mut b2 = bus.consumer("b", &["t"]);
        assert_eq!(b2.recv().await.unwrap().payload, vec![3]);
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_there_up_to_max_and_what_comes_in_its_window() {
        let bus = MemoryBus::new(100);
        let mut c = bus.consumer("g", &["t"]);
        let idle = Duration::from_millis(50);
        assert!(c.recv_batch(10, Duration::ZERO, idle).await.unwrap().is_empty(), "nothing came: empty");
        for i in 0..5u8 {
            bus.send("t", b"k", vec![i]).await.unwrap().await.unwrap();
        }
        let b = c.recv_batch(3, Duration::from_secs(5), idle).await.unwrap();
        assert_eq!(b.iter().map(|m| m.payload[0]).collect::<Vec<_>>(), vec![0, 1, 2], "full at once: no wait");
        let later = bus.clone();
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            later.send("t", b"k", vec![5]).await.unwrap().await.unwrap();
        });
        let b = c.recv_batch(10, Duration::from_millis(200), idle).await.unwrap();
        sender.await.unwrap();
        assert_eq!(b.iter().map(|m| (m.payload[0], m.offset)).collect::<Vec<_>>(), vec![(3, 3), (4, 4), (5, 5)]);
        let b = c.recv_batch(10, Duration::ZERO, idle).await.unwrap();
        assert!(b.is_empty(), "everything was taken once: {b:?}");
    }

    #[tokio::test]
    async fn producer_waits_when_full() {
        let bus = MemoryBus::new(2);
        let mut c = bus.consumer("g", &["t"]);
        bus.send("t", b"", vec![1]).await.unwrap().await.unwrap();
        bus.send("t", b"", vec![2]).await.unwrap().await.unwrap();
        let b2 = bus.clone();
        let h = tokio::spawn(async move { b2.send("t", b"", vec![3]).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!h.is_finished(), "third send must wait for room");
        let m = c.recv().await.unwrap();
        c.commit(&[(m.topic, 0, m.offset)]).await.unwrap();
        h.await.unwrap().unwrap();
        assert_eq!(bus.end_offset("t"), 3);
    }
}
