//! AWS SDK for Rust adapter (feature `aws`).
