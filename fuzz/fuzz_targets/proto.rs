//! Fuzz target: the proto decoder on arbitrary bytes (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitalwatch_ingest_core::decode::proto;

fuzz_target!(|data: &[u8]| {
    vitalwatch_fuzz::fuzz_decoder("proto", data, proto::decode);
});
