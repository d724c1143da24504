//! Replays the fuzz corpus, and the seeds it grew from, through the fuzz target's code under
//! `cargo test` (see `interlink_testkit::replay_corpus`).

use interlink_dataplane::fuzzing;

#[test]
fn corpus_replays_without_panic() {
    interlink_testkit::replay_corpus(env!("CARGO_MANIFEST_DIR"), "offload", 50, |data| {
        fuzzing::rx(data);
        fuzzing::tx(data);
    });
    for seed in fuzzing::seeds() {
        fuzzing::rx(&seed);
        fuzzing::tx(&seed);
    }
}
