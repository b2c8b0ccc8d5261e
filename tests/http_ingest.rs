//! The HTTP ingestion endpoint (docs/http-ingest.md) against real services:
//! `vitalwatch ingest` with `ingest.http_listen` -> Kafka-protocol broker ->
//! `vitalwatch persist` -> PostgreSQL, and Mosquitto for the MQTT comparison.
//! Every format is posted with a device credential and a manual entry with an
//! app credential; the rows are asserted exactly; a duplicate POST stores
//! nothing twice; a rejection answers 422 with the same JSON as the MQTT reply
//! to the same payload, and its dead letter is on the rejected topic; wrong or
//! revoked credentials get 401, paths not granted 403, an oversized body 413.
//! Also once through `vitalwatch run` (embedded).

use crate::common;
use crate::payloads;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use payloads::*;
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId, proto};
use vitalwatch_testkit::client::{Resp, parse};

/// POSTs `body` (bytes: protobuf too) with an optional bearer secret; one connection per request.
async fn post(addr: &str, path: &str, secret: Option<&str>, body: &[u8]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(secret) = secret {
        req.push_str(&format!("Authorization: Bearer {secret}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    // A server may answer and close before reading everything (413): read its answer anyway.
    let _ = s.write_all(&raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
    parse(&out)
}

/// The secret `vitalwatch ingest-client add` printed (its only stdout line).
fn add_client(args: &[&str], env: &[(String, String)]) -> String {
    let out = run_cli(&[&["ingest-client", "add"][..], args].concat(), env);
    let secret = out.trim().to_owned();
    assert!(secret.starts_with("vwi_") && secret.len() == 68, "secret: {out:?}");
    secret
}

async fn dead_letters(brokers: &str, topic: &str, want: usize) -> Vec<(Vec<u8>, proto::Rejection)> {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let wait = if out.len() >= want { Duration::from_secs(3) } else { Duration::from_secs(5) };
        match tokio::time::timeout(wait, c.recv()).await {
            Ok(Ok(m)) => out.push((
                m.key().unwrap_or_default().to_vec(),
                proto::Rejection::decode(m.payload().unwrap_or_default()).expect("rejection protobuf"),
            )),
            Ok(Err(e)) => panic!("kafka consume error: {e}"),
            Err(_) if out.len() >= want => break,
            Err(_) => {}
        }
    }
    out
}

async fn rows(db: &str) -> Vec<(String, String, i64, f64, String)> {
    let (c, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.query("SELECT patient_id, code, time, value, source FROM observations ORDER BY 1, 2, 3", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let t: DateTime<Utc> = r.get(2);
            (r.get(0), r.get(1), t.timestamp_micros(), r.get(3), r.get(4))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_posts_share_the_mqtt_path_validation_dead_letters_and_idempotency() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("http");
    let db = fresh_database(&pg_url(), &run).await;
    let http = format!("127.0.0.1:{}", free_port());
    let mut env = service_env(&run, &db, &mosq.url);
    env.push(("VITALWATCH_INGEST__HTTP_LISTEN".into(), http.clone()));
    env.push(("VITALWATCH_INGEST__HTTP_CREDENTIALS_REFRESH_SECS".into(), "1".into()));
    env.push(("VITALWATCH_INGEST__MAX_PAYLOAD_BYTES".into(), "65536".into()));
    run_cli(&["migrate"], &env);

    let st = store::open(&db, 1000).await.expect("store");
    let base = DateTime::from_timestamp(Utc::now().timestamp() - 2 * 86_400, 0).unwrap();
    for i in 0..2 {
        let (p, d) = (PatientId::new(format!("pat-{i}")).unwrap(), DeviceId::new(format!("dev-{i}")).unwrap());
        st.add_patient(&p).await.unwrap();
        st.add_device(&d, "multi").await.unwrap();
        st.enrol(&d, &p, base - chrono::Duration::days(30)).await.unwrap();
    }
    for p in ["manual-1", "manual-2"] {
        st.add_patient(&PatientId::new(p).unwrap()).await.unwrap();
    }
    let cuff = add_client(&["cuff-0", "--device", "dev-0"], &env);
    let app = add_client(&["app-1", "--app", "--device", "dev-1", "--patient", "manual-1"], &env);
    let listed = run_cli(&["ingest-client", "list"], &env);
    assert!(listed.contains("cuff-0\tdevice\tdevices dev-0") && listed.contains("app-1\tapp"), "{listed}");
    assert!(!listed.contains(&cuff) && !listed.contains(&app), "list never shows secrets");

    let mut ingest = Proc::spawn("ingest", &["ingest"], &env);
    let mut persist = Proc::spawn("persist", &["persist"], &env);
    assert!(
        wait_until(Duration::from_secs(60), || async { tokio::net::TcpStream::connect(&http).await.is_ok() }).await,
        "the HTTP ingestion endpoint did not open {http}"
    );

    // Every format from the device credential, in HTTP 200 once on the bus.
    let mut expected: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    let mut posted = Vec::new();
    for m in 0..40u32 {
        let fmt = FORMATS[(m % 4) as usize];
        let t = base + chrono::Duration::seconds(m as i64 * 10);
        let r = TestReading::nth(m, t);
        for (code, v) in r.expected_rows() {
            expected.insert(("pat-0".into(), code.to_owned(), t.timestamp_micros()), v);
        }
        let path = format!("/ingest/v1/devices/dev-0/readings/{fmt}");
        let body = r.encode(fmt);
        let resp = post(&http, &path, Some(&cuff), &body).await;
        assert_eq!(resp.status, 200, "{fmt}: {}", resp.body);
        let j = resp.json();
        assert_eq!(j["accepted"].as_u64(), Some(r.expected_rows().len() as u64), "{fmt}: {j}");
        assert_eq!(j["duplicates"], 0);
        posted.push((path, body));
    }
    // A manual entry from the app credential, and a device it was granted.
    let t = base + chrono::Duration::seconds(5);
    let manual = format!(
        r#"{{"msg_id":"app-7","readings":[{{"type":"body_weight","time":"{}","unit":"kg","value":71.5}}]}}"#,
        rfc3339(t)
    );
    let resp = post(&http, "/ingest/v1/patients/manual-1/manual/json", Some(&app), manual.as_bytes()).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["msg_id"], "app-7");
    expected.insert(("manual-1".into(), "29463-7".into(), t.timestamp_micros()), 71.5);
    let r = TestReading::nth(1, base);
    let resp = post(&http, "/ingest/v1/devices/dev-1/readings/senml", Some(&app), &r.encode("senml")).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    for (code, v) in r.expected_rows() {
        expected.insert(("pat-1".into(), code.to_owned(), base.timestamp_micros()), v);
    }

    // Duplicates: the same requests again are answered 200, nothing produced twice.
    for (path, body) in posted.iter().step_by(4) {
        let resp = post(&http, path, Some(&cuff), body).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let j = resp.json();
        assert_eq!(j["duplicates"], j["accepted"], "a duplicate POST: {j}");
    }

    // Credentials: missing, unknown 401; not granted 403; all with a JSON error.
    let body = TestReading::nth(0, base).encode("json");
    let resp = post(&http, "/ingest/v1/devices/dev-0/readings/json", None, &body).await;
    assert_eq!((resp.status, resp.json()["error"].as_str()), (401, Some("unauthenticated")));
    let resp = post(&http, "/ingest/v1/devices/dev-0/readings/json", Some("vwi_0000"), &body).await;
    assert_eq!((resp.status, resp.json()["error"].as_str()), (401, Some("unauthenticated")));
    let resp = post(&http, "/ingest/v1/devices/dev-1/readings/json", Some(&cuff), &body).await;
    assert_eq!((resp.status, resp.json()["error"].as_str()), (403, Some("forbidden")));
    let resp = post(&http, "/ingest/v1/patients/manual-2/manual/json", Some(&app), manual.as_bytes()).await;
    assert_eq!((resp.status, resp.json()["error"].as_str()), (403, Some("forbidden")));
    let resp = post(&http, "/ingest/v1/patients/manual-1/manual/json", Some(&cuff), manual.as_bytes()).await;
    assert_eq!(resp.status, 403);
    // Too large: 413 before the pipeline (no dead letter).
    let big = vec![b' '; 70_000];
    let resp = post(&http, "/ingest/v1/devices/dev-0/readings/json", Some(&cuff), &big).await;
    assert_eq!((resp.status, resp.json()["error"].as_str()), (413, Some("payload_too_large")), "{}", resp.body);

    // A rejection: 422 with exactly the MQTT reply to the same payload on the same topic.
    let bad = format!(
        r#"{{"msg_id":"bad-1","readings":[{{"type":"spo2","time":"{}","unit":"%","value":140}},{{"type":"heart_rate","time":"{}","unit":"/min","value":61}}]}}"#,
        rfc3339(base + chrono::Duration::hours(1)),
        rfc3339(base + chrono::Duration::hours(1))
    );
    expected.insert(("pat-0".into(), "8867-4".into(), (base + chrono::Duration::hours(1)).timestamp_micros()), 61.0);
    let resp = post(&http, "/ingest/v1/devices/dev-0/readings/json", Some(&cuff), bad.as_bytes()).await;
    assert_eq!(resp.status, 422, "{}", resp.body);
    let http_reply = resp.json();
    assert_eq!(http_reply["reason"], "value_out_of_range");
    assert_eq!(http_reply["accepted"], 1);
    let unknown = r#"{"readings":[{"type":"heart_rate","unit":"/min","value":70}]}"#;
    let resp = post(&http, "/ingest/v1/devices/dev-0/readings/json", Some(&cuff), unknown.as_bytes()).await;
    assert_eq!((resp.status, resp.json()["reason"].as_str()), (422, Some("missing_time")));
    let resp = post(&http, "/ingest/v1/devices/dev-0/readings/xml", Some(&cuff), unknown.as_bytes()).await;
    assert_eq!((resp.status, resp.json()["reason"].as_str()), (422, Some("unsupported_format")));

    let mut opts = MqttOptions::new(format!("{run}-pub"), "127.0.0.1", mosq.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, mut replies) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(serde_json::from_slice(&p.payload).unwrap_or_default());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client.subscribe("vitalwatch/v1/devices/dev-0/rejected", QoS::AtLeastOnce).await.unwrap();
    let mut mqtt_reply = None;
    for _ in 0..30 {
        client
            .publish("vitalwatch/v1/devices/dev-0/readings/json", QoS::AtLeastOnce, false, bad.clone())
            .await
            .unwrap();
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), replies.recv()).await {
            mqtt_reply = Some(v);
            break;
        }
    }
    assert_eq!(mqtt_reply.as_ref(), Some(&http_reply), "the HTTP answer is the MQTT reply");

    // The dead letters: from HTTP and MQTT alike, keyed by topic, with the raw payload.
    let dl = dead_letters(&kafka(), &format!("{run}.rejected"), 4).await;
    let topic = "vitalwatch/v1/devices/dev-0/readings/json";
    let of_bad: Vec<_> = dl.iter().filter(|(_, r)| r.raw_payload == bad.as_bytes()).collect();
    assert!(of_bad.len() >= 2, "a dead letter from each transport: {}", of_bad.len());
    for (key, r) in &of_bad {
        assert_eq!(
            (key.as_slice(), r.topic.as_str(), r.reason.as_str()),
            (topic.as_bytes(), topic, "value_out_of_range")
        );
    }
    assert!(dl.iter().any(|(_, r)| r.reason == "missing_time"));
    assert!(dl.iter().any(|(_, r)| r.reason == "unsupported_format"));
    assert!(!dl.iter().any(|(_, r)| r.raw_payload == big), "a 413 is not dead-lettered");

    // The rows, exactly once each.
    let want = expected.len();
    let ok = wait_until(Duration::from_secs(60), || async { rows(&db).await.len() >= want }).await;
    let got = rows(&db).await;
    assert!(ok, "rows: {} of {want}", got.len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rows(&db).await;
    let mut by_key: BTreeMap<(String, String, i64), f64> = BTreeMap::new();
    for (p, code, t, v, source) in got {
        assert_eq!(source, if p.starts_with("manual") { "manual" } else { "device" });
        assert!(by_key.insert((p, code, t), v).is_none(), "row stored twice");
    }
    assert_eq!(by_key.len(), expected.len(), "row count");
    for (k, v) in &expected {
        let g = by_key.get(k).unwrap_or_else(|| panic!("missing row {k:?}"));
        assert!((g - v).abs() < 1e-6, "value of {k:?}: stored {g}, expected {v}");
    }

    // Revocation: refused within the refresh period (1 s here).
    run_cli(&["ingest-client", "revoke", "cuff-0"], &env);
    let refused = wait_until(Duration::from_secs(30), || async {
        post(&http, "/ingest/v1/devices/dev-0/readings/json", Some(&cuff), &body).await.status == 401
    })
    .await;
    assert!(refused, "a revoked credential is refused");
    let resp = post(&http, "/ingest/v1/patients/manual-1/manual/json", Some(&app), manual.as_bytes()).await;
    assert_eq!(resp.status, 200, "other credentials still work: {}", resp.body);

    ingest.terminate(Duration::from_secs(30));
    persist.terminate(Duration::from_secs(30));
}

/// `vitalwatch run` serves the HTTP endpoint too: a manual entry posted with
/// an app credential lands in its SQLite store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_http_ingestion() {
    use vitalwatch_platform::store::Store as _;
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let args = ["--embedded", "--data-dir", data.as_str()];
    run_cli(&[&["patient", "add", "p-demo"][..], &args[..]].concat(), &[]);
    let secret = add_client(&[&["phone", "--app", "--patient", "p-demo"][..], &args[..]].concat(), &[]);
    let (mqtt, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let env = [("VITALWATCH_INGEST__HTTP_LISTEN".to_owned(), http.clone())];
    let mut run = Proc::spawn("run", &["run", "--data-dir", &data, "--mqtt-listen", &mqtt], &env);
    assert!(
        wait_until(Duration::from_secs(60), || async { tokio::net::TcpStream::connect(&http).await.is_ok() }).await,
        "run did not open the HTTP ingestion endpoint {http}"
    );
    let t = DateTime::from_timestamp(Utc::now().timestamp() - 600, 0).unwrap();
    let body = format!(
        r#"{{"msg_id":"m-1","readings":[{{"type":"blood_pressure","time":"{}","unit":"mmHg","systolic":135,"diastolic":85}}]}}"#,
        rfc3339(t)
    );
    let resp = post(&http, "/ingest/v1/patients/p-demo/manual/json", Some(&secret), body.as_bytes()).await;
    assert_eq!((resp.status, resp.json()["accepted"].as_u64()), (200, Some(2)), "{}", resp.body);
    let store = vitalwatch_platform::store::sqlite::SqliteStore::open(&format!("{data}/vitalwatch.db")).unwrap();
    let patient = PatientId::new("p-demo").unwrap();
    let stored = wait_until(Duration::from_secs(30), || async {
        store.observations(&patient, 10).await.map(|o| o.len() == 2).unwrap_or(false)
    })
    .await;
    assert!(stored, "the two blood pressure rows in SQLite");
    run.terminate(Duration::from_secs(20));
}

/// The HTTP side of the registry hold's bound: with `ingest.registry_max_held`
/// requests already waiting for the reload that may know their device, one
/// more is answered 503 `registry_reloading` with `Retry-After` (nothing
/// produced, not a rejection), and the same request sent again once the
/// reload came is accepted. (Before, it was answered 422 `unknown_device`
/// and dead-lettered although the device had just been registered.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn beyond_the_hold_bound_a_request_is_told_to_retry_not_rejected() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("httphold");
    let db = fresh_database(&pg_url(), &run).await;
    let http = format!("127.0.0.1:{}", free_port());
    let mut env = service_env(&run, &db, &mosq.url);
    env.push(("VITALWATCH_INGEST__HTTP_LISTEN".into(), http.clone()));
    env.push(("VITALWATCH_INGEST__REGISTRY_MAX_HELD".into(), "1".into()));
    env.push(("VITALWATCH_INGEST__REGISTRY_MIN_REFRESH_MS".into(), "3000".into()));
    env.push(("VITALWATCH_INGEST__REGISTRY_HOLD_MS".into(), "8000".into()));
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 100).await.expect("store");
    let patient = PatientId::new("pat-r").unwrap();
    st.add_patient(&patient).await.unwrap();
    let app = add_client(&["app-r", "--app", "--device", "dev-r0", "--device", "dev-r1", "--device", "dev-r2"], &env);
    let mut ingest = Proc::spawn("ingest", &["ingest"], &env);
    assert!(
        wait_until(Duration::from_secs(60), || async { tokio::net::TcpStream::connect(&http).await.is_ok() }).await,
        "the HTTP ingestion endpoint did not open {http}"
    );
    let t = Utc::now() - chrono::Duration::minutes(5);
    let body = |bpm: u32| {
        format!(r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":{bpm}}}]}}"#, rfc3339(t))
    };
    // An unregistered device: held for the reload it asks for, then 422. The
    // next reload cannot start for 3 s.
    let r = post(&http, "/ingest/v1/devices/dev-r0/readings/json", Some(&app), body(60).as_bytes()).await;
    assert_eq!((r.status, r.json()["reason"].as_str()), (422, Some("unknown_device")), "{}", r.body);
    // Two devices registered now; the first request fills the hold set.
    for d in ["dev-r1", "dev-r2"] {
        let d = DeviceId::new(d).unwrap();
        st.add_device(&d, "oximeter").await.unwrap();
        st.enrol(&d, &patient, Utc::now() - chrono::Duration::days(1)).await.unwrap();
    }
    let first = tokio::spawn({
        let (http, app, b) = (http.clone(), app.clone(), body(61));
        async move { post(&http, "/ingest/v1/devices/dev-r1/readings/json", Some(&app), b.as_bytes()).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = post(&http, "/ingest/v1/devices/dev-r2/readings/json", Some(&app), body(62).as_bytes()).await;
    assert_eq!(second.status, 503, "{}", second.body);
    assert_eq!(second.json()["error"], "registry_reloading", "{}", second.body);
    assert_eq!(second.header("retry-after"), Some("1"));
    let first = first.await.unwrap();
    assert_eq!((first.status, first.json()["accepted"].as_u64()), (200, Some(1)), "{}", first.body);
    // Sent again: accepted.
    let again = post(&http, "/ingest/v1/devices/dev-r2/readings/json", Some(&app), body(62).as_bytes()).await;
    assert_eq!((again.status, again.json()["accepted"].as_u64()), (200, Some(1)), "{}", again.body);
    // Only the unregistered device's request was dead-lettered.
    let dead = dead_letters(&kafka(), &format!("{run}.rejected"), 1).await;
    let topics: Vec<&str> = dead.iter().map(|(_, r)| r.topic.as_str()).collect();
    assert_eq!(topics, ["vitalwatch/v1/devices/dev-r0/readings/json"]);
    ingest.terminate(Duration::from_secs(20));
}
