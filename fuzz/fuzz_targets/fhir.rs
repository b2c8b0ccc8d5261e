//! Fuzz target: the fhir decoder on arbitrary bytes (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitalwatch_ingest_core::decode::fhir;

fuzz_target!(|data: &[u8]| {
    vitalwatch_fuzz::fuzz_decoder("fhir", data, fhir::decode);
});
