//! Replays the fuzz corpus through the fuzz target's code under `cargo test` (see
//! `interlink_testkit::replay_corpus`).

#[test]
fn corpus_replays_without_panic() {
    interlink_testkit::replay_corpus(
        env!("CARGO_MANIFEST_DIR"),
        "messages",
        20,
        interlink_bgp::fuzzing::messages,
    );
}

#[test]
fn speaker_corpus_replays_without_panic() {
    interlink_testkit::replay_corpus(
        env!("CARGO_MANIFEST_DIR"),
        "speaker",
        20,
        interlink_bgp::fuzzing::speaker,
    );
}
