//! Scale-out and lifecycle of the production roles on the real services: two
//! processes of each role (ingest, persist, rules, alerting) share the work;
//! one of each is stopped mid-stream, by SIGTERM (a rolling restart: it must
//! drain and exit 0 within the grace period) or by SIGKILL (a crash); the
//! survivors take over. Nothing is lost (the exact rows), nothing is
//! duplicated (exact alert events, one notification per episode).
//!
//! Ingest is restarted under its own client id after the stop, as a
//! StatefulSet pod would be: Mosquitto keeps routing a shared subscription's
//! share to a member's offline persistent session until it comes back.

use crate::common;
use crate::payloads;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use payloads::rfc3339;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use vitalwatch_platform::store;
use vitalwatch_schemas::PatientId;

/// Patients publishing; the first `SICK` of them get a low SpO2 reading, confirmed by the next.
const PATIENTS: usize = 20;
const SICK: usize = 5;
/// Heart-rate readings per patient (one message each).
const READINGS: usize = 150;

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Term,
    Kill,
}

struct Role {
    proc: Proc,
    log: PathBuf,
    ops: String,
}

fn role_env(base: &[(String, String)], role: &str, member: &str, dir: &Path) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    match role {
        "ingest" => {
            env.retain(|(k, _)| k != "VITALWATCH_MQTT__CLIENT_ID");
            env.push(("VITALWATCH_MQTT__CLIENT_ID".into(), format!("ingest-{member}-{}", unique("c"))));
        }
        "alerting" => {
            env.push(("VITALWATCH_ALERTING__HTTP_ADDR".into(), "127.0.0.1:0".into()));
            env.push(("VITALWATCH_ALERTING__FILE_DIR".into(), path_str(&dir.join(format!("alerts-{member}")))));
        }
        _ => {}
    }
    env
}

async fn start(role: &str, member: &str, env: &[(String, String)], dir: &Path) -> Role {
    let log = dir.join(format!("{role}-{member}-{}.log", unique("l")));
    let proc = Proc::spawn_logged(&format!("{role}-{member}"), &[role], env, &log);
    let ops = ops_addr(&log).await;
    let ready = wait_until(Duration::from_secs(60), || async { get(&ops, "/readyz").await.0 == 200 }).await;
    assert!(ready, "{role}-{member} never ready: {:?}", get(&ops, "/readyz").await);
    Role { proc, log, ops }
}

/// What a role's process has done so far, from its metrics.
async fn work(r: &Role, role: &str) -> f64 {
    let (_, m) = get(&r.ops, "/metrics").await;
    match role {
        "ingest" => sample(&m, "vitalwatch_ingest_messages_total"),
        "persist" => sample(&m, "vitalwatch_persist_rows_total"),
        "rules" => sample(&m, "vitalwatch_rules_evaluation_seconds_count"),
        _ => sample(&m, "vitalwatch_consumer_messages_total{role=\"alerting\"}"),
    }
}

async fn query_i64(db: &str, sql: &str) -> i64 {
    let Ok((c, conn)) = tokio_postgres::connect(db, tokio_postgres::NoTls).await else {
        return -1;
    };
    tokio::spawn(conn);
    c.query_one(sql, &[]).await.map(|r| r.get::<_, i64>(0)).unwrap_or(-1)
}

/// A publisher (`{run}-pub`, persistent session) that counts the broker's
/// PUBACKs: a reading the broker took (acked) and that is not stored was lost
/// by vitalwatch, not by the test.
fn counting_publisher(run: &str, port: u16) -> (AsyncClient, Arc<AtomicUsize>) {
    let mut opts = MqttOptions::new(format!("{run}-pub"), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30)).set_inflight(200).set_clean_session(false);
    let (client, mut eventloop) = AsyncClient::new(opts, 5000);
    let pubacks = Arc::new(AtomicUsize::new(0));
    let counted = pubacks.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("publisher connection error: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    (client, pubacks)
}

