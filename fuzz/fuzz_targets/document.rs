//! Configuration documents (JSON, TOML, durations) from arbitrary bytes.
#![no_main]

#[path = "../../tests/fuzz_corpus/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::document(data));
