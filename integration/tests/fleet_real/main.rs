//! The fleet scenarios of `tests/fleet` (the library's own tests, on the in-process store)
//! run again against real stores: Redis and DynamoDB on moto (`real.rs`). The scenarios are
//! the library's files, included here so that both runs play the same script.

#[path = "../../../tests/fleet/hostile.rs"]
#[allow(dead_code)]
mod hostile;
mod real;
#[path = "../../../tests/fleet/scenarios.rs"]
#[allow(dead_code)]
mod scenarios;
#[path = "../../../tests/fleet/slow.rs"]
mod slow;
