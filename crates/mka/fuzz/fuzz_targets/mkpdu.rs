//! An EAPOL frame from the wire, arbitrary: see `interlink_mka::fuzzing::mkpdu`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_mka::fuzzing::mkpdu(data);
});
