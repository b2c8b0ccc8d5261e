//! A record that can never be stored must not stop storage (issue #12, defect 1).
//!
//! - A reading whose `msg_id` holds U+0000 (JSON `"\u0000"`), published among
//!   good readings of other devices: ingest rejects it (`invalid_characters`,
//!   on the rejected topic with the raw payload); every good reading is stored.
//! - A record that bypasses ingest (an `Observation` with a NUL in a string
//!   field produced straight to the observations topic, and an undecodable
//!   one), followed by good records on the same partitions: `persist` stores
//!   the good ones, dead-letters the bad ones with the reason, counts them,
//!   and commits past them.
//! - A consumer that has records to process and makes no progress (its
//!   database write hangs on a lock) makes `/readyz` fail and shows in
//!   `vitalwatch_consumer_stalled_seconds`.

use crate::common;
use crate::payloads;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use payloads::*;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::QoS;
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId, proto};

/// Rows stored for patients other than `probe`.
async fn rows(db: &str) -> i64 {
    let Ok((c, conn)) = tokio_postgres::connect(db, tokio_postgres::NoTls).await else { return -1 };
    tokio::spawn(conn);
    c.query_one("SELECT count(*) FROM observations WHERE patient_id <> 'probe'", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Every record of `topic` from the beginning, until `settle` passes with
/// nothing new once `at_least` arrived (at most 30 s).
async fn read_topic(topic: &str, at_least: usize, settle: Duration) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let wait = if out.len() >= at_least { settle } else { Duration::from_secs(2) };
        match tokio::time::timeout(wait, c.recv()).await {
            Ok(Ok(m)) => out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec())),
            Ok(Err(e)) => panic!("kafka consume error: {e}"),
            Err(_) if out.len() >= at_least => break,
            Err(_) => {}
        }
    }
    out
}

/// `vitalwatch persist` on a fresh database (with `extra` settings), proven live by a probe
/// record it stored.
struct LivePersist {
    db: String,
    ops: String,
    obs_topic: String,
    producer: FutureProducer,
    _persist: Proc,
    _tmp: tempfile::TempDir,
}

async fn live_persist(run: &str, extra: &[(&str, &str)]) -> LivePersist {
    let db = fresh_database(&pg_url(), run).await;
    let mut env = service_env(run, &db, "mqtt://127.0.0.1:1");
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    run_cli(&["migrate"], &env);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("persist.log");
    let persist = Proc::spawn_logged("persist", &["persist"], &env, &log);
    let ops = ops_addr(&log).await;
    let obs_topic = format!("{run}.obs");
    let p = producer();
    let st = store::open(&db, 1000).await.unwrap();
    let probe = PatientId::new("probe").unwrap();
    let live = wait_until(Duration::from_secs(60), || async {
        produce(&p, &obs_topic, "probe", &observation("probe", Utc::now(), "").encode_to_vec()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        !st.observations(&probe, 1).await.unwrap_or_default().is_empty()
    })
    .await;
    assert!(live, "persist never stored the probe");
    LivePersist { db, ops, obs_topic, producer: p, _persist: persist, _tmp: tmp }
}

fn producer() -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("partitioner", "consistent_random")
        .create()
        .expect("producer")
}

async fn produce(p: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    p.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10)).await.expect("produce");
}

