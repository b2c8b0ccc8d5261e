//! Kafka backend (any Kafka-protocol broker) over rdkafka/librdkafka.
//! Producer: idempotent, `acks=all`; a full local queue makes `send` wait.
//! Consumer: explicit commits only (`enable.auto.commit=false`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::continuity::{Continuity, Step, skipped_at_resume};
use super::delivery::GroupState;
use super::kafka_wake::MainQueue;
use super::{BusError, Consumer, Delivery, DeliveryGroup, Message, Producer};
use crate::config::BusSettings;

/// The settings every client shares: brokers, client id, transport security
/// (TLS, SASL: see [`super::kafka_security`]) and `bus.kafka`.
///
/// # Errors
///
/// [`BusError::Permanent`] when the security settings cannot work, or ask for
/// TLS from a binary whose librdkafka was built without it (never a silent
/// plaintext connection).
fn base_config(s: &BusSettings, client_id: &str) -> Result<ClientConfig, BusError> {
    let security = super::kafka_security::properties(s).map_err(|e| BusError::Permanent(e.to_string()))?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers).set("client.id", client_id);
    for (k, v) in security {
        c.set(k, v);
    }
    for (k, v) in &s.kafka {
        c.set(k, v);
    }
    let protocol = c.get("security.protocol").unwrap_or("plaintext").to_ascii_lowercase();
    if protocol != "plaintext" && !super::kafka_security::tls_available() {
        return Err(BusError::Permanent(format!(
            "bus.security_protocol = {protocol:?} needs TLS, but this binary's librdkafka was built without \
             OpenSSL (builtin.features: {}): build with `--features kafka-tls`",
            super::kafka_security::builtin_features()
        )));
    }
    Ok(c)
}

fn classify(e: KafkaError) -> BusError {
    use RDKafkaErrorCode as C;
    let code = e.rdkafka_error_code();
    match code {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessage
            | C::InvalidMessageSize
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::UnknownTopicOrPartition,
        ) => BusError::Permanent(describe(&e)),
        _ => BusError::Transient(describe(&e)),
    }
}

/// The text of a Kafka error without configuration secrets: rdkafka's
/// configuration errors carry the value that was set (for `ssl.key.pem` or
/// `sasl.password`, the secret itself), which is masked here
/// ([`crate::redact::redact_kafka_property`]).
pub fn describe(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => {
            let shown = crate::redact::redact_kafka_property(key, value);
            let desc =
                if !value.is_empty() && shown != *value { desc.replace(value.as_str(), &shown) } else { desc.clone() };
            format!("Client config error: {desc} {key} {shown}")
        }
        other => other.to_string(),
    }
}

/// The offsets to commit after these positions (processed up to and
/// including each offset): the next one to read.
fn next_offsets(positions: &[(String, i32, i64)]) -> Result<TopicPartitionList, BusError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in positions {
        tpl.add_partition_offset(t, *p, Offset::Offset(o + 1)).map_err(classify)?;
    }
    Ok(tpl)
}

/// Kafka producer.
///
/// Every record carries its [`DeliveryGroup`] as librdkafka's delivery
/// opaque; the delivery callback settles it, so a group of records costs one
/// wake-up of its waiter, and a record no allocation beyond librdkafka's own.
/// The callbacks run on a tokio task that librdkafka wakes through a socket
/// ([`super::kafka_wake`]), not on a polling thread of their own.
#[derive(Clone)]
pub struct KafkaProducer {
    inner: Arc<Polled>,
}

/// A producer whose delivery reports are served where the application runs:
/// librdkafka signals its main queue on a socket (`rd_kafka_queue_io_event_enable`)
/// and a tokio task serves the queue, so a produce response wakes one thread
/// (librdkafka's broker thread writes, a tokio worker serves) instead of two
/// (rdkafka's `ThreadedProducer` has a thread of its own that serves the
/// queue and then wakes the task waiting for the delivery).
struct Polled {
    // Field order is drop order: the queue handle goes before the producer
    // (librdkafka wants every queue handle destroyed before its client).
    main: MainQueue,
    producer: BaseProducer<ProduceContext>,
}

