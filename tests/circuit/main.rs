//! The state machine of `Circuit`, driven through its public API only.
//!
//! Every async test runs on a paused tokio clock (`start_paused = true`, current-thread
//! runtime): time moves only through `tokio::time::advance` or when a `sleep` inside an
//! operation auto-advances it. A circuit created at the start of a test sits at a bucket
//! boundary, so an outcome recorded at virtual time `t = 0` leaves the window at exactly
//! `monitoring_window`.
//!
//! Wall-clock fields of the stats (`last_*_time`, `next_attempt_time`) are only compared
//! with each other: they share the circuit's wall origin, so their differences are exact.

use std::cell::Cell;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use CircuitState::{Closed, HalfOpen, Open};
use tokio::sync::oneshot;
use tokio::time::{Instant, advance};
use tokio_test::task::Spawn;
use tokio_test::{assert_pending, assert_ready};
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::config::CircuitBreakerConfigBuilder;
use tower_circuit_breaker::error::{CallError, CircuitOpen, RejectReason};
use tower_circuit_breaker::stats::{ManualOverride, TransitionEvent, TransitionReason};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

// ===== helpers =====

/// The operations' error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Boom;

/// What an operation returns.
type Res = Result<u32, Boom>;
/// What `Circuit::call` returns for such an operation.
type Out = Result<u32, CallError<Boom>>;

const NS: Duration = Duration::from_nanos(1);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn build(
    f: impl FnOnce(CircuitBreakerConfigBuilder) -> CircuitBreakerConfigBuilder,
) -> CircuitBreakerConfig {
    f(CircuitBreakerConfig::builder())
        .build()
        .expect("valid config")
}

fn dynamodb_with(
    f: impl FnOnce(CircuitBreakerConfigBuilder) -> CircuitBreakerConfigBuilder,
) -> CircuitBreakerConfig {
    f(CircuitBreakerConfig::dynamodb().to_builder())
        .build()
        .expect("valid config")
}

async fn succeed(c: &Circuit) -> Out {
    c.call(async { Ok::<u32, Boom>(1) }).await
}

async fn fail(c: &Circuit) -> Out {
    c.call(async { Err::<u32, Boom>(Boom) }).await
}

/// A call whose operation takes `d` of (virtual) time and then returns `result`.
async fn slow(c: &Circuit, d: Duration, result: Res) -> Out {
    c.call(async move {
        tokio::time::sleep(d).await;
        result
    })
    .await
}

/// `n` admitted successes.
async fn succeed_n(c: &Circuit, n: usize) {
    for i in 0..n {
        assert_eq!(
            succeed(c).await.expect("admitted success"),
            1,
            "success #{i}"
        );
    }
}

/// `n` admitted failures; each returns the operation's own error.
async fn fail_n(c: &Circuit, n: usize) {
    for i in 0..n {
        match fail(c).await {
            Err(CallError::Inner(Boom)) => {}
            other => panic!("failure #{i}: expected the inner error, got {other:?}"),
        }
    }
}

/// The rejection in `out`, or a panic.
fn rejection(out: Out) -> CircuitOpen {
    match out {
        Err(CallError::Rejected(r)) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Advances the paused clock to `origin + at` exactly.
async fn advance_to(origin: Instant, at: Duration) {
    let target = origin + at;
    let now = Instant::now();
    assert!(target >= now, "advance_to would go back in time");
    advance(target - now).await;
}

/// A call whose operation waits for a value on the returned sender. Poll the task once to
/// admit it (the circuit decides on the first poll).
fn pending_call(c: &Circuit) -> (oneshot::Sender<Res>, Spawn<impl Future<Output = Out> + '_>) {
    let (tx, rx) = oneshot::channel::<Res>();
    let task = tokio_test::task::spawn(c.call(async move { rx.await.expect("sender dropped") }));
    (tx, task)
}

/// `a - b`, both wall times from the same circuit.
fn gap(a: Option<SystemTime>, b: Option<SystemTime>) -> Duration {
    a.expect("first time is set")
        .duration_since(b.expect("second time is set"))
        .expect("first time is not before the second")
}

/// The break in force: `next_attempt_time - last_failure_time`. Exact when the opening
/// failure is the last one and came at least 1 ms after the one before (or at t = 0).
fn break_after_last_failure(c: &Circuit) -> Duration {
    let s = c.stats();
    gap(s.next_attempt_time, s.last_failure_time)
}

type Log = Arc<Mutex<Vec<TransitionEvent>>>;

/// Registers a listener that keeps every event.
fn record(c: &Circuit) -> Log {
    let log: Log = Arc::default();
    let sink = log.clone();
    c.on_transition(move |e| sink.lock().unwrap().push(e.clone()));
    log
}

/// `(from, to, reason)` of every recorded event, in order.
fn transitions(log: &Log) -> Vec<(CircuitState, CircuitState, TransitionReason)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|e| (e.from, e.to, e.reason))
        .collect()
}

/// A dynamodb circuit (threshold 3, min 5, recovery 20 s) tripped at t = 0 by 5 failures.
async fn tripped(config: CircuitBreakerConfig) -> Circuit {
    let c = Circuit::named("tripped", config);
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    c
}

// ===== 1. presets =====

fn assert_seed(
    c: &CircuitBreakerConfig,
    threshold: u32,
    recovery: Duration,
    expected: Duration,
    window: Duration,
    min: u32,
) {
    assert_eq!(c.failure_threshold(), threshold, "failure_threshold");
    assert_eq!(c.recovery_timeout(), recovery, "recovery_timeout");
    assert_eq!(
        c.expected_response_time(),
        expected,
        "expected_response_time"
    );
    assert_eq!(c.monitoring_window(), window, "monitoring_window");
    assert_eq!(c.minimum_request_count(), min, "minimum_request_count");
    // Everything beyond the seed is off or at its documented default.
    assert_eq!(c.half_open_max_calls(), 1, "half_open_max_calls");
    assert_eq!(c.window_buckets(), 10, "window_buckets");
    assert_eq!(c.failure_rate_threshold(), None);
    assert_eq!(c.slow_call_rate_threshold(), None);
    assert!(c.slow_call_is_failure());
    assert!(!c.dropped_call_is_failure());
    assert!(!c.metrics_only());
    assert_eq!(c.backoff(), None);
    // A preset survives a round trip through its builder.
    assert_eq!(&c.to_builder().build().unwrap(), c);
}

#[test]
fn preset_cognito_has_the_seed_numbers() {
    assert_seed(
        &CircuitBreakerConfig::cognito(),
        3,
        secs(30),
        secs(2),
        secs(60),
        5,
    );
}

#[test]
fn preset_dynamodb_has_the_seed_numbers() {
    assert_seed(
        &CircuitBreakerConfig::dynamodb(),
        3,
        secs(20),
        ms(500),
        secs(60),
        5,
    );
}

#[test]
fn preset_api_gateway_management_has_the_seed_numbers() {
    assert_seed(
        &CircuitBreakerConfig::api_gateway_management(),
        5,
        secs(15),
        secs(1),
        secs(30),
        3,
    );
}

#[test]
fn default_config_and_builder_start_from_the_documented_defaults() {
    let d = CircuitBreakerConfig::default();
    assert_seed(&d, 5, secs(30), secs(1), secs(60), 5);
    assert_eq!(CircuitBreakerConfig::builder().build().unwrap(), d);
}

