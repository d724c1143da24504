//! A TCP stream from a peer, arbitrary: see `interlink_bgp::fuzzing::messages`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_bgp::fuzzing::messages(data);
});
