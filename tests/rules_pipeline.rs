//! The rules role end to end against the real services: MQTT readings through
//! `ingest`, `persist` and `rules` (subprocesses) to alert events on Kafka and
//! episodes in PostgreSQL; then a SIGKILL of the rules worker mid-stream.

use crate::common;
use crate::payloads;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use payloads::rfc3339;
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rumqttc::{AsyncClient, QoS};
use vitalwatch_platform::store::{self, Store};
use vitalwatch_schemas::proto::{AlertEvent, AlertEventKind, Severity};
use vitalwatch_schemas::{DeviceId, PatientId};

struct Ctx {
    _mosq: Mosquitto,
    run: String,
    db: String,
    env: Vec<(String, String)>,
    st: Arc<dyn Store>,
    client: AsyncClient,
}

async fn setup(prefix: &str, patients: &[&str]) -> Option<Ctx> {
    let mosq = Mosquitto::start()?;
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return None;
    }
    let run = unique(prefix);
    let db = fresh_database(&pg_url(), &run).await;
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.unwrap();
    for p in patients.iter().chain(&["probe"]) {
        st.add_patient(&PatientId::new(*p).unwrap()).await.unwrap();
    }
    let client = mqtt_publisher(&run, mosq.port);
    Some(Ctx { _mosq: mosq, run, db, env, st, client })
}

impl Ctx {
    /// Waits until a probe reading goes through ingest and persist.
    async fn wait_live(&self) {
        let probe = PatientId::new("probe").unwrap();
        let live = wait_until(Duration::from_secs(60), || async {
            let body = format!(
                r#"{{"readings":[{{"type":"heart_rate","time":"{}","unit":"/min","value":60}}]}}"#,
                rfc3339(Utc::now())
            );
            let _ =
                self.client.publish("vitalwatch/v1/patients/probe/manual/json", QoS::AtLeastOnce, false, body).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            !self.st.observations(&probe, 1).await.unwrap_or_default().is_empty()
        })
        .await;
        assert!(live, "pipeline never became live");
    }