#[tokio::test(start_paused = true)]
async fn a_new_circuit_is_closed_with_its_config_and_name() {
    let c = Circuit::new(CircuitBreakerConfig::cognito());
    assert_eq!(c.name(), "default");
    assert_eq!(c.state(), Closed);
    assert_eq!(c.config(), CircuitBreakerConfig::cognito());
    let named = Circuit::named("cognito/jwks", CircuitBreakerConfig::cognito());
    assert_eq!(named.name(), "cognito/jwks");
    assert!(c.ptr_eq(&c.clone()));
    assert!(!c.ptr_eq(&named));
}

// ===== 2. the seed's trip rule at its boundaries =====

#[tokio::test(start_paused = true)]
async fn one_request_short_of_the_minimum_stays_closed() {
    // dynamodb: threshold 3, minimum 5. Four failures are a run of 4 ≥ 3 but only 4
    // requests.
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!(s.window.requests, 4);
    assert_eq!(s.consecutive_failures, 4);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    assert_eq!(c.stats().state, Open);
}

#[tokio::test(start_paused = true)]
async fn one_failure_short_of_the_threshold_stays_closed() {
    // Five requests (the minimum) whose trailing run is 2 < 3.
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    succeed_n(&c, 3).await;
    fail_n(&c, 2).await;
    let s = c.stats();
    assert_eq!((s.window.requests, s.consecutive_failures), (5, 2));
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_run() {
    // F F S F F: five requests, four failures, but the trailing run is 2.
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 2).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.stats().consecutive_failures, 0);
    fail_n(&c, 2).await;
    let s = c.stats();
    assert_eq!(c.state(), Closed);
    assert_eq!(
        (s.window.requests, s.window.failures, s.consecutive_failures),
        (5, 4, 2)
    );
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn api_gateway_management_needs_a_run_of_five() {
    // threshold 5, minimum 3: the minimum is met long before the run.
    let c = Circuit::new(CircuitBreakerConfig::api_gateway_management());
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_minimum_of_zero_lets_the_threshold_alone_decide() {
    let c = Circuit::new(build(|b| b.failure_threshold(1).minimum_request_count(0)));
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

// ===== 3. window eviction =====

#[tokio::test(start_paused = true)]
async fn outcomes_leave_the_window_exactly_one_window_later() {
    let origin = Instant::now();
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 4).await;

    advance_to(origin, secs(60) - NS).await;
    let s = c.stats();
    assert_eq!(
        (s.window.requests, s.window.failures, s.consecutive_failures),
        (4, 4, 4)
    );

    advance(NS).await;
    let s = c.stats();
    assert_eq!(
        (s.window.requests, s.window.failures, s.consecutive_failures),
        (0, 0, 0)
    );
    assert_eq!(s.failure_rate, 0.0);
    // Lifetime counts keep them.
    assert_eq!((s.failure_count, s.total_requests), (4, 4));

    // The evicted failures no longer count toward the minimum: four fresh failures are
    // not enough, the fifth is.
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().window.requests, 4);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_failure_just_inside_the_window_still_trips() {
    // Contrast with the test above: the fifth failure 1 ns before the old ones leave.
    let origin = Instant::now();
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 4).await;
    advance_to(origin, secs(60) - NS).await;
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_failure_exactly_one_window_later_does_not_trip() {
    let origin = Instant::now();
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 4).await;
    advance_to(origin, secs(60)).await;
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().window.requests, 1);
}

#[tokio::test(start_paused = true)]
async fn an_outcome_mid_bucket_leaves_with_its_bucket() {
    // 60 s / 10 buckets = 6 s buckets. An outcome at 3 s is in bucket [0, 6 s) and leaves
    // at 60 s, one window after its bucket starts; one at 6 s leaves at 66 s.
    let origin = Instant::now();
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    advance_to(origin, secs(3)).await;
    fail_n(&c, 1).await;
    advance_to(origin, secs(6)).await;
    fail_n(&c, 1).await;

    advance_to(origin, secs(60) - NS).await;
    assert_eq!(c.stats().window.requests, 2);
    advance_to(origin, secs(60)).await;
    assert_eq!(c.stats().window.requests, 1);
    advance_to(origin, secs(66) - NS).await;
    assert_eq!(c.stats().window.requests, 1);
    advance_to(origin, secs(66)).await;
    assert_eq!(c.stats().window.requests, 0);
    assert_eq!(c.stats().total_requests, 2);
}

// ===== 4, 5. slow calls =====

#[tokio::test(start_paused = true)]
async fn slow_successes_trip_the_circuit_and_still_return_their_result() {
    // dynamodb: expected 500 ms.
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    for _ in 0..4 {
        assert_eq!(slow(&c, ms(501), Ok(42)).await.unwrap(), 42);
        assert_eq!(c.state(), Closed);
    }
    assert_eq!(slow(&c, ms(501), Ok(42)).await.unwrap(), 42);
    assert_eq!(c.state(), Open);

    let s = c.stats();
    assert_eq!(s.slow_count, 5);
    assert_eq!(
        (s.success_count, s.failure_count, s.total_requests),
        (5, 0, 5)
    );
    assert_eq!(
        (
            s.window.requests,
            s.window.successes,
            s.window.failures,
            s.window.slow
        ),
        (5, 5, 0, 5)
    );
    assert_eq!(s.failure_rate, 1.0);
    assert_eq!(s.slow_call_rate, 1.0);
    assert_eq!(s.consecutive_failures, 5);
}

#[tokio::test(start_paused = true)]
async fn a_call_of_exactly_the_expected_time_is_not_slow() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    for _ in 0..5 {
        assert_eq!(slow(&c, ms(500), Ok(1)).await.unwrap(), 1);
    }
    let s = c.stats();
    assert_eq!(c.state(), Closed);
    assert_eq!((s.slow_count, s.consecutive_failures), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_slow_failure_counts_once() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    assert!(matches!(
        slow(&c, ms(600), Err(Boom)).await,
        Err(CallError::Inner(Boom))
    ));
    let s = c.stats();
    assert_eq!(
        (s.failure_count, s.slow_count, s.consecutive_failures),
        (1, 1, 1)
    );
    assert_eq!(
        (s.window.requests, s.window.failures, s.window.slow),
        (1, 1, 1)
    );
    assert_eq!(s.failure_rate, 1.0);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_are_neutral_when_configured() {
    let c = Circuit::new(dynamodb_with(|b| b.slow_call_is_failure(false)));
    for _ in 0..20 {
        assert_eq!(slow(&c, secs(1), Ok(7)).await.unwrap(), 7);
    }
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!(s.slow_count, 20);
    assert_eq!(s.window.slow, 20);
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(s.failure_rate, 0.0);
    assert_eq!(s.slow_call_rate, 1.0);
}

#[tokio::test(start_paused = true)]
async fn a_neutral_slow_success_resets_the_run() {
    let c = Circuit::new(dynamodb_with(|b| b.slow_call_is_failure(false)));
    fail_n(&c, 2).await;
    slow(&c, secs(1), Ok(1)).await.unwrap();
    fail_n(&c, 2).await;
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().consecutive_failures, 2);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

// ===== 6. Open → HalfOpen =====

#[tokio::test(start_paused = true)]
async fn open_rejects_until_the_recovery_timeout_then_admits_a_probe() {
    let origin = Instant::now();
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    assert_eq!(break_after_last_failure(&c), secs(20));

    // Right after tripping.
    let r = rejection(succeed(&c).await);
    assert_eq!(r.reason(), RejectReason::Open);
    assert_eq!(r.retry_after(), Some(secs(20)));
    assert_eq!(r.circuit(), "tripped");

    advance_to(origin, secs(20) - ms(1)).await;
    let polled = Cell::new(false);
    let out = c
        .call(async {
            polled.set(true);
            Ok::<u32, Boom>(1)
        })
        .await;
    let r = rejection(out);
    assert!(!polled.get(), "a rejected operation must not be polled");
    assert_eq!(r.reason(), RejectReason::Open);
    assert_eq!(r.retry_after(), Some(ms(1)));
    let s = c.stats();
    assert_eq!(s.state, Open);
    assert!(s.next_attempt_time.is_some());
    assert_eq!(s.rejected_count, 2);

    advance(ms(1)).await;
    // Reading never moves the state: it is still Open until a call arrives.
    assert_eq!(c.state(), Open);
    assert!(c.stats().next_attempt_time.is_some());

    let seen = Cell::new(None);
    let out = c
        .call(async {
            let s = c.stats();
            seen.set(Some((
                c.state(),
                s.half_open_in_flight,
                // Every slot taken: the probe deadline (the derived `half_open_max_wait`
                // is the recovery timeout), counted from the probe's admission at 20 s.
                gap(s.next_attempt_time, s.last_failure_time),
            )));
            Ok::<u32, Boom>(5)
        })
        .await;
    assert_eq!(out.unwrap(), 5);
    assert_eq!(seen.get(), Some((HalfOpen, 1, secs(40))));
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().rejected_count, 2);
}