impl Polled {
    /// Runs the delivery callbacks that are ready, a bounded number of
    /// events at a time; true once the queue is empty (librdkafka signals
    /// again only when an event lands in an empty queue).
    fn serve(&self) -> bool {
        for _ in 0..256 {
            if self.main.len() == 0 {
                return true;
            }
            self.producer.poll(Duration::ZERO);
        }
        self.main.len() == 0
    }
}

/// Serves `producer`'s delivery reports until the producer is dropped: on a
/// tokio task woken by librdkafka's signal when there is a runtime, else on a
/// thread of its own (as rdkafka's `ThreadedProducer`). A tick every 100 ms
/// serves anything a lost signal would leave.
fn spawn_server(producer: &Arc<Polled>, signal: std::os::unix::net::UnixStream) -> Result<(), BusError> {
    let weak = Arc::downgrade(producer);
    let io = |e: std::io::Error| BusError::Permanent(format!("kafka producer wake-up socket: {e}"));
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let _guard = handle.enter();
            let signal = tokio::net::UnixStream::from_std(signal).map_err(io)?;
            handle.spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    let emptied = match weak.upgrade() {
                        Some(p) => p.serve(),
                        None => return,
                    };
                    if !emptied {
                        // More is ready: let the other tasks run, then serve on.
                        tokio::task::yield_now().await;
                        continue;
                    }
                    tokio::select! {
                        ready = signal.readable() => {
                            if ready.is_err() {
                                return;
                            }
                            loop {
                                match signal.try_read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(_) => continue,
                                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                    Err(_) => return,
                                }
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            });
        }
        Err(_) => {
            drop(signal);
            std::thread::Builder::new()
                .name("kafka-producer-poll".into())
                .spawn(move || {
                    while let Some(p) = weak.upgrade() {
                        p.producer.poll(Duration::from_millis(100));
                    }
                })
                .map_err(io)?;
        }
    }
    Ok(())
}

/// The produce metrics of each topic, registered once instead of looked up
/// (and their topic label allocated) for every record.
#[derive(Default)]
struct TopicMetrics {
    topics: std::sync::Mutex<Vec<(String, ProduceMetrics)>>,
}

struct ProduceMetrics {
    seconds: metrics::Histogram,
    transient: metrics::Counter,
    permanent: metrics::Counter,
    closed: metrics::Counter,
}

impl TopicMetrics {
    /// Records one settled record of `topic`.
    fn record(&self, topic: &str, result: &Result<(), BusError>, elapsed: Duration) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let i = match topics.iter().position(|(t, _)| t == topic) {
            Some(i) => i,
            None => {
                let error = |kind: &'static str| metrics::counter!("vitalwatch_bus_produce_errors_total", "topic" => topic.to_owned(), "kind" => kind);
                let m = ProduceMetrics {
                    seconds: metrics::histogram!("vitalwatch_bus_produce_seconds", "topic" => topic.to_owned()),
                    transient: error("transient"),
                    permanent: error("permanent"),
                    closed: error("closed"),
                };
                topics.push((topic.to_owned(), m));
                topics.len() - 1
            }
        };
        let m = &topics[i].1;
        match result {
            Ok(()) => m.seconds.record(elapsed.as_secs_f64()),
            Err(BusError::Transient(_)) => m.transient.increment(1),
            Err(BusError::Permanent(_)) => m.permanent.increment(1),
            Err(BusError::Closed) => m.closed.increment(1),
        }
    }
}

/// The producer's context: settles each record's [`DeliveryGroup`] and
/// keeps the produce metrics.
#[derive(Default)]
struct ProduceContext {
    metrics: TopicMetrics,
}

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = Arc<GroupState>;

    fn delivery(&self, delivery: &DeliveryResult<'_>, group: Arc<GroupState>) {
        let (topic, result) = match delivery {
            Ok(m) => (m.topic(), Ok(())),
            Err((e, m)) => (m.topic(), Err(classify(e.clone()))),
        };
        self.metrics.record(topic, &result, group.started.elapsed());
        group.settle(result);
    }
}

impl KafkaProducer {
    /// An idempotent producer with `acks=all`, batching for up to 5 ms.
    pub fn new(s: &BusSettings, client_id: &str) -> Result<Self, BusError> {
        Self::with_linger(s, client_id, 5)
    }

