//! Consumer-group handover on the real Kafka-protocol broker: a partition
//! that moves to another member must resume at the committed offset, even
//! when that offset falls inside a producer batch.
//!
//! This is the situation of every scale-in and rolling restart: a persist or
//! rules worker commits what it wrote (its batch rarely ends where the
//! producer's batch ended) and leaves; the next owner must read the rest.
//! tansu 0.6.0's in-memory engine skipped the rest of such a producer batch
//! (it served only batches whose base offset was at or after the fetch
//! offset): the records were on the broker and never consumed. scripts/
//! services.sh builds tansu with that fixed; this test keeps it fixed. The
//! other tests here guard the rest of the consumer contract: cancel-safe
//! receives, key placement, concurrent producers, asynchronous commits and
//! fetches answered as soon as records arrive.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use vitalwatch_platform::bus::kafka::{KafkaConsumer, KafkaProducer, ensure_topics};
use vitalwatch_platform::bus::{CommitTracker, Consumer, Message, Producer, partition_for_key};
use vitalwatch_platform::config::{BusKind, BusSettings};

const RECORDS: i64 = 10;
const FIRST_OWNER_TAKES: i64 = 4;

fn settings(topic: &str) -> BusSettings {
    BusSettings {
        kind: BusKind::Kafka,
        brokers: kafka(),
        observations_topic: topic.to_owned(),
        partitions: 1,
        // One producer batch for all records.
        kafka: BTreeMap::from([("linger.ms".to_owned(), "200".to_owned())]).into(),
        ..BusSettings::default()
    }
}

