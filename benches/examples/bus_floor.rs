//! The broker's own latency floor, with no vitalwatch role in the path: the
//! producer and consumer the roles use (`vitalwatch_platform::bus::kafka`,
//! idempotent, `acks=all`, the same librdkafka settings), a paced stream of
//! Observation-sized keyed messages, and the time from `send` to the delivery
//! acknowledgment and to the consumer group receiving the message.
//!
//! ```sh
//! cargo run --release -p vitalwatch-benches --example bus_floor --features kafka -- \
//!     127.0.0.1:19092 10000 30 4
//! ```
//!
//! The first two seconds are a warm-up and are not measured.
//!
//! Arguments: brokers, messages per second, seconds, partitions, then any
//! number of `key=value` librdkafka properties to try (`bus.kafka`). Every alert
//! in the rules benchmark crosses the broker twice (the reading on the
//! observations topic, the alert on the alerts topic), so twice this hop is
//! the least any "publish -> alert event" latency can be on the same broker.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use vitalwatch_platform::bus::kafka::{KafkaConsumer, KafkaProducer, ensure_topics};
use vitalwatch_platform::bus::{Consumer, Producer, recv_batch};
use vitalwatch_platform::config::BusSettings;

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<22} n={:>8}  p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        h.len(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.9) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let brokers = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:9092".into());
    let rate: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let partitions: i32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(4);
    let topic = format!("bus-floor-{}", now_micros());
    let kafka =
        args.iter().skip(5).filter_map(|a| a.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let settings = BusSettings { brokers, partitions, replication: 1, kafka, ..BusSettings::default() };
    ensure_topics(&settings, &[topic.as_str()]).await?;

    let producer = Arc::new(KafkaProducer::new(&settings, "bus-floor-producer")?);
    let mut consumer = KafkaConsumer::new(&settings, &format!("{topic}-group"), "bus-floor-consumer", &[&topic])?;
    // Join the group before producing, so the first messages measure the hop
    // and not the group join.
    while consumer.assignment().is_empty() {
        let _ = recv_batch(&mut consumer, 1, Duration::from_millis(10), Duration::from_millis(200)).await;
    }

    let total = rate * seconds;
    let consumed = tokio::spawn(async move {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
        let mut seen = 0u64;
        let deadline = Instant::now() + Duration::from_secs(seconds + 60);
        while seen < total && Instant::now() < deadline {
            let batch =
                match recv_batch(&mut consumer, 5000, Duration::from_millis(20), Duration::from_millis(500)).await {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("consume error: {e}");
                        continue;
                    }
                };
            let now = now_micros();
            let mut last = Vec::new();
            for m in &batch {
                let sent =
                    m.payload.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).unwrap_or(0);
                if m.payload.get(8) == Some(&1) {
                    let _ = h.record(now.saturating_sub(sent).max(1));
                }
                last.retain(|(_, p, _): &(String, i32, i64)| *p != m.partition);
                last.push((m.topic.clone(), m.partition, m.offset));
            }
            seen += batch.len() as u64;
            if !last.is_empty() {
                let _ = consumer.commit(&last).await;
            }
        }
        (h, seen)
    });

    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let started = Instant::now();
    let mut body = vec![0u8; 160]; // about a protobuf Observation
    for i in 0..total {
        let due = started + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now())
            && wait > Duration::from_micros(500)
        {
            tokio::time::sleep(wait).await;
        }
        let sent = now_micros();
        body[..8].copy_from_slice(&sent.to_le_bytes());
        // The first two seconds are not measured: the producer's start-up
        // (metadata, producer id) is not the steady-state hop.
        let measured = i >= rate * 2;
        body[8] = u8::from(measured);
        let key = format!("p-{:05}", i % 2000);
        let delivery = producer.send(&topic, key.as_bytes(), body.clone()).await?;
        let tx = ack_tx.clone();
        tokio::spawn(async move {
            if delivery.await.is_ok() && measured {
                let _ = tx.send(now_micros().saturating_sub(sent).max(1));
            }
        });
    }
    drop(ack_tx);
    let produced_in = started.elapsed();
    let mut acks = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
    while let Some(v) = ack_rx.recv().await {
        let _ = acks.record(v);
    }
    let (hop, seen) = consumed.await?;
    println!(
        "{total} messages offered at {rate}/s over {:.1} s ({:.0}/s), {} partitions; {seen} consumed",
        produced_in.as_secs_f64(),
        total as f64 / produced_in.as_secs_f64(),
        settings.partitions
    );
    report("send -> broker ack", &acks);
    report("send -> consumed", &hop);
    Ok(())
}