    /// The same for a few, urgent messages (alert events): sent at once,
    /// without waiting up to 5 ms for more to batch with. `bus.kafka`
    /// settings still override.
    pub fn low_latency(s: &BusSettings, client_id: &str) -> Result<Self, BusError> {
        Self::with_linger(s, client_id, 0)
    }

    fn with_linger(s: &BusSettings, client_id: &str, linger_ms: u32) -> Result<Self, BusError> {
        let mut c = base_config(s, client_id)?;
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", linger_ms.to_string())
            // Pinned (it is librdkafka's default): consumers compute a key's
            // partition the same way (`bus::partition_for_key`).
            .set("partitioner", "consistent_random")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "200000");
        for (k, v) in &s.kafka {
            c.set(k, v);
        }
        let producer: BaseProducer<ProduceContext> = c
            .create_with_context(ProduceContext::default())
            .map_err(|e| BusError::Permanent(format!("kafka producer: {}", describe(&e))))?;
        let (main, wake) = MainQueue::signalled(&producer)
            .map_err(|e| BusError::Permanent(format!("kafka producer wake-up socket: {e}")))?;
        let inner = Arc::new(Polled { main, producer });
        spawn_server(&inner, wake)?;
        Ok(KafkaProducer { inner })
    }
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, topic: &str, key: &[u8], payload: Vec<u8>) -> Result<Delivery, BusError> {
        let group = DeliveryGroup::new();
        self.send_grouped(&group, topic, key, payload).await?;
        Ok(Box::pin(group.delivered()))
    }

    async fn send_grouped(
        &self,
        group: &DeliveryGroup,
        topic: &str,
        key: &[u8],
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        loop {
            // Counted before librdkafka has it: its delivery report may come at once.
            group.expect();
            let record = BaseRecord::with_opaque_to(topic, group.state()).key(key).payload(&payload);
            match self.inner.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, _)) => {
                    group.forget();
                    match e {
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        e => {
                            let e = classify(e);
                            group.refuse(e.clone());
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    async fn flush(&self, timeout: Duration) -> Result<(), BusError> {
        let p = self.inner.clone();
        tokio::task::spawn_blocking(move || p.producer.flush(timeout))
            .await
            .map_err(|e| BusError::Transient(e.to_string()))?
            .map_err(classify)
    }
}

/// Consumer context: tells [`Continuity`] about assignments and revocations.
struct GroupContext {
    continuity: Arc<std::sync::Mutex<Continuity>>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |tpl: &TopicPartitionList| {
            tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect::<Vec<_>>()
        };
        let mut c = self.continuity.lock().unwrap_or_else(|e| e.into_inner());
        match rebalance {
            Rebalance::Assign(tpl) => c.assigned(parts(tpl)),
            Rebalance::Revoke(tpl) => c.revoked(parts(tpl)),
            Rebalance::Error(_) => {}
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // Asynchronous commits report here only (see `commit_async`); a lost
        // commit means redelivery, which every consumer role absorbs.
        if let Err(e) = result {
            metrics::counter!("vitalwatch_bus_commit_errors_total").increment(1);
            tracing::warn!(message = "Offset commit failed; the messages will be redelivered.", error = %e);
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// Kafka consumer-group member.
///
/// It heals a stuck group: if a partition that is not assigned here has
/// unconsumed messages and its committed offset does not move for a while
/// (nobody consumes it), it leaves and rejoins, which makes the coordinator
/// rebalance. Seen with a Kafka-protocol broker (tansu 0.6) that, after a
/// member is SIGKILLed, either completes a rebalance with an empty assignment
/// or never rebalances the dead member's partitions at all. With Apache Kafka
/// this does not trigger: the coordinator rebalances after the session timeout.
///
/// It also checks that no record is skipped (see [`Continuity`]): a jump in a
/// partition's offsets, or a first record after an assignment beyond the
/// group's committed offset, is logged as an error and counted in
/// `vitalwatch_kafka_skipped_offsets_total`.
pub struct KafkaConsumer {
    inner: Arc<GroupConsumer>,
    shared: Arc<std::sync::Mutex<Arc<GroupConsumer>>>,
    continuity: Arc<std::sync::Mutex<Continuity>>,
    /// A message taken from the stream and not yet returned (see `recv`).
    held: Option<(Message, Step)>,
    rejoin: Arc<std::sync::atomic::AtomicBool>,
    watchdog: tokio::task::JoinHandle<()>,
    settings: BusSettings,
    group: String,
    client_id: String,
    topics: Vec<String>,
    /// Clients that read other groups' committed offsets (never join them).
    peers: std::collections::HashMap<String, Arc<BaseConsumer>>,
}

/// How long a member may sit without partitions while the group makes no
/// progress before it rejoins.
const STUCK_AFTER: Duration = Duration::from_secs(20);

impl KafkaConsumer {
    /// Joins `group` and subscribes to `topics`.
    pub fn new(s: &BusSettings, group: &str, client_id: &str, topics: &[&str]) -> Result<Self, BusError> {
        let continuity = Arc::new(std::sync::Mutex::new(Continuity::default()));
        let inner = Arc::new(Self::create(s, group, client_id, topics, &continuity)?);
        let shared = Arc::new(std::sync::Mutex::new(inner.clone()));
        let rejoin = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let topic_names: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        let watchdog = tokio::spawn(watchdog(shared.clone(), rejoin.clone(), topic_names.clone(), group.to_owned()));
        Ok(KafkaConsumer {
            inner,
            shared,
            continuity,
            held: None,
            rejoin,
            watchdog,
            settings: s.clone(),
            group: group.to_owned(),
            client_id: client_id.to_owned(),
            topics: topic_names,
            peers: std::collections::HashMap::new(),
        })
    }

    fn create(
        s: &BusSettings,
        group: &str,
        client_id: &str,
        topics: &[&str],
        continuity: &Arc<std::sync::Mutex<Continuity>>,
    ) -> Result<GroupConsumer, BusError> {
        let mut c = base_config(s, client_id)?;
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            // Alert latency: some Kafka-protocol brokers (tansu 0.6) answer a
            // fetch only when fetch.wait.max.ms expires, even when data arrived
            // earlier; librdkafka's default (500 ms) then adds up to half a
            // second per hop. Apache Kafka answers early either way.
            .set("fetch.wait.max.ms", "20");
        for (k, v) in &s.kafka {
            c.set(k, v);
        }
        let inner: GroupConsumer = c
            .create_with_context(GroupContext { continuity: continuity.clone() })
            .map_err(|e| BusError::Permanent(format!("kafka consumer: {}", describe(&e))))?;
        inner.subscribe(topics).map_err(classify)?;
        Ok(inner)
    }

    /// The first record after an assignment must be the group's committed
    /// offset (or an earlier one: a re-delivery). Checked before the record is
    /// handed out, so this member's own next commit cannot hide a jump.
    async fn check_resume(&self, topic: &str, partition: i32, first: i64) {
        let c = self.inner.clone();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = tokio::task::spawn_blocking(move || c.committed_offsets(tpl, Duration::from_secs(5))).await;
        let Ok(Ok(committed)) = committed else {
            tracing::warn!(
                message = "Could not read the committed offset to check a resumed partition.",
                topic,
                partition
            );
            return;
        };
        if let Some(Offset::Offset(at)) = committed.elements().first().map(|e| e.offset()) {
            let skipped = skipped_at_resume(at, first);
            if skipped > 0 {
                report_skipped(&self.group, topic, partition, at, skipped);
            }
        }
    }

    /// A record taken from the stream as a [`Message`] (one copy of its
    /// topic, key and payload), and where it stands in its partition.
    fn take(&self, record: &rdkafka::message::BorrowedMessage<'_>) -> (Message, Step) {
        let m = Message {
            topic: record.topic().to_owned(),
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().map(<[u8]>::to_vec),
            payload: record.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let step = self.continuity.lock().unwrap_or_else(|e| e.into_inner()).observe(&m.topic, m.partition, m.offset);
        (m, step)
    }

    fn rejoin_now(&mut self) {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        match Self::create(&self.settings, &self.group, &self.client_id, &topics, &self.continuity) {
            Ok(c) => {
                self.inner = Arc::new(c);
                *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = self.inner.clone();
            }
            Err(e) => tracing::warn!(message = "Could not rejoin the consumer group.", error = %e),
        }
    }
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.watchdog.abort();
    }
}

/// Logs and counts records this group never consumed.
fn report_skipped(group: &str, topic: &str, partition: i32, expected: i64, skipped: i64) {
    metrics::counter!(
        "vitalwatch_kafka_skipped_offsets_total", "group" => group.to_owned(), "topic" => topic.to_owned()
    )
    .increment(skipped.unsigned_abs());
    tracing::error!(
        message = "Records were skipped: the consumer jumped over offsets it never processed.",
        group,
        topic,
        partition,
        expected_offset = expected,
        skipped
    );
}

/// A partition, its group's committed offset and its high watermark.
type PartitionProgress = ((String, i32), i64, i64);

/// The group's committed offset and the high watermark of every partition of `topics`.
fn group_progress(c: &GroupConsumer, topics: &[String]) -> Option<Vec<PartitionProgress>> {
    let timeout = Duration::from_secs(5);
    let mut tpl = TopicPartitionList::new();
    let mut parts = Vec::new();
    for t in topics {
        let md = c.fetch_metadata(Some(t), timeout).ok()?;
        for topic in md.topics() {
            for p in topic.partitions() {
                tpl.add_partition(t, p.id());
                let (_, high) = c.fetch_watermarks(t, p.id(), timeout).ok()?;
                parts.push(((t.clone(), p.id()), high));
            }
        }
    }
    let committed = c.committed_offsets(tpl, timeout).ok()?;
    let mut out = Vec::with_capacity(parts.len());
    for e in committed.elements() {
        let key = (e.topic().to_owned(), e.partition());
        let high = parts.iter().find(|(k, _)| *k == key).map_or(0, |(_, h)| *h);
        let at = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        out.push((key, at, high));
    }
    Some(out)
}

/// Sets `vitalwatch_kafka_consumer_lag` for the partitions assigned here
/// (high watermark minus this member's position) and zeroes the ones that
/// moved away (their new owner reports them). Returns what it reported.
/// The high watermarks come from [`group_progress`] (no second round trip).
fn report_lag(
    c: &GroupConsumer,
    group: &str,
    progress: &[PartitionProgress],
    before: Vec<(String, i32)>,
) -> Vec<(String, i32)> {
    let mut now = Vec::new();
    if let Ok(pos) = c.position() {
        for e in pos.elements() {
            let Offset::Offset(at) = e.offset() else { continue };
            let key = (e.topic().to_owned(), e.partition());
            let Some((_, _, high)) = progress.iter().find(|(k, _, _)| *k == key) else { continue };
            let lag = (high - at).max(0);
            metrics::gauge!(
                "vitalwatch_kafka_consumer_lag",
                "group" => group.to_owned(), "topic" => e.topic().to_owned(), "partition" => e.partition().to_string()
            )
            .set(lag as f64);
            now.push((e.topic().to_owned(), e.partition()));
        }
    }
    for (t, p) in before.into_iter().filter(|x| !now.contains(x)) {
        metrics::gauge!(
            "vitalwatch_kafka_consumer_lag", "group" => group.to_owned(), "topic" => t, "partition" => p.to_string()
        )
        .set(0.0);
    }
    now
}

/// Watches for a stuck group (see [`KafkaConsumer`]) and asks for a rejoin:
/// some partition that is not assigned here has unconsumed messages and its
/// committed offset has not moved for [`STUCK_AFTER`]. A live owner would be
/// committing; with Apache Kafka the coordinator rebalances a dead member's
/// partitions after `session.timeout.ms` (10 s), before this triggers. Also
/// reports the consumer lag.
async fn watchdog(
    shared: Arc<std::sync::Mutex<Arc<GroupConsumer>>>,
    rejoin: Arc<std::sync::atomic::AtomicBool>,
    topics: Vec<String>,
    group: String,
) {
    let mut stalled: std::collections::HashMap<(String, i32), (i64, std::time::Instant)> =
        std::collections::HashMap::new();
    let mut reported: Vec<(String, i32)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let c = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mine: std::collections::HashSet<(String, i32)> = c
            .assignment()
            .map(|a| a.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect())
            .unwrap_or_default();
        let (t, g, before) = (topics.clone(), group.clone(), std::mem::take(&mut reported));
        let polled = tokio::task::spawn_blocking(move || {
            let progress = group_progress(&c, &t)?;
            let reported = report_lag(&c, &g, &progress, before);
            Some((progress, reported))
        })
        .await;
        let Ok(Some((progress, now_reported))) = polled else {
            continue;
        };
        reported = now_reported;
        let now = std::time::Instant::now();
        let mut stuck: Option<((String, i32), i64)> = None;
        for (key, committed, high) in progress {
            if mine.contains(&key) || high <= committed {
                stalled.remove(&key);
                continue;
            }
            match stalled.get(&key) {
                Some((at, since)) if *at == committed => {
                    if now.duration_since(*since) >= STUCK_AFTER {
                        stuck = Some((key, high - committed));
                    }
                }
                _ => {
                    stalled.insert(key, (committed, now));
                }
            }
        }
        if let Some(((topic, partition), lag)) = stuck {
            tracing::warn!(
                message = "Consumer group is stuck (a partition not assigned here is not consumed); rejoining.",
                group = %group,
                topic = %topic,
                partition,
                lag
            );
            rejoin.store(true, std::sync::atomic::Ordering::SeqCst);
            stalled.clear();
        }
    }
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn recv(&mut self) -> Result<Message, BusError> {
        if self.held.is_none() && self.rejoin.swap(false, std::sync::atomic::Ordering::SeqCst) {
            self.rejoin_now();
        }
        // Cancel safety (callers time out `recv`): a message taken from the
        // stream is held until it is returned, so a cancelled resume check
        // loses nothing; the next call finishes the check and returns it.
        if self.held.is_none() {
            let inner = self.inner.clone();
            let taken = self.take(&inner.recv().await.map_err(classify)?);
            self.held = Some(taken);
        }
        if let Some((m, Step::FirstAfterAssignment)) = &self.held {
            self.check_resume(&m.topic, m.partition, m.offset).await;
        }
        let (m, step) = self.held.take().ok_or(BusError::Closed)?;
        if let Step::Gap { expected, skipped } = step {
            report_skipped(&self.group, &m.topic, m.partition, expected, skipped);
        }
        Ok(m)
    }

    /// Hands out what librdkafka has already fetched without a timer, a
    /// boxed future or a wake-up per record: one message stream for the
    /// whole batch, polled once per record while records are there, and
    /// awaited (up to the deadline) only when it is empty.
    async fn recv_batch(&mut self, max: usize, wait: Duration, idle: Duration) -> Result<Vec<Message>, BusError> {
        let mut batch = Vec::with_capacity(max.min(1024));
        match tokio::time::timeout(idle, self.recv()).await {
            Ok(m) => batch.push(m?),
            Err(_) => return Ok(batch),
        }
        let deadline = tokio::time::Instant::now() + wait;
        let inner = self.inner.clone();
        let mut stream = inner.stream();
        while batch.len() < max {
            let next = match stream.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            // A receive error ends the batch (the next `recv` reports it if it lasts).
            let Some(Ok(record)) = next else { break };
            match self.take(&record) {
                (m, Step::FirstAfterAssignment) => {
                    // Its resume check needs a round trip: `recv` does it and
                    // hands the record out first thing next time.
                    self.held = Some((m, Step::FirstAfterAssignment));
                    break;
                }
                (m, Step::Gap { expected, skipped }) => {
                    report_skipped(&self.group, &m.topic, m.partition, expected, skipped);
                    batch.push(m);
                }
                (m, Step::InOrder) => batch.push(m),
            }
        }
        Ok(batch)
    }

    async fn commit(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError> {
        if positions.is_empty() {
            return Ok(());
        }
        let tpl = next_offsets(positions)?;
        let c = self.inner.clone();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| BusError::Transient(e.to_string()))?
            .map_err(classify);
        metrics::histogram!("vitalwatch_bus_commit_seconds").record(started.elapsed().as_secs_f64());
        result
    }

    async fn commit_async(&mut self, positions: &[(String, i32, i64)]) -> Result<(), BusError> {
        if positions.is_empty() {
            return Ok(());
        }
        let tpl = next_offsets(positions)?;
        // Only enqueues the OffsetCommit request (librdkafka sends commits in
        // order); a failure reaches `GroupContext::commit_callback` and means
        // redelivery.
        self.inner.commit(&tpl, CommitMode::Async).map_err(classify)
    }

    async fn partition_count(&mut self, topic: &str) -> Option<i32> {
        let c = self.inner.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let md = c.fetch_metadata(Some(&topic), Duration::from_secs(5)).ok()?;
            let t = md.topics().iter().find(|t| t.name() == topic)?;
            (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len() as i32)
        })
        .await
        .ok()
        .flatten()
    }

    async fn committed(
        &mut self,
        group: Option<&str>,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Option<i64>>, BusError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let timeout = Duration::from_secs(5);
        let read = match group {
            None => {
                let c = self.inner.clone();
                tokio::task::spawn_blocking(move || c.committed_offsets(tpl, timeout)).await
            }
            Some(g) => {
                let c = match self.peers.get(g) {
                    Some(c) => c.clone(),
                    None => {
                        // A plain client with that group id: OffsetFetch only, no subscription.
                        let mut cfg = base_config(&self.settings, &format!("{}-offsets", self.client_id))?;
                        cfg.set("group.id", g).set("enable.auto.commit", "false");
                        let c: Arc<BaseConsumer> = Arc::new(cfg.create().map_err(classify)?);
                        self.peers.insert(g.to_owned(), c.clone());
                        c
                    }
                };
                tokio::task::spawn_blocking(move || c.committed_offsets(tpl, timeout)).await
            }
        };
        let tpl = read.map_err(|e| BusError::Transient(e.to_string()))?.map_err(classify)?;
        Ok(partitions
            .iter()
            .map(|(t, p)| match tpl.find_partition(t, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            })
            .collect())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.inner
            .assignment()
            .map(|tpl| tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect())
            .unwrap_or_default()
    }
}

/// A lightweight client that only asks the cluster for metadata: the bus
/// readiness check of every role.
#[derive(Clone)]
pub struct KafkaProbe {
    inner: Arc<rdkafka::consumer::BaseConsumer>,
}

impl KafkaProbe {
    /// A probe client (no group, no subscription).
    pub fn new(s: &BusSettings, client_id: &str) -> Result<Self, BusError> {
        let inner = base_config(s, &format!("{client_id}-probe"))?
            .create()
            .map_err(|e| BusError::Permanent(format!("kafka probe: {}", describe(&e))))?;
        Ok(KafkaProbe { inner: Arc::new(inner) })
    }

    /// Succeeds when a broker answers a metadata request with at least one broker.
    pub async fn check(&self) -> Result<(), BusError> {
        let c = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let md = c.fetch_metadata(None, Duration::from_secs(2)).map_err(classify)?;
            if md.brokers().is_empty() {
                return Err(BusError::Transient("the cluster lists no brokers".into()));
            }
            Ok(())
        })
        .await
        .map_err(|e| BusError::Transient(e.to_string()))?
    }
}

