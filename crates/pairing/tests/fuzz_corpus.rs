//! Replays the fuzz corpus through the fuzz target's code under `cargo test`, so CI checks
//! every input the fuzzer found interesting, without cargo-fuzz or a nightly compiler.

use std::path::Path;

#[test]
fn corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/keys");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| interlink_pairing::fuzzing::keys(&data));
        assert!(result.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(
        n >= 20,
        "the corpus in {} has only {n} inputs",
        dir.display()
    );
}
