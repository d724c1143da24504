//! The receive worker's handling of user data (the probe parser, the TCP and UDP coalescers)
//! and the transmit worker's segmentation, on arbitrary packets. See
//! `interlink_dataplane::fuzzing` for the input format and what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_dataplane::fuzzing::rx(data);
    interlink_dataplane::fuzzing::tx(data);
});
