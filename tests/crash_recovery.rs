//! SIGKILL `ingest` and `persist` mid-stream and restart them: nothing lost,
//! nothing stored twice.

use crate::common;
use crate::payloads;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use payloads::*;
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rumqttc::QoS;
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId, proto};

async fn count(db: &str) -> i64 {
    let Ok((c, conn)) = tokio_postgres::connect(db, tokio_postgres::NoTls).await else { return -1 };
    tokio::spawn(conn);
    c.query_one("SELECT count(*) FROM observations WHERE patient_id <> 'probe'", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

/// Patients `pat-0`..`pat-19`, each with device `dev-N` enrolled from a day
/// before `base`.
async fn enrol_twenty_devices(st: &dyn store::Store, base: DateTime<Utc>) {
    for i in 0..20 {
        let (p, d) = (PatientId::new(format!("pat-{i}")).unwrap(), DeviceId::new(format!("dev-{i}")).unwrap());
        st.add_patient(&p).await.unwrap();
        st.add_device(&d, "multi").await.unwrap();
        st.enrol(&d, &p, base - chrono::Duration::days(1)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_ingest_and_persist_mid_stream_loses_and_duplicates_nothing() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("crash");
    let db = fresh_database(&pg_url(), &run).await;
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.unwrap();
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 86_400, 0).unwrap();
    enrol_twenty_devices(st.as_ref(), base).await;
    st.add_patient(&PatientId::new("probe").unwrap()).await.unwrap();

    let mut ingest = Proc::spawn("ingest", &["ingest"], &env);
    let mut persist = Proc::spawn("persist", &["persist"], &env);

    let client = mqtt_publisher(&run, mosq.port);
    // Wait until the path is live.
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

    let total = 24_000u32;
    let mut expected: BTreeSet<(String, String, i64)> = BTreeSet::new();
    for m in 0..total {
        let t = base + chrono::Duration::seconds(m as i64 * 2); // whole seconds: SenML sends seconds
        let r = TestReading::nth(m, t);
        let patient = format!("pat-{}", m % 20);
        for (code, _) in r.expected_rows() {
            expected.insert((patient.clone(), code.to_owned(), t.timestamp_micros()));
        }
        let topic = format!("vitalwatch/v1/devices/dev-{}/readings/{}", m % 20, FORMATS[(m % 4) as usize]);
        client.publish(topic, QoS::AtLeastOnce, false, r.encode(FORMATS[(m % 4) as usize])).await.unwrap();
        if m % 1000 == 999 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        if m == total / 3 {
            ingest.kill9();
            tokio::time::sleep(Duration::from_millis(800)).await;
            ingest = Proc::spawn("ingest", &["ingest"], &env);
        }
        if m == 2 * total / 3 {
            persist.kill9();
            tokio::time::sleep(Duration::from_millis(800)).await;
            persist = Proc::spawn("persist", &["persist"], &env);
        }
    }
    let want = expected.len() as i64;
    let ok = wait_until(Duration::from_secs(180), || async { count(&db).await >= want }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = count(&db).await;
    assert!(ok && got == want, "stored {got} rows, expected exactly {want}");

    let (c, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows =
        c.query("SELECT patient_id, code, time FROM observations WHERE patient_id <> 'probe'", &[]).await.unwrap();
    let stored: BTreeSet<(String, String, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get::<_, DateTime<Utc>>(2).timestamp_micros())).collect();
    assert_eq!(stored, expected, "stored rows differ from the published readings");

    // Kafka: every observation is there; redelivery after the crash may repeat some (same id).
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[format!("{run}.obs").as_str()]).unwrap();
    let mut ids = HashSet::new();
    let mut messages = 0usize;
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        let o = proto::Observation::decode(m.payload().unwrap_or_default()).unwrap();
        if o.patient_id != "probe" {
            messages += 1;
            ids.insert(o.id);
        }
    }
    assert_eq!(ids.len(), expected.len(), "distinct observations on Kafka");
    eprintln!(
        "observations on Kafka: {messages} messages, {} distinct, {} redelivered",
        ids.len(),
        messages - ids.len()
    );

    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}

/// Every message ingest took is acknowledged to the broker before it stops
/// (acknowledgments leave in batches, `ingest/src/acks.rs`): a new ingest on
/// the same persistent session gets nothing redelivered. The ingest keeps its
/// session on SIGTERM here (`ingest.leave_on_shutdown` off), or the session
/// would be ended and unacknowledged messages would not show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_ingest_leaves_nothing_unacknowledged() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("acks");
    let db = fresh_database(&pg_url(), &run).await;
    let mut env = service_env(&run, &db, &mosq.url);
    env.push(("VITALWATCH_INGEST__LEAVE_ON_SHUTDOWN".into(), "false".into()));
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.unwrap();
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 86_400, 0).unwrap();
    enrol_twenty_devices(st.as_ref(), base).await;
    let tmp = tempfile::tempdir().unwrap();
    let scrape = async |addr: &str, series: &str| sample(&get(addr, "/metrics").await.1, series);

    let log1 = tmp.path().join("ingest-1.log");
    let mut ingest = Proc::spawn_logged("ingest", &["ingest"], &env, &log1);
    let ops = ops_addr(&log1).await;
    let client = mqtt_publisher(&run, mosq.port);
    // Subscribed: a probe (an unknown device: rejected, and acknowledged too) gets through.
    let subscribed = wait_until(Duration::from_secs(60), || async {
        let _ = client.publish("vitalwatch/v1/devices/nobody/readings/json", QoS::AtLeastOnce, false, "{}").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        scrape(&ops, "vitalwatch_ingest_messages_total").await > 0.0
    })
    .await;
    assert!(subscribed, "ingest never received a message");

    let total = 6_000u32;
    for m in 0..total {
        let t = base + chrono::Duration::seconds(m as i64 * 2);
        let format = FORMATS[(m % 4) as usize];
        let topic = format!("vitalwatch/v1/devices/dev-{}/readings/{format}", m % 20);
        client.publish(topic, QoS::AtLeastOnce, false, TestReading::nth(m, t).encode(format)).await.unwrap();
    }
    let all_taken = wait_until(Duration::from_secs(120), || async {
        let (messages, acked) = (
            scrape(&ops, "vitalwatch_ingest_messages_total").await,
            scrape(&ops, "vitalwatch_ingest_acked_total").await,
        );
        messages >= f64::from(total) && acked == messages
    })
    .await;
    assert!(all_taken, "ingest did not take and acknowledge the {total} messages");
    let received = scrape(&ops, "vitalwatch_ingest_messages_total").await;
    ingest.terminate(Duration::from_secs(30));

    let log2 = tmp.path().join("ingest-2.log");
    let mut ingest = Proc::spawn_logged("ingest", &["ingest"], &env, &log2);
    let ops = ops_addr(&log2).await;
    let connected =
        wait_until(Duration::from_secs(30), || async { scrape(&ops, "vitalwatch_mqtt_connected").await == 1.0 }).await;
    assert!(connected, "the second ingest never connected");
    // A broker resends unacknowledged messages of a resumed session at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redelivered = scrape(&ops, "vitalwatch_ingest_messages_total").await;
    ingest.terminate(Duration::from_secs(30));
    assert_eq!(redelivered, 0.0, "redelivered after a clean stop (the first ingest received {received})");
    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(log.contains("\"session_present\":true"), "the second ingest resumed the session:\n{log}");
}
