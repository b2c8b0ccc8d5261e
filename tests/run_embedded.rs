//! `vitalwatch run` as a subprocess on a random port, fed by an ordinary MQTT
//! client: the readings land in its SQLite store, and SIGTERM stops it cleanly.

use crate::common;
use crate::payloads;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use payloads::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use vitalwatch_platform::store::Store;
use vitalwatch_platform::store::sqlite::SqliteStore;
use vitalwatch_schemas::PatientId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stores_readings_from_an_ordinary_mqtt_client() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let port = free_port();
    let args = ["--embedded", "--data-dir", data.as_str()];
    run_cli(&[&["patient", "add", "p-demo"][..], &args[..]].concat(), &[]);
    run_cli(&[&["device", "add", "scale-demo", "--kind", "scale"][..], &args[..]].concat(), &[]);
    run_cli(
        &[&["device", "enrol", "scale-demo", "p-demo", "--from", "2020-01-01T00:00:00Z"][..], &args[..]].concat(),
        &[],
    );

    let listen = format!("127.0.0.1:{port}");
    let mut run = Proc::spawn("run", &["run", "--data-dir", &data, "--mqtt-listen", &listen], &[]);
    assert!(
        wait_until(Duration::from_secs(30), || async { tokio::net::TcpStream::connect(&listen).await.is_ok() }).await,
        "the embedded broker did not open {listen}"
    );

    let mut opts = MqttOptions::new("plain-client", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let t = DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).unwrap();
    let device_payload = TestReading::WeightLb(t, 180.0).encode("senml");
    let manual =
        r#"{"msg_id":"app-1","readings":[{"type":"blood_pressure","unit":"mmHg","systolic":135,"diastolic":85}]}"#;

    // A heartbeat: it lands in `device_status` (issue #16, through the in-process bus and persist).
    let status = format!(r#"{{"time":"{}","battery":42.5,"rssi":-67,"firmware":"3.1.4"}}"#, t.to_rfc3339());

    let store = SqliteStore::open(&format!("{data}/vitalwatch.db")).unwrap();
    let patient = PatientId::new("p-demo").unwrap();
    // Publish until all land (the first may precede ingest's subscription).
    let mut stored = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..100 {
        client
            .publish("vitalwatch/v1/devices/scale-demo/readings/senml", QoS::AtLeastOnce, false, device_payload.clone())
            .await
            .unwrap();
        client.publish("vitalwatch/v1/patients/p-demo/manual/json", QoS::AtLeastOnce, false, manual).await.unwrap();
        client
            .publish("vitalwatch/v1/devices/scale-demo/status", QoS::AtLeastOnce, false, status.clone())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stored = store.observations(&patient, 100).await.unwrap();
        statuses = store.device_statuses(&["scale-demo".to_owned()]).await.unwrap();
        let has_device = stored.iter().any(|o| o.source == "device");
        let has_manual = stored.iter().any(|o| o.source == "manual");
        if has_device && has_manual && !statuses.is_empty() {
            break;
        }
    }
    let st = statuses.first().expect("the device status row in SQLite");
    assert_eq!((st.battery_percent, st.signal_dbm, st.firmware.as_deref()), (Some(42.5), Some(-67.0), Some("3.1.4")));
    assert_eq!((st.time, st.patient_id.as_deref()), (t, Some("p-demo")));
    let weight = stored.iter().find(|o| o.code == "29463-7").expect("weight row in SQLite");
    assert_eq!(weight.time, t);
    assert!((weight.value - 180.0 * 0.45359237).abs() < 1e-9);
    assert_eq!(weight.unit, "kg");
    assert_eq!(weight.device_id.as_deref(), Some("scale-demo"));
    let sys: Vec<_> = stored.iter().filter(|o| o.code == "8480-6").collect();
    assert!(!sys.is_empty(), "systolic row");
    assert!(sys.iter().all(|o| o.value == 135.0 && o.unit == "mm[Hg]" && o.source == "manual"));
    // Same device reading published many times: stored once.
    assert_eq!(stored.iter().filter(|o| o.code == "29463-7").count(), 1);

    run.terminate(Duration::from_secs(20));
}

/// A role that fails at start-up inside `run` (here alerting: its HTTP port is
/// taken) ends the process promptly, non-zero, with the role's error, instead
/// of going unnoticed until Ctrl-C (regression: `run` waited for a signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_with_the_error_of_a_role_that_fails_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("run.log");
    let mut child = std::process::Command::new(bin())
        .args(["run", "--data-dir", &data, "--mqtt-listen", &listen])
        .env("RUST_LOG", "warn")
        .env("VITALWATCH_ALERTING__HTTP_ADDR", &taken_addr)
        .env("VITALWATCH_API__LISTEN", "127.0.0.1:0")
        .env("VITALWATCH_OPS__LISTEN", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn vitalwatch run");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`vitalwatch run` still running 30 s after its alerting role failed to bind {taken_addr}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "exit {status} after a role failed:\n{stderr}");
    assert!(stderr.contains(&format!("binding alerting.http_addr {taken_addr}")), "the role's error:\n{stderr}");
    drop(taken);
}