async fn recv(c: &mut KafkaConsumer, wait: Duration) -> Option<Message> {
    match tokio::time::timeout(wait, c.recv()).await {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => panic!("receive failed: {e}"),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_owner_resumes_inside_a_producer_batch() {
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let topic = unique("handover");
    let group = unique("handover_group");
    let s = settings(&topic);
    ensure_topics(&s, &[&topic]).await.expect("create topic");

    // All records in flight at once, so they share one producer batch.
    let producer = KafkaProducer::new(&s, "handover-producer").expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        deliveries.push(producer.send(&topic, b"patient", format!("reading-{i}").into_bytes()).await.expect("send"));
    }
    for d in deliveries {
        d.await.expect("delivered");
    }

    // The first owner processes part of the batch, commits it, and leaves.
    let mut first = KafkaConsumer::new(&s, &group, "handover-a", &[&topic]).expect("consumer a");
    for expected in 0..FIRST_OWNER_TAKES {
        let Message { offset, payload, .. } =
            recv(&mut first, Duration::from_secs(30)).await.expect("first owner receives");
        assert_eq!(offset, expected);
        assert_eq!(payload, format!("reading-{expected}").into_bytes());
    }
    first.commit(&[(topic.clone(), 0, FIRST_OWNER_TAKES - 1)]).await.expect("commit");
    drop(first);

    // The next owner must get exactly the rest, in order.
    let mut next = KafkaConsumer::new(&s, &group, "handover-b", &[&topic]).expect("consumer b");
    let mut got = Vec::new();
    while let Some(m) = recv(&mut next, Duration::from_secs(if got.is_empty() { 30 } else { 5 })).await {
        got.push(m.offset);
        if got.len() as i64 == RECORDS - FIRST_OWNER_TAKES {
            break;
        }
    }
    assert_eq!(
        got,
        (FIRST_OWNER_TAKES..RECORDS).collect::<Vec<_>>(),
        "the next owner must resume at the committed offset {FIRST_OWNER_TAKES}"
    );

    // And it keeps consuming what comes next (a later producer batch).
    for i in RECORDS..RECORDS + 3 {
        producer
            .send(&topic, b"patient", format!("reading-{i}").into_bytes())
            .await
            .expect("send")
            .await
            .expect("delivered");
    }
    let mut later = Vec::new();
    while later.len() < 3 {
        let Some(Message { offset, payload, .. }) = recv(&mut next, Duration::from_secs(30)).await else { break };
        assert_eq!(payload, format!("reading-{offset}").into_bytes());
        later.push(offset);
    }
    assert_eq!(later, vec![RECORDS, RECORDS + 1, RECORDS + 2]);
}

/// `recv` is timed out all the time (`recv_batch`); a timeout must never
/// lose a message, including while the consumer checks where a newly
/// assigned partition resumed (a broker round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_receive_loses_nothing() {
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    const PARTITIONS: i32 = 3;
    const PER_KEY: usize = 20;
    let topic = unique("cancel");
    let s = BusSettings { partitions: PARTITIONS, ..settings(&topic) };
    ensure_topics(&s, &[&topic]).await.expect("create topic");
    let producer = KafkaProducer::new(&s, "cancel-producer").expect("producer");
    let mut deliveries = Vec::new();
    for key in 0..PARTITIONS * 4 {
        for i in 0..PER_KEY {
            let payload = format!("{key}-{i}").into_bytes();
            deliveries.push(producer.send(&topic, format!("k{key}").as_bytes(), payload).await.expect("send"));
        }
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    let total = (PARTITIONS * 4) as usize * PER_KEY;

    let mut c = KafkaConsumer::new(&s, &unique("cancel_group"), "cancel-a", &[&topic]).expect("consumer");
    let mut got: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut timeouts = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < total && tokio::time::Instant::now() < deadline {
        // Short enough to cut into the resume check of each new partition.
        match tokio::time::timeout(Duration::from_micros(300), c.recv()).await {
            Ok(Ok(m)) => {
                got.entry(m.partition).or_default().push(m.offset);
                n += 1;
            }
            Ok(Err(e)) => panic!("receive failed: {e}"),
            Err(_) => timeouts += 1,
        }
    }
    assert!(timeouts > 0, "the receive was never cut short; the test proves nothing");
    assert_eq!(n, total, "received {n} of {total} ({timeouts} timeouts)");
    for (partition, offsets) in got {
        let expected: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(offsets, expected, "partition {partition}: every offset once, in order");
    }
}

/// Consumers tell which patients their partitions cover by computing the
/// producer's partitioner (`partition_for_key`); the broker's placement
/// must agree for every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_the_partition_consumers_compute() {
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    const PARTITIONS: i32 = 5;
    let topic = unique("placement");
    let s = BusSettings { partitions: PARTITIONS, ..settings(&topic) };
    ensure_topics(&s, &[&topic]).await.expect("create topic");
    let producer = KafkaProducer::new(&s, "placement-producer").expect("producer");
    let keys: Vec<String> = (0..60).map(|i| format!("patient-{i:03}")).collect();
    let mut deliveries = Vec::new();
    for k in &keys {
        deliveries.push(producer.send(&topic, k.as_bytes(), k.clone().into_bytes()).await.expect("send"));
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    let mut c = KafkaConsumer::new(&s, &unique("placement_group"), "placement-a", &[&topic]).expect("consumer");
    assert_eq!(c.partition_count(&topic).await, Some(PARTITIONS));
    let mut seen = BTreeMap::new();
    while seen.len() < keys.len() {
        let Some(m) = recv(&mut c, Duration::from_secs(30)).await else { break };
        seen.insert(String::from_utf8(m.payload).expect("utf-8"), m.partition);
    }
    assert_eq!(seen.len(), keys.len(), "every key consumed");
    let used: std::collections::BTreeSet<i32> = seen.values().copied().collect();
    assert!(used.len() > 1, "keys spread over partitions");
    for (key, partition) in seen {
        assert_eq!(partition, partition_for_key(key.as_bytes(), PARTITIONS), "{key}");
    }
}

/// Four producers on one partition (ingest replicas always share partitions) while
/// a consumer reads live: every offset arrives once, in order. tansu 0.6.0
/// could serve a batch before an earlier one of the other producer was
/// visible, and the consumer jumped over the earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_on_one_partition_lose_nothing() {
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    const EACH: usize = 1500;
    let topic = unique("concurrent");
    let s =
        BusSettings { kafka: BTreeMap::from([("linger.ms".to_owned(), "0".to_owned())]).into(), ..settings(&topic) };
    ensure_topics(&s, &[&topic]).await.expect("create topic");
    let mut c = KafkaConsumer::new(&s, &unique("concurrent_group"), "concurrent-a", &[&topic]).expect("consumer");
    let mut producers = Vec::new();
    for name in ["p1", "p2", "p3", "p4"] {
        let p = KafkaProducer::new(&s, &format!("concurrent-{name}")).expect("producer");
        let topic = topic.clone();
        producers.push(tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..EACH {
                deliveries.push(p.send(&topic, b"patient", format!("{name}-{i}").into_bytes()).await.expect("send"));
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            for d in deliveries {
                d.await.expect("delivered");
            }
        }));
    }
    let mut offsets = Vec::new();
    while offsets.len() < 4 * EACH {
        let Some(m) = recv(&mut c, Duration::from_secs(30)).await else { break };
        offsets.push(m.offset);
    }
    for p in producers {
        p.await.expect("producer task");
    }
    let expected: Vec<i64> = (0..(4 * EACH) as i64).collect();
    let first_gap = offsets.iter().zip(&expected).find(|(got, want)| got != want);
    assert!(
        first_gap.is_none() && offsets.len() == expected.len(),
        "first mismatch {first_gap:?}, {} received",
        offsets.len()
    );
}