async fn scenario(stop: Stop) {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique(if stop == Stop::Term { "sterm" } else { "skill" });
    let db = fresh_database(&pg_url(), &run).await;
    // Kept on failure for the logs; removed on success.
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("logs in {}", dir.display());
    let mut env = service_env(&run, &db, &mosq.url);
    env.push(("VITALWATCH_ALERTING__GROUP".into(), format!("{run}-alerting")));
    env.push(("VITALWATCH_ALERTING__TRANSPORT".into(), "file".into()));
    env.push(("VITALWATCH_ALERTING__ACK_SECRET".into(), "s".repeat(40)));
    run_cli(&["migrate"], &env);
    run_cli(&["physician", "add", "dr-so", "--name", "Dr Scale", "--email", "dr.so@example.org"], &env);
    run_cli(&["physician", "add", "dr-dep", "--name", "Dr Deputy", "--email", "dr.dep@example.org"], &env);
    let patients: Vec<String> = (0..PATIENTS).map(|i| format!("so-{i:02}")).collect();
    for (i, p) in patients.iter().enumerate() {
        run_cli(&["patient", "add", p], &env);
        run_cli(&["rules-config", "set", p, "--program", "general"], &env);
        if i < SICK {
            run_cli(&["care-team", "set", p, "--responsible", "dr-so", "--deputy", "dr-dep"], &env);
        }
    }
    let dirp = dir.as_path();
    let roles = ["ingest", "persist", "rules", "alerting"];
    let mut a = Vec::new();
    let mut b = Vec::new();
    for r in roles {
        a.push(start(r, "a", &role_env(&env, r, "a", dirp), dirp).await);
        b.push(start(r, "b", &role_env(&env, r, "b", dirp), dirp).await);
    }

    let (client, pubacks) = counting_publisher(&run, mosq.port);

    // The load: every patient one reading per round, ~300 messages a second.
    let start_t = Utc::now() - TimeDelta::minutes(READINGS as i64 + 5);
    let publisher = {
        let (client, patients) = (client.clone(), patients.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(66));
            for round in 0..READINGS {
                tick.tick().await;
                for (i, p) in patients.iter().enumerate() {
                    let t = rfc3339(start_t + TimeDelta::minutes(round as i64));
                    // Two low readings in a row: a single one waits for confirmation.
                    let body = if i < SICK && (round == READINGS / 2 || round == READINGS / 2 + 1) {
                        format!(r#"{{"readings":[{{"type":"spo2","time":"{t}","unit":"%","value":84}}]}}"#)
                    } else {
                        let hr = 60 + (round + i) % 20;
                        format!(r#"{{"readings":[{{"type":"heart_rate","time":"{t}","unit":"/min","value":{hr}}}]}}"#)
                    };
                    let topic = format!("vitalwatch/v1/patients/{p}/manual/json");
                    client.publish(topic, QoS::AtLeastOnce, false, body).await.unwrap();
                }
            }
        })
    };

    // Mid-stream: both members of every role have done some work; stop one of each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, r) in roles.iter().enumerate() {
        if *r == "alerting" {
            continue; // alerting only works once alerts exist (checked at the end)
        }
        let shared =
            wait_until(Duration::from_secs(20), || async { work(&a[i], r).await > 0.0 && work(&b[i], r).await > 0.0 })
                .await;
        assert!(
            shared,
            "{r}: both processes should share the work ({} / {})",
            work(&a[i], r).await,
            work(&b[i], r).await
        );
    }
    let mut restarted = None;
    for (i, r) in roles.iter().enumerate() {
        match stop {
            // Drains under load and exits 0 well within a pod's grace period.
            Stop::Term => {
                let log = a[i].log.clone();
                let proc = &mut a[i].proc;
                let done =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| proc.terminate(Duration::from_secs(30))));
                if done.is_err() {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    panic!("{r} did not stop cleanly on SIGTERM; last log lines (newest first):\n{}", tail.join("\n"));
                }
            }
            Stop::Kill => a[i].proc.kill9(),
        }
        if *r == "ingest" {
            // Restarted under the same client id (StatefulSet).
            let mut renv = env.clone();
            renv.retain(|(k, _)| k != "VITALWATCH_MQTT__CLIENT_ID");
            let id = logged_client_id(&a[i].log);
            renv.push(("VITALWATCH_MQTT__CLIENT_ID".into(), id));
            tokio::time::sleep(Duration::from_secs(1)).await;
            restarted = Some(start("ingest", "a2", &renv, dirp).await);
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    publisher.await.unwrap();
    let total = PATIENTS * READINGS;
    let acked = wait_until(Duration::from_secs(30), || {
        let n = pubacks.load(Ordering::Relaxed);
        async move { n >= total }
    })
    .await;
    assert!(acked, "the broker acknowledged {} of {total} publications", pubacks.load(Ordering::Relaxed));

    // Nothing lost, nothing duplicated.
    let expected_rows = (PATIENTS * READINGS) as i64;
    let all = wait_until(Duration::from_secs(120), || async {
        query_i64(&db, "SELECT count(*) FROM observations").await == expected_rows
    })
    .await;
    assert!(all, "rows: {} of {expected_rows}", query_i64(&db, "SELECT count(*) FROM observations").await);
    let per_patient = query_i64(
        &db,
        &format!(
            "SELECT count(*) FROM (SELECT patient_id FROM observations GROUP BY 1 HAVING count(*) = {READINGS}) x"
        ),
    )
    .await;
    assert_eq!(per_patient, PATIENTS as i64, "every patient has exactly {READINGS} rows");
    let episodes = wait_until(Duration::from_secs(60), || async {
        query_i64(&db, "SELECT count(*) FROM alert_outbox WHERE status = 'sent'").await == SICK as i64
    })
    .await;
    assert!(
        episodes,
        "sent notifications: {}",
        query_i64(&db, "SELECT count(*) FROM alert_outbox WHERE status = 'sent'").await
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alerts").await, SICK as i64, "one episode per sick patient");
    assert_eq!(
        query_i64(&db, "SELECT count(DISTINCT patient_id) FROM alerts WHERE rule_id = 'threshold.spo2.low'").await,
        SICK as i64
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alert_events").await, SICK as i64, "one OPENED event each");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM alert_outbox").await, SICK as i64, "one notification each");
    // One email file per episode across both alerting processes.
    let mut emails = BTreeSet::new();
    for m in ["a", "b"] {
        if let Ok(rd) = std::fs::read_dir(dirp.join(format!("alerts-{m}"))) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".eml") {
                    assert!(emails.insert(name.clone()), "{name} sent by both alerting processes");
                }
            }
        }
    }
    assert_eq!(emails.len(), SICK, "emails: {emails:?}");
    if stop == Stop::Term {
        // A drained stop sends nothing twice: one delivered attempt per notification.
        assert_eq!(
            query_i64(
                &db,
                "SELECT count(*) FROM alert_audit WHERE entry_type = 'delivery_attempt' \
                 AND record->'entry'->'outcome'->>'status' = 'delivered'"
            )
            .await,
            SICK as i64
        );
    }
    // No consumer jumped over records it never processed (offset continuity check).
    for e in std::fs::read_dir(dirp).expect("log dir").flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "log") {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!log.contains("Records were skipped"), "{} reports skipped records", path.display());
        }
    }
    drop(restarted);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_each_role_share_the_work_and_survive_sigterm() {
    scenario(Stop::Term).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_each_role_share_the_work_and_survive_sigkill() {
    scenario(Stop::Kill).await;
}

/// Issue #12, defect 7: ingest scales down without stranding readings. Three
/// replicas share the subscription under a steady load; two are stopped with
/// SIGTERM mid-stream (an autoscaler going from 3 to 1). Each leaves the
/// shared subscription, drains what the broker had queued for it and ends its
/// session, so every reading is stored soon after the load ends, and nothing
/// waits for the stopped client ids (eclipse-mosquitto#1747: Mosquitto keeps
/// routing a member's share to its offline persistent session).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_ingest_replicas_scaled_to_one_under_load_store_every_reading() {
    const PATIENTS: usize = 10;
    const ROUNDS: usize = 400;
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("sdown");
    let db = fresh_database(&pg_url(), &run).await;
    let dir = std::env::temp_dir().join(&run);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("logs in {}", dir.display());
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 1000).await.unwrap();
    let patients: Vec<String> = (0..PATIENTS).map(|i| format!("sd-{i:02}")).collect();
    for p in &patients {
        st.add_patient(&PatientId::new(p.clone()).unwrap()).await.unwrap();
    }
    let dirp = dir.as_path();
    let survivor = start("ingest", "a", &role_env(&env, "ingest", "a", dirp), dirp).await;
    let mut leaving = Vec::new();
    for m in ["b", "c"] {
        leaving.push(start("ingest", m, &role_env(&env, "ingest", m, dirp), dirp).await);
    }
    let persist = start("persist", "a", &env, dirp).await;

    // About 1,000 messages a second for 8 s, one reading each.
    let (client, pubacks) = counting_publisher(&run, mosq.port);
    let start_t = Utc::now() - TimeDelta::hours(2);
    let publisher = {
        let (client, patients) = (client.clone(), patients.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for round in 0..ROUNDS {
                tick.tick().await;
                for (i, p) in patients.iter().enumerate() {
                    let t = rfc3339(start_t + TimeDelta::seconds(round as i64));
                    let hr = 60 + (round + i) % 20;
                    let body =
                        format!(r#"{{"readings":[{{"type":"heart_rate","time":"{t}","unit":"/min","value":{hr}}}]}}"#);
                    let topic = format!("vitalwatch/v1/patients/{p}/manual/json");
                    client.publish(topic, QoS::AtLeastOnce, false, body).await.unwrap();
                }
            }
        })
    };

    // Every replica has its share; then two of them are stopped at once.
    let shared = wait_until(Duration::from_secs(20), || async {
        work(&survivor, "ingest").await > 0.0
            && work(&leaving[0], "ingest").await > 0.0
            && work(&leaving[1], "ingest").await > 0.0
    })
    .await;
    assert!(shared, "the three ingest replicas should share the work");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client_ids: Vec<String> = leaving.iter().map(|r| logged_client_id(&r.log)).collect();
    let stopping = std::time::Instant::now();
    let stops: Vec<_> = leaving
        .into_iter()
        .map(|mut r| {
            tokio::task::spawn_blocking(move || {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    r.proc.terminate(Duration::from_secs(30))
                }));
                if done.is_err() {
                    let text = std::fs::read_to_string(&r.log).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    panic!(
                        "{} did not stop cleanly on SIGTERM; last log lines (newest first):\n{}",
                        r.proc.name,
                        tail.join("\n")
                    );
                }
            })
        })
        .collect();
    for s in stops {
        s.await.unwrap();
    }
    eprintln!("two replicas left and exited {:?} after SIGTERM", stopping.elapsed());
    publisher.await.unwrap();
    let load_ended = std::time::Instant::now();
    let total = PATIENTS * ROUNDS;
    let acked = wait_until(Duration::from_secs(30), || {
        let n = pubacks.load(Ordering::Relaxed);
        async move { n >= total }
    })
    .await;
    assert!(acked, "the broker acknowledged {} of {total} publications", pubacks.load(Ordering::Relaxed));

    // Stored within seconds of the end of the load, by the one replica left.
    let stored = wait_until(Duration::from_secs(15), || async {
        query_i64(&db, "SELECT count(*) FROM observations").await == total as i64
    })
    .await;
    assert!(
        stored,
        "{} of {total} readings stored 15 s after the load ended (the rest waits in the stopped replicas' sessions?)",
        query_i64(&db, "SELECT count(*) FROM observations").await
    );
    eprintln!("all {total} readings stored {:?} after the load ended", load_ended.elapsed());

    // Nothing waits for the stopped client ids: their sessions are gone.
    for id in &client_ids {
        let (session_present, received) = resume_session(id, mosq.port).await;
        assert!(
            !session_present && received == 0,
            "client id {id}: session present {session_present}, {received} messages waiting in it"
        );
    }
    let _ = st;
    drop((survivor, persist));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The MQTT client id an ingest logged at startup.
fn logged_client_id(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|l| {
            l.lines()
                .filter_map(|x| serde_json::from_str::<serde_json::Value>(x).ok())
                .find_map(|v| v["client_id"].as_str().map(str::to_owned))
        })
        .expect("ingest logs its client id")
}

/// Connects as `client_id` with a persistent session: whether the broker
/// still had a session for it, and how many messages it sent in 2 s.
async fn resume_session(client_id: &str, port: u16) -> (bool, usize) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_clean_session(false).set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (mut session_present, mut received) = (false, 0);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => session_present = a.session_present,
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => received += 1,
                Ok(_) => {}
                Err(e) => panic!("connect as {client_id}: {e}"),
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    (session_present, received)
}