/// Creates the vitalwatch topics if they do not exist.
pub async fn ensure_topics(s: &BusSettings, topics: &[&str]) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = base_config(s, "vitalwatch-admin")?
        .create()
        .map_err(|e| BusError::Permanent(format!("kafka admin: {}", describe(&e))))?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, s.partitions, TopicReplication::Fixed(s.replication))).collect();
    let results = admin
        .create_topics(new.iter(), &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .map_err(classify)?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(BusError::Transient(format!("creating topic {t}: {code}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nS3cretKeyMaterial\n-----END PRIVATE KEY-----";

    #[test]
    fn configuration_errors_hide_secret_values() {
        let e = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            format!("Invalid value \"{PEM}\" for configuration property \"ssl.key.pem\""),
            "ssl.key.pem".into(),
            PEM.into(),
        );
        assert!(e.to_string().contains("S3cretKeyMaterial"), "rdkafka prints the value: {e}");
        let d = describe(&e);
        assert!(!d.contains("S3cretKeyMaterial") && d.contains("ssl.key.pem"), "{d}");
        let plain = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "acks".into(),
            "most".into(),
        );
        assert!(describe(&plain).contains("acks most"));
    }

    #[test]
    fn client_creation_with_a_bad_key_hides_it() {
        let mut s = BusSettings::default();
        s.kafka.insert("security.protocol", "ssl");
        s.kafka.insert("ssl.key.pem", PEM);
        s.kafka.insert("sasl.password", "S3cretSaslPassword");
        match KafkaProducer::new(&s, "secret-test") {
            Ok(_) => {}
            Err(e) => {
                let t = e.to_string();
                assert!(!t.contains("S3cretKeyMaterial") && !t.contains("S3cretSaslPassword"), "{t}");
            }
        }
    }
}