    async fn manual(&self, patient: &str, reading: serde_json::Value) {
        let body = serde_json::json!({ "msg_id": format!("m-{}", unique("x")), "readings": [reading] });
        self.client
            .publish(
                format!("vitalwatch/v1/patients/{patient}/manual/json"),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn device(&self, device: &str, reading: serde_json::Value) {
        let body = serde_json::json!({ "msg_id": format!("m-{}", unique("x")), "readings": [reading] });
        self.client
            .publish(
                format!("vitalwatch/v1/devices/{device}/readings/json"),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap();
    }

    async fn stored(&self, patient: &str) -> usize {
        self.st.observations(&PatientId::new(patient).unwrap(), 10_000).await.map(|v| v.len()).unwrap_or(0)
    }

    fn alerts_consumer(&self) -> StreamConsumer {
        let c: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka())
            .set("group.id", unique("verify"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&[format!("{}.alerts", self.run).as_str()]).unwrap();
        c
    }

    async fn count_events(&self) -> i64 {
        let Ok((c, conn)) = tokio_postgres::connect(&self.db, tokio_postgres::NoTls).await else {
            return -1;
        };
        tokio::spawn(conn);
        c.query_one("SELECT count(*) FROM alert_events", &[]).await.map(|r| r.get(0)).unwrap_or(-1)
    }
}

/// Reads alert events until `done` holds (then `settle` longer) or `timeout`.
async fn collect(
    c: &StreamConsumer,
    timeout: Duration,
    settle: Duration,
    done: impl Fn(&[AlertEvent]) -> bool,
) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    let until = tokio::time::Instant::now() + timeout;
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let deadline = settle_until.unwrap_or(until).min(until);
        match tokio::time::timeout_at(deadline, c.recv()).await {
            Ok(Ok(m)) => out.push(AlertEvent::decode(m.payload().unwrap_or_default()).expect("AlertEvent")),
            Ok(Err(e)) => panic!("alerts consumer: {e}"),
            Err(_) => break,
        }
        if settle_until.is_none() && done(&out) {
            settle_until = Some(tokio::time::Instant::now() + settle);
        }
    }
    out
}

fn glucose(t: DateTime<Utc>, v: f64) -> serde_json::Value {
    serde_json::json!({"type": "blood_glucose", "time": rfc3339(t), "unit": "mg/dL", "value": v})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readings_in_exact_alerts_out() {
    let patients = ["hf-1", "dm-1", "ht-1", "st-1"];
    let Some(ctx) = setup("rules", &patients).await else {
        return;
    };
    let now = Utc::now();
    let scale = DeviceId::new("scale-hf").unwrap();
    ctx.st.add_device(&scale, "scale").await.unwrap();
    ctx.st.enrol(&scale, &PatientId::new("hf-1").unwrap(), now - TimeDelta::days(5)).await.unwrap();
    // Programs: two through the CLI before the worker starts, one while it runs.
    run_cli(&["rules-config", "set", "hf-1", "--program", "heart_failure"], &ctx.env);
    run_cli(&["rules-config", "set", "ht-1", "--program", "hypertension"], &ctx.env);
    let shown = run_cli(&["rules-config", "show", "hf-1"], &ctx.env);
    assert!(shown.contains("heart_failure") && shown.contains("hf.weight_gain_3d"), "{shown}");
    let bad = std::process::Command::new(bin())
        .args(["rules-config", "set", "dm-1", "--program", "cardio"])
        .envs(ctx.env.clone())
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("unknown program"));

    let mut ingest = Proc::spawn("ingest", &["ingest"], &ctx.env);
    let mut persist = Proc::spawn("persist", &["persist"], &ctx.env);
    let mut rules = Proc::spawn("rules", &["rules"], &ctx.env);
    ctx.wait_live().await;

    // dm-1 starts on the default (general) program: 100 mg/dL, no glucose rule.
    ctx.manual("dm-1", glucose(now - TimeDelta::minutes(20), 100.0)).await;
    assert!(wait_until(Duration::from_secs(30), || async { ctx.stored("dm-1").await == 1 }).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Diabetes program set while the worker runs: takes effect without a restart.
    run_cli(&["rules-config", "set", "dm-1", "--program", "diabetes"], &ctx.env);
    tokio::time::sleep(Duration::from_secs(4)).await;
    ctx.manual("dm-1", glucose(now - TimeDelta::minutes(5), 52.0)).await;

    // Heart failure: +2.4 kg in 3 days; the history is days old (historical,
    // evaluated, below every threshold by itself), the last weighing 30
    // minutes ago triggers.
    let weights = [(72 * 60, 80.0), (48 * 60, 80.6), (24 * 60, 81.4), (30, 82.4)];
    for (mins, kg) in weights {
        let t = now - TimeDelta::minutes(mins);
        ctx.device(
            "scale-hf",
            serde_json::json!({"type": "body_weight", "time": rfc3339(t), "unit": "kg", "value": kg}),
        )
        .await;
    }
    // Hypertensive crisis.
    ctx.manual(
        "ht-1",
        serde_json::json!({"type": "blood_pressure", "time": rfc3339(now - TimeDelta::minutes(2)), "unit": "mmHg",
            "systolic": 185, "diastolic": 125, "pulse": 80}),
    )
    .await;
    // A stable patient: nothing.
    ctx.manual("st-1", serde_json::json!({"type": "body_weight", "time": rfc3339(now - TimeDelta::minutes(10)), "unit": "kg", "value": 75.2})).await;
    ctx.manual(
        "st-1",
        serde_json::json!({"type": "blood_pressure", "time": rfc3339(now - TimeDelta::minutes(9)), "unit": "mmHg",
            "systolic": 122, "diastolic": 78, "pulse": 68}),
    )
    .await;
    ctx.manual(
        "st-1",
        serde_json::json!({"type": "spo2", "time": rfc3339(now - TimeDelta::minutes(8)), "unit": "%", "value": 97}),
    )
    .await;

    let expected: BTreeSet<(String, String, i32, i32)> = [
        ("hf-1", "hf.weight_gain_3d", Severity::High),
        ("dm-1", "threshold.glucose.low", Severity::Critical),
        ("ht-1", "threshold.bp.crisis", Severity::Critical),
    ]
    .into_iter()
    .map(|(p, r, s)| (p.to_owned(), r.to_owned(), AlertEventKind::Opened as i32, s as i32))
    .collect();
    let key = |e: &AlertEvent| (e.patient_id.clone(), e.rule_id.clone(), e.kind, e.severity);
    let consumer = ctx.alerts_consumer();
    let events = collect(&consumer, Duration::from_secs(90), Duration::from_secs(6), |ev| {
        let got: BTreeSet<_> = ev.iter().map(key).collect();
        expected.is_subset(&got)
    })
    .await;
    let events: Vec<AlertEvent> = events.into_iter().filter(|e| e.patient_id != "probe").collect();
    let got: BTreeSet<_> = events.iter().map(key).collect();
    assert_eq!(got, expected, "alert events: {events:#?}");
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "distinct event ids");
    let episodes: HashSet<&str> = events.iter().map(|e| e.episode_id.as_str()).collect();
    assert_eq!(episodes.len(), 3, "distinct episodes");
    for e in &events {
        assert!(!e.readings.is_empty(), "evidence readings of {}", e.rule_id);
        assert!(!e.summary.is_empty() && !e.summary.contains(&e.patient_id), "summary of {}", e.rule_id);
        assert!(e.threshold.is_some(), "threshold of {}", e.rule_id);
        let program = match e.patient_id.as_str() {
            "hf-1" => "heart_failure",
            "dm-1" => "diabetes",
            _ => "hypertension",
        };
        assert_eq!(e.program, program);
    }
    let hf = events.iter().find(|e| e.patient_id == "hf-1").unwrap();
    assert_eq!(
        hf.reading_time_unix_micros,
        (now - TimeDelta::minutes(30)).timestamp_micros(),
        "event time = reading time"
    );
    assert!(hf.readings.len() >= 2, "the weight gain shows both ends: {:?}", hf.readings);

    // Episodes in the database.
    let rows = ctx.st.alerts(None).await.unwrap();
    let rows: BTreeMap<String, _> = rows.into_iter().map(|r| (r.patient_id.clone(), r)).collect();
    assert_eq!(rows.keys().map(String::as_str).collect::<Vec<_>>(), vec!["dm-1", "hf-1", "ht-1"]);
    for e in &events {
        let r = &rows[&e.patient_id];
        assert_eq!(
            (r.episode_id.as_str(), r.rule_id.as_str(), r.status.as_str()),
            (e.episode_id.as_str(), e.rule_id.as_str(), "open")
        );
        assert_eq!(r.last_event_id, e.event_id);
        assert_eq!(r.opened_at.timestamp_micros(), e.reading_time_unix_micros);
        let ev: serde_json::Value = serde_json::from_str(&r.evidence).unwrap();
        assert!(!ev["readings"].as_array().unwrap().is_empty());
    }
    assert_eq!(rows["ht-1"].severity, "critical");
    assert_eq!(rows["hf-1"].severity, "high");
    assert_eq!(ctx.count_events().await, 3);

    rules.terminate(Duration::from_secs(20));
    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_rules_mid_stream_no_missed_alert_no_duplicate_episode() {
    const PATIENTS: usize = 40;
    const CYCLES: usize = 5;
    // Per cycle: 52 opens a CRITICAL episode (ADA level 2, at once), 50 updates
    // it silently, 130 resolves it, 66 then 65 (a level-1 low confirmed by the
    // next reading) open a MEDIUM one, 150 resolves it.
    const VALUES: [f64; 8] = [120.0, 110.0, 52.0, 50.0, 130.0, 66.0, 65.0, 150.0];
    let names: Vec<String> = (0..PATIENTS).map(|i| format!("dm-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(ctx) = setup("rulescrash", &refs).await else {
        return;
    };
    for p in &names {
        ctx.st.set_patient_rules(&PatientId::new(p.as_str()).unwrap(), r#"{"program":"diabetes"}"#).await.unwrap();
    }
    let mut ingest = Proc::spawn("ingest", &["ingest"], &ctx.env);
    let mut persist = Proc::spawn("persist", &["persist"], &ctx.env);
    let mut rules = Proc::spawn("rules", &["rules"], &ctx.env);
    ctx.wait_live().await;

    let n = CYCLES * VALUES.len();
    let now = Utc::now();
    let t = |k: usize| DateTime::from_timestamp(now.timestamp() - 5 * 60 - ((n - 1 - k) as i64) * 4 * 60, 0).unwrap();
    // Expected events: (patient, kind, severity for OPENED, reading time).
    let mut expected: BTreeSet<(String, i32, i32, i64)> = BTreeSet::new();
    for p in &names {
        for k in 0..n {
            let us = t(k).timestamp_micros();
            match VALUES[k % VALUES.len()] {
                52.0 => expected.insert((p.clone(), AlertEventKind::Opened as i32, Severity::Critical as i32, us)),
                65.0 => expected.insert((p.clone(), AlertEventKind::Opened as i32, Severity::Medium as i32, us)),
                130.0 | 150.0 => expected.insert((p.clone(), AlertEventKind::Resolved as i32, 0, us)),
                _ => false,
            };
        }
    }
    let total = PATIENTS * n;
    let mut sent = 0;
    for k in 0..n {
        for p in &names {
            ctx.manual(p, glucose(t(k), VALUES[k % VALUES.len()])).await;
            sent += 1;
            if sent % 40 == 0 {
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            if sent == total * 2 / 5 {
                // Make sure the worker is deciding before it is killed.
                assert!(
                    wait_until(Duration::from_secs(60), || async { ctx.count_events().await > 0 }).await,
                    "no alert before the kill"
                );
            }
            if sent == total * 3 / 5 {
                rules.kill9();
            }
            if sent == total * 4 / 5 {
                rules = Proc::spawn("rules", &["rules"], &ctx.env);
            }
        }
    }
    let want = expected.len();
    let consumer = ctx.alerts_consumer();
    let key = |e: &AlertEvent| {
        let sev = if e.kind == AlertEventKind::Opened as i32 { e.severity } else { 0 };
        (e.patient_id.clone(), e.kind, sev, e.reading_time_unix_micros)
    };
    let events = collect(&consumer, Duration::from_secs(180), Duration::from_secs(8), |ev| {
        ev.iter().filter(|e| e.patient_id != "probe").map(key).collect::<HashSet<_>>().len() >= want
    })
    .await;
    let events: Vec<AlertEvent> = events.into_iter().filter(|e| e.patient_id != "probe").collect();
    let got: BTreeSet<_> = events.iter().map(key).collect();
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(&expected).take(10).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, unexpected {extra:?}");
    // Redelivered events repeat an id; never a second id for the same decision.
    let mut ids_per_key: HashMap<_, HashSet<&str>> = HashMap::new();
    for e in &events {
        ids_per_key.entry(key(e)).or_default().insert(e.event_id.as_str());
    }
    let dup: Vec<_> = ids_per_key.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
    assert!(dup.is_empty(), "decisions with several event ids: {dup:?}");
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), want, "distinct event ids");
    let episodes: HashSet<&str> = events.iter().map(|e| e.episode_id.as_str()).collect();
    assert_eq!(episodes.len(), PATIENTS * CYCLES * 2, "distinct episodes");
    eprintln!(
        "alert events on Kafka: {} messages, {} distinct, {} redelivered",
        events.len(),
        ids.len(),
        events.len() - ids.len()
    );

    // The database agrees: one row per episode, all resolved, one per event.
    assert!(
        wait_until(Duration::from_secs(20), || async { ctx.count_events().await == want as i64 }).await,
        "alert_events rows"
    );
    let rows = ctx.st.alerts(None).await.unwrap();
    assert_eq!(rows.len(), PATIENTS * CYCLES * 2, "alerts rows");
    assert!(rows.iter().all(|r| r.status == "resolved"), "every episode resolved");
    let row_ids: HashSet<&str> = rows.iter().map(|r| r.episode_id.as_str()).collect();
    assert_eq!(row_ids, episodes);

    rules.terminate(Duration::from_secs(20));
    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_rules_workers_share_the_patients_with_exact_alerts() {
    const PATIENTS: usize = 24;
    // 52 opens a CRITICAL episode, 130 resolves it.
    const VALUES: [f64; 4] = [120.0, 52.0, 50.0, 130.0];
    let names: Vec<String> = (0..PATIENTS).map(|i| format!("dm2-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let Some(ctx) = setup("rulestwo", &refs).await else {
        return;
    };
    for p in &names {
        ctx.st.set_patient_rules(&PatientId::new(p.as_str()).unwrap(), r#"{"program":"diabetes"}"#).await.unwrap();
    }
    let logs = tempfile::tempdir().unwrap();
    let mut ingest = Proc::spawn("ingest", &["ingest"], &ctx.env);
    let mut persist = Proc::spawn("persist", &["persist"], &ctx.env);
    let worker_env = |n: &str| {
        let mut e = ctx.env.clone();
        e.push(("HOSTNAME".into(), format!("{}-rules-{n}", ctx.run)));
        e
    };
    let (log_a, log_b) = (logs.path().join("a.log"), logs.path().join("b.log"));
    let mut a = Proc::spawn_logged("rules-a", &["rules"], &worker_env("a"), &log_a);
    let mut b = Proc::spawn_logged("rules-b", &["rules"], &worker_env("b"), &log_b);
    ctx.wait_live().await;
    // Let the group settle with both members before the readings flow.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let now = Utc::now();
    let n = VALUES.len() * 3;
    let t = |k: usize| DateTime::from_timestamp(now.timestamp() - 5 * 60 - ((n - 1 - k) as i64) * 4 * 60, 0).unwrap();
    let mut expected: BTreeSet<(String, i32, i64)> = BTreeSet::new();
    for k in 0..n {
        for p in &names {
            ctx.manual(p, glucose(t(k), VALUES[k % VALUES.len()])).await;
            let us = t(k).timestamp_micros();
            match VALUES[k % VALUES.len()] {
                52.0 => expected.insert((p.clone(), AlertEventKind::Opened as i32, us)),
                130.0 => expected.insert((p.clone(), AlertEventKind::Resolved as i32, us)),
                _ => false,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = expected.len();
    let consumer = ctx.alerts_consumer();
    let key = |e: &AlertEvent| (e.patient_id.clone(), e.kind, e.reading_time_unix_micros);
    let events = collect(&consumer, Duration::from_secs(120), Duration::from_secs(5), |ev| {
        ev.iter().filter(|e| e.patient_id != "probe").map(key).collect::<HashSet<_>>().len() >= want
    })
    .await;
    let events: Vec<AlertEvent> = events.into_iter().filter(|e| e.patient_id != "probe").collect();
    let got: BTreeSet<_> = events.iter().map(key).collect();
    assert_eq!(got, expected, "exact alert decisions across two workers");
    let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), want, "one event id per decision");
    assert_eq!(events.len(), want, "no event published twice without a crash");

    // Both workers did part of the work.
    let published = |log: &std::path::Path| {
        std::fs::read_to_string(log).unwrap_or_default().matches("Alert events published").count()
    };
    let (pa, pb) = (published(&log_a), published(&log_b));
    assert!(pa > 0 && pb > 0, "work not shared: worker a published {pa} batches, worker b {pb}");

    a.terminate(Duration::from_secs(20));
    b.terminate(Duration::from_secs(20));
    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}

/// A physician closes an open episode (CLI, same service layer as the API):
/// the rules worker that owns the patient publishes the RESOLVED event, marks
/// the close applied, and keeps the rule quiet while the condition persists at
/// the same severity; a restarted worker (state rebuilt from the store) stays
/// quiet too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn physician_close_resolves_the_episode_and_quiets_the_rule() {
    let Some(ctx) = setup("rulesclose", &["cl-1"]).await else {
        return;
    };
    run_cli(&["rules-config", "set", "cl-1", "--program", "diabetes"], &ctx.env);
    run_cli(&["physician", "add", "dr-cl", "--name", "Dr Close", "--email", "dr.cl@example.org"], &ctx.env);
    let _ingest = Proc::spawn("ingest", &["ingest"], &ctx.env);
    let _persist = Proc::spawn("persist", &["persist"], &ctx.env);
    let mut rules = Proc::spawn("rules", &["rules"], &ctx.env);
    ctx.wait_live().await;
    let alerts = ctx.alerts_consumer();
    let now = Utc::now();
    ctx.manual("cl-1", glucose(now - TimeDelta::minutes(30), 120.0)).await;
    ctx.manual("cl-1", glucose(now - TimeDelta::minutes(20), 52.0)).await;
    let opened = collect(&alerts, Duration::from_secs(60), Duration::from_secs(1), |e| !e.is_empty()).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0].kind(), AlertEventKind::Opened);
    let episode = opened[0].episode_id.clone();

    run_cli(&["alert", "close", &episode, "--by", "dr-cl"], &ctx.env);
    let closed = collect(&alerts, Duration::from_secs(30), Duration::from_secs(2), |e| !e.is_empty()).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].kind(), AlertEventKind::Resolved);
    assert_eq!(closed[0].episode_id, episode);
    assert!(closed[0].summary.contains("closed by the physician"), "{}", closed[0].summary);
    let status = |db: String, ep: String| async move {
        let (c, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let s: String = c.query_one("SELECT status FROM alerts WHERE episode_id = $1", &[&ep]).await.unwrap().get(0);
        let applied: bool = c
            .query_one("SELECT applied_at IS NOT NULL FROM episode_closes WHERE episode_id = $1", &[&ep])
            .await
            .unwrap()
            .get(0);
        (s, applied)
    };
    let marked = wait_until(Duration::from_secs(10), || async {
        status(ctx.db.clone(), episode.clone()).await == ("closed".to_owned(), true)
    })
    .await;
    assert!(marked, "{:?}", status(ctx.db.clone(), episode.clone()).await);

    // Still low at the same severity: quiet. Then a restart rebuilds the state
    // from the store and must stay quiet as well.
    ctx.manual("cl-1", glucose(now - TimeDelta::minutes(10), 53.0)).await;
    let quiet = collect(&alerts, Duration::from_secs(6), Duration::ZERO, |_| false).await;
    assert!(quiet.is_empty(), "closed episode re-alerted: {quiet:?}");
    rules.terminate(Duration::from_secs(30));
    let _rules = Proc::spawn("rules", &["rules"], &ctx.env);
    ctx.manual("cl-1", glucose(now - TimeDelta::minutes(5), 54.0)).await;
    let after = collect(&alerts, Duration::from_secs(20), Duration::ZERO, |_| false).await;
    assert!(
        after.iter().all(|e| e.episode_id == episode && e.kind() != AlertEventKind::Opened),
        "restart re-opened or re-alerted: {after:?}"
    );
    assert_eq!(ctx.count_events().await, 2, "OPENED and RESOLVED only");
}

/// A patient who went silent before the rules worker started (a restart, a
/// deploy, a rebalance) sends nothing that would load them: the worker must
/// still watch them, and flag the missed daily weight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_patient_is_flagged_after_a_restart() {
    let Some(ctx) = setup("rulessilent", &["hf-silent", "hf-fine"]).await else {
        return;
    };
    run_cli(&["rules-config", "set", "hf-silent", "--program", "heart_failure"], &ctx.env);
    run_cli(&["rules-config", "set", "hf-fine", "--program", "heart_failure"], &ctx.env);
    // Their readings were stored (and consumed by an earlier rules worker)
    // before this one starts: the last weight of hf-silent is 40 hours old
    // (daily weight, 12 h grace: overdue since 4 hours), hf-fine's 2 hours.
    let now = Utc::now();
    let weight = |patient: &str, hours_ago: i64| {
        let t = now - TimeDelta::hours(hours_ago);
        let patient = PatientId::new(patient).unwrap();
        vitalwatch_schemas::Observation {
            id: vitalwatch_schemas::ObservationId::compute(
                patient.as_str(),
                vitalwatch_schemas::Code::BodyWeight,
                t.timestamp_micros(),
            ),
            patient_id: patient,
            code: vitalwatch_schemas::Code::BodyWeight,
            value: 81.0,
            time: t,
            received_at: t,
            source: vitalwatch_schemas::Source::Manual,
            device_id: None,
            time_source: vitalwatch_schemas::TimeSource::App,
            original_value: 81.0,
            original_unit: "kg".to_owned(),
            msg_id: None,
            trace_id: format!("t{hours_ago}"),
        }
    };
    let stored = ctx.st.insert_observations(&[weight("hf-silent", 40), weight("hf-fine", 2)]).await.unwrap();
    assert_eq!(stored, 2);

    // The topics exist before anyone subscribes (no ingest runs here to create them).
    let topics = [format!("{}.obs", ctx.run), format!("{}.status", ctx.run), format!("{}.alerts", ctx.run)];
    let bus = vitalwatch_platform::config::BusSettings {
        brokers: kafka(),
        partitions: 4,
        ..vitalwatch_platform::config::BusSettings::default()
    };
    vitalwatch_platform::bus::kafka::ensure_topics(&bus, &topics.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .expect("create topics");
    let alerts = ctx.alerts_consumer();
    let _rules = Proc::spawn("rules", &["rules"], &ctx.env);
    let events = collect(&alerts, Duration::from_secs(60), Duration::from_secs(5), |e| !e.is_empty()).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!((e.patient_id.as_str(), e.rule_id.as_str()), ("hf-silent", "missing.body_weight"));
    assert_eq!(e.kind(), AlertEventKind::Opened);
    let stored_episode = wait_until(Duration::from_secs(10), || async {
        ctx.st
            .alerts(Some(&PatientId::new("hf-silent").unwrap()))
            .await
            .is_ok_and(|a| a.iter().any(|x| x.rule_id == "missing.body_weight"))
    })
    .await;
    assert!(stored_episode, "the episode is in the alerts table");
}

/// The batched rebuild read returns, per patient and in the order asked,
/// exactly what the three per-patient reads return, on PostgreSQL and SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_rule_state_read_matches_the_per_patient_reads() {
    use vitalwatch_schemas::{Code, Observation, ObservationId, Source, TimeSource};
    let pg = pg_url();
    if !require("PostgreSQL", &pg) {
        return;
    }
    let db = fresh_database(&pg, &unique("vw_rsi")).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("vw.db").display());
    let t0 = Utc::now() - TimeDelta::days(20);
    for url in [db.as_str(), sqlite.as_str()] {
        let st = store::open(url, 1000).await.expect("open store");
        st.migrate().await.expect("migrate");
        let p = |s: &str| PatientId::new(s).expect("patient id");
        let obs = |patient: &str, code: Code, day: i64, value: f64| {
            let time = t0 + TimeDelta::days(day);
            Observation {
                id: ObservationId::compute(patient, code, time.timestamp_micros()),
                patient_id: p(patient),
                code,
                value,
                time,
                received_at: time + TimeDelta::seconds(3),
                source: Source::Manual,
                device_id: None,
                time_source: TimeSource::App,
                original_value: value,
                original_unit: code.ucum().to_owned(),
                msg_id: None,
                trace_id: format!("t{day}"),
            }
        };
        let mut all = Vec::new();
        for day in 0..20 {
            all.push(obs("rsi-a", Code::BodyWeight, day, 80.0 + day as f64 * 0.1));
            all.push(obs("rsi-b", Code::Spo2, day, 95.0 - (day % 3) as f64));
        }
        all.push(obs("rsi-c", Code::BloodGlucose, 19, 52.0));
        st.insert_observations(&all).await.expect("insert");
        st.set_patient_rules(&p("rsi-b"), r#"{"program":"copd"}"#).await.expect("rules");
        let add_close = |at: String| {
            format!(
                "INSERT INTO episode_closes (episode_id, patient_id, rule_id, requested_at) VALUES \
                 ('ep-1', 'rsi-c', 'glucose-low', {at})"
            )
        };
        match url.strip_prefix("sqlite://") {
            Some(path) => rusqlite::Connection::open(path)
                .and_then(|c| c.execute_batch(&add_close(Utc::now().timestamp_micros().to_string())))
                .expect("close"),
            None => {
                let add_close = add_close(format!("'{}'", rfc3339(Utc::now())));
                let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(conn);
                c.batch_execute(&add_close).await.expect("close");
            }
        }

        let since = t0 + TimeDelta::days(6);
        let asked = [p("rsi-c"), p("rsi-a"), p("rsi-nobody"), p("rsi-b")];
        let batched = st.rule_state_inputs(&asked, since).await.expect("batched read");
        assert_eq!(batched.len(), asked.len(), "{url}");
        for (patient, got) in asked.iter().zip(&batched) {
            let rules = st.patient_rules(patient).await.expect("rules");
            let observations = st.recent_observations(patient, since).await.expect("observations");
            let closes = st.episode_closes(patient).await.expect("closes");
            assert_eq!(got.rules.as_ref().map(|r| &r.rules), rules.as_ref().map(|r| &r.rules), "{url} {patient:?}");
            assert_eq!(got.observations, observations, "{url} {patient:?}");
            assert_eq!(got.closes, closes, "{url} {patient:?}");
        }
        // And the outcomes themselves, not only agreement.
        assert_eq!(batched[1].observations.len(), 14, "rsi-a: days 6..=19");
        assert!(batched[1].observations.windows(2).all(|w| w[0].time < w[1].time));
        assert_eq!(batched[3].rules.as_ref().map(|r| r.rules.as_str()), Some(r#"{"program":"copd"}"#));
        assert_eq!(batched[0].closes.len(), 1);
        assert_eq!(batched[0].closes[0].rule_id, "glucose-low");
        assert!(batched[2].rules.is_none() && batched[2].observations.is_empty() && batched[2].closes.is_empty());
    }
}

/// Sum of `group`'s committed offsets on `topic` (0 where none).
async fn committed_total(group: String, topic: String) -> i64 {
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::{Offset, TopicPartitionList};
        let c: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", kafka()).set("group.id", &group).create().unwrap();
        let Ok(md) = c.fetch_metadata(Some(&topic), Duration::from_secs(5)) else { return 0 };
        let mut tpl = TopicPartitionList::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(&topic, p.id());
            }
        }
        let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(5)) else { return 0 };
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .sum()
    })
    .await
    .unwrap()
}

