//! Fuzz target: the senml decoder on arbitrary bytes (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitalwatch_ingest_core::decode::senml;

fuzz_target!(|data: &[u8]| {
    vitalwatch_fuzz::fuzz_decoder("senml", data, senml::decode);
});
