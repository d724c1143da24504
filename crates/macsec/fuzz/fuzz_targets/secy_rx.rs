//! The SecY receive path on arbitrary frames, and on genuine frames with arbitrary changes.
//! See `interlink_macsec::fuzzing::rx` for what the first input octet selects.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_macsec::fuzzing::rx(data);
});
