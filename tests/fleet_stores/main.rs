//! The fleet stores against real servers: `RedisStore` against redis-server, and
//! `DynamoDbStore` against moto, each through the same contract suite (`contract.rs`),
//! then each backend's own layout, expiry, error and outage tests.
//!
//! `scripts/test` starts both servers and sets `REDIS_URL`, `REDIS_SERVER_BIN` (for the
//! tests that kill and restart a redis-server of their own), `MOTO_ENDPOINT` and
//! `TCB_AWS_INTEGRATION=1`. Without them the server tests skip with a banner; with
//! `TCB_AWS_INTEGRATION=1` and a variable missing, they fail. The tests that need no
//! server (bad URLs, refused connections, SDK error classification against a local fault
//! server) always run.
//!
//! These tests talk to real servers, so they run on real time (never paused: the runtime
//! would jump timeouts forward while a server is answering). None waits for time to pass:
//! expiry is made to happen (Redis `PEXPIREAT` in the past; DynamoDB: the store's clock
//! moved forward), servers are awaited on their "ready" log line, and the only durations
//! are upper bounds that turn a hang into a failure.
//!
//! Built with both `fleet-redis` and `fleet-dynamodb` (as `--all-features` does).
#![cfg(all(feature = "fleet-redis", feature = "fleet-dynamodb"))]

#[path = "../aws_support/mod.rs"]
mod aws_support;
mod contract;
mod dynamodb_store;
mod redis_server;
mod redis_store;

use tower_circuit_breaker::fleet::{StoreError, StoreErrorKind};

pub use aws_support::unique_name as unique;

/// The value of `var`, or `None` after a loud SKIPPED banner; panics instead of skipping
/// when `TCB_AWS_INTEGRATION=1` (as under `scripts/test` and CI).
pub fn env_or_skip(var: &str, test: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let required = std::env::var("TCB_AWS_INTEGRATION").is_ok_and(|v| v == "1");
    match value {
        Some(v) => Some(v.trim().to_owned()),
        None if required => panic!(
            "TCB_AWS_INTEGRATION=1 but {var} is not set: the store test `{test}` must run. \
             scripts/test starts redis-server and moto and sets it."
        ),
        None => {
            aws_support::report(&format!(
                "\n{bar}\nSKIPPED: {var} is unset; run scripts/test\n  test `{test}` did not run\n{bar}\n",
                bar = "!".repeat(78)
            ));
            None
        }
    }
}

/// Asserts that `result` failed as a store outage does: `Unavailable` or `Timeout`.
#[track_caller]
pub fn assert_outage<T: std::fmt::Debug>(result: Result<T, StoreError>) -> StoreErrorKind {
    let err = result.expect_err("the store is down: the call must fail");
    assert!(
        matches!(
            err.kind(),
            StoreErrorKind::Unavailable | StoreErrorKind::Timeout
        ),
        "an outage must be Unavailable or Timeout, got {err:?}"
    );
    err.kind()
}
