//! Integration tests of the tower `Service`: `CircuitBreakerLayer` and `CircuitBreaker`.
//!
//! Every test is deterministic: time is tokio's paused clock, moved with `advance`.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::error::{CircuitOpen, RejectReason};
use tower_circuit_breaker::{
    BoxError, Circuit, CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};
use tower_test::mock;

type Req = &'static str;
type Handle = mock::Handle<Req, Req>;
type Svc = mock::Spawn<CircuitBreaker<mock::Mock<Req, Req>>>;

const RECOVERY: Duration = Duration::from_secs(10);

/// A distinguishable inner error.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Boom(&'static str);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

impl std::error::Error for Boom {}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 2 consecutive failures among at least 2 calls open the circuit for 10 s; calls are
/// slow only after 5 s, so nothing in these tests is accidentally slow.
fn builder() -> tower_circuit_breaker::config::CircuitBreakerConfigBuilder {
    CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .minimum_request_count(2)
        .recovery_timeout(RECOVERY)
        .expected_response_time(Duration::from_secs(5))
        .monitoring_window(Duration::from_secs(60))
}

fn config() -> CircuitBreakerConfig {
    builder().build().unwrap()
}

fn setup(config: CircuitBreakerConfig) -> (Svc, Handle, Circuit) {
    let layer = CircuitBreakerLayer::named("mock", config);
    let circuit = layer.circuit().clone();
    let (svc, handle) = mock::spawn_layer::<Req, Req, _>(layer);
    (svc, handle, circuit)
}

/// `poll_ready` on a spawned service, with the request type pinned down.
fn ready<S: Service<Req>>(svc: &mut mock::Spawn<S>) -> Poll<Result<(), S::Error>> {
    svc.poll_ready()
}

fn rejection(err: &BoxError) -> &CircuitOpen {
    err.downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("expected a CircuitOpen, got {err:?}"))
}

/// The output of a future that must be ready at once (so a wrong admission fails the
/// test instead of hanging it).
#[track_caller]
fn now<F: Future>(fut: F) -> F::Output {
    match task::spawn(fut).poll() {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("expected the future to be ready at once"),
    }
}

/// The request the inner mock received, which must be there already.
#[track_caller]
fn next(handle: &mut Handle) -> (Req, mock::SendResponse<Req>) {
    match handle.poll_request() {
        Poll::Ready(Some(r)) => r,
        Poll::Ready(None) => panic!("the mock is closed"),
        Poll::Pending => panic!("the inner service received no request"),
    }
}

/// Like `next`, checking the request.
#[track_caller]
fn request(handle: &mut Handle, expected: Req) -> mock::SendResponse<Req> {
    let (req, send) = next(handle);
    assert_eq!(req, expected);
    send
}

/// One call through `svc` that reaches the mock and gets `Boom(req)` back.
async fn fail<S>(svc: &mut mock::Spawn<S>, handle: &mut Handle, req: Req) -> S::Error
where
    S: Service<Req>,
    S::Response: fmt::Debug,
    S::Error: fmt::Debug,
{
    assert_ready_ok!(ready(svc));
    let fut = svc.call(req);
    let send = request(handle, req);
    send.send_error(Boom(req));
    now(fut).expect_err("the mock answered with an error")
}

/// One call through `svc` that reaches the mock and succeeds.
async fn succeed<S>(svc: &mut mock::Spawn<S>, handle: &mut Handle, req: Req) -> S::Response
where
    S: Service<Req>,
    S::Error: fmt::Debug,
{
    assert_ready_ok!(ready(svc));
    let fut = svc.call(req);
    let send = request(handle, req);
    send.send_response(req);
    now(fut).expect("the mock answered with a response")
}

/// Trips the circuit with two failures (the config's threshold).
async fn trip<S>(svc: &mut mock::Spawn<S>, handle: &mut Handle, circuit: &Circuit)
where
    S: Service<Req>,
    S::Response: fmt::Debug,
    S::Error: fmt::Debug,
{
    fail(svc, handle, "trip-1").await;
    assert_eq!(circuit.state(), CircuitState::Closed);
    fail(svc, handle, "trip-2").await;
    assert_eq!(circuit.state(), CircuitState::Open);
}

/// The mock has not received any request.
fn no_request(handle: &mut Handle) {
    assert!(
        handle.poll_request().is_pending(),
        "the inner service received a request"
    );
}

// ===== 1. Rejection does not call or poll the inner service =====

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_without_polling_or_calling_inner() {
    let (mut svc, mut handle, circuit) = setup(config());
    circuit.force_open();
    // The inner service would be Pending if it were polled.
    handle.allow(0);

    assert_ready_ok!(ready(&mut svc));
    let err = now(svc.call("hello")).unwrap_err();
    let open = rejection(&err);
    assert_eq!(open.reason(), RejectReason::ForcedOpen);
    assert_eq!(open.circuit(), "mock");
    assert_eq!(open.retry_after(), None);
    assert!(!svc.is_woken());
    no_request(&mut handle);
    assert_eq!(circuit.stats().rejected_count, 1);
    assert_eq!(circuit.stats().total_requests, 0);
}

#[tokio::test(start_paused = true)]
async fn tripped_circuit_rejects_without_polling_or_calling_inner() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    handle.allow(0);

    for _ in 0..3 {
        assert_ready_ok!(ready(&mut svc));
        let err = now(svc.call("hello")).unwrap_err();
        let open = rejection(&err);
        assert_eq!(open.reason(), RejectReason::Open);
        // Paused clock: exactly the recovery timeout is left.
        assert_eq!(open.retry_after(), Some(RECOVERY));
    }
    advance(ms(4_000)).await;
    assert_ready_ok!(ready(&mut svc));
    let err = now(svc.call("hello")).unwrap_err();
    assert_eq!(rejection(&err).retry_after(), Some(ms(6_000)));

    no_request(&mut handle);
    let stats = circuit.stats();
    assert_eq!(stats.rejected_count, 4);
    assert_eq!(stats.total_requests, 2);
}