/// A rules worker that takes a partition over while `persist` lags rebuilds
/// from a complete store: it waits for persist (`rules.store_wait_secs`), so a
/// heart-failure weight window still holds the reading that only the previous
/// owner consumed. Before that wait, the new owner rebuilt from a store that
/// lacked the reading, and the 2.6 kg gain below was never alerted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn takeover_while_persist_lags_misses_no_reading() {
    let Some(ctx) = setup("ruleslag", &["hf-lag"]).await else {
        return;
    };
    ctx.st.set_patient_rules(&PatientId::new("hf-lag").unwrap(), r#"{"program":"heart_failure"}"#).await.unwrap();
    let (rules_group, topic) = (format!("{}-rules", ctx.run), format!("{}.obs", ctx.run));
    let mut ingest = Proc::spawn("ingest", &["ingest"], &ctx.env);
    let mut persist = Proc::spawn("persist", &["persist"], &ctx.env);
    let mut rules = Proc::spawn("rules", &["rules"], &ctx.env);
    ctx.wait_live().await;
    let committed = || committed_total(rules_group.clone(), topic.clone());
    assert!(
        wait_until(Duration::from_secs(60), || async { committed().await > 0 }).await,
        "rules never committed the probe"
    );

    // Persist stops; the first worker consumes (and commits) a weight that is
    // therefore in Kafka and in its memory only.
    persist.kill9();
    let before = committed().await;
    let now = Utc::now();
    let weight = |t: DateTime<Utc>, kg: f64| serde_json::json!({"type": "body_weight", "time": rfc3339(t), "unit": "kg", "value": kg});
    let earlier = now - TimeDelta::days(2);
    ctx.manual("hf-lag", weight(earlier, 80.0)).await;
    assert!(
        wait_until(Duration::from_secs(30), || async { committed().await > before }).await,
        "the first rules worker never committed the first weight"
    );
    assert_eq!(ctx.stored("hf-lag").await, 0, "persist is down: nothing stored yet");
    rules.kill9();

    // The next weight, 2.6 kg more two days later, reaches a new worker while
    // persist is still down; persist comes back a few seconds later.
    let later = Utc::now();
    ctx.manual("hf-lag", weight(later, 82.6)).await;
    let mut rules = Proc::spawn("rules", &["rules"], &ctx.env);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut persist = Proc::spawn("persist", &["persist"], &ctx.env);

    let consumer = ctx.alerts_consumer();
    let events = collect(&consumer, Duration::from_secs(90), Duration::from_secs(5), |ev| {
        ev.iter().any(|e| e.patient_id == "hf-lag")
    })
    .await;
    let opened: Vec<&AlertEvent> =
        events.iter().filter(|e| e.patient_id == "hf-lag" && e.kind == AlertEventKind::Opened as i32).collect();
    assert_eq!(opened.len(), 1, "exactly one episode opened: {opened:?}");
    let e = opened[0];
    assert_eq!(e.rule_id, "hf.weight_gain_3d");
    assert_eq!(e.reading_time_unix_micros, later.timestamp_micros());
    let evidence: Vec<i64> = e.readings.iter().map(|r| r.time_unix_micros).collect();
    assert!(evidence.contains(&earlier.timestamp_micros()), "the earlier weight is in the evidence: {evidence:?}");
    assert_eq!(ctx.stored("hf-lag").await, 2, "persist stored both weights");

    rules.terminate(Duration::from_secs(20));
    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}

