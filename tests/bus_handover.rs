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
//! services.sh builds tansu with that fixed; this test keeps it fixed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use vitalwatch_platform::bus::kafka::{KafkaConsumer, KafkaProducer, ensure_topics};
use vitalwatch_platform::bus::{Consumer, Producer};
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
        kafka: BTreeMap::from([("linger.ms".to_owned(), "200".to_owned())]),
        ..BusSettings::default()
    }
}

async fn recv(c: &mut KafkaConsumer, wait: Duration) -> Option<(i64, Vec<u8>)> {
    match tokio::time::timeout(wait, c.recv()).await {
        Ok(Ok(m)) => Some((m.offset, m.payload)),
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
        let (offset, payload) = recv(&mut first, Duration::from_secs(30)).await.expect("first owner receives");
        assert_eq!(offset, expected);
        assert_eq!(payload, format!("reading-{expected}").into_bytes());
    }
    first.commit(&[(topic.clone(), 0, FIRST_OWNER_TAKES - 1)]).await.expect("commit");
    drop(first);

    // The next owner must get exactly the rest, in order.
    let mut next = KafkaConsumer::new(&s, &group, "handover-b", &[&topic]).expect("consumer b");
    let mut got = Vec::new();
    while let Some((offset, _)) = recv(&mut next, Duration::from_secs(if got.is_empty() { 30 } else { 5 })).await {
        got.push(offset);
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
        let Some((offset, payload)) = recv(&mut next, Duration::from_secs(30)).await else { break };
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