// ===== 2. poll_ready never fails because the circuit is open =====

#[tokio::test(start_paused = true)]
async fn poll_ready_is_never_an_error_for_any_rejection_reason() {
    let config = builder().half_open_max_calls(1).build().unwrap();
    let (mut svc, mut handle, circuit) = setup(config);

    // Open (tripped).
    trip(&mut svc, &mut handle, &circuit).await;
    for _ in 0..3 {
        assert_ready_ok!(ready(&mut svc));
        let err = now(svc.call("x")).unwrap_err();
        assert_eq!(rejection(&err).reason(), RejectReason::Open);
    }

    // HalfOpen with every probe slot taken.
    advance(RECOVERY).await;
    let mut probe = svc.clone();
    assert_ready_ok!(ready(&mut probe));
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    for _ in 0..3 {
        assert_ready_ok!(ready(&mut svc));
        let err = now(svc.call("x")).unwrap_err();
        assert_eq!(rejection(&err).reason(), RejectReason::HalfOpenFull);
    }
    drop(probe);

    // Forced open.
    circuit.force_open();
    for _ in 0..3 {
        assert_ready_ok!(ready(&mut svc));
        let err = now(svc.call("x")).unwrap_err();
        assert_eq!(rejection(&err).reason(), RejectReason::ForcedOpen);
    }
    no_request(&mut handle);

    // The same service works again once the circuit admits: nothing was latched.
    circuit.reset();
    assert_eq!(succeed(&mut svc, &mut handle, "back").await, "back");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_never_an_error_with_a_fallback() {
    let layer = CircuitBreakerLayer::new(config())
        .fallback_fn(|_req: Req| async move { Ok::<_, BoxError>("fallback") });
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    circuit.force_open();
    handle.allow(0);
    for _ in 0..3 {
        assert_ready_ok!(ready(&mut svc));
        assert_eq!(now(svc.call("x")).unwrap(), "fallback");
    }
    no_request(&mut handle);
}

// ===== 3. One circuit for every wrapped service and every clone =====

#[tokio::test(start_paused = true)]
async fn every_wrapped_service_and_clone_shares_one_circuit() {
    let layer = CircuitBreakerLayer::named("shared", config());
    let circuit = layer.circuit().clone();
    let (mut a, mut handle_a) = mock::spawn_layer::<Req, Req, _>(layer.clone());
    let (mut b, mut handle_b) = mock::spawn_layer::<Req, Req, _>(layer.clone());
    assert!(a.get_ref().circuit().ptr_eq(&circuit));
    assert!(b.get_ref().circuit().ptr_eq(&circuit));

    // One failure through each service: together they reach the threshold of 2.
    fail(&mut a, &mut handle_a, "a").await;
    assert_eq!(circuit.state(), CircuitState::Closed);
    fail(&mut b, &mut handle_b, "b").await;
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(circuit.stats().failure_count, 2);

    // Both services, their clones, and a service wrapped after the trip reject.
    let (mut c, mut handle_c) = mock::spawn_layer::<Req, Req, _>(layer);
    let mut a2 = a.clone();
    let mut b2 = b.clone();
    for svc in [&mut a, &mut a2, &mut b, &mut b2, &mut c] {
        assert_ready_ok!(ready(svc));
        let err = now(svc.call("x")).unwrap_err();
        assert_eq!(rejection(&err).circuit(), "shared");
        assert_eq!(rejection(&err).reason(), RejectReason::Open);
    }
    no_request(&mut handle_a);
    no_request(&mut handle_b);
    no_request(&mut handle_c);
    assert_eq!(circuit.stats().rejected_count, 5);

    // Resetting through the handle reopens every one of them.
    circuit.reset();
    assert_eq!(succeed(&mut a2, &mut handle_a, "a2").await, "a2");
    assert_eq!(succeed(&mut c, &mut handle_c, "c").await, "c");
}

#[tokio::test(start_paused = true)]
async fn from_circuit_shares_an_existing_circuit() {
    let circuit = Circuit::named("external", config());
    let (mut a, mut handle_a) =
        mock::spawn_layer::<Req, Req, _>(CircuitBreakerLayer::from_circuit(circuit.clone()));
    let (mut b, mut handle_b) =
        mock::spawn_layer::<Req, Req, _>(CircuitBreakerLayer::from_circuit(circuit.clone()));
    trip(&mut a, &mut handle_a, &circuit).await;
    assert_ready_ok!(ready(&mut b));
    let err = now(b.call("x")).unwrap_err();
    assert_eq!(rejection(&err).circuit(), "external");
    no_request(&mut handle_b);
}

// ===== 4. Exactly N probes under concurrent callers =====

#[tokio::test(start_paused = true)]
async fn exactly_half_open_max_calls_probes_are_admitted_across_clones() {
    let config = builder()
        .half_open_max_calls(2)
        .recovery_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (mut svc, mut handle, circuit) = setup(config);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(Duration::from_secs(1)).await;
    // Only the two probes may reach the inner service's call.
    handle.allow(2);

    let mut clones: Vec<Svc> = (0..5).map(|_| svc.clone()).collect();
    // Every caller decides before any of them calls.
    for c in &mut clones {
        assert_ready_ok!(ready(c));
    }
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    assert_eq!(circuit.stats().half_open_in_flight, 2);
    assert_eq!(circuit.stats().rejected_count, 3);

    const REQS: [Req; 5] = ["p0", "p1", "p2", "p3", "p4"];
    let mut futs: Vec<_> = clones
        .iter_mut()
        .zip(REQS)
        .map(|(c, r)| Some(c.call(r)))
        .collect();

    let mut sends = Vec::new();
    for expected in ["p0", "p1"] {
        sends.push(request(&mut handle, expected));
    }
    no_request(&mut handle);

    // The three others fail at once with HalfOpenFull.
    for fut in &mut futs[2..] {
        let err = now(fut.take().unwrap()).unwrap_err();
        let open = rejection(&err);
        assert_eq!(open.reason(), RejectReason::HalfOpenFull);
        // The retry hint: the probe deadline, the probes having been admitted just now.
        assert_eq!(
            open.retry_after(),
            Some(circuit.config().half_open_max_wait())
        );
    }

    // Both probes succeed: the circuit closes.
    for send in sends {
        send.send_response("ok");
    }
    let first = now(futs[0].take().unwrap()).unwrap();
    assert_eq!(first, "ok");
    assert_eq!(
        circuit.state(),
        CircuitState::HalfOpen,
        "one probe is not enough"
    );
    now(futs[1].take().unwrap()).unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
    assert_eq!(circuit.stats().half_open_in_flight, 0);
}

/// An inner service that counts calls and never answers.
#[derive(Clone)]
struct CountingPending(Arc<AtomicUsize>);

impl Service<u32> for CountingPending {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Pending<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    }
}

