//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same checks
//! the cargo-fuzz targets run, on the stable toolchain: CI covers every input the fuzzer
//! ever kept, with or without nightly. Needs features `serde` and `http`.
#![cfg(all(feature = "serde", feature = "http"))]

mod checks;

use std::io::Write as _;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("corpus input {} fails the check", path.display());
        }
        n += 1;
    }
    // Straight to stderr, past the test harness capture, so CI logs show it.
    let _ = writeln!(
        std::io::stderr(),
        "fuzz corpus: {target}: {n} inputs replayed"
    );
    assert!(n > 0, "the {target} corpus is empty");
    n
}

#[test]
fn document_corpus_replays_clean() {
    replay("document", checks::document);
}

#[test]
fn classify_http_corpus_replays_clean() {
    replay("classify_http", checks::classify_http);
}
