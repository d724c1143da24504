//! Replays the fuzz corpora through the fuzz targets' code under `cargo test`, so CI checks
//! every input the fuzzer found interesting, without cargo-fuzz or a nightly compiler.

fn replay(target: &str, run: fn(&[u8]), at_least: usize) {
    interlink_testkit::replay_corpus(env!("CARGO_MANIFEST_DIR"), target, at_least, run);
}

#[test]
fn corpus_replays_without_panic() {
    replay("mkpdu", interlink_mka::fuzzing::mkpdu, 20);
}

#[test]
fn kay_corpus_keeps_the_invariants() {
    replay("kay", interlink_mka::fuzzing::kay_pair, 20);
}

#[test]
fn random_kay_sessions_keep_the_invariants() {
    // Beyond the corpus: pseudo-random sessions, the same ones every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..300 {
        let data: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        interlink_mka::fuzzing::kay_pair(&data);
    }
}