/// Many OS threads race for the probe slots of one half-open circuit, each with its own
/// clone. Half-open admission reads no clock, so the threads need no runtime.
#[test]
fn probe_slots_are_exact_under_a_thread_race() {
    const MAX: u32 = 4;
    const THREADS: usize = 16;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let config = builder()
        .half_open_max_calls(MAX)
        .recovery_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let cx = &mut Context::from_waker(Waker::noop());

    // Bring the circuit to HalfOpen on the paused clock, holding one probe. The circuit
    // is made inside the runtime so that it reads the paused clock from the start.
    let (circuit, first, first_probe) = rt.block_on(async {
        let layer = CircuitBreakerLayer::new(config);
        let circuit = layer.circuit().clone();
        let mut first = layer.layer(CountingPending(calls.clone()));
        for _ in 0..2 {
            let out = circuit.call(async { Err::<(), _>(Boom("x")) }).await;
            assert!(out.is_err());
        }
        assert_eq!(circuit.state(), CircuitState::Open);
        advance(Duration::from_secs(1)).await;
        assert!(first.poll_ready(cx).is_ready());
        let probe = first.call(0);
        (circuit, first, probe)
    });
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let barrier = Barrier::new(THREADS);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let mut svc = first.clone();
                let barrier = &barrier;
                s.spawn(move || {
                    let cx = &mut Context::from_waker(Waker::noop());
                    barrier.wait();
                    assert!(svc.poll_ready(cx).is_ready());
                    let fut = svc.call(i as u32);
                    // Hold every future until all threads have decided.
                    barrier.wait();
                    fut
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(calls.load(Ordering::SeqCst), MAX as usize);
    assert_eq!(circuit.stats().half_open_in_flight, MAX);
    let mut rejected = 0;
    let cx = &mut Context::from_waker(Waker::noop());
    for fut in results {
        let mut fut = pin!(fut);
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            let err = out.unwrap_err();
            assert_eq!(rejection(&err).reason(), RejectReason::HalfOpenFull);
            rejected += 1;
        }
    }
    assert_eq!(rejected, THREADS + 1 - MAX as usize);
    // Every admitted probe future is gone now: their slots came back.
    drop(first_probe);
    assert_eq!(circuit.stats().half_open_in_flight, 0);
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
}

// ===== 5. Probe slots are given back =====

#[tokio::test(start_paused = true)]
async fn probe_slot_reserved_in_poll_ready_is_released_when_the_service_is_dropped() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    let mut a = svc.clone();
    let mut b = svc.clone();
    assert_ready_ok!(ready(&mut a));
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    assert_eq!(circuit.stats().half_open_in_flight, 1);
    // b decided while the slot was taken: its call is a rejection.
    assert_ready_ok!(ready(&mut b));
    let err = now(b.call("b")).unwrap_err();
    assert_eq!(rejection(&err).reason(), RejectReason::HalfOpenFull);

    drop(a);
    assert_eq!(circuit.stats().half_open_in_flight, 0);
    assert_eq!(circuit.state(), CircuitState::HalfOpen);

    // The slot is free again: the next caller is the probe.
    let fut = {
        assert_ready_ok!(ready(&mut b));
        b.call("b2")
    };
    assert_eq!(circuit.stats().half_open_in_flight, 1);
    request(&mut handle, "b2").send_response("ok");
    assert_eq!(now(fut).unwrap(), "ok");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_slot_is_released_when_inner_poll_ready_fails() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    handle.send_error(Boom("not ready"));
    let err = assert_ready_err!(ready(&mut svc));
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom("not ready")));
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    assert_eq!(circuit.stats().half_open_in_flight, 0);

    assert_eq!(succeed(&mut svc, &mut handle, "probe").await, "probe");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_future_frees_its_slot() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;
    let ignored_before = circuit.stats().ignored_count;

    let mut a = svc.clone();
    assert_ready_ok!(ready(&mut a));
    let fut = a.call("a");
    let send_a = request(&mut handle, "a");
    // Mid-flight: the inner call has started and not answered.
    let mut fut = task::spawn(fut);
    assert_pending!(fut.poll());
    assert_eq!(circuit.stats().half_open_in_flight, 1);

    drop(fut);
    let stats = circuit.stats();
    assert_eq!(stats.half_open_in_flight, 0);
    assert_eq!(stats.state, CircuitState::HalfOpen);
    assert_eq!(stats.ignored_count, ignored_before + 1);
    // A late answer to the dropped call changes nothing.
    send_a.send_response("late");

    let mut c = svc.clone();
    assert_eq!(succeed(&mut c, &mut handle, "c").await, "c");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_future_reopens_when_dropped_calls_are_failures() {
    let config = builder().dropped_call_is_failure(true).build().unwrap();
    let (mut svc, mut handle, circuit) = setup(config);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    assert_ready_ok!(ready(&mut svc));
    let fut = svc.call("a");
    let _send = request(&mut handle, "a");
    drop(fut);
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(circuit.stats().half_open_in_flight, 0);
    assert_ready_ok!(ready(&mut svc));
    let err = now(svc.call("b")).unwrap_err();
    assert_eq!(rejection(&err).reason(), RejectReason::Open);
    assert_eq!(rejection(&err).retry_after(), Some(RECOVERY));
}