/// A manual heart-rate observation of `patient` at `t`, as ingest would produce it.
fn observation(patient: &str, t: DateTime<Utc>, msg_id: &str) -> proto::Observation {
    proto::Observation {
        patient_id: patient.to_owned(),
        code: "8867-4".into(),
        value: 60.0 + (t.timestamp() % 40) as f64,
        unit: "/min".into(),
        time_unix_micros: t.timestamp_micros(),
        received_at_unix_micros: Utc::now().timestamp_micros(),
        source: proto::Source::Manual as i32,
        time_source: proto::TimeSource::App as i32,
        original_value: 60.0,
        original_unit: "/min".into(),
        msg_id: msg_id.into(),
        trace_id: "0123456789abcdef".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_in_msg_id_is_rejected_by_ingest_and_every_other_reading_is_stored() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("nul");
    let db = fresh_database(&pg_url(), &run).await;
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.unwrap();
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 86_400, 0).unwrap();
    for i in 0..10 {
        let (p, d) = (PatientId::new(format!("pat-{i}")).unwrap(), DeviceId::new(format!("dev-{i}")).unwrap());
        st.add_patient(&p).await.unwrap();
        st.add_device(&d, "multi").await.unwrap();
        st.enrol(&d, &p, base - chrono::Duration::days(1)).await.unwrap();
    }
    st.add_patient(&PatientId::new("probe").unwrap()).await.unwrap();
    let _ingest = Proc::spawn("ingest", &["ingest"], &env);
    let _persist = Proc::spawn("persist", &["persist"], &env);
    let client = mqtt_publisher(&run, mosq.port);
    let probe = PatientId::new("probe").unwrap();
    let live = wait_until(Duration::from_secs(60), || async {
        let body = format!(
            r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":60}}]}}"#,
            rfc3339(Utc::now())
        );
        let _ = client.publish("vitalwatch/v1/patients/probe/manual/json", QoS::AtLeastOnce, false, body).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        !st.observations(&probe, 1).await.unwrap_or_default().is_empty()
    })
    .await;
    assert!(live, "pipeline never became live");

    // The poison first (the JSON escape \u0000 decodes to U+0000), then good
    // readings of every device, dev-0 included.
    let bad = format!(
        r#"{{"msg_id":"m-\u0000-1","readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":61}}]}}"#,
        rfc3339(base)
    );
    client.publish("vitalwatch/v1/devices/dev-0/readings/json", QoS::AtLeastOnce, false, bad.clone()).await.unwrap();
    let mut want = 0;
    for m in 0..400u32 {
        let t = base + chrono::Duration::seconds(i64::from(m) * 2 + 1);
        let r = TestReading::nth(m, t);
        want += r.expected_rows().len() as i64;
        let format = FORMATS[(m % 4) as usize];
        let topic = format!("vitalwatch/v1/devices/dev-{}/readings/{format}", m % 10);
        client.publish(topic, QoS::AtLeastOnce, false, r.encode(format)).await.unwrap();
    }
    let ok = wait_until(Duration::from_secs(30), || async { rows(&db).await >= want }).await;
    let got = rows(&db).await;
    assert!(ok && got == want, "stored {got} rows, expected {want}: one bad reading stopped storage");

    let rejected = read_topic(&format!("{run}.rejected"), 1, Duration::from_secs(1)).await;
    let r = rejected
        .iter()
        .map(|(_, p)| proto::Rejection::decode(p.as_slice()).expect("rejection protobuf"))
        .find(|r| r.raw_payload == bad.as_bytes())
        .expect("the bad message on the rejected topic");
    assert_eq!(r.reason, "invalid_characters", "{r:?}");
    assert_eq!(r.field, "msg_id", "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persist_dead_letters_a_record_it_can_never_store_and_moves_on() {
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("poison");
    let LivePersist { db, ops, obs_topic, producer: p, _persist, _tmp } = live_persist(&run, &[]).await;

    // Bypassing ingest (an older producer, a bug): a NUL in msg_id, a NUL in
    // original_unit, and bytes that are no Observation at all. Then good
    // records of ten patients, on the same partitions.
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
    let nul_msg_id = observation("pat-1", base, "m\u{0}1").encode_to_vec();
    let mut nul_unit = observation("pat-2", base, "m2");
    nul_unit.original_unit = "/mi\u{0}n".into();
    let nul_unit = nul_unit.encode_to_vec();
    let garbage = vec![0xff, 0xff, 0xff, 0x01];
    produce(&p, &obs_topic, "pat-1", &nul_msg_id).await;
    produce(&p, &obs_topic, "pat-2", &nul_unit).await;
    produce(&p, &obs_topic, "pat-3", &garbage).await;
    let good = 300i64;
    for k in 0..good {
        let patient = format!("pat-{}", k % 10);
        let t = base + chrono::Duration::seconds(k + 1);
        produce(&p, &obs_topic, &patient, &observation(&patient, t, &format!("g{k}")).encode_to_vec()).await;
    }
    let ok = wait_until(Duration::from_secs(30), || async { rows(&db).await >= good }).await;
    let got = rows(&db).await;
    assert!(ok && got == good, "stored {got} of {good} good rows behind an unstorable record");

    // Each bad record on the dead-letter topic, byte for byte, with where it came from and why.
    let dead = read_topic(&format!("{run}.dead"), 3, Duration::from_secs(1)).await;
    let dead: Vec<proto::DeadLetter> =
        dead.iter().map(|(_, p)| proto::DeadLetter::decode(p.as_slice()).expect("dead letter protobuf")).collect();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (payload, key, reason) in [
        (&nul_msg_id, "pat-1", "permanent_store_error"),
        (&nul_unit, "pat-2", "permanent_store_error"),
        (&garbage, "pat-3", "undecodable"),
    ] {
        let d = dead.iter().find(|d| d.raw_payload == *payload).expect("the bad record on the dead-letter topic");
        assert_eq!((d.role.as_str(), d.reason.as_str()), ("persist", reason), "{d:?}");
        assert_eq!(d.source_topic, obs_topic);
        assert_eq!(d.key, key.as_bytes());
        assert!(d.offset >= 0 && !d.message.is_empty(), "{d:?}");
    }
    let scrape = get(&ops, "/metrics").await.1;
    assert_eq!(
        sample(&scrape, r#"vitalwatch_dead_letters_total{role="persist",reason="permanent_store_error"}"#),
        2.0,
        "{scrape}"
    );
    assert_eq!(sample(&scrape, r#"vitalwatch_dead_letters_total{role="persist",reason="undecodable"}"#), 1.0);

    // The group committed every partition to its end.
    let caught_up =
        wait_until(Duration::from_secs(20), || async { committed_to_end(&format!("{run}-persist"), &obs_topic) }).await;
    assert!(caught_up, "persist did not commit past the dead-lettered records");
}

/// True when `group` has committed every partition of `topic` to its end.
fn committed_to_end(group: &str, topic: &str) -> bool {
    let c: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", kafka()).set("group.id", group).create().unwrap();
    let Ok(meta) = c.fetch_metadata(Some(topic), Duration::from_secs(5)) else { return false };
    let Some(parts) = meta.topics().first().map(|t| t.partitions().len() as i32) else { return false };
    let mut tpl = rdkafka::TopicPartitionList::new();
    for part in 0..parts {
        tpl.add_partition(topic, part);
    }
    let Ok(committed) = c.committed_offsets(tpl, Duration::from_secs(5)) else { return false };
    (0..parts).all(|part| {
        let high = c.fetch_watermarks(topic, part, Duration::from_secs(5)).map(|w| w.1).unwrap_or(-1);
        let at = committed.find_partition(topic, part).map(|e| e.offset());
        high == 0 || at == Some(rdkafka::Offset::Offset(high))
    })
}

/// A poison record on each topic the rules and alerting roles consume
/// (observations, device status, alerts): each is dead-lettered by its role
/// with the reason, and both groups commit past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_and_alerting_dead_letter_a_poison_record_on_each_topic_and_move_on() {
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("poisonall");
    let db = fresh_database(&pg_url(), &run).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut env = service_env(&run, &db, "mqtt://127.0.0.1:1");
    env.push(("VITALWATCH_ALERTING__GROUP".into(), format!("{run}-alerting")));
    env.push(("VITALWATCH_ALERTING__TRANSPORT".into(), "file".into()));
    env.push(("VITALWATCH_ALERTING__FILE_DIR".into(), path_str(&tmp.path().join("alerts"))));
    env.push(("VITALWATCH_ALERTING__HTTP_ADDR".into(), "127.0.0.1:0".into()));
    run_cli(&["migrate"], &env);
    let (rules_log, alerting_log) = (tmp.path().join("rules.log"), tmp.path().join("alerting.log"));
    let _rules = Proc::spawn_logged("rules", &["rules"], &env, &rules_log);
    let _alerting = Proc::spawn_logged("alerting", &["alerting"], &env, &alerting_log);
    let (rules_ops, alerting_ops) = (ops_addr(&rules_log).await, ops_addr(&alerting_log).await);
    let (obs, status, alerts) = (format!("{run}.obs"), format!("{run}.status"), format!("{run}.alerts"));
    // Both roles created their topics and joined their groups.
    for (ops, role) in [(&rules_ops, "rules"), (&alerting_ops, "alerting")] {
        let up = wait_until(Duration::from_secs(60), || async { get(ops, "/readyz").await.0 == 200 }).await;
        assert!(up, "{role} never ready");
    }
    let p = producer();
    let garbage = vec![0xff, 0xff, 0xff, 0x01];
    let bad_status =
        proto::DeviceStatus { device_id: "dev 1".into(), patient_id: "pat 1".into(), ..Default::default() }
            .encode_to_vec();
    let bad_event = proto::AlertEvent { episode_id: "not an episode id".into(), ..Default::default() }.encode_to_vec();
    let good = observation("pat-1", Utc::now() - chrono::Duration::minutes(5), "g1").encode_to_vec();
    produce(&p, &obs, "pat-1", &garbage).await;
    produce(&p, &obs, "pat-1", &good).await;
    produce(&p, &status, "pat-1", &garbage).await;
    produce(&p, &status, "pat-1", &bad_status).await;
    produce(&p, &alerts, "pat-1", &garbage).await;
    produce(&p, &alerts, "pat-1", &bad_event).await;

    let dead = read_topic(&format!("{run}.dead"), 5, Duration::from_secs(2)).await;
    let mut got: Vec<(String, String, String)> = dead
        .iter()
        .map(|(_, p)| proto::DeadLetter::decode(p.as_slice()).expect("dead letter protobuf"))
        .map(|d| (d.role, d.source_topic, d.reason))
        .collect();
    got.sort();
    let want = |role: &str, topic: &str, reason: &str| (role.to_owned(), topic.to_owned(), reason.to_owned());
    assert_eq!(
        got,
        vec![
            want("alerting", &alerts, "invalid_record"),
            want("alerting", &alerts, "undecodable"),
            want("rules", &obs, "undecodable"),
            want("rules", &status, "invalid_record"),
            want("rules", &status, "undecodable"),
        ]
    );
    for (group, topic) in [("rules", &obs), ("rules", &status), ("alerting", &alerts)] {
        let group = format!("{run}-{group}");
        let done = wait_until(Duration::from_secs(20), || async { committed_to_end(&group, topic) }).await;
        assert!(done, "{group} did not commit past the poison on {topic}");
    }
    let rules_scrape = get(&rules_ops, "/metrics").await.1;
    assert_eq!(sample(&rules_scrape, r#"vitalwatch_dead_letters_total{role="rules",reason="undecodable"}"#), 2.0);
    let alerting_scrape = get(&alerting_ops, "/metrics").await.1;
    assert_eq!(
        sample(&alerting_scrape, r#"vitalwatch_dead_letters_total{role="alerting",reason="invalid_record"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_with_work_and_no_progress_is_not_ready() {
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("stall");
    let LivePersist { db, ops, obs_topic, producer: p, _persist, _tmp } =
        live_persist(&run, &[("VITALWATCH_OPS__STALL_SECS", "3")]).await;
    let ready = wait_until(Duration::from_secs(10), || async { get(&ops, "/readyz").await.0 == 200 }).await;
    assert!(ready, "persist not ready while idle: {:?}", get(&ops, "/readyz").await);

    // Hang every write: an open transaction holds an exclusive lock on the
    // table (the database still answers its readiness ping).
    let (locker, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    locker.batch_execute("BEGIN; LOCK TABLE observations IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
    for k in 0..20 {
        let patient = format!("pat-{}", k % 5);
        produce(
            &p,
            &obs_topic,
            &patient,
            &observation(&patient, base + chrono::Duration::seconds(k), "").encode_to_vec(),
        )
        .await;
    }
    let stalled = wait_until(Duration::from_secs(20), || async {
        let (status, body) = get(&ops, "/readyz").await;
        status == 503 && body.contains("persist consumer stalled")
    })
    .await;
    assert!(stalled, "/readyz does not report the stalled consumer: {:?}", get(&ops, "/readyz").await);
    // The gauge is refreshed every second.
    let gauge = wait_until(Duration::from_secs(5), || async {
        sample(&get(&ops, "/metrics").await.1, r#"vitalwatch_consumer_stalled_seconds{role="persist"}"#) >= 3.0
    })
    .await;
    assert!(gauge, "vitalwatch_consumer_stalled_seconds does not show the stall: {}", get(&ops, "/metrics").await.1);

    // Released: the rows go in and the consumer is ready again.
    locker.batch_execute("COMMIT").await.unwrap();
    let stored = wait_until(Duration::from_secs(20), || async { rows(&db).await >= 20 }).await;
    assert!(stored, "rows not stored after the lock was released");
    let ready = wait_until(Duration::from_secs(10), || async { get(&ops, "/readyz").await.0 == 200 }).await;
    assert!(ready, "persist not ready again after progress: {:?}", get(&ops, "/readyz").await);
    let cleared = wait_until(Duration::from_secs(5), || async {
        sample(&get(&ops, "/metrics").await.1, r#"vitalwatch_consumer_stalled_seconds{role="persist"}"#) == 0.0
    })
    .await;
    assert!(cleared, "vitalwatch_consumer_stalled_seconds not back to 0 after progress");
}

/// Every string field of an observation survives PostgreSQL unchanged
/// (control characters but U+0000, noncharacters, astral characters, very
/// long strings), and the one text PostgreSQL can never store (U+0000) is
/// refused as data ([`store::StoreError::Rejected`]: dead-lettered by
/// persist), not as an outage to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_string_field_survives_storage_and_a_nul_is_refused_as_data() {
    if !require("PostgreSQL", &pg_url()) {
        return;
    }
    let db = fresh_database(&pg_url(), &unique("strings")).await;
    let st = store::open(&db, 1000).await.unwrap();
    st.migrate().await.unwrap();
    let mut nasty: Vec<String> = vec![
        String::new(),
        "\u{1}\u{8}\t\n\r\u{1b}[31m\u{1f}\u{7f}\u{80}\u{9f}".into(),
        "\u{fffd}\u{fffe}\u{ffff}\u{feff}\u{200b}\u{202e}\u{2028}".into(),
        "\u{10000}\u{1f600}\u{10ffff}".into(),
        "e\u{301}\u{5d0}\u{627}\u{4e2d}".into(),
        r#"'); DROP TABLE observations; -- \ " \\ %s {}"#.into(),
        "x".repeat(100_000),
        "\u{1f600}".repeat(20_000),
    ];
    let all_bmp: String = (0x20u32..0xd800).chain(0xe000..0x10000).filter_map(char::from_u32).step_by(7).collect();
    nasty.push(all_bmp);
    let patient = PatientId::new("strings").unwrap();
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
    let obs: Vec<vitalwatch_schemas::Observation> = nasty
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut p = observation("strings", base + chrono::Duration::seconds(i as i64), s);
            p.original_unit = s.clone();
            p.trace_id = s.clone();
            vitalwatch_schemas::Observation::from_proto(p).unwrap()
        })
        .collect();
    assert_eq!(st.insert_observations(&obs).await.unwrap(), obs.len() as u64);
    let back = st.recent_observations(&patient, base - chrono::Duration::seconds(1)).await.unwrap();
    assert_eq!(back.len(), obs.len());
    for (o, b) in obs.iter().zip(&back) {
        // An empty msg_id is "none" on Kafka and in the table alike.
        assert_eq!((&b.msg_id, &b.original_unit, &b.trace_id), (&o.msg_id, &o.original_unit, &o.trace_id));
    }
    let mut poison = obs[1].clone();
    poison.time = base - chrono::Duration::days(1);
    poison.msg_id = Some("m\u{0}".into());
    let err = st.insert_observations(&[poison]).await.unwrap_err();
    assert!(matches!(err, store::StoreError::Rejected(ref m) if m.contains("22021")), "{err:?}");
}
