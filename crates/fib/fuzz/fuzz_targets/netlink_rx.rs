//! What the kernel sends the FIB (acks, dumps, notifications), arbitrary: see
//! `interlink_fib::fuzzing::netlink_rx`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_fib::fuzzing::netlink_rx(data);
});