// ===== 6. Probe outcomes =====

#[tokio::test(start_paused = true)]
async fn probe_success_closes_with_an_empty_window() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    assert_eq!(succeed(&mut svc, &mut handle, "probe").await, "probe");
    let stats = circuit.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!(stats.window.requests, 0);
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(stats.next_attempt_time, None);
    // Lifetime totals keep everything.
    assert_eq!((stats.failure_count, stats.success_count), (2, 1));

    // A fresh window: one failure does not re-open.
    fail(&mut svc, &mut handle, "one").await;
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens_for_a_new_break() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    let err = fail(&mut svc, &mut handle, "probe").await;
    // The probe's own error, not a rejection.
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom("probe")));
    assert_eq!(circuit.state(), CircuitState::Open);
    assert!(circuit.stats().next_attempt_time.is_some());

    assert_ready_ok!(ready(&mut svc));
    let err = now(svc.call("x")).unwrap_err();
    assert_eq!(rejection(&err).reason(), RejectReason::Open);
    assert_eq!(rejection(&err).retry_after(), Some(RECOVERY));
    no_request(&mut handle);

    // And the next break ends like the first.
    advance(RECOVERY).await;
    assert_eq!(succeed(&mut svc, &mut handle, "probe2").await, "probe2");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

// ===== 7. Backpressure mode =====

#[tokio::test(start_paused = true)]
async fn backpressure_waits_while_open_and_is_woken_when_the_break_ends() {
    let layer = CircuitBreakerLayer::named("bp", config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut spawned, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut spawned, &mut handle, &circuit).await;
    let svc = spawned.get_mut();

    {
        let mut ready = task::spawn(ServiceExt::<Req>::ready(&mut *svc));
        assert_pending!(ready.poll());
        advance(RECOVERY / 2).await;
        assert!(!ready.is_woken());
        assert_pending!(ready.poll());
        advance(RECOVERY / 2 + ms(1)).await;
        assert!(
            ready.is_woken(),
            "the end of the break must wake the waiter"
        );
        assert_ready_ok!(ready.poll());
    }
    // Admitted as a probe.
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    assert_eq!(circuit.stats().half_open_in_flight, 1);
    let fut = svc.call("probe");
    request(&mut handle, "probe").send_response("ok");
    assert_eq!(now(fut).unwrap(), "ok");
    assert_eq!(circuit.state(), CircuitState::Closed);
    // Waiting is not a rejection.
    assert_eq!(circuit.stats().rejected_count, 0);
}

