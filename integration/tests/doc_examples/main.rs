//! The library's rustdoc examples that need an AWS SDK client crate, compiled (and the
//! runnable ones run) here, where the SDK is a dependency. `build.rs` copies them from the
//! library's sources; they stay written once, in the docs.

include!(concat!(env!("OUT_DIR"), "/doc_examples.rs"));

#[test]
fn every_sdk_example_of_the_docs_is_here() {
    // src/aws/mod.rs (5), src/aws/retry.rs (1), src/fleet/dynamodb.rs (1) when this was
    // written: a lower count means an example lost its marker and is compiled nowhere.
    const { assert!(EXAMPLES >= 7, "an SDK doc example lost its marker") };
}
