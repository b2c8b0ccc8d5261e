//! Fuzz target: the whole per-message step, `process(topic, payload, ..)`,
//! against a fixed registry and clock (see fuzz/README.md).
//!
//! Input: one selector byte, then the payload. The selector picks the topic:
//! a device's readings in one of the four formats (`d1` enrolled, `old`
//! retired, `spare` not enrolled, `ghost` unknown), a patient's manual entry
//! (`p1`, or `nobody`), a device status, or (selector >= 0xf0) a topic taken
//! from the input itself, up to the first newline.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitalwatch_fuzz::{check_processed, limits, now, registry, timed};
use vitalwatch_ingest_core::pipeline::process;

const FORMATS: [&str; 4] = ["json", "senml", "fhir", "proto"];
const DEVICES: [&str; 4] = ["d1", "old", "spare", "ghost"];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let format = FORMATS[usize::from(sel & 3)];
    let (topic, payload) = match sel >> 2 {
        0..=31 => (format!("vitalwatch/v1/devices/{}/readings/{format}", DEVICES[usize::from(sel >> 2) % 4]), rest),
        32..=47 => (format!("vitalwatch/v1/devices/{}/status", DEVICES[usize::from(sel >> 2) % 4]), rest),
        48..=59 => {
            (format!("vitalwatch/v1/patients/{}/manual/{format}", ["p1", "nobody"][usize::from(sel >> 2) % 2]), rest)
        }
        _ => {
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            (String::from_utf8_lossy(&rest[..cut]).into_owned(), rest.get(cut + 1..).unwrap_or_default())
        }
    };
    let (now, limits, registry) = (now(), limits(), registry());
    let p = timed("process", payload, || process(&topic, payload, now, limits, registry));
    check_processed(&topic, payload, &p);
});