#[tokio::test(start_paused = true)]
async fn backpressure_reset_wakes_a_waiter_on_a_forced_open_circuit() {
    let layer = CircuitBreakerLayer::new(config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    circuit.force_open();

    assert_pending!(ready(&mut svc));
    // Forced open has no timer: time alone never wakes it.
    advance(Duration::from_secs(3_600)).await;
    assert!(!svc.is_woken());
    assert_pending!(ready(&mut svc));

    circuit.reset();
    assert!(svc.is_woken(), "reset must wake the waiter");
    assert_ready_ok!(ready(&mut svc));
    let fut = svc.call("after reset");
    request(&mut handle, "after reset").send_response("ok");
    assert_eq!(now(fut).unwrap(), "ok");
    assert_eq!(circuit.stats().rejected_count, 0);
    assert_eq!(circuit.stats().success_count, 1);
}

#[tokio::test(start_paused = true)]
async fn backpressure_reset_wakes_a_waiter_on_a_tripped_circuit() {
    let layer = CircuitBreakerLayer::new(config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;

    assert_pending!(ready(&mut svc));
    circuit.reset();
    assert!(svc.is_woken());
    assert_ready_ok!(ready(&mut svc));
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn backpressure_waiter_is_woken_when_a_probe_slot_frees_up() {
    let layer = CircuitBreakerLayer::new(config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    let mut a = svc.clone();
    let mut b = svc.clone();
    assert_ready_ok!(ready(&mut a));
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    // The only slot is taken: b waits.
    assert_pending!(ready(&mut b));
    let fut = a.call("a");
    let _send = request(&mut handle, "a");
    assert!(!b.is_woken());

    drop(fut);
    assert!(b.is_woken(), "a freed probe slot must wake the waiter");
    assert_ready_ok!(ready(&mut b));
    assert_eq!(circuit.stats().half_open_in_flight, 1);
    let fut = b.call("b");
    request(&mut handle, "b").send_response("ok");
    assert_eq!(now(fut).unwrap(), "ok");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn backpressure_waiter_is_woken_when_the_probe_closes_the_circuit() {
    let layer = CircuitBreakerLayer::new(config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    let mut a = svc.clone();
    let mut b = svc.clone();
    assert_ready_ok!(ready(&mut a));
    assert_pending!(ready(&mut b));
    let fut = a.call("a");
    request(&mut handle, "a").send_response("ok");
    now(fut).unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
    assert!(b.is_woken());
    assert_ready_ok!(ready(&mut b));
}

// ===== 8. Fallbacks =====

type Counter = Arc<AtomicUsize>;

fn counting_inner(
    calls: &Counter,
) -> impl Service<String, Response = String, Error = Boom, Future: Send> + Clone + use<> {
    let calls = calls.clone();
    service_fn(move |req: String| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if req == "fail" {
                Err(Boom("fail"))
            } else {
                Ok(format!("inner {req}"))
            }
        }
    })
}

/// Compile-time check: the service keeps the inner error type.
fn error_type_is<S: Service<String, Error = Boom>>(_: &S) {}

#[tokio::test(start_paused = true)]
async fn fallback_fn_answers_rejections_with_the_inner_error_type() {
    let inner_calls = Counter::default();
    let fallback_calls = Counter::default();
    let layer = CircuitBreakerLayer::new(config()).fallback_fn({
        let fallback_calls = fallback_calls.clone();
        move |req: String| {
            fallback_calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Boom>(format!("fallback for {req}")) }
        }
    });
    let circuit = layer.circuit().clone();
    let mut svc = layer.layer(counting_inner(&inner_calls));
    error_type_is(&svc);

    // Closed: the inner service answers, the fallback is not used.
    let out: Result<String, Boom> = svc.ready().await.unwrap().call("a".into()).await;
    assert_eq!(out.unwrap(), "inner a");
    // Inner errors pass through with their own type and count.
    let out: Result<String, Boom> = svc.ready().await.unwrap().call("fail".into()).await;
    assert_eq!(out.unwrap_err(), Boom("fail"));
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 0);
    assert_eq!(inner_calls.load(Ordering::SeqCst), 2);

    // Trip it through the service: the failure is answered by the inner error, not the
    // fallback (the call was admitted).
    let out = svc.ready().await.unwrap().call("fail".into()).await;
    assert_eq!(out.unwrap_err(), Boom("fail"));
    assert_eq!(circuit.state(), CircuitState::Open);

    // Open: the fallback receives the request; the inner service is not called.
    let out = svc.ready().await.unwrap().call("profile".into()).await;
    assert_eq!(out.unwrap(), "fallback for profile");
    assert_eq!(inner_calls.load(Ordering::SeqCst), 3);
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 1);
    assert_eq!(circuit.stats().rejected_count, 1);

    // Forced open too.
    circuit.force_open();
    let out = svc.ready().await.unwrap().call("forced".into()).await;
    assert_eq!(out.unwrap(), "fallback for forced");
    assert_eq!(inner_calls.load(Ordering::SeqCst), 3);

    // Back to Closed: the fallback is not used again.
    circuit.reset();
    let out = svc.ready().await.unwrap().call("b".into()).await;
    assert_eq!(out.unwrap(), "inner b");
    assert_eq!(fallback_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn fallback_service_answers_rejections() {
    let inner_calls = Counter::default();
    let fallback = service_fn(|req: String| async move { Ok::<_, Boom>(format!("cached {req}")) });
    let layer = CircuitBreakerLayer::new(config()).fallback(fallback);
    let circuit = layer.circuit().clone();
    let svc = layer.layer(counting_inner(&inner_calls));
    error_type_is(&svc);

    assert_eq!(svc.clone().oneshot("a".into()).await.unwrap(), "inner a");
    circuit.force_open();
    assert_eq!(svc.clone().oneshot("b".into()).await.unwrap(), "cached b");
    assert_eq!(inner_calls.load(Ordering::SeqCst), 1);
    circuit.reset();
    assert_eq!(svc.oneshot("c".into()).await.unwrap(), "inner c");
}

#[tokio::test(start_paused = true)]
async fn fallback_does_not_poll_the_inner_service_when_open() {
    let layer = CircuitBreakerLayer::new(config())
        .fallback_fn(|req: Req| async move { Ok::<_, BoxError>(req) });
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    circuit.force_open();
    handle.allow(0);
    assert_ready_ok!(ready(&mut svc));
    assert_eq!(now(svc.call("echo")).unwrap(), "echo");
    no_request(&mut handle);
}

#[tokio::test(start_paused = true)]
async fn fallback_answers_half_open_full_rejections() {
    let inner_calls = Counter::default();
    let layer = CircuitBreakerLayer::new(config())
        .fallback_fn(|req: String| async move { Ok::<_, Boom>(format!("fallback for {req}")) });
    let circuit = layer.circuit().clone();
    let mut svc = layer.layer(counting_inner(&inner_calls));
    for _ in 0..2 {
        svc.ready()
            .await
            .unwrap()
            .call("fail".into())
            .await
            .unwrap_err();
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    advance(RECOVERY).await;

    let mut probe = svc.clone();
    std::future::poll_fn(|cx| probe.poll_ready(cx))
        .await
        .unwrap();
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    let out = svc.ready().await.unwrap().call("busy".into()).await;
    assert_eq!(out.unwrap(), "fallback for busy");
    assert_eq!(probe.call("probe".into()).await.unwrap(), "inner probe");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

// ===== 9. Inner errors and classifiers =====

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged_and_count_as_failures() {
    let (mut svc, mut handle, circuit) = setup(config());
    let err = fail(&mut svc, &mut handle, "db down").await;
    assert!(!err.is::<CircuitOpen>());
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom("db down")));
    let stats = circuit.stats();
    assert_eq!(stats.failure_count, 1);
    assert_eq!(stats.consecutive_failures, 1);
    assert!(stats.last_failure_time.is_some());

    // A typed error from a service_fn keeps its type and contents too.
    let svc = CircuitBreaker::new(
        service_fn(|_: ()| async {
            Err::<(), _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset by peer",
            ))
        }),
        config(),
    );
    let circuit = svc.circuit().clone();
    let err = svc.oneshot(()).await.unwrap_err();
    let io = err.downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(io.to_string(), "reset by peer");
    assert_eq!(circuit.stats().failure_count, 1);
}

#[tokio::test(start_paused = true)]
async fn custom_classifier_closure_is_honoured() {
    let layer =
        CircuitBreakerLayer::new(config()).classifier(|r: &Result<Req, BoxError>| match r {
            Ok(_) => Verdict::Success,
            // The dependency answered "not found": healthy.
            Err(e) if e.downcast_ref::<Boom>() == Some(&Boom("not found")) => Verdict::Success,
            // Cancelled by the caller: says nothing about the dependency.
            Err(e) if e.downcast_ref::<Boom>() == Some(&Boom("cancelled")) => Verdict::Ignored,
            Err(_) => Verdict::Failure,
        });
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);

    for _ in 0..5 {
        let err = fail(&mut svc, &mut handle, "not found").await;
        // The result is still passed on untouched.
        assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom("not found")));
    }
    for _ in 0..3 {
        fail(&mut svc, &mut handle, "cancelled").await;
    }
    let stats = circuit.stats();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.success_count, stats.failure_count), (5, 0));
    assert_eq!(stats.ignored_count, 3);

    fail(&mut svc, &mut handle, "real").await;
    fail(&mut svc, &mut handle, "cancelled").await;
    assert_eq!(
        circuit.state(),
        CircuitState::Closed,
        "ignored keeps the run"
    );
    fail(&mut svc, &mut handle, "real").await;
    assert_eq!(circuit.state(), CircuitState::Open);
}

