//! Empty: the package exists for its benches (`hot_path.rs`, `registry.rs`).
