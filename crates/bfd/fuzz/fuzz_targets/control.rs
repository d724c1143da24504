//! Two BFD sessions on a simulated wire with arbitrary datagrams, losses and admin changes:
//! see `interlink_bfd::fuzzing::control`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_bfd::fuzzing::control(data);
});