#[tokio::test(start_paused = true)]
async fn the_call_that_moves_to_half_open_holds_the_only_probe_slot() {
    // The smallest case of the bug: max 1 probe, one probe in flight.
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;
    let (tx, mut probe) = pending_call(&c);
    assert_pending!(probe.poll());
    assert_eq!(c.state(), HalfOpen);
    assert_eq!(
        c.stats().half_open_in_flight,
        1,
        "the first probe is in flight"
    );
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::HalfOpenFull,
        "a second caller must not be admitted while the only probe is out"
    );
    tx.send(Ok(1)).unwrap();
    assert_eq!(assert_ready!(probe.poll()).unwrap(), 1);
    assert_eq!(c.state(), Closed, "the only probe succeeded");
}

// ===== 7, 8. probe outcomes =====

#[tokio::test(start_paused = true)]
async fn a_successful_probe_closes_and_clears_the_window() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);

    let s = c.stats();
    assert_eq!(
        (s.window.requests, s.window.failures, s.window.successes),
        (0, 0, 0)
    );
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(s.failure_rate, 0.0);
    assert_eq!(s.next_attempt_time, None);
    assert_eq!(s.half_open_in_flight, 0);
    // Lifetime counts are kept, the probe included.
    assert_eq!(
        (s.failure_count, s.success_count, s.total_requests),
        (5, 1, 6)
    );

    // A fresh window: the minimum has to be met again.
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_new_recovery_timeout() {
    let origin = Instant::now();
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    let first = c.stats().next_attempt_time;

    advance_to(origin, secs(20)).await;
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    let second = c.stats().next_attempt_time;
    assert!(second > first);
    assert_eq!(gap(second, first), secs(20));
    assert_eq!(break_after_last_failure(&c), secs(20));
    assert_eq!(rejection(succeed(&c).await).retry_after(), Some(secs(20)));

    advance_to(origin, secs(40) - ms(1)).await;
    assert_eq!(rejection(succeed(&c).await).retry_after(), Some(ms(1)));
    advance_to(origin, secs(40)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!((s.failure_count, s.success_count), (6, 1));
}

#[tokio::test(start_paused = true)]
async fn a_slow_successful_probe_reopens() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;
    assert_eq!(slow(&c, secs(1), Ok(3)).await.unwrap(), 3);
    assert_eq!(c.state(), Open);
}

// ===== 9. several probes =====

