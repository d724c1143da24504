//! Two KaYs, their keychains, lost, late and replayed MKPDUs, timers, traffic, rekeys and
//! reloads, all from arbitrary bytes: see `interlink_mka::fuzzing::kay_pair`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    interlink_mka::fuzzing::kay_pair(data);
});
