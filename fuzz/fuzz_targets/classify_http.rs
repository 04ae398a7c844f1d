//! `HttpStatusAsFailures` over arbitrary responses (status and headers).
#![no_main]

#[path = "../../tests/fuzz_corpus/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::classify_http(data));
