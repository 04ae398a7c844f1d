//! The fleet stores against real servers: `RedisStore` against redis-server, and
//! `DynamoDbStore` against moto, each through the same contract suite (`contract.rs`),
//! then each backend's own layout, expiry, error and outage tests.
//!
//! `scripts/test` starts both servers (and a 3-node Redis Cluster) and sets `REDIS_URL`,
//! `REDIS_CLUSTER_URLS`, `REDIS_SERVER_BIN` (for the
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

mod contract;
mod dynamodb_store;
mod redis_cluster;
mod redis_store;
mod redis_tls;

use tower_circuit_breaker::fleet::{StoreError, StoreErrorKind};

pub use support::{env_or_skip, unique_name as unique};

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