/// The consumer roles commit asynchronously after each batch and
/// synchronously when they stop (`CommitTracker`): the offsets must reach the
/// broker, and the next owner must resume right after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asynchronous_commits_reach_the_broker() {
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let topic = unique("async_commit");
    let group = unique("async_commit_group");
    let s = settings(&topic);
    ensure_topics(&s, &[&topic]).await.expect("create topic");
    let producer = KafkaProducer::new(&s, "async-commit-producer").expect("producer");
    for i in 0..RECORDS {
        producer.send(&topic, b"patient", vec![i as u8]).await.expect("send").await.expect("delivered");
    }

    let mut first = KafkaConsumer::new(&s, &group, "async-commit-a", &[&topic]).expect("consumer a");
    let mut commits = CommitTracker::default();
    for expected in 0..FIRST_OWNER_TAKES {
        let m = recv(&mut first, Duration::from_secs(30)).await.expect("first owner receives");
        assert_eq!(m.offset, expected);
        commits.after_batch(&mut first, &[(topic.clone(), 0, m.offset)]).await.expect("asynchronous commit");
    }
    // The asynchronous commits land without any further call.
    let part = [(topic.clone(), 0)];
    let mut committed = None;
    for _ in 0..100 {
        committed = first.committed(None, &part).await.expect("read committed")[0];
        if committed == Some(FIRST_OWNER_TAKES) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(committed, Some(FIRST_OWNER_TAKES), "the asynchronous commits must reach the broker");

    // One more, then a clean stop: the final synchronous commit covers it.
    let m = recv(&mut first, Duration::from_secs(30)).await.expect("first owner receives");
    assert_eq!(m.offset, FIRST_OWNER_TAKES);
    commits.after_batch(&mut first, &[(topic.clone(), 0, m.offset)]).await.expect("asynchronous commit");
    commits.finish(&mut first).await.expect("final commit");
    assert_eq!(first.committed(None, &part).await.expect("read committed")[0], Some(FIRST_OWNER_TAKES + 1));
    drop(first);

    let mut next = KafkaConsumer::new(&s, &group, "async-commit-b", &[&topic]).expect("consumer b");
    let m = recv(&mut next, Duration::from_secs(30)).await.expect("next owner receives");
    assert_eq!(m.offset, FIRST_OWNER_TAKES + 1, "the next owner resumes after the last commit");
}

