//! Stress: both cores, hundreds of thousands of calls through clones of one
//! `CircuitBreaker` service, random outcomes, a dependency whose health flaps.
//!
//! Nothing here depends on timing. The recovery timeout is 1 ms of real time so the
//! circuit really flaps between Closed, Open and HalfOpen while the threads race, but the
//! assertions are about counts and orders only:
//!
//! * every call's fate seen by its caller (success, failure, ignored, dropped, rejected)
//!   adds up exactly to the circuit's lifetime stats: no lost and no double-counted
//!   outcome under contention;
//! * the transition events form one unbroken chain (each `from` is the previous `to`),
//!   never a same-state event, and the last one names the state the circuit is in;
//! * no sampled snapshot ever shows more probes in flight than `half_open_max_calls`;
//! * afterwards, on a paused clock, a healthy dependency closes the circuit within
//!   `half_open_max_calls` calls of the break ending, and a failing one opens it.
//!
//! `TCB_STRESS_CALLS` sets the number of calls per thread (default 250 000).

use std::future::{Future, poll_fn};
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::error::CircuitOpen;
use tower_circuit_breaker::stats::TransitionEvent;
use tower_circuit_breaker::{
    BoxError, Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};

const THREADS: usize = 2;
const HALF_OPEN_MAX: u32 = 2;
/// Calls between two flips of the dependency's health.
const FLAP_EVERY: u64 = 15_000;

/// What the caller asks the dependency to do.
#[derive(Clone, Copy, Debug)]
enum Ask {
    Succeed,
    Fail,
    /// Answer with something the classifier ignores.
    Ignore,
    /// Never answer: the caller drops the future mid-flight.
    Hang,
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}
impl std::error::Error for Boom {}

/// What each thread saw.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    ok: u64,
    failed: u64,
    ignored: u64,
    rejected: u64,
    max_in_flight: u32,
}

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .minimum_request_count(5)
        .recovery_timeout(Duration::from_millis(1))
        .half_open_max_calls(HALF_OPEN_MAX)
        .monitoring_window(Duration::from_secs(1))
        .window_buckets(10)
        // Nothing in this test is slow on purpose; a preempted thread must not be either.
        .expected_response_time(Duration::from_secs(3600))
        .build()
        .expect("valid config")
}

fn classify(r: &Result<Verdict, BoxError>) -> Verdict {
    match r {
        Ok(v) => *v,
        Err(_) => Verdict::Failure,
    }
}