// ===== 10. ServiceBuilder order =====

#[tokio::test(start_paused = true)]
async fn breaker_outside_timeout_counts_timeouts_as_failures() {
    let layer = CircuitBreakerLayer::new(config());
    let circuit = layer.circuit().clone();
    let (inner, mut handle) = mock::pair::<Req, Req>();
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .timeout(ms(800))
        .service(inner);

    for i in 1..=2 {
        let fut = svc.ready().await.unwrap().call("slow");
        // The inner service receives the call and never answers.
        let (_req, _send) = next(&mut handle);
        let mut fut = task::spawn(fut);
        assert_pending!(fut.poll());
        advance(ms(799)).await;
        assert_pending!(fut.poll());
        advance(ms(1)).await;
        let err = assert_ready_err!(fut.poll());
        assert!(err.is::<tower::timeout::error::Elapsed>(), "{err:?}");
        let stats = circuit.stats();
        assert_eq!(stats.failure_count, i);
        assert_eq!(stats.ignored_count, 0);
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    let err = svc.ready().await.unwrap().call("x").await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn breaker_inside_timeout_ignores_timed_out_calls_by_default() {
    let layer = CircuitBreakerLayer::new(config());
    let circuit = layer.circuit().clone();
    let (inner, mut handle) = mock::pair::<Req, Req>();
    let mut svc = ServiceBuilder::new()
        .timeout(ms(800))
        .layer(layer)
        .service(inner);

    for _ in 0..3 {
        let fut = svc.ready().await.unwrap().call("slow");
        let (_req, _send) = next(&mut handle);
        let mut fut = task::spawn(fut);
        assert_pending!(fut.poll());
        advance(ms(800)).await;
        let err = assert_ready_err!(fut.poll());
        assert!(err.is::<tower::timeout::error::Elapsed>(), "{err:?}");
    }
    let stats = circuit.stats();
    assert_eq!(stats.ignored_count, 3);
    assert_eq!(stats.failure_count, 0);
    assert_eq!(stats.total_requests, 0);
    assert_eq!(stats.state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_inside_timeout_counts_timed_out_calls_when_dropped_calls_are_failures() {
    let layer = CircuitBreakerLayer::new(builder().dropped_call_is_failure(true).build().unwrap());
    let circuit = layer.circuit().clone();
    let (inner, mut handle) = mock::pair::<Req, Req>();
    let mut svc = ServiceBuilder::new()
        .timeout(ms(800))
        .layer(layer)
        .service(inner);

    for _ in 0..2 {
        let fut = svc.ready().await.unwrap().call("slow");
        let (_req, _send) = next(&mut handle);
        let mut fut = task::spawn(fut);
        assert_pending!(fut.poll());
        advance(ms(800)).await;
        assert_ready_err!(fut.poll());
    }
    let stats = circuit.stats();
    assert_eq!(stats.failure_count, 2);
    assert_eq!(stats.ignored_count, 0);
    assert_eq!(stats.state, CircuitState::Open);
}

// ===== 11. call without poll_ready =====

#[test]
#[should_panic(expected = "poll_ready must be called first")]
fn call_without_poll_ready_panics() {
    let mut svc = CircuitBreaker::new(
        service_fn(|r: u8| async move { Ok::<_, BoxError>(r) }),
        config(),
    );
    drop(svc.call(1));
}

#[test]
#[should_panic(expected = "poll_ready must be called first")]
fn readiness_is_used_up_by_one_call() {
    let mut svc = CircuitBreaker::new(
        service_fn(|r: u8| async move { Ok::<_, BoxError>(r) }),
        config(),
    );
    let cx = &mut Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(cx).is_ready());
    let _first = svc.call(1);
    let _second = svc.call(2);
}

// ===== 12. Behind a Buffer =====

#[tokio::test(start_paused = true)]
async fn works_behind_a_buffer_without_latching_errors() {
    let layer = CircuitBreakerLayer::named("buffered", config());
    let circuit = layer.circuit().clone();
    let inner_calls = Counter::default();
    let svc = Buffer::new(layer.layer(counting_inner(&inner_calls)), 16);
    let call = |req: &str| svc.clone().oneshot(req.to_string());

    // Trip through the buffer: the inner errors arrive unchanged.
    for _ in 0..2 {
        let err = call("fail").await.unwrap_err();
        assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom("fail")));
    }
    assert_eq!(circuit.state(), CircuitState::Open);

    // Many tasks, one clone each: all rejected.
    let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(call("ok"))).collect();
    for t in tasks {
        let err = t.await.unwrap().unwrap_err();
        let open = rejection(&err);
        assert_eq!(open.reason(), RejectReason::Open);
        assert_eq!(open.circuit(), "buffered");
    }
    assert_eq!(inner_calls.load(Ordering::SeqCst), 2);
    assert_eq!(circuit.stats().rejected_count, 8);

    // Nothing was latched: after a reset the same buffer works.
    circuit.reset();
    assert_eq!(call("ok").await.unwrap(), "inner ok");

    // Forced open and back, and the break ending on its own.
    circuit.force_open();
    let err = call("ok").await.unwrap_err();
    assert_eq!(rejection(&err).reason(), RejectReason::ForcedOpen);
    circuit.reset();
    for _ in 0..2 {
        call("fail").await.unwrap_err();
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    advance(RECOVERY).await;
    assert_eq!(call("probe").await.unwrap(), "inner probe");
    assert_eq!(circuit.state(), CircuitState::Closed);
    assert_eq!(inner_calls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn backpressure_behind_a_buffer_waits_then_serves() {
    let layer = CircuitBreakerLayer::new(config()).backpressure();
    let circuit = layer.circuit().clone();
    let svc: Buffer<Req, _> = Buffer::new(
        layer.layer(service_fn(|req: Req| async move { Ok::<_, Boom>(req) })),
        16,
    );
    circuit.force_open();
    let mut call = task::spawn(svc.clone().oneshot("waiting"));
    assert_pending!(call.poll());
    // Let the buffer worker run and park on the breaker's poll_ready.
    tokio::task::yield_now().await;
    assert_pending!(call.poll());
    circuit.reset();
    let mut out = None;
    for _ in 0..10 {
        tokio::task::yield_now().await;
        if let Poll::Ready(o) = call.poll() {
            out = Some(o);
            break;
        }
    }
    let out = out.expect("the buffered call completes after the reset");
    assert_eq!(out.unwrap(), "waiting");
    assert_eq!(circuit.stats().rejected_count, 0);
}

// ===== Extra: state-machine semantics seen through the service =====

#[tokio::test(start_paused = true)]
async fn slow_successes_are_returned_untouched_and_count_for_tripping() {
    let (mut svc, mut handle, circuit) = setup(config());
    for i in 0..2 {
        assert_ready_ok!(ready(&mut svc));
        let fut = svc.call("slow");
        let send = request(&mut handle, "slow");
        // Longer than expected_response_time (5 s).
        advance(Duration::from_secs(6)).await;
        send.send_response("slow but fine");
        assert_eq!(now(fut).unwrap(), "slow but fine");
        assert_eq!(circuit.stats().slow_count, i + 1);
    }
    let stats = circuit.stats();
    assert_eq!(stats.success_count, 2);
    assert_eq!(stats.state, CircuitState::Open, "two slow calls trip it");
}

#[tokio::test(start_paused = true)]
async fn slow_successes_are_neutral_when_configured() {
    let (mut svc, mut handle, circuit) =
        setup(builder().slow_call_is_failure(false).build().unwrap());
    for _ in 0..3 {
        assert_ready_ok!(ready(&mut svc));
        let fut = svc.call("slow");
        let send = request(&mut handle, "slow");
        advance(Duration::from_secs(6)).await;
        send.send_response("ok");
        now(fut).unwrap();
    }
    let stats = circuit.stats();
    assert_eq!(stats.slow_count, 3);
    assert_eq!(stats.state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_the_trip_is_late_and_changes_no_state() {
    let (mut svc, mut handle, circuit) = setup(config());
    // A call admitted while Closed, still in flight.
    let mut early = svc.clone();
    assert_ready_ok!(ready(&mut early));
    let early_fut = early.call("early");
    let early_send = request(&mut handle, "early");

    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;
    // The probe is admitted.
    assert_ready_ok!(ready(&mut svc));
    let probe_fut = svc.call("probe");
    let probe_send = request(&mut handle, "probe");
    assert_eq!(circuit.state(), CircuitState::HalfOpen);

    // The early call fails now: counted, but it neither re-opens nor takes the slot.
    early_send.send_error(Boom("early"));
    assert_eq!(
        now(early_fut).unwrap_err().downcast_ref::<Boom>(),
        Some(&Boom("early"))
    );
    let stats = circuit.stats();
    assert_eq!(stats.state, CircuitState::HalfOpen);
    assert_eq!(stats.failure_count, 3);
    assert_eq!(stats.half_open_in_flight, 1);

    probe_send.send_response("ok");
    now(probe_fut).unwrap();
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_gives_its_slot_back() {
    let layer =
        CircuitBreakerLayer::new(config()).classifier(|r: &Result<Req, BoxError>| match r {
            Ok(_) => Verdict::Success,
            Err(e) if e.downcast_ref::<Boom>() == Some(&Boom("cancelled")) => Verdict::Ignored,
            Err(_) => Verdict::Failure,
        });
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    fail(&mut svc, &mut handle, "cancelled").await;
    let stats = circuit.stats();
    assert_eq!(stats.state, CircuitState::HalfOpen);
    assert_eq!(stats.half_open_in_flight, 0);
    assert_eq!(stats.ignored_count, 1);
    assert_eq!(succeed(&mut svc, &mut handle, "probe").await, "probe");
    assert_eq!(circuit.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_admits_and_counts_would_be_rejections() {
    let (mut svc, mut handle, circuit) = setup(builder().metrics_only(true).build().unwrap());
    trip(&mut svc, &mut handle, &circuit).await;
    handle.allow(10);
    for _ in 0..3 {
        assert_eq!(succeed(&mut svc, &mut handle, "shadow").await, "shadow");
    }
    let stats = circuit.stats();
    assert!(stats.metrics_only);
    assert_eq!(stats.state, CircuitState::Open);
    assert_eq!(stats.rejected_count, 3);
}

#[tokio::test(start_paused = true)]
async fn metrics_only_counts_would_be_rejections_in_backpressure_mode_too() {
    let layer =
        CircuitBreakerLayer::new(builder().metrics_only(true).build().unwrap()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;
    for _ in 0..3 {
        // Shadow mode never waits: the call goes through at once.
        assert_eq!(succeed(&mut svc, &mut handle, "shadow").await, "shadow");
    }
    assert_eq!(circuit.state(), CircuitState::Open);
    assert_eq!(
        circuit.stats().rejected_count,
        3,
        "stats docs: rejected_count counts calls that, in shadow mode, would have been rejected"
    );
}

// ===== hung half-open probes (issue 11, section 2) =====

/// One call through `svc`: `true` when it reached the mock (which answers "ok" at once),
/// `false` when the circuit rejected it.
fn admitted(svc: &mut Svc, handle: &mut Handle, req: Req) -> bool {
    assert_ready_ok!(ready(svc));
    let fut = svc.call(req);
    match handle.poll_request() {
        Poll::Ready(Some((_, send))) => {
            send.send_response(req);
            assert_eq!(now(fut).unwrap(), req);
            true
        }
        Poll::Pending => {
            let err = now(fut).unwrap_err();
            rejection(&err);
            false
        }
        Poll::Ready(None) => panic!("the mock is closed"),
    }
}

/// Default (reject) mode, a probe whose future never completes and is never dropped:
/// on c3fdb08 300 of 300 later calls (at +1 min, +1 h, +30 days) were rejected; now
/// the first call after the probe deadline becomes a fresh probe and closes the circuit.
#[tokio::test(start_paused = true)]
async fn a_hung_probe_does_not_wedge_the_layer() {
    let (mut svc, mut handle, circuit) = setup(config());
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;
    assert_ready_ok!(ready(&mut svc));
    let hung = svc.call("hung probe");
    let _send = request(&mut handle, "hung probe");
    assert_eq!(circuit.state(), CircuitState::HalfOpen);

    let mut rejected = 0;
    for wait in [60, 3_600, 30 * 24 * 3_600] {
        advance(Duration::from_secs(wait)).await;
        for _ in 0..100 {
            rejected += usize::from(!admitted(&mut svc, &mut handle, "healthy"));
            // The mock's channel counts against tokio's cooperative budget.
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(rejected, 0, "calls rejected out of 300");
    assert_eq!(circuit.state(), CircuitState::Closed);
    drop(hung);
    assert_eq!(circuit.state(), CircuitState::Closed, "its drop is late");
}

/// Backpressure mode: on c3fdb08 a waiter behind a hung probe stayed `Pending` for 30
/// days, never woken. Now it is woken at the probe deadline, waits out the break the
/// timed-out probe caused, and is admitted as the fresh probe.
#[tokio::test(start_paused = true)]
async fn a_backpressure_waiter_behind_a_hung_probe_is_woken_at_the_probe_deadline() {
    let layer = CircuitBreakerLayer::named("bp", config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;

    let mut a = svc.clone();
    let mut b = svc.clone();
    assert_ready_ok!(ready(&mut a));
    let hung = a.call("hung probe");
    let _send = request(&mut handle, "hung probe");
    assert_pending!(ready(&mut b));

    // The derived probe deadline is the recovery timeout after the probe's admission.
    advance(RECOVERY - ms(1)).await;
    assert!(!b.is_woken());
    advance(ms(1)).await;
    assert!(b.is_woken(), "the probe deadline must wake the waiter");
    // Re-opened for a break, dated from the deadline: wait it out.
    assert_pending!(ready(&mut b));
    assert_eq!(circuit.state(), CircuitState::Open);
    advance(RECOVERY).await;
    assert!(b.is_woken(), "the end of the break must wake the waiter");
    assert_ready_ok!(ready(&mut b));
    assert_eq!(circuit.state(), CircuitState::HalfOpen);
    let fut = b.call("fresh probe");
    request(&mut handle, "fresh probe").send_response("ok");
    assert_eq!(now(fut).unwrap(), "ok");
    assert_eq!(circuit.state(), CircuitState::Closed);
    assert_eq!(circuit.stats().rejected_count, 0);
    drop(hung);
}

#[tokio::test(start_paused = true)]
async fn a_backpressure_waiter_behind_a_hung_probe_is_admitted_after_30_days() {
    let layer = CircuitBreakerLayer::named("bp", config()).backpressure();
    let circuit = layer.circuit().clone();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Req, _>(layer);
    trip(&mut svc, &mut handle, &circuit).await;
    advance(RECOVERY).await;
    let mut a = svc.clone();
    let mut b = svc.clone();
    assert_ready_ok!(ready(&mut a));
    let _hung = a.call("hung probe");
    let _send = request(&mut handle, "hung probe");
    assert_pending!(ready(&mut b));

    advance(Duration::from_secs(30 * 24 * 3_600)).await;
    assert!(b.is_woken(), "woken within 30 days");
    assert_ready_ok!(ready(&mut b));
}
