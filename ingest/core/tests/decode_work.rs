//! Decoding and processing must do work linear in the payload size, whatever
//! the payload (issue #12, defect 4: a 250 KB SenML pack with a long base name
//! took 0.9 s, because every record copied the base name).
//!
//! Not a timed test: a counting global allocator measures the bytes allocated
//! while one payload is decoded (and processed), and each worst-case payload
//! must stay under a fixed multiple of its own size. Quadratic copying (a base
//! name or unit copied per record, a message id copied per observation) shows
//! up as hundreds or thousands of times the payload size.
#![allow(unsafe_code)] // libc calls / a counting allocator in test code; each block has a SAFETY note

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use prost::Message as _;
use vitalwatch_ingest_core::decode::decode;
use vitalwatch_ingest_core::normalize::Limits;
use vitalwatch_ingest_core::pipeline::process;
use vitalwatch_ingest_core::topic::Format;
use vitalwatch_schemas::PatientId;
use vitalwatch_schemas::proto::{Reading, ReadingBatch};
use vitalwatch_schemas::registry::{DeviceEntry, Enrolment, RegistrySnapshot};

struct Counting;

thread_local! {
    // Const-initialized, no destructor: safe to touch from the allocator.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(n: usize) {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = BYTES.try_with(|b| b.set(b.get() + n as u64));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated on this thread while `f` runs (what `f` returns is
/// dropped outside the count).
fn allocated<R>(f: impl FnOnce() -> R) -> u64 {
    BYTES.with(|b| b.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    drop(r);
    BYTES.with(|b| b.get())
}

/// Allowed bytes allocated per payload byte. Legitimate decoding allocates a
/// few dozen structs-bytes per payload byte at worst (a 2-byte protobuf
/// reading becomes a decoded struct and a raw reading); quadratic copying of
/// a 100 KB string per record is thousands of times the payload.
const MAX_RATIO: f64 = 160.0;

const SIZES: [usize; 4] = [32 * 1024, 64 * 1024, 128 * 1024, 250 * 1024];

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().with_timezone(&Utc)
}

fn registry() -> RegistrySnapshot {
    let mut r = RegistrySnapshot::default();
    r.patients.insert("p1".into());
    r.devices.insert(
        "d1".into(),
        DeviceEntry {
            retired_at: None,
            enrolments: vec![Enrolment {
                patient_id: PatientId::new("p1").unwrap(),
                valid_from: now() - Duration::days(365),
                valid_to: None,
                ended: None,
            }],
            backfill: Vec::new(),
        },
    );
    r
}

/// Repeats `item(i)` joined by commas inside `open`/`close` until the payload
/// would exceed `size` bytes.
fn fill(size: usize, open: &str, close: &str, mut item: impl FnMut(usize) -> String) -> Vec<u8> {
    let mut s = String::from(open);
    let mut i = 0;
    loop {
        let it = item(i);
        if s.len() + it.len() + 1 + close.len() > size {
            break;
        }
        if i > 0 {
            s.push(',');
        }
        s.push_str(&it);
        i += 1;
    }
    s.push_str(close);
    s.into_bytes()
}

/// Worst-case payloads per format, `size` bytes at most.
fn worst_cases(size: usize) -> Vec<(&'static str, Format, Vec<u8>)> {
    let t = now().timestamp() - 600;
    let long = |n: usize| "x".repeat(n);
    let mut v = Vec::new();
    // SenML: a base name of half the payload, then tiny records that all use it.
    let bn = long(size / 2);
    v.push((
        "senml_long_base_name",
        Format::Senml,
        fill(size, "[", "]", |i| {
            if i == 0 { format!(r#"{{"bn":"{bn}","n":"a","v":1}}"#) } else { r#"{"n":"a","v":1}"#.to_owned() }
        }),
    ));
    // SenML: the longest base name accepted, then many records.
    let bn = format!("urn:dev:{}:", long(240));
    v.push((
        "senml_bounded_base_name",
        Format::Senml,
        fill(size, "[", "]", |i| {
            if i == 0 {
                format!(r#"{{"bn":"{bn}","bt":{t},"n":"hr","u":"/min","v":60}}"#)
            } else {
                format!(r#"{{"n":"hr","v":{},"t":{i}}}"#, 60 + i % 40)
            }
        }),
    ));
    // SenML: an escaped (so copied) base unit, used by every record.
    let bu = format!("\\u006d{}", long(size / 2));
    v.push((
        "senml_escaped_base_unit",
        Format::Senml,
        fill(size, "[", "]", |i| {
            if i == 0 { format!(r#"{{"bu":"{bu}","n":"hr","v":1}}"#) } else { r#"{"n":"hr","v":1}"#.to_owned() }
        }),
    ));
    // SenML: blood-pressure parts, each at its own time (grouping).
    v.push((
        "senml_bp_parts",
        Format::Senml,
        fill(size, "[", "]", |i| {
            let n = ["sys", "dia", "pulse"][i % 3];
            format!(r#"{{"n":"{n}","v":{},"t":{}}}"#, 80 + i % 50, i / 2)
        }),
    ));
    // Canonical JSON: tiny readings; escaped strings (serde path).
    v.push((
        "json_tiny_readings",
        Format::Json,
        fill(size, r#"{"readings":["#, "]}", |_| r#"{"type":"x"}"#.to_owned()),
    ));
    v.push((
        "json_escaped",
        Format::Json,
        fill(size, r#"{"readings":["#, "]}", |_| r#"{"type":"\u0078","unit":"\u0025"}"#.to_owned()),
    ));
    // FHIR: a bundle of tiny observations; one panel with many components.
    v.push((
        "fhir_bundle",
        Format::Fhir,
        fill(size, r#"{"resourceType":"Bundle","entry":["#, "]}", |_| {
            r#"{"resource":{"resourceType":"Observation","code":{}}}"#.to_owned()
        }),
    ));
    v.push((
        "fhir_components",
        Format::Fhir,
        fill(
            size,
            r#"{"resourceType":"Observation","code":{"coding":[{"code":"85354-9"}]},"component":["#,
            "]}",
            |_| r#"{"code":{"coding":[{"code":"8480-6"}]},"valueQuantity":{"value":1,"code":"mm[Hg]"}}"#.to_owned(),
        ),
    ));
    v
}

/// Messages that pass decoding and normalize into many observations, for the
/// whole `process` step: a long message id must not be copied per observation.
fn process_cases(size: usize) -> Vec<(&'static str, String, Vec<u8>)> {
    let time = (now() - Duration::minutes(10)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let reading = format!(
        r#"{{"type":"blood_pressure","time":"{time}","unit":"mmHg","systolic":130,"diastolic":85,"pulse":70}}"#
    );
    // Half the payload for the id, the rest readings (at most 1,000).
    let id = "m".repeat(size / 2);
    let room = size / 2 - 64;
    let n = (room / (reading.len() + 1)).min(1000);
    let json = format!(r#"{{"msg_id":"{id}","readings":[{}]}}"#, vec![reading.as_str(); n].join(","));
    // Protobuf: as many empty readings as fit (2 bytes each), and one good one.
    let good = Reading {
        r#type: vitalwatch_schemas::proto::ReadingType::Spo2 as i32,
        time_unix_micros: (now() - Duration::minutes(10)).timestamp_micros(),
        unit: "%".into(),
        value: Some(97.0),
        ..Default::default()
    };
    let mut readings = vec![Reading::default(); (size - 64) / 2];
    readings[0] = good;
    let proto = ReadingBatch { readings, ..Default::default() }.encode_to_vec();
    vec![
        ("json_long_msg_id", "vitalwatch/v1/devices/d1/readings/json".to_owned(), json.into_bytes()),
        ("proto_empty_readings", "vitalwatch/v1/devices/d1/readings/proto".to_owned(), proto),
    ]
}

#[test]
fn decoding_allocates_linearly_in_the_payload_size() {
    let mut failures = Vec::new();
    for size in SIZES {
        for (name, format, payload) in worst_cases(size) {
            assert!(payload.len() <= size, "{name}: {} > {size}", payload.len());
            let bytes = allocated(|| decode(format, &payload));
            let ratio = bytes as f64 / payload.len() as f64;
            eprintln!(
                "{name:28} {:>7} B payload: {bytes:>12} B allocated ({ratio:.1} per payload byte)",
                payload.len()
            );
            if ratio > MAX_RATIO {
                failures.push(format!("{name} at {} B: {bytes} B allocated ({ratio:.0}x)", payload.len()));
            }
        }
    }
    assert!(failures.is_empty(), "super-linear decoding: {failures:#?}");
}

#[test]
fn processing_allocates_linearly_in_the_payload_size() {
    let (limits, reg) = (Limits::default(), registry());
    let mut failures = Vec::new();
    for size in SIZES {
        for (name, topic, payload) in process_cases(size) {
            assert!(payload.len() <= size, "{name}: {} > {size}", payload.len());
            let bytes = allocated(|| process(&topic, &payload, now(), &limits, &reg));
            let ratio = bytes as f64 / payload.len() as f64;
            eprintln!(
                "{name:28} {:>7} B payload: {bytes:>12} B allocated ({ratio:.1} per payload byte)",
                payload.len()
            );
            if ratio > MAX_RATIO {
                failures.push(format!("{name} at {} B: {bytes} B allocated ({ratio:.0}x)", payload.len()));
            }
        }
    }
    assert!(failures.is_empty(), "super-linear processing: {failures:#?}");
}
