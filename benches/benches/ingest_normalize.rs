//! Decode + normalize throughput of the pure ingest core, per format, on one
//! core (criterion runs single-threaded). Target (issue #2): at least
//! 1,000,000 canonical-JSON readings per second per core.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use vitalwatch_ingest_core::normalize::Limits;
use vitalwatch_ingest_core::pipeline::process;
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::proto::{Reading, ReadingBatch, ReadingType};
use vitalwatch_schemas::registry::{DeviceEntry, Enrolment, RegistrySnapshot};

fn registry(n: usize, since: DateTime<Utc>) -> RegistrySnapshot {
    let mut devices = HashMap::new();
    let mut patients = HashSet::new();
    for i in 0..n {
        patients.insert(format!("p-{i:05}"));
        devices.insert(
            format!("d-{i:05}"),
            DeviceEntry {
                retired_at: None,
                enrolments: vec![Enrolment {
                    patient_id: PatientId::new(format!("p-{i:05}")).unwrap(),
                    valid_from: since,
                    valid_to: None,
                    ended: None,
                }],
                ..Default::default()
            },
        );
    }
    RegistrySnapshot { devices, patients, ..Default::default() }
}

fn json_message(readings: usize, t: DateTime<Utc>, k: usize) -> Vec<u8> {
    let rs: Vec<serde_json::Value> = (0..readings)
        .map(|j| {
            let time = (t + Duration::seconds((k * readings + j) as i64)).to_rfc3339_opts(SecondsFormat::Micros, true);
            match j % 3 {
                0 => serde_json::json!({"type": "body_weight", "time": time, "unit": "kg", "value": 81.2}),
                1 => serde_json::json!({"type": "spo2", "time": time, "unit": "%", "value": 96}),
                _ => serde_json::json!({"type": "heart_rate", "time": time, "unit": "bpm", "value": 72}),
            }
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"msg_id": format!("m{k}"), "readings": rs})).unwrap()
}

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    let t = now - Duration::hours(1);
    let reg = registry(1000, now - Duration::days(30));
    let limits = Limits::default();
    let mut g = c.benchmark_group("decode_normalize");
    for readings in [1usize, 10, 100] {
        let msgs: Vec<(String, Vec<u8>)> = (0..1000)
            .map(|k| (format!("vitalwatch/v1/devices/d-{:05}/readings/json", k % 1000), json_message(readings, t, k)))
            .collect();
        g.throughput(Throughput::Elements((readings * msgs.len()) as u64));
        g.bench_with_input(BenchmarkId::new("json_readings_per_message", readings), &msgs, |b, msgs| {
            b.iter(|| {
                let mut n = 0;
                for (topic, payload) in msgs {
                    n += process(topic, payload, now, &limits, &reg).observations.len();
                }
                n
            })
        });
    }
    // One reading per message in the other formats.
    let senml: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|k| {
            let ts = (t + Duration::seconds(k as i64)).timestamp();
            let p = serde_json::to_vec(
                &serde_json::json!([{"bn": "urn:dev:x:", "bt": ts, "n": "weight", "u": "kg", "v": 80.1}]),
            )
            .unwrap();
            (format!("vitalwatch/v1/devices/d-{:05}/readings/senml", k % 1000), p)
        })
        .collect();
    let proto: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|k| {
            let r = Reading {
                r#type: ReadingType::Spo2 as i32,
                time_unix_micros: (t + Duration::seconds(k as i64)).timestamp_micros(),
                unit: "%".into(),
                value: Some(95.0),
                ..Default::default()
            };
            (
                format!("vitalwatch/v1/devices/d-{:05}/readings/proto", k % 1000),
                ReadingBatch { readings: vec![r], ..Default::default() }.encode_to_vec(),
            )
        })
        .collect();
    let fhir: Vec<(String, Vec<u8>)> = (0..1000)
        .map(|k| {
            let time = (t + Duration::seconds(k as i64)).to_rfc3339_opts(SecondsFormat::Secs, true);
            let p = serde_json::to_vec(&serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "effectiveDateTime": time, "valueQuantity": {"value": 80.2, "unit": "kg", "code": "kg"}}))
            .unwrap();
            (format!("vitalwatch/v1/devices/d-{:05}/readings/fhir", k % 1000), p)
        })
        .collect();
    for (name, msgs) in [("senml", &senml), ("proto", &proto), ("fhir", &fhir)] {
        g.throughput(Throughput::Elements(msgs.len() as u64));
        g.bench_with_input(BenchmarkId::new("one_reading", name), msgs, |b, msgs| {
            b.iter(|| {
                msgs.iter().map(|(topic, p)| process(topic, p, now, &limits, &reg).observations.len()).sum::<usize>()
            })
        });
    }
    g.finish();
}

