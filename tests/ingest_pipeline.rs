//! The whole ingest path against real services: Mosquitto -> `vitalwatch
//! ingest` -> Kafka-protocol broker -> `vitalwatch persist` -> PostgreSQL.
//! Thousands of readings in all four formats, with duplicates, malformed
//! messages, impossible values and unknown or retired devices mixed in. The test
//! asserts the exact rows, the exact observations on Kafka, each dead letter
//! with its reason, and the rejection replies to the senders.

use crate::common;
use crate::payloads;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use payloads::*;
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId, proto};

async fn consume_all(brokers: &str, topic: &str, settle: Duration, stop_at: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let wait = if out.len() >= stop_at { settle } else { Duration::from_secs(5) };
        match tokio::time::timeout(wait, c.recv()).await {
            Ok(Ok(m)) => out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec())),
            Ok(Err(e)) => panic!("kafka consume error: {e}"),
            Err(_) if out.len() >= stop_at => break,
            Err(_) => {}
        }
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readings_in_all_formats_land_exactly_once_and_rejections_are_explained() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("ing");
    let db = fresh_database(&pg_url(), &run).await;
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);

    // Registry: 10 patients with one enrolled device each; a retired and an unenrolled device.
    let st = store::open(&db, 1000).await.expect("store");
    // Whole seconds: SenML times are sent as whole seconds.
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 2 * 86_400, 0).unwrap();
    for i in 0..10 {
        let p = PatientId::new(format!("pat-{i}")).unwrap();
        let d = DeviceId::new(format!("dev-{i}")).unwrap();
        st.add_patient(&p).await.unwrap();
        st.add_device(&d, "multi").await.unwrap();
        st.enrol(&d, &p, base - chrono::Duration::days(30)).await.unwrap();
    }
    for p in ["probe", "manual-1"] {
        st.add_patient(&PatientId::new(p).unwrap()).await.unwrap();
    }
    let retired = DeviceId::new("dev-retired").unwrap();
    st.add_device(&retired, "scale").await.unwrap();
    st.enrol(&retired, &PatientId::new("pat-0").unwrap(), base - chrono::Duration::days(30)).await.unwrap();
    st.retire_device(&retired, base - chrono::Duration::days(1)).await.unwrap();

    let mut ingest = Proc::spawn("ingest", &["ingest"], &env);
    let mut persist = Proc::spawn("persist", &["persist"], &env);

    let (client, replies) = publisher(&mosq, &run).await;
    probe_until_flowing(&client, st.as_ref()).await;

    // Valid device readings in every format, with conversions.
    let mut expected: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    for m in 0..3000u32 {
        let dev = m % 10;
        let fmt = FORMATS[(m / 10 % 4) as usize];
        let t = base + chrono::Duration::seconds(m as i64 * 10);
        let r = TestReading::nth(m, t);
        let patient = format!("pat-{dev}");
        for (code, v) in r.expected_rows() {
            expected.insert((patient.clone(), code.to_owned(), t.timestamp_micros()), v);
        }
        let topic = format!("vitalwatch/v1/devices/dev-{dev}/readings/{fmt}");
        let payload = r.encode(fmt);
        client.publish(&topic, QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
        sent.push((topic, payload));
    }
    // Duplicates: 300 messages again, byte for byte.
    for (topic, payload) in sent.iter().step_by(10) {
        client.publish(topic, QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
    }
    // Manual entries, with the app's time.
    for k in 0..100u32 {
        let t = base + chrono::Duration::seconds(k as i64 * 60 + 5);
        let w = 70.0 + k as f64 / 10.0;
        let body = format!(
            r#"{{"msg_id":"app-{k}","readings":[{{"type":"body_weight","time":"{}","unit":"kg","value":{w}}}]}}"#,
            rfc3339(t)
        );
        client.publish("vitalwatch/v1/patients/manual-1/manual/json", QoS::AtLeastOnce, false, body).await.unwrap();
        expected.insert(("manual-1".into(), "29463-7".into(), t.timestamp_micros()), w);
    }

    // Rejections, each with its expected reason.
    let mut bad: Vec<(String, Vec<u8>, &str)> = Vec::new();
    let t = base + chrono::Duration::hours(1);
    for k in 0..40 {
        bad.push((
            format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10),
            b"{not json".to_vec(),
            "malformed_payload",
        ));
    }
    for k in 0..20 {
        bad.push((
            format!("vitalwatch/v1/devices/dev-{}/readings/proto", k % 10),
            vec![0xff, 0xff, 0xff, 0x01],
            "malformed_payload",
        ));
        let body =
            format!(r#"{{"readings":[{{"type":"cholesterol","time":"{}","unit":"mg/dL","value":190}}]}}"#, rfc3339(t));
        bad.push((format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10), body.into_bytes(), "unknown_type"));
        let body = format!(r#"{{"readings":[{{"type":"spo2","time":"{}","unit":"%","value":140}}]}}"#, rfc3339(t));
        bad.push((
            format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10),
            body.into_bytes(),
            "value_out_of_range",
        ));
        let body =
            format!(r#"{{"readings":[{{"type":"body_weight","time":"{}","unit":"stone","value":12}}]}}"#, rfc3339(t));
        bad.push((format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10), body.into_bytes(), "unknown_unit"));
        let body = format!(
            r#"{{"readings":[{{"type":"blood_pressure","time":"{}","unit":"mmHg","systolic":80,"diastolic":95}}]}}"#,
            rfc3339(t)
        );
        bad.push((
            format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10),
            body.into_bytes(),
            "systolic_not_above_diastolic",
        ));
        let body = format!(
            r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":70}}]}}"#,
            rfc3339(Utc::now() + chrono::Duration::hours(2))
        );
        bad.push((format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10), body.into_bytes(), "time_in_future"));
        let body =
            format!(r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":70}}]}}"#, rfc3339(t));
        bad.push((
            format!("vitalwatch/v1/devices/ghost-{k}/readings/json"),
            body.clone().into_bytes(),
            "unknown_device",
        ));
        bad.push((
            "vitalwatch/v1/devices/dev-retired/readings/json".into(),
            body.clone().into_bytes(),
            "retired_device",
        ));
        let body = r#"{"readings":[{"type":"heart_rate","unit":"/min","value":70}]}"#;
        bad.push((
            format!("vitalwatch/v1/devices/dev-{}/readings/json", k % 10),
            body.as_bytes().to_vec(),
            "missing_time",
        ));
    }
    for k in 0..10 {
        let body =
            format!(r#"{{"patient_id":"pat-1","readings":[{{"type":"body_weight","unit":"kg","value":7{k}}}]}}"#);
        bad.push(("vitalwatch/v1/patients/manual-1/manual/json".into(), body.into_bytes(), "patient_mismatch"));
    }
    for (topic, payload, _) in &bad {
        client.publish(topic, QoS::AtLeastOnce, false, payload.clone()).await.unwrap();
    }

    // 1. The exact rows.
    let exp_rows = expected.len() as i64;
    let ok = wait_until(Duration::from_secs(120), || async {
        rows_excluding_probe(&db).await.map(|n| n >= exp_rows).unwrap_or(false)
    })
    .await;
    let (client_pg, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    assert!(ok, "rows did not arrive: {} of {exp_rows}", rows_excluding_probe(&db).await.unwrap_or(-1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = client_pg
        .query("SELECT patient_id, code, time, value, unit, source, device_id FROM observations WHERE patient_id <> 'probe'", &[])
        .await
        .unwrap();
    let mut got: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    for r in &rows {
        let t: DateTime<Utc> = r.get(2);
        let key = (r.get::<_, String>(0), r.get::<_, String>(1), t.timestamp_micros());
        assert!(got.insert(key.clone(), r.get(3)).is_none(), "row stored twice: {key:?}");
        let unit: String = r.get(4);
        assert_eq!(unit, ucum_for(&key.1), "unit of {key:?}");
        let (source, device): (String, Option<String>) = (r.get(5), r.get(6));
        if key.0 == "manual-1" {
            assert_eq!((source.as_str(), device), ("manual", None));
        } else {
            assert_eq!(source, "device");
            assert_eq!(device.as_deref(), Some(format!("dev-{}", &key.0[4..]).as_str()));
        }
    }
    assert_eq!(got.len(), expected.len(), "row count");
    for (k, v) in &expected {
        let g = got.get(k).unwrap_or_else(|| panic!("missing row {k:?}"));
        assert!((g - v).abs() < 1e-6, "value of {k:?}: stored {g}, expected {v}");
    }

    // 2. Exactly those observations on Kafka (duplicates dropped before the bus).
    let obs = consume_all(&kafka(), &format!("{run}.obs"), Duration::from_secs(3), expected.len()).await;
    let mut ids = HashSet::new();
    let mut on_kafka = 0;
    for (key, payload) in &obs {
        let o = proto::Observation::decode(payload.as_slice()).expect("observation protobuf");
        if o.patient_id == "probe" {
            continue;
        }
        on_kafka += 1;
        assert_eq!(key.as_slice(), o.patient_id.as_bytes(), "key = patient id");
        ids.insert(o.id.clone());
        let v =
            expected.get(&(o.patient_id.clone(), o.code.clone(), o.time_unix_micros)).expect("unexpected observation");
        assert!((o.value - v).abs() < 1e-6);
    }
    assert_eq!(ids.len(), expected.len(), "distinct observations on Kafka");
    assert_eq!(on_kafka, expected.len(), "observations on Kafka (duplicates must not be produced)");

    // 3. Each rejection on the dead-letter topic, with its reason and the raw payload.
    let dl = consume_all(&kafka(), &format!("{run}.rejected"), Duration::from_secs(3), bad.len()).await;
    let mut by_reason: HashMap<String, usize> = HashMap::new();
    let mut payloads_seen: HashSet<Vec<u8>> = HashSet::new();
    for (_, payload) in &dl {
        let r = proto::Rejection::decode(payload.as_slice()).expect("rejection protobuf");
        assert!(!r.message.is_empty());
        *by_reason.entry(r.reason.clone()).or_default() += 1;
        payloads_seen.insert(r.raw_payload.clone());
    }
    let mut want: HashMap<String, usize> = HashMap::new();
    for (_, p, reason) in &bad {
        *want.entry((*reason).to_owned()).or_default() += 1;
        assert!(payloads_seen.contains(p), "dead letter keeps the raw payload");
    }
    assert_eq!(by_reason, want, "dead letters by reason");

    // 4. Every rejected sender was told why.
    let ok = wait_until(Duration::from_secs(20), || async { replies.lock().await.len() >= bad.len() }).await;
    let replies = replies.lock().await.clone();
    assert!(ok, "rejection replies: {} of {}", replies.len(), bad.len());
    let range = replies
        .iter()
        .find(|(t, body)| t.starts_with("vitalwatch/v1/devices/dev-") && body["reason"] == "value_out_of_range")
        .expect("a value_out_of_range reply");
    assert_eq!(range.1["field"], "readings[0].value");
    assert!(range.1["message"].as_str().unwrap().contains("outside the possible range"));
    assert!(
        replies
            .iter()
            .any(|(t, b)| t == "vitalwatch/v1/patients/manual-1/rejected" && b["reason"] == "patient_mismatch")
    );
    assert!(
        replies.iter().any(|(t, b)| t == "vitalwatch/v1/devices/ghost-3/rejected" && b["reason"] == "unknown_device")
    );

    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}

async fn rows_excluding_probe(db: &str) -> Result<i64, tokio_postgres::Error> {
    let (c, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    c.query_one("SELECT count(*) FROM observations WHERE patient_id <> 'probe'", &[]).await.map(|r| r.get(0))
}

type Replies = std::sync::Arc<tokio::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// An MQTT client that also collects rejection replies.
async fn publisher(mosq: &Mosquitto, run: &str) -> (AsyncClient, Replies) {
    let mut opts = MqttOptions::new(format!("{run}-pub"), "127.0.0.1", mosq.port);
    opts.set_keep_alive(Duration::from_secs(30)).set_inflight(500);
    let (client, mut eventloop) = AsyncClient::new(opts, 20_000);
    let replies: Replies = Default::default();
    let r2 = replies.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    r2.lock().await.push((p.topic.clone(), v));
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client.subscribe("vitalwatch/v1/devices/+/rejected", QoS::AtLeastOnce).await.unwrap();
    client.subscribe("vitalwatch/v1/patients/+/rejected", QoS::AtLeastOnce).await.unwrap();
    (client, replies)
}

/// Publishes probe readings until one is stored: proves ingest subscribed and the path works.
async fn probe_until_flowing(client: &AsyncClient, st: &dyn store::Store) {
    let probe = PatientId::new("probe").unwrap();
    for k in 0..600 {
        let body = format!(
            r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":60}}]}}"#,
            rfc3339(Utc::now())
        );
        client.publish("vitalwatch/v1/patients/probe/manual/json", QoS::AtLeastOnce, false, body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !st.observations(&probe, 1).await.unwrap_or_default().is_empty() {
            return;
        }
        assert!(k < 599, "the pipeline never stored a probe reading");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_is_safe_twice_and_from_several_processes_at_once() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let run = unique("mig");
    let db = fresh_database(&pg_url(), &run).await;
    let env = vec![("VITALWATCH_DATABASE__URL".to_owned(), db.clone())];
    // Four pods at once.
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(bin())
                .arg("migrate")
                .envs(env.iter().cloned())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn migrate")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("run migrate");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Twice more, in sequence: nothing left to apply.
    let again = run_cli(&["migrate"], &env);
    assert!(again.contains("applied: []"), "{again}");
    let (c, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let versions: Vec<i32> = c
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plain: Vec<i32> =
        vitalwatch_schemas::migrations::POSTGRES.iter().filter(|m| !m.timescale_only).map(|m| m.version).collect();
    assert_eq!(versions, plain, "each migration recorded exactly once");
}
