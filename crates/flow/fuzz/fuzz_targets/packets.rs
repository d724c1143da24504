//! Arbitrary packets into a small flow table, with expiries, and the records through the
//! IPFIX encoder: see `interlink_flow::fuzzing::packets`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_flow::fuzzing::packets(data);
});
