//! The speaker fed arbitrary sessions, UPDATEs, writes and reloads: see
//! `interlink_bgp::fuzzing::speaker`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_bgp::fuzzing::speaker(data);
});