#[tokio::test(start_paused = true)]
async fn all_probes_must_succeed_and_extra_callers_are_rejected() {
    let c = tripped(dynamodb_with(|b| b.half_open_max_calls(3))).await;
    advance(secs(20)).await;

    let (tx1, mut p1) = pending_call(&c);
    assert_pending!(p1.poll());
    assert_eq!(c.state(), HalfOpen);
    let (tx2, mut p2) = pending_call(&c);
    assert_pending!(p2.poll());
    let (tx3, mut p3) = pending_call(&c);
    assert_pending!(p3.poll());
    assert_eq!(c.stats().half_open_in_flight, 3);

    let polled = Cell::new(false);
    let r = rejection(
        c.call(async {
            polled.set(true);
            Ok::<u32, Boom>(0)
        })
        .await,
    );
    assert!(!polled.get());
    assert_eq!(r.reason(), RejectReason::HalfOpenFull);
    // The retry hint: the time to the probe deadline (the probes were admitted just now).
    assert_eq!(r.retry_after(), Some(c.config().half_open_max_wait()));

    tx1.send(Ok(1)).unwrap();
    assert_eq!(assert_ready!(p1.poll()).unwrap(), 1);
    assert_eq!(c.state(), HalfOpen);
    assert_eq!(c.stats().half_open_in_flight, 2);
    // A probe that passed keeps its slot until the cycle ends.
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::HalfOpenFull
    );

    tx2.send(Ok(2)).unwrap();
    assert_eq!(assert_ready!(p2.poll()).unwrap(), 2);
    assert_eq!(c.state(), HalfOpen);

    tx3.send(Ok(3)).unwrap();
    assert_eq!(assert_ready!(p3.poll()).unwrap(), 3);
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!(
        (s.success_count, s.rejected_count, s.window.requests),
        (3, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_reopens_and_the_others_are_late() {
    let c = tripped(dynamodb_with(|b| b.half_open_max_calls(3))).await;
    advance(secs(20)).await;
    let log = record(&c);

    let (tx1, mut p1) = pending_call(&c);
    let (tx2, mut p2) = pending_call(&c);
    let (tx3, mut p3) = pending_call(&c);
    assert_pending!(p1.poll());
    assert_pending!(p2.poll());
    assert_pending!(p3.poll());

    tx1.send(Ok(1)).unwrap();
    assert_ready!(p1.poll()).unwrap();
    tx2.send(Err(Boom)).unwrap();
    assert!(matches!(
        assert_ready!(p2.poll()),
        Err(CallError::Inner(Boom))
    ));
    assert_eq!(c.state(), Open);
    let next = c.stats().next_attempt_time;

    // The third probe succeeds after the cycle ended: no effect on the state.
    tx3.send(Ok(3)).unwrap();
    assert_eq!(assert_ready!(p3.poll()).unwrap(), 3);
    assert_eq!(c.state(), Open);
    let s = c.stats();
    assert_eq!(s.next_attempt_time, next);
    assert_eq!((s.success_count, s.failure_count), (2, 6));
    assert_eq!(
        transitions(&log),
        [
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed)
        ]
    );
}

// ===== 10. probe slots come back =====

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;

    let (_tx, mut probe) = pending_call(&c);
    assert_pending!(probe.poll());
    assert_eq!(c.state(), HalfOpen);
    assert_eq!(c.stats().half_open_in_flight, 1);
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::HalfOpenFull
    );

    drop(probe);
    let s = c.stats();
    assert_eq!(s.state, HalfOpen);
    assert_eq!(s.half_open_in_flight, 0);
    assert_eq!(s.ignored_count, 1);
    assert_eq!(s.failure_count, 5);

    // The next caller is the probe.
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_gives_its_slot_back() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;

    let ignore = |_: &Res| Verdict::Ignored;
    let out = c.call_with(&ignore, async { Err::<u32, Boom>(Boom) }).await;
    assert!(matches!(out, Err(CallError::Inner(Boom))));
    let s = c.stats();
    assert_eq!(s.state, HalfOpen);
    assert_eq!(s.half_open_in_flight, 0);
    assert_eq!(
        (s.ignored_count, s.failure_count, s.total_requests),
        (1, 5, 5)
    );

    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_is_a_failed_probe_when_dropped_calls_are_failures() {
    let c = tripped(dynamodb_with(|b| b.dropped_call_is_failure(true))).await;
    advance(secs(20)).await;
    let log = record(&c);

    let (_tx, mut probe) = pending_call(&c);
    assert_pending!(probe.poll());
    drop(probe);
    assert_eq!(c.state(), Open);
    assert_eq!(c.stats().failure_count, 6);
    assert_eq!(
        transitions(&log),
        [
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_future_never_polled_takes_nothing() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;
    let before = c.stats();
    drop(succeed(&c));
    drop(c.call(async { Ok::<u32, Boom>(1) }));
    assert_eq!(c.stats(), before);
    assert_eq!(c.state(), Open);
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
}

// ===== 11. late results =====

#[tokio::test(start_paused = true)]
async fn a_late_failure_from_an_old_closed_period_changes_no_state() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let (tx, mut old) = pending_call(&c);
    assert_pending!(old.poll());

    fail_n(&c, 5).await;
    assert_eq!(c.state(), Open);
    advance(secs(20)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);

    // The new Closed period: five requests, trailing run 2 (one short of tripping).
    succeed_n(&c, 3).await;
    fail_n(&c, 2).await;
    assert_eq!(c.stats().consecutive_failures, 2);

    tx.send(Err(Boom)).unwrap();
    assert!(matches!(
        assert_ready!(old.poll()),
        Err(CallError::Inner(Boom))
    ));
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!(
        s.consecutive_failures, 2,
        "a late failure must not extend the run"
    );
    assert_eq!(
        s.window.requests, 5,
        "a late result stays out of the window"
    );
    assert_eq!(
        s.failure_count,
        5 + 2 + 1,
        "a late result counts in the lifetime"
    );
    assert_eq!(s.total_requests, 5 + 1 + 3 + 2 + 1);

    // The run really was 2: one more failure trips.
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_late_success_does_not_close_a_half_open_circuit() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let (old_tx, mut old) = pending_call(&c);
    assert_pending!(old.poll());
    fail_n(&c, 5).await;
    advance(secs(20)).await;

    let (probe_tx, mut probe) = pending_call(&c);
    assert_pending!(probe.poll());
    assert_eq!(c.state(), HalfOpen);

    old_tx.send(Ok(1)).unwrap();
    assert_eq!(assert_ready!(old.poll()).unwrap(), 1);
    assert_eq!(c.state(), HalfOpen);
    assert_eq!(c.stats().half_open_in_flight, 1);
    assert_eq!(c.stats().success_count, 1);

    probe_tx.send(Ok(2)).unwrap();
    assert_eq!(assert_ready!(probe.poll()).unwrap(), 2);
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_late_failure_while_open_leaves_the_break_alone() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let (tx, mut old) = pending_call(&c);
    assert_pending!(old.poll());
    fail_n(&c, 5).await;
    let next = c.stats().next_attempt_time;
    advance(secs(5)).await;

    tx.send(Err(Boom)).unwrap();
    assert!(matches!(
        assert_ready!(old.poll()),
        Err(CallError::Inner(Boom))
    ));
    let s = c.stats();
    assert_eq!(s.state, Open);
    assert_eq!(s.next_attempt_time, next);
    assert_eq!(s.failure_count, 6);
    assert_eq!(s.window.requests, 5);
}

// ===== 12. manual control and shadow mode =====

#[tokio::test(start_paused = true)]
async fn force_open_rejects_everything_until_reset() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    succeed_n(&c, 1).await;
    c.force_open();

    let s = c.stats();
    assert_eq!(s.state, Open);
    assert_eq!(c.state(), Open);
    assert_eq!(s.manual_override, Some(ManualOverride::ForcedOpen));
    assert_eq!(s.next_attempt_time, None);

    let polled = Cell::new(false);
    let r = rejection(
        c.call(async {
            polled.set(true);
            Ok::<u32, Boom>(1)
        })
        .await,
    );
    assert!(!polled.get());
    assert_eq!(r.reason(), RejectReason::ForcedOpen);
    assert_eq!(r.retry_after(), None);

    // No recovery timeout ends a forced break.
    advance(secs(3600)).await;
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::ForcedOpen
    );
    assert_eq!(c.state(), Open);
    let s = c.stats();
    assert_eq!((s.rejected_count, s.total_requests), (2, 1));

    c.reset();
    let s = c.stats();
    assert_eq!(s.state, Closed);
    assert_eq!(s.manual_override, None);
    succeed_n(&c, 1).await;
}

#[tokio::test(start_paused = true)]
async fn disable_admits_everything_and_records_nothing() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 2).await;
    let before = c.stats();
    c.disable();

    let s = c.stats();
    assert_eq!(s.state, Closed);
    assert_eq!(s.manual_override, Some(ManualOverride::Disabled));

    fail_n(&c, 20).await;
    succeed_n(&c, 3).await;
    advance(secs(1)).await;
    assert_eq!(c.state(), Closed);
    let s = c.stats();
    assert_eq!(s.failure_count, before.failure_count);
    assert_eq!(s.success_count, before.success_count);
    assert_eq!(s.total_requests, 2);
    assert_eq!(s.window, before.window);
    assert_eq!(s.last_failure_time, before.last_failure_time);
    assert_eq!(s.last_success_time, None);
    assert_eq!((s.rejected_count, s.ignored_count, s.slow_count), (0, 0, 0));

    c.reset();
    let s = c.stats();
    assert_eq!(s.manual_override, None);
    assert_eq!(s.window.requests, 0);
    assert_eq!(s.total_requests, 2);
}

#[tokio::test(start_paused = true)]
async fn disable_on_a_tripped_circuit_admits_calls() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    let log = record(&c);
    c.disable();
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().next_attempt_time, None);
    succeed_n(&c, 1).await;
    assert_eq!(
        transitions(&log),
        [(Open, Closed, TransitionReason::Disabled)]
    );
}

#[tokio::test(start_paused = true)]
async fn reset_closes_clears_the_window_and_keeps_lifetime_counts() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    rejection(succeed(&c).await);
    c.reset();

    let s = c.stats();
    assert_eq!(s.state, Closed);
    assert_eq!(s.manual_override, None);
    assert_eq!(s.next_attempt_time, None);
    assert_eq!((s.window.requests, s.consecutive_failures), (0, 0));
    assert_eq!(
        (s.failure_count, s.total_requests, s.rejected_count),
        (5, 5, 1)
    );

    // Closed for real: admitted, and the minimum applies afresh.
    fail_n(&c, 4).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn reset_clears_a_forced_open_override() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    c.force_open();
    c.reset();
    assert_eq!(c.stats().manual_override, None);
    assert_eq!(c.state(), Closed);
    succeed_n(&c, 1).await;
}

