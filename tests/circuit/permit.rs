//! `Circuit::try_acquire` and the public `Permit`: recorded with a verdict, timed from the
//! acquisition, and following the dropped-call policy when dropped unrecorded.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_permit_records_its_verdict() {
    let c = Circuit::named("permit", CircuitBreakerConfig::default());
    c.try_acquire().unwrap().success();
    c.try_acquire().unwrap().failure();
    c.try_acquire().unwrap().record(Verdict::Ignored);
    let s = c.stats();
    assert_eq!(
        (s.success_count, s.failure_count, s.ignored_count),
        (1, 1, 1)
    );
    assert_eq!(s.consecutive_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn permits_trip_the_circuit_and_a_rejection_is_the_circuit_open() {
    let c = Circuit::named("permit", CircuitBreakerConfig::default());
    for _ in 0..5 {
        c.try_acquire().unwrap().failure();
    }
    assert_eq!(c.state(), Open);
    let open = c.try_acquire().unwrap_err();
    assert_eq!(open.reason(), RejectReason::Open);
    assert_eq!(open.circuit(), "permit");
    assert_eq!(c.stats().rejected_count, 1);
}

#[tokio::test(start_paused = true)]
async fn the_timing_starts_at_acquisition() {
    let c = Circuit::named(
        "permit",
        build(|b| {
            b.expected_response_time(ms(100))
                .slow_call_is_failure(false)
        }),
    );
    let slow = c.try_acquire().unwrap();
    advance(ms(101)).await;
    let quick = c.try_acquire().unwrap();
    slow.success();
    quick.success();
    let s = c.stats();
    assert_eq!((s.success_count, s.slow_count), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_permit_dropped_unrecorded_is_ignored_by_default() {
    let c = Circuit::named("permit", CircuitBreakerConfig::default());
    drop(c.try_acquire().unwrap());
    let s = c.stats();
    assert_eq!((s.total_requests, s.ignored_count), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_permit_dropped_unrecorded_is_a_failure_when_the_policy_says_so() {
    let c = Circuit::named("permit", build(|b| b.dropped_call_is_failure(true)));
    for _ in 0..5 {
        drop(c.try_acquire().unwrap());
    }
    assert_eq!(c.stats().failure_count, 5);
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_probe_permit_closes_or_reopens_and_dropped_gives_back_its_slot() {
    let c = tripped(build(|b| b.recovery_timeout(secs(1)))).await;
    advance(secs(1)).await;
    // Dropped unrecorded (ignored by default): the slot comes back, still HalfOpen.
    let probe = c.try_acquire().unwrap();
    assert_eq!(c.state(), HalfOpen);
    assert_eq!(
        c.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    drop(probe);
    let probe = c.try_acquire().unwrap();
    probe.success();
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_permit_moves_into_a_spawned_task() {
    let c = Circuit::named("permit", CircuitBreakerConfig::default());
    let permit = c.try_acquire().unwrap();
    assert_eq!(permit.circuit().name(), "permit");
    tokio::spawn(async move { permit.failure() }).await.unwrap();
    assert_eq!(c.stats().failure_count, 1);
}
