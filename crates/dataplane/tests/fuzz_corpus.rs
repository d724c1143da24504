//! Replays the fuzz corpus, and the seeds it grew from, through the fuzz target's code under
//! `cargo test`, so CI checks every input the fuzzer found interesting, without needing
//! cargo-fuzz or a nightly compiler.

use std::path::Path;

use interlink_dataplane::fuzzing;

#[test]
fn corpus_replays_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/offload");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| {
            fuzzing::rx(&data);
            fuzzing::tx(&data);
        });
        assert!(result.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(
        n >= 50,
        "the corpus in {} has only {n} inputs",
        dir.display()
    );
    for seed in fuzzing::seeds() {
        fuzzing::rx(&seed);
        fuzzing::tx(&seed);
    }
}