#[tokio::test(start_paused = true)]
async fn metrics_only_trips_in_stats_but_never_rejects() {
    let c = Circuit::new(dynamodb_with(|b| b.metrics_only(true)));
    fail_n(&c, 5).await;
    let s = c.stats();
    assert_eq!(s.state, Open);
    assert!(s.metrics_only);
    assert!(s.next_attempt_time.is_some());

    let polled = Cell::new(false);
    let out = c
        .call(async {
            polled.set(true);
            Ok::<u32, Boom>(7)
        })
        .await;
    assert_eq!(out.unwrap(), 7);
    assert!(polled.get());
    fail_n(&c, 1).await;

    let s = c.stats();
    assert_eq!(s.state, Open);
    assert_eq!(s.rejected_count, 2);
    assert_eq!(
        (s.success_count, s.failure_count, s.total_requests),
        (1, 6, 7)
    );

    // Recovery works as usual.
    advance(secs(20)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().rejected_count, 2);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_still_honours_force_open() {
    let c = Circuit::new(dynamodb_with(|b| b.metrics_only(true)));
    c.force_open();
    let polled = Cell::new(false);
    let r = rejection(
        c.call(async {
            polled.set(true);
            Ok::<u32, Boom>(1)
        })
        .await,
    );
    assert!(!polled.get());
    assert_eq!(r.reason(), RejectReason::ForcedOpen);
    assert_eq!(c.stats().rejected_count, 1);
}

// ===== 13, 14. events =====

#[tokio::test(start_paused = true)]
async fn listeners_see_each_transition_in_order_with_its_reason() {
    let c = Circuit::named("events", CircuitBreakerConfig::dynamodb());
    let log = record(&c);
    fail_n(&c, 5).await;
    advance(secs(20)).await;
    succeed_n(&c, 1).await;

    assert_eq!(
        transitions(&log),
        [
            (Closed, Open, TransitionReason::Tripped),
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
        ]
    );
    let events = log.lock().unwrap().clone();
    for e in &events {
        assert_eq!(&*e.circuit, "events");
        assert_eq!(
            e.stats.state, e.to,
            "an event carries the stats after the transition"
        );
    }
    let tripped = &events[0].stats;
    assert_eq!(tripped.failure_count, 5);
    assert!(tripped.next_attempt_time.is_some());
    assert_eq!(events[2].stats.window.requests, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_emits_probe_failed() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    let log = record(&c);
    advance(secs(20)).await;
    fail_n(&c, 1).await;
    assert_eq!(
        transitions(&log),
        [
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Open, TransitionReason::ProbeFailed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn same_state_changes_emit_no_event() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let log = record(&c);

    c.reset(); // Closed → Closed
    c.disable(); // Closed → Closed (disabled)
    c.reset(); // Closed (disabled) → Closed
    assert_eq!(transitions(&log), []);

    c.force_open();
    c.force_open();
    assert_eq!(
        transitions(&log),
        [(Closed, Open, TransitionReason::ForcedOpen)]
    );

    c.reset();
    assert_eq!(
        transitions(&log),
        [
            (Closed, Open, TransitionReason::ForcedOpen),
            (Open, Closed, TransitionReason::Reset)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn forcing_a_tripped_circuit_open_emits_no_event() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    let log = record(&c);
    c.force_open();
    assert_eq!(transitions(&log), []);
    assert_eq!(c.stats().manual_override, Some(ManualOverride::ForcedOpen));
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::ForcedOpen
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_breaks_nothing() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    c.on_transition(|_| panic!("listener bug (expected by this test)"));
    let log = record(&c);

    fail_n(&c, 5).await;
    assert_eq!(c.state(), Open);
    assert_eq!(rejection(succeed(&c).await).reason(), RejectReason::Open);
    advance(secs(20)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 5).await;
    assert_eq!(c.state(), Open);

    assert_eq!(
        transitions(&log),
        [
            (Closed, Open, TransitionReason::Tripped),
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
            (Closed, Open, TransitionReason::Tripped),
        ]
    );
    // Manual control still works too.
    c.reset();
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_listener_may_read_the_circuit() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (handle, sink) = (c.clone(), seen.clone());
    c.on_transition(move |e| {
        sink.lock()
            .unwrap()
            .push((e.to, handle.state(), handle.stats().state));
    });
    fail_n(&c, 5).await;
    assert_eq!(*seen.lock().unwrap(), [(Open, Open, Open)]);
}

// ===== 15. dropped calls =====

#[tokio::test(start_paused = true)]
async fn a_dropped_call_is_ignored_by_default() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let (_tx, mut call) = pending_call(&c);
    assert_pending!(call.poll());
    drop(call);

    let s = c.stats();
    assert_eq!(s.ignored_count, 1);
    assert_eq!(
        (s.failure_count, s.success_count, s.total_requests),
        (0, 0, 0)
    );
    assert_eq!(s.window.requests, 0);
    assert_eq!(s.last_failure_time, None);
}

#[tokio::test(start_paused = true)]
async fn an_ignored_call_neither_extends_nor_breaks_the_run() {
    // S S F F, dropped, F: five recorded requests, trailing run 3.
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    succeed_n(&c, 2).await;
    fail_n(&c, 2).await;
    let (_tx, mut call) = pending_call(&c);
    assert_pending!(call.poll());
    drop(call);
    assert_eq!(c.stats().consecutive_failures, 2);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    assert_eq!(c.stats().ignored_count, 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_calls_are_failures_when_configured() {
    let c = Circuit::new(dynamodb_with(|b| b.dropped_call_is_failure(true)));
    let log = record(&c);
    for i in 0..5 {
        assert_eq!(c.state(), Closed, "before drop #{i}");
        let (_tx, mut call) = pending_call(&c);
        assert_pending!(call.poll());
        drop(call);
    }
    assert_eq!(c.state(), Open);
    let s = c.stats();
    assert_eq!(
        (s.failure_count, s.ignored_count, s.total_requests),
        (5, 0, 5)
    );
    assert_eq!(
        transitions(&log),
        [(Closed, Open, TransitionReason::Tripped)]
    );
}

// ===== 16. reconfiguration =====

#[tokio::test(start_paused = true)]
async fn a_lower_threshold_applies_from_the_next_failure() {
    // api_gateway_management: threshold 5, minimum 3.
    let c = Circuit::new(CircuitBreakerConfig::api_gateway_management());
    fail_n(&c, 3).await;
    let before = c.stats();

    let lower = CircuitBreakerConfig::api_gateway_management()
        .to_builder()
        .failure_threshold(2)
        .build()
        .unwrap();
    c.reconfigure(lower.clone()).unwrap();
    assert_eq!(c.config(), lower);
    // Reconfiguring itself changes no state and no count.
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats(), before);
    assert_eq!(c.stats().total_requests, 3);

    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    assert_eq!(c.stats().total_requests, 4);
}

#[tokio::test(start_paused = true)]
async fn a_higher_threshold_keeps_the_circuit_closed() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 2).await;
    c.reconfigure(dynamodb_with(|b| b.failure_threshold(10)))
        .unwrap();
    fail_n(&c, 7).await;
    assert_eq!(c.state(), Closed);
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn changing_window_buckets_is_refused_and_changes_nothing() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    fail_n(&c, 2).await;
    let before = c.stats();
    let err = c
        .reconfigure(dynamodb_with(|b| b.window_buckets(20).failure_threshold(1)))
        .unwrap_err();
    assert_eq!(err.field(), "window_buckets");
    assert_eq!(c.config(), CircuitBreakerConfig::dynamodb());
    assert_eq!(c.stats(), before);
    // The refused threshold of 1 is not in force.
    fail_n(&c, 2).await;
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn changing_the_window_length_restarts_the_window_without_losing_counts() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    succeed_n(&c, 2).await;
    fail_n(&c, 2).await;
    c.reconfigure(dynamodb_with(|b| b.monitoring_window(secs(30))))
        .unwrap();
    let s = c.stats();
    assert_eq!(s.window.requests, 0);
    assert_eq!(
        (s.total_requests, s.success_count, s.failure_count),
        (4, 2, 2)
    );
    assert_eq!(c.state(), Closed);
}

// ===== 17. invalid configurations =====

fn refused(b: CircuitBreakerConfigBuilder) -> &'static str {
    let err = b.build().expect_err("the config must be refused");
    assert!(!err.rule().is_empty());
    assert!(err.to_string().contains(err.field()), "{err}");
    err.field()
}

#[test]
fn invalid_values_are_refused_naming_the_field() {
    let b = CircuitBreakerConfig::builder;
    assert_eq!(refused(b().failure_threshold(0)), "failure_threshold");
    assert_eq!(
        refused(b().recovery_timeout(Duration::ZERO)),
        "recovery_timeout"
    );
    assert_eq!(
        refused(b().expected_response_time(Duration::ZERO)),
        "expected_response_time"
    );
    assert_eq!(
        refused(b().monitoring_window(Duration::ZERO)),
        "monitoring_window"
    );
    assert_eq!(refused(b().half_open_max_calls(0)), "half_open_max_calls");
    assert_eq!(
        refused(b().half_open_max_calls(4096)),
        "half_open_max_calls"
    );
    assert_eq!(
        refused(b().recovery_timeout(secs(366 * 24 * 3600))),
        "recovery_timeout"
    );
}

#[test]
fn rates_outside_zero_to_one_are_refused() {
    let b = CircuitBreakerConfig::builder;
    for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(
            refused(b().failure_rate_threshold(bad)),
            "failure_rate_threshold",
            "{bad}"
        );
        assert_eq!(
            refused(b().slow_call_rate_threshold(bad)),
            "slow_call_rate_threshold",
            "{bad}"
        );
    }
    // The upper bound is included.
    assert_eq!(
        b().failure_rate_threshold(1.0)
            .build()
            .unwrap()
            .failure_rate_threshold(),
        Some(1.0)
    );
    b().slow_call_rate_threshold(1.0).build().unwrap();
}

#[test]
fn buckets_must_fit_the_window() {
    let b = CircuitBreakerConfig::builder;
    assert_eq!(refused(b().window_buckets(0)), "window_buckets");
    assert_eq!(refused(b().window_buckets(1001)), "window_buckets");
    // 60 s / 7 is not a whole number of nanoseconds.
    assert_eq!(
        refused(b().monitoring_window(secs(60)).window_buckets(7)),
        "window_buckets"
    );
    // 5 ms / 10 = 500 µs buckets: too small.
    assert_eq!(
        refused(b().monitoring_window(ms(5)).window_buckets(10)),
        "window_buckets"
    );
    // 1 ms buckets are the smallest allowed.
    b().monitoring_window(ms(10))
        .window_buckets(10)
        .build()
        .unwrap();
    b().window_buckets(1).build().unwrap();
}

#[test]
fn backoff_parameters_are_validated() {
    let b = || CircuitBreakerConfig::builder().recovery_timeout(secs(10));
    assert_eq!(
        refused(b().backoff(0.5, secs(80), 0.0)),
        "backoff.multiplier"
    );
    assert_eq!(
        refused(b().backoff(f64::NAN, secs(80), 0.0)),
        "backoff.multiplier"
    );
    assert_eq!(
        refused(b().backoff(f64::INFINITY, secs(80), 0.0)),
        "backoff.multiplier"
    );
    assert_eq!(refused(b().backoff(2.0, secs(9), 0.0)), "backoff.max");
    assert_eq!(refused(b().backoff(2.0, secs(80), 1.0)), "backoff.jitter");
    assert_eq!(refused(b().backoff(2.0, secs(80), -0.1)), "backoff.jitter");
    // Boundaries that are allowed.
    b().backoff(1.0, secs(10), 0.0).build().unwrap();
    b().backoff(2.0, secs(80), 0.99).build().unwrap();
}

// ===== 18. failure-rate and slow-rate criteria =====

#[tokio::test(start_paused = true)]
async fn the_failure_rate_criterion_can_trip_on_a_success() {
    let c = Circuit::new(build(|b| {
        b.failure_rate_threshold(0.5)
            .failure_threshold(u32::MAX)
            .minimum_request_count(4)
    }));
    let log = record(&c);
    fail_n(&c, 1).await;
    succeed_n(&c, 1).await;
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Closed, "three requests, below the minimum of 4");
    // The fourth outcome is a success, yet the rate is 2/4 ≥ 0.5 with the minimum met.
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    assert_eq!(c.stats().failure_rate, 0.5);
    assert_eq!(
        transitions(&log),
        [(Closed, Open, TransitionReason::Tripped)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_below_the_threshold_stays_closed() {
    let c = Circuit::new(build(|b| {
        b.failure_rate_threshold(0.5)
            .failure_threshold(u32::MAX)
            .minimum_request_count(4)
    }));
    succeed_n(&c, 3).await;
    fail_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    assert_eq!(c.stats().failure_rate, 0.25);
}

#[tokio::test(start_paused = true)]
async fn the_slow_call_rate_criterion_trips() {
    let c = Circuit::new(build(|b| {
        b.slow_call_rate_threshold(0.5)
            .slow_call_is_failure(false)
            .failure_threshold(u32::MAX)
            .minimum_request_count(4)
    }));
    // expected_response_time is 1 s by default.
    slow(&c, secs(2), Ok(1)).await.unwrap();
    succeed_n(&c, 1).await;
    slow(&c, secs(2), Ok(1)).await.unwrap();
    assert_eq!(c.state(), Closed);
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Open);
    let s = c.stats();
    assert_eq!(s.slow_call_rate, 0.5);
    assert_eq!(s.failure_rate, 0.0);
}

// ===== 19. growing break =====

#[tokio::test(start_paused = true)]
async fn the_break_doubles_per_reopening_up_to_the_cap_and_resets_on_close() {
    let c = tripped(dynamodb_with(|b| {
        b.recovery_timeout(secs(10)).backoff(2.0, secs(80), 0.0)
    }))
    .await;
    assert_eq!(break_after_last_failure(&c), secs(10));

    let mut last_next = c.stats().next_attempt_time;
    for expected in [secs(20), secs(40), secs(80), secs(80)] {
        let r = rejection(succeed(&c).await);
        advance(r.retry_after().unwrap()).await;
        fail_n(&c, 1).await; // the probe fails
        assert_eq!(c.state(), Open);
        assert_eq!(break_after_last_failure(&c), expected);
        let next = c.stats().next_attempt_time;
        assert_eq!(gap(next, last_next), expected);
        assert_eq!(rejection(succeed(&c).await).retry_after(), Some(expected));
        last_next = next;
    }

    advance(secs(80)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
    advance(secs(1)).await;
    fail_n(&c, 5).await;
    assert_eq!(c.state(), Open);
    assert_eq!(break_after_last_failure(&c), secs(10));
}

#[tokio::test(start_paused = true)]
async fn jitter_only_shortens_the_break() {
    let c = tripped(dynamodb_with(|b| {
        b.recovery_timeout(secs(10)).backoff(2.0, secs(80), 0.5)
    }))
    .await;
    let mut nominal = secs(10);
    for _ in 0..6 {
        let d = break_after_last_failure(&c);
        assert!(
            d <= nominal && d >= nominal / 2,
            "{d:?} not in [{:?}, {nominal:?}]",
            nominal / 2
        );
        advance(d).await;
        fail_n(&c, 1).await;
        assert_eq!(c.state(), Open);
        nominal = (nominal * 2).min(secs(80));
    }
}

// ===== 20. classifier-ordered breaks =====

#[tokio::test(start_paused = true)]
async fn open_for_opens_at_once_for_the_given_duration() {
    let origin = Instant::now();
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let log = record(&c);
    let retry_after_7s = |r: &Res| match r {
        Ok(_) => Verdict::Success,
        Err(_) => Verdict::OpenFor(secs(7)),
    };

    // One outcome, far below the minimum of 5.
    let out = c
        .call_with(&retry_after_7s, async { Err::<u32, Boom>(Boom) })
        .await;
    assert!(matches!(out, Err(CallError::Inner(Boom))));
    assert_eq!(c.state(), Open);
    assert_eq!(
        transitions(&log),
        [(Closed, Open, TransitionReason::RetryAfter)]
    );
    assert_eq!(break_after_last_failure(&c), secs(7));
    assert_eq!(c.stats().failure_count, 1);

    advance_to(origin, secs(7) - ms(1)).await;
    let r = rejection(
        c.call_with(&retry_after_7s, async { Ok::<u32, Boom>(1) })
            .await,
    );
    assert_eq!(
        (r.reason(), r.retry_after()),
        (RejectReason::Open, Some(ms(1)))
    );

    advance_to(origin, secs(7)).await;
    let out = c
        .call_with(&retry_after_7s, async { Ok::<u32, Boom>(1) })
        .await;
    assert_eq!(out.unwrap(), 1);
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn open_for_on_a_probe_reopens_for_the_given_duration() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    let log = record(&c);
    advance(secs(20)).await;
    let retry_after_3s = |_: &Res| Verdict::OpenFor(secs(3));
    let out = c
        .call_with(&retry_after_3s, async { Err::<u32, Boom>(Boom) })
        .await;
    assert!(matches!(out, Err(CallError::Inner(Boom))));
    assert_eq!(c.state(), Open);
    assert_eq!(break_after_last_failure(&c), secs(3));
    assert_eq!(
        transitions(&log),
        [
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Open, TransitionReason::RetryAfter)
        ]
    );
}

// ===== 21. stats =====

#[tokio::test(start_paused = true)]
async fn a_fresh_circuit_reports_zeroes() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    let s = c.stats();
    assert_eq!(s.state, Closed);
    assert_eq!(s.manual_override, None);
    assert!(!s.metrics_only);
    assert_eq!(
        (
            s.failure_count,
            s.success_count,
            s.total_requests,
            s.rejected_count,
            s.ignored_count,
            s.slow_count
        ),
        (0, 0, 0, 0, 0, 0)
    );
    assert_eq!(
        (
            s.last_failure_time,
            s.last_success_time,
            s.next_attempt_time
        ),
        (None, None, None)
    );
    assert_eq!((s.failure_rate, s.slow_call_rate), (0.0, 0.0));
    assert_eq!((s.consecutive_failures, s.half_open_in_flight), (0, 0));
    assert_eq!(
        (
            s.window.requests,
            s.window.failures,
            s.window.successes,
            s.window.slow
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn stats_fields_follow_the_outcomes() {
    let c = Circuit::new(CircuitBreakerConfig::dynamodb());
    succeed_n(&c, 2).await;
    let s = c.stats();
    assert!(s.last_success_time.is_some());
    assert_eq!(s.last_failure_time, None);

    fail_n(&c, 1).await;
    let s = c.stats();
    assert!(s.last_failure_time.is_some());
    assert!((0.0..=1.0).contains(&s.failure_rate));
    assert!((s.failure_rate - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.total_requests, s.success_count + s.failure_count);
    assert_eq!((s.success_count, s.failure_count), (2, 1));
    let first_failure = s.last_failure_time;
    let first_success = s.last_success_time;

    advance(secs(5)).await;
    fail_n(&c, 1).await;
    let s = c.stats();
    assert_eq!(gap(s.last_failure_time, first_failure), secs(5));
    assert_eq!(s.last_success_time, first_success);

    advance(ms(1500)).await;
    succeed_n(&c, 1).await;
    assert_eq!(gap(c.stats().last_success_time, first_success), ms(6500));

    // Trip (run of 3 among ≥ 5) and count rejections.
    fail_n(&c, 3).await;
    assert_eq!(c.state(), Open);
    for _ in 0..4 {
        rejection(succeed(&c).await);
    }
    let s = c.stats();
    assert_eq!(s.rejected_count, 4);
    assert_eq!(s.total_requests, 8, "rejections are not requests");
    assert_eq!(s.total_requests, s.success_count + s.failure_count);
    assert_eq!(
        (s.window.requests, s.window.failures, s.window.successes),
        (8, 5, 3)
    );
    assert!((0.0..=1.0).contains(&s.failure_rate));
    assert_eq!(s.consecutive_failures, 3);
}

// ===== 22. hung half-open probes (issue 11, section 2) =====

/// A probe future that never completes and is never dropped, with no timeout in the
/// stack, against a healthy dependency: 1 000 calls at +1 min, +1 h and +7 days. On
/// c3fdb08 all 3 000 were rejected as "half-open, probes in flight" and the stats had no
/// next attempt time; now the first call after the probe deadline re-opens the circuit,
/// dated from the deadline, so it finds the next break already over and becomes the fresh
/// probe.
#[tokio::test(start_paused = true)]
async fn a_hung_probe_does_not_wedge_the_circuit_in_half_open() {
    let c = tripped(CircuitBreakerConfig::dynamodb()).await;
    advance(secs(20)).await;
    let (_tx, mut hung) = pending_call(&c);
    assert_pending!(hung.poll());
    assert_eq!(c.state(), HalfOpen);

    let mut rejected = 0;
    for wait in [secs(60), secs(3600), secs(7 * 24 * 3600)] {
        advance(wait).await;
        for _ in 0..1_000 {
            if matches!(succeed(&c).await, Err(CallError::Rejected(_))) {
                rejected += 1;
            }
        }
        assert_pending!(hung.poll());
    }
    assert_eq!(rejected, 0, "calls rejected out of 3 000");
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_reopens_at_the_probe_deadline_for_its_own_reason() {
    let config = dynamodb_with(|b| b.half_open_max_wait(secs(5)));
    assert_eq!(config.half_open_max_wait(), secs(5));
    let c = tripped(config).await;
    let origin = Instant::now();
    advance(secs(20)).await;
    let log = record(&c);
    let (tx, mut hung) = pending_call(&c);
    assert_pending!(hung.poll());

    // Until the deadline: rejected as HalfOpenFull, and the stats show the deadline.
    advance_to(origin, secs(25) - NS).await;
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::HalfOpenFull
    );
    let s = c.stats();
    assert_eq!(s.half_open_in_flight, 1);
    assert_eq!(gap(s.next_attempt_time, s.last_failure_time), secs(25));

    // At the deadline: the probe counts as failed and the circuit re-opens for a break.
    advance(NS).await;
    let open = rejection(succeed(&c).await);
    assert_eq!(open.reason(), RejectReason::Open);
    assert_eq!(open.retry_after(), Some(secs(20)));
    assert_eq!(c.state(), Open);
    assert_eq!(
        transitions(&log),
        [
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Open, TransitionReason::ProbeTimedOut),
        ]
    );
    assert_eq!(TransitionReason::ProbeTimedOut.as_str(), "probe_timed_out");
    let s = c.stats();
    assert_eq!(gap(s.next_attempt_time, s.last_failure_time), secs(45));
    assert_eq!(
        s.failure_count, 5,
        "the timed-out probe is not a counted outcome"
    );

    // The hung probe finishing now is late: counted, no state change.
    tx.send(Ok(7)).unwrap();
    assert_eq!(assert_ready!(hung.poll()).unwrap(), 7);
    assert_eq!(c.state(), Open);
    assert_eq!(c.stats().success_count, 1);

    // The next break admits a fresh probe.
    advance_to(origin, secs(45)).await;
    succeed_n(&c, 1).await;
    assert_eq!(c.state(), Closed);
}

#[tokio::test(start_paused = true)]
async fn the_probe_deadline_runs_from_the_latest_probe() {
    let config = dynamodb_with(|b| b.half_open_max_calls(2).half_open_max_wait(secs(5)));
    let c = tripped(config).await;
    let origin = Instant::now();
    advance(secs(20)).await;
    let (_tx1, mut p1) = pending_call(&c);
    assert_pending!(p1.poll());
    advance(secs(3)).await;
    let (_tx2, mut p2) = pending_call(&c);
    assert_pending!(p2.poll());

    // 5 s after the first probe, 2 s after the second: still waiting.
    advance_to(origin, secs(25)).await;
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::HalfOpenFull
    );
    advance_to(origin, secs(28) - NS).await;
    assert_eq!(
        rejection(succeed(&c).await).reason(),
        RejectReason::HalfOpenFull
    );
    advance(NS).await;
    assert_eq!(rejection(succeed(&c).await).reason(), RejectReason::Open);
    assert_eq!(c.state(), Open);
    // Both were probes of the abandoned cycle: their drops change nothing.
    drop(p1);
    drop(p2);
    assert_eq!(c.state(), Open);
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_probe_grows_the_break_like_a_failed_one() {
    let config = dynamodb_with(|b| b.backoff(2.0, secs(600), 0.0));
    let c = tripped(config).await;
    advance(secs(20)).await;
    let (_tx, mut hung) = pending_call(&c);
    assert_pending!(hung.poll());
    // Derived deadline: the recovery timeout (20 s). The second opening lasts 40 s.
    advance(secs(20)).await;
    let open = rejection(succeed(&c).await);
    assert_eq!(open.retry_after(), Some(secs(40)));
}

#[test]
fn the_probe_deadline_is_derived_and_validated() {
    for c in [
        CircuitBreakerConfig::default(),
        CircuitBreakerConfig::cognito(),
        CircuitBreakerConfig::dynamodb(),
        CircuitBreakerConfig::api_gateway_management(),
    ] {
        assert_eq!(c.half_open_max_wait(), c.recovery_timeout());
        assert!(!c.half_open_max_wait_is_set());
    }
    // Never below the expected response time; follows the fields it derives from.
    let c = build(|b| b.recovery_timeout(secs(1)).expected_response_time(secs(3)));
    assert_eq!(c.half_open_max_wait(), secs(3));
    let c = build(|b| b.recovery_timeout(secs(90)));
    assert_eq!(c.half_open_max_wait(), secs(90));
    let c = build(|b| b.half_open_max_wait(ms(1500)));
    assert_eq!(c.half_open_max_wait(), ms(1500));
    assert!(c.half_open_max_wait_is_set());
    assert!(
        format!("{c:?}").contains("half_open_max_wait: 1.5s"),
        "{c:?}"
    );

    for bad in [Duration::ZERO, secs(366 * 24 * 3600)] {
        let err = CircuitBreakerConfig::builder()
            .half_open_max_wait(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "half_open_max_wait");
    }
}

// ===== 23. panicking observability hooks (issue 11, section 5) =====

/// A tracing subscriber that panics on every event of this crate.
struct PanickingSubscriber;

impl tracing::Subscriber for PanickingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event
            .metadata()
            .target()
            .starts_with("tower_circuit_breaker")
        {
            panic!("tracing subscriber panicked on purpose");
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// On c3fdb08 the tripping call and `force_open` panicked, the dispatching flag stayed
/// set, and the listener saw none of the 2 transitions, not even the one after the
/// subscriber was gone.
#[tokio::test(start_paused = true)]
async fn a_panicking_tracing_subscriber_breaks_no_call_and_silences_no_listener() {
    let c = Circuit::named("loud", CircuitBreakerConfig::dynamodb());
    let log = record(&c);
    let guard = tracing::subscriber::set_default(PanickingSubscriber);
    let mut panicked = 0;
    for _ in 0..5 {
        let task = tokio::spawn({
            let c = c.clone();
            async move { fail(&c).await }
        });
        match task.await {
            Ok(out) => assert!(matches!(out, Err(CallError::Inner(Boom)))),
            Err(e) if e.is_panic() => panicked += 1,
            Err(e) => panic!("{e}"),
        }
    }
    let manual = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.force_open()));
    panicked += usize::from(manual.is_err());
    drop(guard);
    c.reset();
    // `force_open` on an Open circuit is no transition of state: no event.
    assert_eq!(
        (panicked, transitions(&log)),
        (
            0,
            vec![
                (Closed, Open, TransitionReason::Tripped),
                (Open, Closed, TransitionReason::Reset),
            ]
        ),
        "(calls or controls that panicked, transitions the listener saw)"
    );
    succeed_n(&c, 1).await;
}

mod count_window;

#[cfg(feature = "metrics")]
mod panicking_recorder {
    use super::*;
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };

    /// A metrics recorder whose every registration panics.
    struct PanickingRecorder;

    impl Recorder for PanickingRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            panic!("metrics recorder panicked on purpose")
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            panic!("metrics recorder panicked on purpose")
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            panic!("metrics recorder panicked on purpose")
        }
    }

    /// On c3fdb08 the tripping call panicked and the listener saw 0 of 2 transitions.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_metrics_recorder_breaks_no_call_and_silences_no_listener() {
        // Made outside the local recorder: its per-call handles are the no-op recorder's.
        let c = Circuit::named("counted", CircuitBreakerConfig::dynamodb());
        let log = record(&c);
        let panicked = metrics::with_local_recorder(&PanickingRecorder, || {
            let mut panicked = 0;
            for _ in 0..5 {
                let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut task = tokio_test::task::spawn(fail(&c));
                    assert!(matches!(
                        assert_ready!(task.poll()),
                        Err(CallError::Inner(Boom))
                    ));
                }));
                panicked += usize::from(call.is_err());
            }
            panicked
        });
        c.reset();
        assert_eq!(
            (panicked, transitions(&log)),
            (
                0,
                vec![
                    (Closed, Open, TransitionReason::Tripped),
                    (Open, Closed, TransitionReason::Reset),
                ]
            ),
            "(calls that panicked, transitions the listener saw)"
        );
        succeed_n(&c, 1).await;
    }
}

// ===== the permit API =====

mod permit;
