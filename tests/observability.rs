//! Observability of the production roles against the real services: every
//! role serves `/metrics`, `/healthz` and `/readyz`; the counters match what
//! went through; readiness follows the broker and the database; JSON logs
//! carry the reading's trace id to the alert it caused, and no patient
//! identifier reaches the logs or the metrics.

use crate::common;
use crate::payloads;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use payloads::rfc3339;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId};

async fn wait_ready(addr: &str) {
    let ready = wait_until(Duration::from_secs(60), || async { get(addr, "/readyz").await.0 == 200 }).await;
    assert!(ready, "{addr} never became ready: {:?}", get(addr, "/readyz").await);
}

fn logs(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_metrics_probes_and_traced_logs() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("obs");
    let db = fresh_database(&pg_url(), &run).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut env = service_env(&run, &db, &mosq.url);
    env.push(("VITALWATCH_ALERTING__GROUP".into(), format!("{run}-alerting")));
    env.push(("VITALWATCH_ALERTING__TRANSPORT".into(), "file".into()));
    env.push(("VITALWATCH_ALERTING__FILE_DIR".into(), path_str(&tmp.path().join("alerts"))));
    env.push(("VITALWATCH_ALERTING__HTTP_ADDR".into(), "127.0.0.1:0".into()));
    run_cli(&["migrate"], &env);
    // Identifiers chosen to be easy to find if they ever leak into logs or metrics.
    let (patient, device) = ("pt-zz-4417", "dev-zz-9083");
    let st = store::open(&db, 1000).await.unwrap();
    st.add_patient(&PatientId::new(patient).unwrap()).await.unwrap();
    st.add_device(&DeviceId::new(device).unwrap(), "oximeter").await.unwrap();
    st.enrol(&DeviceId::new(device).unwrap(), &PatientId::new(patient).unwrap(), Utc::now() - TimeDelta::days(30))
        .await
        .unwrap();
    run_cli(&["rules-config", "set", patient, "--program", "general"], &env);

    let roles = ["ingest", "persist", "rules", "alerting"];
    let mut procs = Vec::new();
    let mut addrs = Vec::new();
    for r in roles {
        procs.push(Proc::spawn_logged(r, &[r], &env, &logs(tmp.path(), r)));
    }
    for r in roles {
        let a = ops_addr(&logs(tmp.path(), r)).await;
        assert_eq!(get(&a, "/healthz").await.0, 200, "{r} /healthz");
        wait_ready(&a).await;
        addrs.push(a);
    }
    let [ingest, persist, rules, alerting] = [&addrs[0], &addrs[1], &addrs[2], &addrs[3]];

    let mut opts = MqttOptions::new(format!("{run}-pub"), "127.0.0.1", mosq.port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    // 40 normal readings, 7 with an unknown unit, 3 from an unknown device, then one low SpO2.
    let now = Utc::now();
    for i in 0..39 {
        let t = rfc3339(now - TimeDelta::minutes(60 - i));
        let body = format!(r#"{{"readings":[{{"type":"heart_rate","time":"{t}","unit":"/min","value":{}}}]}}"#, 60 + i);
        client
            .publish(format!("vitalwatch/v1/devices/{device}/readings/json"), QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
    }
    for i in 0..7 {
        let t = rfc3339(now - TimeDelta::minutes(i));
        let body = format!(r#"{{"readings":[{{"type":"heart_rate","time":"{t}","unit":"furlongs","value":70}}]}}"#);
        client
            .publish(format!("vitalwatch/v1/devices/{device}/readings/json"), QoS::AtLeastOnce, false, body)
            .await
            .unwrap();
    }
    for i in 0..3 {
        let t = rfc3339(now - TimeDelta::minutes(i));
        let body = format!(r#"{{"readings":[{{"type":"heart_rate","time":"{t}","unit":"/min","value":70}}]}}"#);
        client.publish("vitalwatch/v1/devices/dev-nobody/readings/json", QoS::AtLeastOnce, false, body).await.unwrap();
    }
    let topic = format!("vitalwatch/v1/devices/{device}/readings/json");
    // A low SpO2 re-measured a minute later, in one message: a single low reading only
    // opens an episode once confirmed (docs/clinical-rules.md); 39 + 2 = 41 observations.
    let low = format!(
        r#"{{"readings":[{{"type":"spo2","time":"{}","unit":"%","value":84}},{{"type":"spo2","time":"{}","unit":"%","value":85}}]}}"#,
        rfc3339(now - TimeDelta::minutes(1)),
        rfc3339(now)
    );
    let trace = vitalwatch_ingest::pipeline::trace_id(&topic, low.as_bytes());
    client.publish(topic, QoS::AtLeastOnce, false, low).await.unwrap();

    let stored = wait_until(Duration::from_secs(60), || async {
        st.observations(&PatientId::new(patient).unwrap(), 1000).await.map(|v| v.len()).unwrap_or(0) == 41
    })
    .await;
    assert!(stored, "41 rows expected");
    let counted = wait_until(Duration::from_secs(30), || async {
        let (_, r) = get(rules, "/metrics").await;
        // Evaluated, or already in the history replayed when the patient was loaded
        // (persist may store a reading before rules consumes it).
        sample(&r, "vitalwatch_rules_observations_total{outcome=\"evaluated\"}")
            + sample(&r, "vitalwatch_rules_observations_total{outcome=\"duplicate\"}")
            == 41.0
    })
    .await;
    assert!(counted, "rules never saw 41 observations:\n{}", get(rules, "/metrics").await.1);

    // The ingest counts an observation once the bus acknowledged it, which can come after
    // persist already stored the row: wait for the counters to settle, then check them exactly.
    wait_until(Duration::from_secs(10), || async {
        let (_, m) = get(ingest, "/metrics").await;
        sample(&m, "vitalwatch_ingest_messages_total") >= 50.0
            && sample(&m, "vitalwatch_ingest_observations_total") >= 41.0
    })
    .await;
    let (status, m) = get(ingest, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&m, "vitalwatch_ingest_messages_total"), 50.0, "{m}");
    assert_eq!(sample(&m, "vitalwatch_ingest_observations_total"), 41.0, "{m}");
    assert_eq!(sample(&m, "vitalwatch_ingest_rejections_total{reason=\"unknown_unit\"}"), 7.0, "{m}");
    assert_eq!(sample(&m, "vitalwatch_ingest_rejections_total{reason=\"unknown_device\"}"), 3.0, "{m}");
    assert_eq!(sample(&m, "vitalwatch_mqtt_connected"), 1.0, "{m}");
    assert!(m.contains("vitalwatch_bus_produce_seconds_bucket"), "{m}");
    // Rows are counted once stored; messages once their offsets are committed
    // (asynchronously, at the persist loop's next turn).
    let committed = wait_until(Duration::from_secs(10), || async {
        sample(&get(persist, "/metrics").await.1, "vitalwatch_consumer_messages_total{role=\"persist\"}") == 41.0
    })
    .await;
    let (_, p) = get(persist, "/metrics").await;
    assert!(committed, "persist never committed 41 messages:\n{p}");
    assert_eq!(sample(&p, "vitalwatch_persist_rows_total"), 41.0, "{p}");
    assert!(sample(&p, "vitalwatch_persist_write_seconds_count") >= 1.0, "{p}");
    assert!(p.contains("vitalwatch_consumer_batch_size_bucket{role=\"persist\""), "{p}");
    let opened = "vitalwatch_rules_alert_events_total{kind=\"ALERT_EVENT_KIND_OPENED\",severity=\"SEVERITY_HIGH\",rule_kind=\"threshold\"}";
    // Counted once Kafka acknowledged the event, a moment after the evaluation.
    wait_until(Duration::from_secs(30), || async { sample(&get(rules, "/metrics").await.1, opened) >= 1.0 }).await;
    let (_, r) = get(rules, "/metrics").await;
    assert_eq!(sample(&r, "vitalwatch_rules_evaluation_seconds_count"), 41.0, "{r}");
    assert_eq!(sample(&r, opened), 1.0, "{r}");
    // Lag is reported within a few seconds and drains to zero.
    let lag = wait_until(Duration::from_secs(30), || async {
        let (_, p) = get(persist, "/metrics").await;
        p.contains("vitalwatch_kafka_consumer_lag{")
            && !p.lines().any(|l| l.starts_with("vitalwatch_kafka_consumer_lag{") && !l.ends_with(" 0"))
    })
    .await;
    assert!(lag, "consumer lag not reported or not drained:\n{}", get(persist, "/metrics").await.1);
    let applied = wait_until(Duration::from_secs(30), || async {
        let (_, a) = get(alerting, "/metrics").await;
        sample(&a, "vitalwatch_alerting_events_total{outcome=\"applied\"}") == 1.0
    })
    .await;
    assert!(applied, "alerting did not apply the alert event:\n{}", get(alerting, "/metrics").await.1);

    // The alert is traced back to the reading that caused it.
    let traced = wait_until(Duration::from_secs(30), || async {
        std::fs::read_to_string(logs(tmp.path(), "rules"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("Alert event published.") && l.contains(&trace))
    })
    .await;
    assert!(traced, "rules log has no alert with trace id {trace}");
    let alerting_log = std::fs::read_to_string(logs(tmp.path(), "alerting")).unwrap_or_default();
    assert!(
        alerting_log.lines().any(|l| l.contains("Alert event applied.") && l.contains(&trace)),
        "alerting log has no event with trace id {trace}:\n{alerting_log}"
    );

    // No patient or device identifier in any metric or info-level log line.
    for (r, a) in roles.iter().zip(&addrs) {
        let (_, m) = get(a, "/metrics").await;
        assert!(!m.contains(patient) && !m.contains(device), "{r} metrics leak an identifier");
        let log = std::fs::read_to_string(logs(tmp.path(), r)).unwrap();
        assert!(!log.contains(patient) && !log.contains(device), "{r} log leaks an identifier:\n{log}");
    }

    // Readiness follows the dependencies: the broker goes away, ingest turns not ready (still alive).
    drop(mosq);
    let down = wait_until(Duration::from_secs(30), || async {
        let (s, b) = get(ingest, "/readyz").await;
        s == 503 && b.contains("mqtt")
    })
    .await;
    assert!(down, "ingest still ready without its broker: {:?}", get(ingest, "/readyz").await);
    assert_eq!(get(ingest, "/healthz").await.0, 200);
    // The database goes away: persist turns not ready.
    let (admin, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    drop(st);
    admin.batch_execute(&format!("DROP DATABASE {run} WITH (FORCE)")).await.unwrap();
    let down = wait_until(Duration::from_secs(30), || async {
        let (s, b) = get(persist, "/readyz").await;
        s == 503 && b.contains("database")
    })
    .await;
    assert!(down, "persist still ready without its database: {:?}", get(persist, "/readyz").await);
    assert_eq!(get(persist, "/healthz").await.0, 200);
    drop(procs);
}
