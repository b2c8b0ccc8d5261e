//! The patient lifecycle end to end against the real services (Mosquitto,
//! Kafka-protocol broker, PostgreSQL; `ingest`, `persist` and `rules` as
//! subprocesses; inclusion and discharge through the CLI):
//!
//! include -> missing-data alert -> discharge -> the episode is closed with
//! its reason -> readings (app and device) rejected with
//! `patient_not_monitored`, dead-lettered -> a reading already in flight
//! raises nothing, no missing-data alert -> readmission -> readings accepted
//! again; the periods list shows both periods.

use crate::common::*;
use crate::payloads::rfc3339;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::QoS;
use vitalwatch_admin::model::{CareTeamInput, Enrol, NewDevice, NewPatient, PhysicianInput};
use vitalwatch_admin::{Actor, AdminService};
use vitalwatch_platform::store;
use vitalwatch_schemas::proto::{self, AlertEvent, AlertEventKind};
use vitalwatch_schemas::{Code, Observation, ObservationId, PatientId, Source, TimeSource};

fn consumer(topic: &str) -> StreamConsumer {
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("verify"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Everything `c` delivers until it is quiet for `quiet`.
async fn drain(c: &StreamConsumer, quiet: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(quiet, c.recv()).await {
        out.push(m.payload().unwrap_or_default().to_vec());
    }
    out
}

fn weight_obs(patient: &str, t: DateTime<Utc>, kg: f64, received: DateTime<Utc>) -> Observation {
    Observation {
        id: ObservationId::compute(patient, Code::BodyWeight, t.timestamp_micros()),
        patient_id: PatientId::new(patient).unwrap(),
        code: Code::BodyWeight,
        value: kg,
        time: t,
        received_at: received,
        source: Source::Manual,
        device_id: None,
        time_source: TimeSource::App,
        original_value: kg,
        original_unit: "kg".to_owned(),
        msg_id: None,
        trace_id: format!("t{}", t.timestamp()),
    }
}

fn weight_json(t: DateTime<Utc>, kg: f64) -> Vec<u8> {
    let body = serde_json::json!({ "msg_id": unique("m"), "readings": [
        {"type": "body_weight", "time": rfc3339(t), "unit": "kg", "value": kg}
    ]});
    serde_json::to_vec(&body).unwrap()
}

/// Reads alert events into `out` until `done` holds (true) or `timeout` (false).
async fn events_until(
    c: &StreamConsumer,
    out: &mut Vec<AlertEvent>,
    timeout: Duration,
    done: impl Fn(&[AlertEvent]) -> bool,
) -> bool {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if done(out) {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        out.extend(
            drain(c, Duration::from_millis(500)).await.iter().map(|b| AlertEvent::decode(b.as_slice()).unwrap()),
        );
    }
}

fn key(e: &AlertEvent) -> (String, String, i32) {
    (e.patient_id.clone(), e.rule_id.clone(), e.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discharge_stops_readings_and_alerts_readmission_restores_them() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("lifecycle");
    let db = fresh_database(&pg_url(), &run).await;
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.unwrap();
    let svc = AdminService::open(&db, 100, 50).await.unwrap();
    let op = Actor::operator("cli:test");
    for p in ["lc-dis", "lc-other", "probe"] {
        svc.add_patient(&op, &NewPatient { id: p.into() }).await.unwrap();
    }
    let dr: PhysicianInput =
        serde_json::from_value(serde_json::json!({ "name": "Dr A", "email": "a@hospital.example" })).unwrap();
    svc.upsert_physician(&op, "dr-a", &dr).await.unwrap();
    svc.upsert_physician(&op, "dr-c", &dr).await.unwrap();
    let team = CareTeamInput { responsible: "dr-a".into(), deputies: vec!["dr-c".into()], policy: None, nurses: None };
    svc.set_care_team(&op, "lc-dis", &team).await.unwrap();
    let now = Utc::now();
    svc.add_device(&op, &NewDevice { id: "scale-lc".into(), kind: "scale".into() }).await.unwrap();
    svc.enrol_device(&op, "scale-lc", &Enrol { patient: "lc-dis".into(), from: Some(now - TimeDelta::days(5)) })
        .await
        .unwrap();

    // Inclusion through the CLI.
    let start = (now - TimeDelta::days(5)).to_rfc3339();
    let planned_end = (now + TimeDelta::days(175)).format("%Y-%m-%d").to_string();
    let consent = (now - TimeDelta::days(6)).format("%Y-%m-%d").to_string();
    let out = run_cli(
        &[
            "patient",
            "include",
            "lc-dis",
            "--program",
            "heart_failure",
            "--prescriber",
            "dr-a",
            "--start",
            &start,
            "--planned-end",
            &planned_end,
            "--consent-date",
            &consent,
            "--consent-by",
            "IDE Martin",
        ],
        &env,
    );
    assert!(out.contains("lc-dis: included"), "{out}");
    for p in ["lc-dis", "lc-other"] {
        run_cli(&["rules-config", "set", p, "--program", "heart_failure"], &env);
    }
    // Both last weighed 40 hours ago: the daily weight is overdue (missing data).
    let old = now - TimeDelta::hours(40);
    st.insert_observations(&[weight_obs("lc-dis", old, 81.0, old), weight_obs("lc-other", old, 75.0, old)])
        .await
        .unwrap();
    let topics: Vec<String> =
        ["obs", "status", "alerts", "rejected", "dead"].iter().map(|t| format!("{run}.{t}")).collect();
    let bus = vitalwatch_platform::config::BusSettings {
        brokers: kafka(),
        partitions: 4,
        ..vitalwatch_platform::config::BusSettings::default()
    };
    vitalwatch_platform::bus::kafka::ensure_topics(&bus, &topics.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .expect("create topics");
    let alerts = consumer(&format!("{run}.alerts"));
    let dead = consumer(&format!("{run}.rejected"));
    let _ingest = Proc::spawn("ingest", &["ingest"], &env);
    let _persist = Proc::spawn("persist", &["persist"], &env);
    let _rules = Proc::spawn("rules", &["rules"], &env);
    let client = mqtt_publisher(&run, mosq.port);
    let publish = |topic: String, body: Vec<u8>| {
        let client = client.clone();
        async move { client.publish(topic, QoS::AtLeastOnce, false, body).await.unwrap() }
    };
    let stored = |p: &'static str| {
        let st = st.clone();
        async move { st.observations(&PatientId::new(p).unwrap(), 10_000).await.map(|v| v.len()).unwrap_or(0) }
    };
    let live = wait_until(Duration::from_secs(60), || async {
        publish("vitalwatch/v1/patients/probe/manual/json".into(), weight_json(Utc::now(), 70.0)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stored("probe").await > 0
    })
    .await;
    assert!(live, "pipeline never became live");

    // 1. Missing-data alerts for both.
    let mut events: Vec<AlertEvent> = Vec::new();
    let want_open = |p: &str| (p.to_owned(), "missing.body_weight".to_owned(), AlertEventKind::Opened as i32);
    let opened = events_until(&alerts, &mut events, Duration::from_secs(60), |ev| {
        let keys: Vec<_> = ev.iter().map(key).collect();
        keys.contains(&want_open("lc-dis")) && keys.contains(&want_open("lc-other"))
    })
    .await;
    assert!(opened, "missing-data alerts: {events:#?}");
    let episode = events.iter().find(|e| key(e) == want_open("lc-dis")).unwrap().episode_id.clone();

    // 2. Discharge through the CLI: the open episode is closed with the reason.
    let out = run_cli(&["patient", "discharge", "lc-dis", "--reason", "end_of_programme"], &env);
    assert!(out.contains("1 enrolment(s) ended, 1 episode(s) closed"), "{out}");
    let (c, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let note: String = c
        .query_one("SELECT body FROM episode_notes WHERE episode_id = $1 AND kind = 'close'", &[&episode])
        .await
        .unwrap()
        .get(0);
    assert!(note.contains("end_of_programme"), "{note}");
    // The rules worker applies the close: RESOLVED, closed by the physician (it has the discharged set then).
    let resolved = events_until(&alerts, &mut events, Duration::from_secs(30), |ev| {
        ev.iter().any(|e| e.episode_id == episode && e.kind == AlertEventKind::Resolved as i32)
    })
    .await;
    assert!(resolved, "the discharge closes the open episode: {events:#?}");
    let before = events.len();

    // 3. The app's readings are refused with patient_not_monitored (once the
    // ingest registry knows), dead-lettered with the raw payload.
    let mut rejections: Vec<proto::Rejection> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while !rejections.iter().any(|r| r.reason == "patient_not_monitored") {
        assert!(tokio::time::Instant::now() < until, "no patient_not_monitored dead letter: {rejections:?}");
        publish("vitalwatch/v1/patients/lc-dis/manual/json".into(), weight_json(Utc::now(), 81.5)).await;
        let got = drain(&dead, Duration::from_millis(500)).await;
        rejections.extend(got.iter().map(|b| proto::Rejection::decode(b.as_slice()).expect("Rejection")));
    }
    // The device too (its enrolment ended with the discharge).
    publish("vitalwatch/v1/devices/scale-lc/readings/json".into(), weight_json(Utc::now(), 81.6)).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while !rejections.iter().any(|r| r.topic.contains("/devices/scale-lc/")) {
        assert!(tokio::time::Instant::now() < until, "device reading not dead-lettered: {rejections:?}");
        let got = drain(&dead, Duration::from_millis(500)).await;
        rejections.extend(got.iter().map(|b| proto::Rejection::decode(b.as_slice()).expect("Rejection")));
    }
    for r in &rejections {
        assert_eq!(r.reason, "patient_not_monitored", "{r:?}");
        assert!(!r.raw_payload.is_empty() && r.message.contains("discharged"));
    }

    // 4. A reading accepted before the discharge and still in flight (+9 kg,
    // a weight gain the heart-failure rules would flag) raises nothing; nor
    // does the overdue weight (missing data) of the discharged patient. The
    // other patient's reading shows the worker is alive (its missing-data
    // episode resolves).
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("partitioner", "consistent_random")
        .create()
        .unwrap();
    let inflight = weight_obs("lc-dis", Utc::now() - TimeDelta::minutes(1), 90.0, Utc::now());
    let payload = inflight.to_proto().encode_to_vec();
    producer
        .send(FutureRecord::to(&format!("{run}.obs")).key("lc-dis").payload(&payload), Duration::from_secs(10))
        .await
        .expect("produce");
    publish("vitalwatch/v1/patients/lc-other/manual/json".into(), weight_json(Utc::now(), 75.1)).await;
    let other_resolved = events_until(&alerts, &mut events, Duration::from_secs(30), |ev| {
        ev[before..].iter().any(|e| e.patient_id == "lc-other" && e.kind == AlertEventKind::Resolved as i32)
    })
    .await;
    assert!(other_resolved, "the worker still evaluates other patients: {:#?}", &events[before..]);
    // Several ticks (tick_secs = 2) after the in-flight reading.
    events
        .extend(drain(&alerts, Duration::from_secs(8)).await.iter().map(|b| AlertEvent::decode(b.as_slice()).unwrap()));
    let after: Vec<_> = events[before..].iter().filter(|e| e.patient_id == "lc-dis").collect();
    assert!(after.is_empty(), "alerts for a discharged patient: {after:#?}");
    // The in-flight reading itself is stored (data kept).
    let count = |sql: &'static str| {
        let c = &c;
        async move { c.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(-1) }
    };
    let kept = "SELECT count(*) FROM observations WHERE patient_id = 'lc-dis' AND value = 90";
    assert!(wait_until(Duration::from_secs(20), || async { count(kept).await == 1 }).await, "in-flight reading stored");

    // 5. Readmission: a new period; readings accepted again.
    let consent = Utc::now().format("%Y-%m-%d").to_string();
    let out = run_cli(
        &[
            "patient",
            "include",
            "lc-dis",
            "--program",
            "heart_failure",
            "--prescriber",
            "dr-a",
            "--planned-end",
            &planned_end,
            "--consent-date",
            &consent,
            "--consent-by",
            "IDE Martin",
        ],
        &env,
    );
    assert!(out.contains("lc-dis: readmitted"), "{out}");
    let accepted = wait_until(Duration::from_secs(30), || async {
        publish("vitalwatch/v1/patients/lc-dis/manual/json".into(), weight_json(Utc::now(), 81.2)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        count("SELECT count(*) FROM observations WHERE patient_id = 'lc-dis' AND value = 81.2").await > 0
    })
    .await;
    assert!(accepted, "readings accepted again after the readmission");
    let periods = run_cli(&["patient", "periods", "lc-dis"], &env);
    assert!(periods.contains("lc-dis: active"), "{periods}");
    assert_eq!(periods.matches("  period ").count(), 2, "{periods}");
    assert!(periods.contains("(end_of_programme)") && periods.contains(", open;"), "{periods}");
}