fn calls_per_thread() -> u64 {
    std::env::var("TCB_STRESS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(250_000)
}

#[test]
fn counts_add_up_exactly_under_two_cores_and_flapping_health() {
    let layer = CircuitBreakerLayer::named("stress", config())
        .classifier(classify as fn(&Result<Verdict, BoxError>) -> Verdict);
    let circuit = layer.circuit().clone();
    let events: Arc<Mutex<Vec<TransitionEvent>>> = Arc::default();
    let sink = events.clone();
    circuit.on_transition(move |e| sink.lock().unwrap().push(e.clone()));

    // Inside the dependency, whenever the circuit is half-open, look at how many probes
    // are out: never more than configured.
    let max_probes_seen = Arc::new(AtomicU32::new(0));
    let (probe_watch, probes_seen) = (circuit.clone(), max_probes_seen.clone());
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |ask: Ask| {
            if probe_watch.state() == CircuitState::HalfOpen {
                probes_seen.fetch_max(probe_watch.stats().half_open_in_flight, Ordering::Relaxed);
            }
            Box::pin(async move {
                match ask {
                    Ask::Succeed => Ok(Verdict::Success),
                    Ask::Ignore => Ok(Verdict::Ignored),
                    Ask::Fail => Err(BoxError::from(Boom)),
                    Ask::Hang => std::future::pending().await,
                }
            }) as Pin<Box<dyn Future<Output = Result<Verdict, BoxError>> + Send>>
        });

    let n = calls_per_thread();
    let issued = Arc::new(AtomicU64::new(0));
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let mut svc = svc.clone();
                let issued = issued.clone();
                let circuit = circuit.clone();
                s.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678));
                    let mut seen = Seen::default();
                    tokio_test::block_on(async {
                        for i in 0..n {
                            let k = issued.fetch_add(1, Ordering::Relaxed);
                            let healthy = (k / FLAP_EVERY) % 2 == 0;
                            let roll = rng.below(1000);
                            let ask = match (healthy, roll) {
                                (_, 0..=4) => Ask::Hang,
                                (_, 5..=14) => Ask::Ignore,
                                (true, 15..=34) | (false, 15..=959) => Ask::Fail,
                                _ => Ask::Succeed,
                            };
                            let ready = svc.ready().await.expect("poll_ready never fails");
                            let mut fut = ready.call(ask);
                            let polled =
                                poll_fn(|cx| Poll::Ready(Pin::new(&mut fut).poll(cx))).await;
                            match polled {
                                Poll::Pending => {
                                    // Admitted and hanging: drop it mid-flight (ignored by
                                    // the default dropped-call policy).
                                    assert!(matches!(ask, Ask::Hang));
                                    drop(fut);
                                    seen.ignored += 1;
                                }
                                Poll::Ready(Err(e)) if e.is::<CircuitOpen>() => seen.rejected += 1,
                                Poll::Ready(Err(_)) => seen.failed += 1,
                                Poll::Ready(Ok(Verdict::Ignored)) => seen.ignored += 1,
                                Poll::Ready(Ok(_)) => seen.ok += 1,
                            }
                            if i % 512 == 0 {
                                let s = circuit.stats();
                                seen.max_in_flight = seen.max_in_flight.max(s.half_open_in_flight);
                            }
                        }
                    });
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let total = seen.iter().fold(Seen::default(), |a, s| Seen {
        ok: a.ok + s.ok,
        failed: a.failed + s.failed,
        ignored: a.ignored + s.ignored,
        rejected: a.rejected + s.rejected,
        max_in_flight: a.max_in_flight.max(s.max_in_flight),
    });
    let max_in_flight = total
        .max_in_flight
        .max(max_probes_seen.load(Ordering::Relaxed));
    let stats = circuit.stats();
    assert_eq!(
        total.ok + total.failed + total.ignored + total.rejected,
        n * THREADS as u64
    );
    assert_eq!(stats.success_count, total.ok, "successes: {stats:?}");
    assert_eq!(stats.failure_count, total.failed, "failures: {stats:?}");
    assert_eq!(stats.total_requests, total.ok + total.failed);
    assert_eq!(stats.ignored_count, total.ignored, "ignored: {stats:?}");
    assert_eq!(stats.rejected_count, total.rejected, "rejected: {stats:?}");
    assert!(
        max_in_flight <= HALF_OPEN_MAX,
        "{max_in_flight} probes in flight"
    );
    let chain = check_chain(&events.lock().unwrap(), circuit.state());
    assert!(
        chain.opened > 10,
        "the circuit must really have flapped: {chain:?}"
    );

    // The end state the final health implies, on a paused clock.
    let (closed_after, opened_after) = settle(&circuit);
    let chain = check_chain(&events.lock().unwrap(), circuit.state());
    // Straight to stderr, past the test harness capture, so CI logs show it.
    let _ = writeln!(
        std::io::stderr(),
        "stress: {} calls on {THREADS} threads (ok {}, failed {}, ignored/dropped {}, rejected {}); \
         {} transitions ({} openings); max probes in flight seen {}; healthy closed after {closed_after} calls, failing opened after {opened_after}",
        n * THREADS as u64,
        total.ok,
        total.failed,
        total.ignored,
        total.rejected,
        chain.transitions,
        chain.opened,
        max_in_flight,
    );
}

#[derive(Debug)]
struct Chain {
    transitions: usize,
    opened: usize,
}

/// Every event follows from the one before, none is a same-state event, and the last one
/// names the current state.
fn check_chain(events: &[TransitionEvent], now: CircuitState) -> Chain {
    let mut at = CircuitState::Closed;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.from, at, "event #{i} does not follow the one before");
        assert_ne!(e.from, e.to, "event #{i} is a same-state event");
        at = e.to;
    }
    assert_eq!(
        at, now,
        "the last event names another state than the circuit's"
    );
    Chain {
        transitions: events.len(),
        opened: events.iter().filter(|e| e.to == CircuitState::Open).count(),
    }
}

/// A healthy dependency closes the circuit within `half_open_max_calls` calls once the
/// break is over; then a failing one opens it. Returns how many calls each took.
fn settle(circuit: &Circuit) -> (u32, u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        // An hour later, as a frozen process thawing would see it: past any break. (The
        // circuit ran on the real clock until now; it notices tokio's clock jump on its
        // next cold-path read and follows it from then on.)
        tokio::time::advance(Duration::from_secs(3600)).await;
        let mut healthy = 0;
        while circuit.state() != CircuitState::Closed {
            healthy += 1;
            assert!(healthy <= HALF_OPEN_MAX, "healthy probes did not close it");
            circuit
                .call(async { Ok::<_, Boom>(()) })
                .await
                .expect("a healthy probe is admitted and succeeds");
        }
        let mut failing = 0;
        while circuit.state() != CircuitState::Open {
            failing += 1;
            assert!(failing <= 5, "failures did not open it");
            assert!(circuit.call(async { Err::<(), _>(Boom) }).await.is_err());
        }
        (healthy, failing)
    })
}
