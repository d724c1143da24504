//! Replays the fuzz corpus through the fuzz target's code under `cargo test` (see
//! `interlink_testkit::replay_corpus`).

#[test]
fn corpus_replays_without_panic() {
    interlink_testkit::replay_corpus(
        env!("CARGO_MANIFEST_DIR"),
        "control",
        20,
        interlink_bfd::fuzzing::control,
    );
}