/// Issue #17: an alert's evidence names the version of the rules that raised
/// it. Rules changed twice through the admin service (versions 1 and 2), a
/// reading raises an alert naming version 2 (event, evidence, episode,
/// `AlertView`); a third change (version 3, another program) resolves the
/// removed rule's episode and a later reading's alert names version 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_evidence_names_the_rules_version() {
    use vitalwatch_admin::actor::Actor;
    use vitalwatch_rules::{PatientRules, Program};
    let Some(ctx) = setup("rulesver", &["rv-1"]).await else {
        return;
    };
    let svc = vitalwatch_admin::AdminService::open(&ctx.db, 100, 100).await.unwrap();
    let op = Actor::operator("op-rules");
    let diabetes = PatientRules::for_program(Program::Diabetes);
    assert_eq!(svc.set_rules(&op, "rv-1", &diabetes, Some("inclusion")).await.unwrap().version, Some(1));
    assert_eq!(svc.set_rules(&op, "rv-1", &diabetes, Some("second look")).await.unwrap().version, Some(2));
    let stored = ctx.st.patient_rules(&PatientId::new("rv-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.version, 2, "patient_rules.version is the version in force");

    let mut ingest = Proc::spawn("ingest", &["ingest"], &ctx.env);
    let mut persist = Proc::spawn("persist", &["persist"], &ctx.env);
    let mut rules = Proc::spawn("rules", &["rules"], &ctx.env);
    ctx.wait_live().await;
    let consumer = ctx.alerts_consumer();
    let now = Utc::now();
    ctx.manual("rv-1", glucose(now - TimeDelta::minutes(10), 52.0)).await;
    let is = |e: &AlertEvent, rule: &str, kind: AlertEventKind| e.rule_id == rule && e.kind == kind as i32;
    let events = collect(&consumer, Duration::from_secs(90), Duration::from_secs(1), |ev| {
        ev.iter().any(|e| is(e, "threshold.glucose.low", AlertEventKind::Opened))
    })
    .await;
    let low = events.iter().find(|e| is(e, "threshold.glucose.low", AlertEventKind::Opened)).expect("glucose alert");
    assert_eq!(low.rules_version, 2, "the event names the version in force");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            ctx.st.alerts(None).await.unwrap_or_default().iter().any(|a| a.episode_id == low.episode_id)
        })
        .await
    );
    let detail = svc.alert(&op, &low.episode_id).await.unwrap();
    assert_eq!(detail.alert.as_ref().and_then(|a| a.rules_version), Some(2), "AlertView.rules_version");
    assert_eq!(detail.evidence.as_ref().map(|e| e["rules_version"].clone()), Some(serde_json::json!(2)));

    // A further change (version 3): the general program has no glucose rule.
    let general = PatientRules::for_program(Program::General);
    assert_eq!(svc.set_rules(&op, "rv-1", &general, Some("diabetes ruled out")).await.unwrap().version, Some(3));
    let events = collect(&consumer, Duration::from_secs(90), Duration::from_secs(1), |ev| {
        ev.iter().any(|e| is(e, "threshold.glucose.low", AlertEventKind::Resolved))
    })
    .await;
    let removed =
        events.iter().find(|e| is(e, "threshold.glucose.low", AlertEventKind::Resolved)).expect("rule removed");
    assert_eq!(removed.rules_version, 3, "the change that removed the rule is named");
    ctx.manual(
        "rv-1",
        serde_json::json!({"type": "blood_pressure", "time": rfc3339(Utc::now() - TimeDelta::minutes(1)),
            "unit": "mmHg", "systolic": 185, "diastolic": 125, "pulse": 80}),
    )
    .await;
    let events = collect(&consumer, Duration::from_secs(90), Duration::from_secs(1), |ev| {
        ev.iter().any(|e| is(e, "threshold.bp.crisis", AlertEventKind::Opened))
    })
    .await;
    let crisis = events.iter().find(|e| is(e, "threshold.bp.crisis", AlertEventKind::Opened)).expect("crisis");
    assert_eq!(crisis.rules_version, 3, "a reading after the change names the new version");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            svc.alert(&op, &crisis.episode_id).await.is_ok_and(|d| d.alert.is_some())
        })
        .await
    );
    let crisis_view = svc.alert(&op, &crisis.episode_id).await.unwrap().alert.unwrap();
    assert_eq!(crisis_view.rules_version, Some(3));
    // The first episode keeps the version that opened it.
    let first = svc.alert(&op, &low.episode_id).await.unwrap().alert.unwrap();
    assert_eq!((first.rules_version, first.status.as_str()), (Some(2), "resolved"));
    let history = svc.rules_history(&op, "rv-1").await.unwrap();
    assert_eq!(history.iter().map(|h| h.version).collect::<Vec<_>>(), vec![3, 2, 1]);

    rules.terminate(Duration::from_secs(20));
    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}
