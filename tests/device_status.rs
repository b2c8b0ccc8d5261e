//! Device status (heartbeats) on the Kafka deployment: Mosquitto -> `vitalwatch
//! ingest` -> the device-status topic -> `vitalwatch persist` -> PostgreSQL
//! `device_status` (issue #16: the patient page shows each device's battery
//! and last heartbeat). The embedded path (`vitalwatch run`) is covered in
//! `run_embedded`.

use crate::common;
use crate::payloads;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use payloads::*;
use rumqttc::QoS;
use vitalwatch_platform::store;
use vitalwatch_schemas::{DeviceId, PatientId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_published_over_mqtt_lands_in_device_status_and_the_newest_wins() {
    let Some(mosq) = Mosquitto::start() else { return };
    if !require("PostgreSQL", &pg_url()) || !require("Kafka-protocol broker", &kafka()) {
        return;
    }
    let run = unique("devst");
    let db = fresh_database(&pg_url(), &run).await;
    let env = service_env(&run, &db, &mosq.url);
    run_cli(&["migrate"], &env);
    let st = store::open(&db, 100).await.expect("store");
    let (p, d) = (PatientId::new("pat-hb").unwrap(), DeviceId::new("hub-hb").unwrap());
    st.add_patient(&p).await.unwrap();
    st.add_device(&d, "hub").await.unwrap();
    st.enrol(&d, &p, Utc::now() - chrono::Duration::days(1)).await.unwrap();

    let mut ingest = Proc::spawn("ingest", &["ingest"], &env);
    let mut persist = Proc::spawn("persist", &["persist"], &env);
    let client = mqtt_publisher(&run, mosq.port);
    let t = DateTime::from_timestamp(Utc::now().timestamp() - 60, 0).unwrap();
    let newest = format!(r#"{{"time":"{}","battery_percent":64,"signal_dbm":-80,"firmware":"fw-2"}}"#, rfc3339(t));
    let older = format!(
        r#"{{"time":"{}","battery_percent":99,"firmware":"fw-1"}}"#,
        rfc3339(t - chrono::Duration::minutes(30))
    );
    let topic = "vitalwatch/v1/devices/hub-hb/status";
    // Publish until it lands (the first may precede ingest's subscription);
    // an older heartbeat arriving after it changes nothing.
    for _ in 0..150 {
        client.publish(topic, QoS::AtLeastOnce, false, newest.clone()).await.unwrap();
        client.publish(topic, QoS::AtLeastOnce, false, older.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !st.device_statuses(&["hub-hb".to_owned()]).await.unwrap().is_empty() {
            break;
        }
    }
    // Let the last older heartbeats go through too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = st.device_statuses(&["hub-hb".to_owned()]).await.unwrap();
    assert_eq!(rows.len(), 1, "no device_status row for the heartbeat");
    let r = &rows[0];
    assert_eq!(r.time, t, "the newest heartbeat wins");
    assert_eq!((r.battery_percent, r.signal_dbm, r.firmware.as_deref()), (Some(64.0), Some(-80.0), Some("fw-2")));
    assert_eq!(r.patient_id.as_deref(), Some("pat-hb"));
    assert!((r.received_at - Utc::now()).num_minutes().abs() < 5);

    ingest.terminate(Duration::from_secs(20));
    persist.terminate(Duration::from_secs(20));
}