/// Repeats `item(i)` joined by commas inside `open`/`close` up to `size` bytes.
fn fill(size: usize, open: &str, close: &str, mut item: impl FnMut(usize) -> String) -> Vec<u8> {
    let mut s = String::from(open);
    for i in 0.. {
        let it = item(i);
        if s.len() + it.len() + 1 + close.len() > size {
            break;
        }
        if i > 0 {
            s.push(',');
        }
        s.push_str(&it);
    }
    s.push_str(close);
    s.into_bytes()
}

/// Worst-case payloads of `size` bytes for each format (issue #12, defect 4):
/// decode + normalize time must grow linearly with the size.
fn worst_cases(size: usize, t: DateTime<Utc>) -> Vec<(&'static str, String, Vec<u8>)> {
    let dev = |f: &str| format!("vitalwatch/v1/devices/d-00001/readings/{f}");
    let rfc = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let bt = t.timestamp();
    // A base name of half the payload (rejected by its length bound since the fix).
    let long_bn = "x".repeat(size / 2);
    let bounded_bn = format!("urn:dev:{}:", "x".repeat(240));
    let bp = format!(r#"{{"type":"blood_pressure","time":"{rfc}","unit":"mmHg","systolic":130,"diastolic":85}}"#);
    let n_bp = ((size / 2 - 64) / (bp.len() + 1)).min(1000);
    vec![
        (
            "senml_long_base_name",
            dev("senml"),
            fill(size, "[", "]", |i| {
                if i == 0 { format!(r#"{{"bn":"{long_bn}","n":"a","v":1}}"#) } else { r#"{"n":"a","v":1}"#.into() }
            }),
        ),
        (
            "senml_bounded_base_name",
            dev("senml"),
            fill(size, "[", "]", |i| {
                if i == 0 {
                    format!(r#"{{"bn":"{bounded_bn}","bt":{bt},"n":"hr","u":"/min","v":60}}"#)
                } else {
                    format!(r#"{{"n":"hr","v":60,"t":{i}}}"#)
                }
            }),
        ),
        (
            "senml_bp_parts",
            dev("senml"),
            fill(size, "[", "]", |i| {
                let n = ["sys", "dia", "pulse"][i % 3];
                format!(r#"{{"n":"{n}","v":{},"t":{}}}"#, 80 + i % 50, bt + (i / 3) as i64)
            }),
        ),
        ("json_tiny_readings", dev("json"), fill(size, r#"{"readings":["#, "]}", |_| r#"{"type":"x"}"#.into())),
        (
            "json_long_msg_id",
            dev("json"),
            format!(r#"{{"msg_id":"{}","readings":[{}]}}"#, "m".repeat(size / 2), vec![bp.as_str(); n_bp].join(","))
                .into_bytes(),
        ),
        (
            "fhir_bundle",
            dev("fhir"),
            fill(size, r#"{"resourceType":"Bundle","entry":["#, "]}", |_| {
                r#"{"resource":{"resourceType":"Observation","code":{}}}"#.into()
            }),
        ),
        (
            "proto_empty_readings",
            dev("proto"),
            ReadingBatch { readings: vec![Reading::default(); (size - 16) / 2], ..Default::default() }.encode_to_vec(),
        ),
    ]
}

/// `process` (decode + normalize) on worst-case payloads of 32 to 256 KB.
fn worst_case_bench(c: &mut Criterion) {
    let now = Utc::now();
    let t = now - Duration::hours(1);
    let reg = registry(10, now - Duration::days(30));
    let limits = Limits::default();
    let mut g = c.benchmark_group("worst_case_payload");
    g.sample_size(10);
    for size in [32 * 1024, 64 * 1024, 128 * 1024, 256 * 1024 - 64] {
        for (name, topic, payload) in worst_cases(size, t) {
            g.throughput(Throughput::Bytes(payload.len() as u64));
            g.bench_with_input(BenchmarkId::new(name, size / 1024), &payload, |b, p| {
                b.iter(|| {
                    let out = process(&topic, p, now, &limits, &reg);
                    out.observations.len() + out.rejections.len()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench, worst_case_bench);
criterion_main!(benches);
