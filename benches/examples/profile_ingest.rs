//! Callgrind driver: `valgrind --tool=callgrind target/release/examples/profile_ingest [readings]`.
use std::collections::{HashMap, HashSet};

use chrono::{Duration, SecondsFormat, Utc};
use vitalwatch_ingest_core::normalize::Limits;
use vitalwatch_ingest_core::pipeline::process;
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::registry::{DeviceEntry, Enrolment, RegistrySnapshot};

fn main() {
    let readings: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let now = Utc::now();
    let t = now - Duration::hours(1);
    let mut devices = HashMap::new();
    let mut patients = HashSet::new();
    for i in 0..1000 {
        patients.insert(format!("p-{i:05}"));
        devices.insert(
            format!("d-{i:05}"),
            DeviceEntry {
                retired_at: None,
                enrolments: vec![Enrolment {
                    patient_id: PatientId::new(format!("p-{i:05}")).unwrap(),
                    valid_from: now - Duration::days(30),
                    valid_to: None,
                    ended: None,
                }],
                ..Default::default()
            },
        );
    }
    let reg = RegistrySnapshot { devices, patients, ..Default::default() };
    let limits = Limits::default();
    let msgs: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|k| {
            let rs: Vec<serde_json::Value> = (0..readings)
                .map(|j| {
                    let time = (t + Duration::seconds((k * readings + j) as i64 % 3000))
                        .to_rfc3339_opts(SecondsFormat::Micros, true);
                    serde_json::json!({"type": "heart_rate", "time": time, "unit": "bpm", "value": 72})
                })
                .collect();
            let p = serde_json::to_vec(&serde_json::json!({"msg_id": format!("m{k}"), "readings": rs})).unwrap();
            (format!("vitalwatch/v1/devices/d-{:05}/readings/json", k % 1000), p)
        })
        .collect();
    let mut n = 0;
    for (topic, payload) in &msgs {
        n += std::hint::black_box(process(topic, payload, now, &limits, &reg)).observations.len();
    }
    println!("{n}");
}
