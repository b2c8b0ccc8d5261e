//! Amplification limits of ingest against real services (Mosquitto -> `vitalwatch
//! ingest` -> Kafka-protocol broker), issue #12 defect 5:
//! - a message with 10 bad readings makes exactly one dead letter, carrying the
//!   10 reasons and one copy of the payload (it made 10, each with the payload);
//! - a device that floods is rate limited (`rate_limited` dead letters), while
//!   another device publishing normally has every reading produced.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rumqttc::QoS;
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId, proto};

/// What a consumer of the observation and dead-letter topics saw.
#[derive(Default)]
struct Seen {
    /// Observations per patient.
    observations: HashMap<String, usize>,
    /// Dead letters: (key = MQTT topic, decoded).
    dead_letters: Vec<(String, proto::Rejection)>,
}

/// Consumes `run`'s observation and dead-letter topics until `done` holds
/// (then 2 s more, to see anything extra) or 90 s pass.
async fn consume(run: &str, done: impl Fn(&Seen) -> bool) -> Seen {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (obs, dl) = (format!("{run}.obs"), format!("{run}.rejected"));
    c.subscribe(&[&obs, &dl]).expect("subscribe");
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut settle_until: Option<Instant> = None;
    while Instant::now() < deadline && settle_until.is_none_or(|t| Instant::now() < t) {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
            let payload = m.payload().unwrap_or_default();
            if m.topic() == obs {
                let o = proto::Observation::decode(payload).expect("observation protobuf");
                *seen.observations.entry(o.patient_id).or_default() += 1;
            } else {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                seen.dead_letters.push((key, proto::Rejection::decode(payload).expect("rejection protobuf")));
            }
        }
        if settle_until.is_none() && done(&seen) {
            settle_until = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    seen
}

/// A database with `pairs` (device, patient) enrolled, and the service environment.
async fn setup(run: &str, mosq: &Mosquitto, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let db = fresh_database(&pg_url(), run).await;
    let env = service_env(run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.expect("store");
    for (d, p) in pairs {
        let (d, p) = (DeviceId::new(*d).unwrap(), PatientId::new(*p).unwrap());
        st.add_patient(&p).await.unwrap();
        st.add_device(&d, "multi").await.unwrap();
        st.enrol(&d, &p, Utc::now() - chrono::Duration::days(30)).await.unwrap();
    }
    env
}

/// Waits until ingest took a probe message (an unknown device's, so it
/// leaves only a dead letter keyed by the probe topic).
async fn wait_subscribed(ops: &str, client: &rumqttc::AsyncClient) {
    let ok = wait_until(Duration::from_secs(60), || async {
        let _ = client.publish(PROBE, QoS::AtLeastOnce, false, "{}").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sample(&get(ops, "/metrics").await.1, "vitalwatch_ingest_messages_total") > 0.0
    })
    .await;
    assert!(ok, "ingest never received a message");
}

const PROBE: &str = "vitalwatch/v1/devices/nobody/readings/json";

fn spo2(t: DateTime<Utc>, value: f64) -> String {
    format!(r#"{{"type":"spo2","time":"{}","unit":"%","value":{value}}}"#, t.to_rfc3339())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_ten_bad_readings_makes_one_dead_letter_with_ten_reasons() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("dl1");
    let env = setup(&run, &mosq, &[("dev-a", "pat-a")]).await;
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("ingest.log");
    let mut ingest = Proc::spawn_logged("ingest", &["ingest"], &env, &log);
    let ops = ops_addr(&log).await;
    let client = mqtt_publisher(&run, mosq.port);
    wait_subscribed(&ops, &client).await;

    // Ten impossible SpO2 values and one good one, in a 1-KB message.
    let t = Utc::now() - chrono::Duration::minutes(5);
    let mut readings: Vec<String> = (0..10).map(|k| spo2(t + chrono::Duration::seconds(k), 150.0 + k as f64)).collect();
    readings.push(spo2(t + chrono::Duration::seconds(20), 97.0));
    let payload = format!(r#"{{"msg_id":"ten-bad","readings":[{}]}}"#, readings.join(","));
    let topic = "vitalwatch/v1/devices/dev-a/readings/json";
    client.publish(topic, QoS::AtLeastOnce, false, payload.clone()).await.unwrap();

    let seen =
        consume(&run, |s| s.observations.get("pat-a") == Some(&1) && s.dead_letters.iter().any(|(k, _)| k == topic))
            .await;
    let mine: Vec<&proto::Rejection> = seen.dead_letters.iter().filter(|(k, _)| k == topic).map(|(_, r)| r).collect();
    assert_eq!(mine.len(), 1, "dead letters for the message with 10 bad readings");
    let dl = mine[0];
    assert_eq!(dl.raw_payload, payload.as_bytes(), "one copy of the raw payload");
    assert_eq!((dl.reason.as_str(), dl.field.as_str()), ("value_out_of_range", "readings[0].value"));
    assert_eq!(dl.reasons.len(), 10, "the per-reading reasons");
    for (k, r) in dl.reasons.iter().enumerate() {
        assert_eq!((r.reason.as_str(), r.index), ("value_out_of_range", Some(k as u32)));
        assert_eq!(r.field, format!("readings[{k}].value"));
    }
    assert_eq!(seen.observations.get("pat-a"), Some(&1), "the good reading is kept");
    ingest.terminate(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_device_is_rate_limited_and_others_are_not() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("flood");
    let mut env = setup(&run, &mosq, &[("dev-flood", "pat-f"), ("dev-calm", "pat-c")]).await;
    // Later entries win: 20 messages a second per sender, bursts of 50.
    env.push(("VITALWATCH_INGEST__RATE_LIMIT_PER_SEC".into(), "20".into()));
    env.push(("VITALWATCH_INGEST__RATE_LIMIT_BURST".into(), "50".into()));
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("ingest.log");
    let mut ingest = Proc::spawn_logged("ingest", &["ingest"], &env, &log);
    let ops = ops_addr(&log).await;
    let probe = mqtt_publisher(&format!("{run}-probe"), mosq.port);
    wait_subscribed(&ops, &probe).await;

    let base = Utc::now() - chrono::Duration::hours(1);
    const FLOOD: usize = 2000;
    const CALM: usize = 40;
    // The calm device: 40 messages at 8 a second, while the other floods.
    let calm = mqtt_publisher(&format!("{run}-calm"), mosq.port);
    let calm_task = tokio::spawn(async move {
        for k in 0..CALM {
            let body = format!(r#"{{"readings":[{}]}}"#, spo2(base + chrono::Duration::seconds(k as i64), 96.0));
            calm.publish("vitalwatch/v1/devices/dev-calm/readings/json", QoS::AtLeastOnce, false, body).await.unwrap();
            tokio::time::sleep(Duration::from_millis(125)).await;
        }
    });
    let flood = mqtt_publisher(&format!("{run}-flood"), mosq.port);
    let flood_topic = "vitalwatch/v1/devices/dev-flood/readings/json";
    for k in 0..FLOOD {
        let body = format!(r#"{{"readings":[{}]}}"#, spo2(base + chrono::Duration::seconds(k as i64), 95.0));
        flood.publish(flood_topic, QoS::AtLeastOnce, false, body).await.unwrap();
    }
    calm_task.await.unwrap();

    let limited = |s: &Seen| s.dead_letters.iter().filter(|(k, _)| k == flood_topic).count();
    let seen = consume(&run, |s| {
        s.observations.get("pat-c") == Some(&CALM)
            && s.observations.get("pat-f").copied().unwrap_or(0) + limited(s) >= FLOOD
    })
    .await;
    assert_eq!(seen.observations.get("pat-c"), Some(&CALM), "every reading of the calm device");
    assert!(!seen.dead_letters.iter().any(|(k, _)| k.contains("dev-calm")), "the calm device was not limited");
    let accepted = seen.observations.get("pat-f").copied().unwrap_or(0);
    let flood_dl: Vec<&proto::Rejection> =
        seen.dead_letters.iter().filter(|(k, _)| k == flood_topic).map(|(_, r)| r).collect();
    assert_eq!(accepted + flood_dl.len(), FLOOD, "every flood message is either accepted or dead-lettered");
    assert!(accepted >= 50, "the burst passes: {accepted}");
    assert!(flood_dl.len() >= FLOOD / 2, "the flood is limited: {} dead letters", flood_dl.len());
    for r in &flood_dl {
        assert_eq!(r.reason, "rate_limited");
        // Kept, once: the dead letter is where a limited reading can be recovered.
        assert!(!r.raw_payload.is_empty(), "the payload of a rate-limited message is kept for recovery");
        assert_eq!(r.payload_bytes as usize, r.raw_payload.len());
    }
    ingest.terminate(Duration::from_secs(20));
}
