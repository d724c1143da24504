//! Arbitrary activation keys, pasted or with a matching check value: see
//! `interlink_pairing::fuzzing::keys`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_pairing::fuzzing::keys(data);
});