/// A fetch is answered as soon as records are there, not when
/// `fetch.wait.max.ms` runs out (tansu 0.6.0 did the latter and served only
/// what was there when the fetch began, which made every consumer hop cost
/// up to twice the wait; scripts/tansu/tansu-0.6.0.patch fixes it). With a
/// 6-second wait, a record produced while the consumer waits must arrive
/// well before the wait is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_is_answered_when_a_record_arrives() {
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let topic = unique("long_poll");
    let mut s = settings(&topic);
    s.kafka = BTreeMap::from([("fetch.wait.max.ms".to_owned(), "6000".to_owned())]).into();
    ensure_topics(&s, &[&topic]).await.expect("create topic");
    let producer = KafkaProducer::low_latency(&s, "long-poll-producer").expect("producer");
    let mut consumer = KafkaConsumer::new(&s, &unique("long_poll_group"), "long-poll", &[&topic]).expect("consumer");
    // Joined, assigned and idle: the consumer's fetches now wait on the broker.
    producer.send(&topic, b"k", b"warm-up".to_vec()).await.expect("send").await.expect("delivered");
    recv(&mut consumer, Duration::from_secs(60)).await.expect("warm-up record");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let sent = std::time::Instant::now();
    producer.send(&topic, b"k", b"now".to_vec()).await.expect("send").await.expect("delivered");
    let m = recv(&mut consumer, Duration::from_secs(30)).await.expect("record");
    let took = sent.elapsed();
    assert_eq!(m.payload, b"now".to_vec());
    assert!(
        took < Duration::from_secs(3),
        "the record took {took:?}: the broker held the fetch for fetch.wait.max.ms (6 s) instead of answering"
    );
}

/// The producer's delivery reports are served by a tokio task that librdkafka
/// wakes through a socket (`bus::kafka_wake`), or, for a producer made outside
/// a runtime, by a thread of its own. Both must settle every record of a
/// [`DeliveryGroup`] (ingest acknowledges an MQTT message only then), and the
/// records must be on the broker. (A failed record fails its group: the unit
/// tests of `bus::delivery`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_deliveries_are_reported_with_and_without_a_runtime() {
    use vitalwatch_platform::bus::DeliveryGroup;
    if !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let topic = unique("grouped");
    let s = BusSettings { partitions: 2, ..settings(&topic) };
    ensure_topics(&s, &[&topic]).await.expect("create topic");
    let in_runtime = KafkaProducer::new(&s, "grouped-in-runtime").expect("producer");
    let s2 = s.clone();
    let outside = std::thread::spawn(move || KafkaProducer::new(&s2, "grouped-outside").expect("producer"))
        .join()
        .expect("made outside a runtime");
    for (name, producer) in [("in a runtime", &in_runtime), ("outside a runtime", &outside)] {
        let group = DeliveryGroup::new();
        for i in 0..50 {
            let key = format!("patient-{i}");
            producer
                .send_grouped(&group, &topic, key.as_bytes(), format!("{name} {i}").into_bytes())
                .await
                .expect("send");
        }
        tokio::time::timeout(Duration::from_secs(30), group.delivered())
            .await
            .unwrap_or_else(|_| panic!("{name}: the group was never settled"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Every delivered record is on the broker.
    let mut c = KafkaConsumer::new(&s, &unique("grouped_group"), "grouped-reader", &[&topic]).expect("consumer");
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 100 {
        let Some(m) = recv(&mut c, Duration::from_secs(30)).await else { break };
        seen.insert(String::from_utf8(m.payload).expect("utf-8"));
    }
    for name in ["in a runtime", "outside a runtime"] {
        for i in 0..50 {
            assert!(seen.contains(&format!("{name} {i}")), "{name} {i} was delivered but is not on the broker");
        }
    }
}
