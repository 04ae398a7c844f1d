//! Loom model checking of the circuit's atomics: the packed state word (admission, probe
//! slots, generations), the outcome counters and the transition lock, through the public
//! API (`Circuit::call`, `reset`, `force_open`, `stats`, listeners).
//!
//! Run (a separate target dir keeps the normal build cache intact):
//!
//! ```text
//! RUSTFLAGS="--cfg tcb_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p tower-circuit-breaker-loom --release --test loom
//! ```
//!
//! Under `--cfg tcb_loom` the crate's `primitives` module (`src/primitives.rs`) hands out loom's atomics and mutexes,
//! so loom explores every interleaving of them (up to the preemption bound) and fails on
//! a deadlock, a panic or a broken assertion in any of them.
//!
//! What loom cannot reach, and how it is handled: the clock. The circuit reads tokio's
//! clock; each model runs inside a paused tokio runtime's context (loom's threads are
//! coroutines on the calling OS thread, so they all see it), which makes every read
//! deterministic and lets a test move time with `tokio::time::advance`. Thread-local
//! stripe selection in the window is plain `std` (every loom thread writes the same
//! stripe), and process-wide statics are not modelled.
#![cfg(tcb_loom)]

use std::future::Future;
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use tower_circuit_breaker::error::{CallError, RejectReason};
use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};

use CircuitState::{Closed, HalfOpen, Open};

static INTERLEAVINGS: StdAtomicU64 = StdAtomicU64::new(0);

const RECOVERY: Duration = Duration::from_secs(1);

/// Runs `f` under loom with a bounded number of preemptions (`LOOM_MAX_PREEMPTIONS`,
/// default 2) inside a paused tokio clock, and prints how many interleavings it explored.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    model_bounded(name, 2, f)
}

/// [`model`] with another default preemption bound (`LOOM_MAX_PREEMPTIONS` still wins).
fn model_bounded(name: &str, default_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _clock = rt.enter();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(default_bound);
    }
    let bound = builder.preemption_bound;
    let runs = Arc::new(StdAtomicU64::new(0));
    let counter = runs.clone();
    builder.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        f();
    });
    let n = runs.load(StdOrdering::Relaxed);
    let total = INTERLEAVINGS.fetch_add(n, StdOrdering::Relaxed) + n;
    eprintln!(
        "loom: {name}: {n} interleavings explored (preemption bound {bound:?}; {total} so far in this binary)"
    );
}

/// Runs a future that completes on its first poll (every operation here is ready at
/// once; the one that is not is polled by hand).
fn ready<F: Future>(f: F) -> F::Output {
    match std::pin::pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the call did not complete on its first poll"),
    }
}

/// Moves the paused tokio clock (the `advance` future does its work on its first poll).
fn advance(d: Duration) {
    let mut f = std::pin::pin!(tokio::time::advance(d));
    let _ = f.as_mut().poll(&mut Context::from_waker(Waker::noop()));
}

fn config(threshold: u32, half_open_max: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(threshold)
        .minimum_request_count(0)
        .recovery_timeout(RECOVERY)
        // Nothing is slow: the clock does not move while the threads run.
        .expected_response_time(Duration::from_secs(3600))
        .monitoring_window(Duration::from_secs(1000))
        .window_buckets(1)
        .half_open_max_calls(half_open_max)
        .build()
        .unwrap()
}

type Events = Arc<StdMutex<Vec<(CircuitState, CircuitState)>>>;

fn circuit(threshold: u32, half_open_max: u32) -> (Circuit, Events) {
    let c = Circuit::named("loom", config(threshold, half_open_max));
    let events: Events = Arc::default();
    let sink = events.clone();
    c.on_transition(move |e| sink.lock().unwrap().push((e.from, e.to)));
    (c, events)
}

/// A circuit opened by one failure whose break is over: the next caller moves it to
/// HalfOpen.
fn tripped(half_open_max: u32) -> (Circuit, Events) {
    let (c, events) = circuit(1, half_open_max);
    assert!(ready(c.call(async { Err::<(), _>(()) })).is_err());
    assert_eq!(c.state(), Open);
    advance(RECOVERY);
    (c, events)
}

/// Every event follows from the one before, none is a same-state event, and the last
/// names the current state.
fn assert_chain(events: &Events, now: CircuitState) -> Vec<(CircuitState, CircuitState)> {
    let events = events.lock().unwrap().clone();
    let mut at = Closed;
    for &(from, to) in &events {
        assert_eq!(from, at, "broken chain: {events:?}");
        assert_ne!(from, to, "same-state event: {events:?}");
        at = to;
    }
    assert_eq!(at, now, "last event is not the current state: {events:?}");
    events
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    Failed,
    Rejected(RejectReason),
}

fn fate<T>(r: Result<T, CallError<()>>) -> Fate {
    match r {
        Ok(_) => Fate::Ok,
        Err(CallError::Inner(())) => Fate::Failed,
        Err(CallError::Rejected(open)) => Fate::Rejected(open.reason()),
    }
}

/// A call whose operation counts the calls inside it and keeps the highest count.
fn counted_call(c: &Circuit, inside: &AtomicUsize, most: &AtomicUsize, ok: bool) -> Fate {
    fate(ready(c.call(async {
        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(n, Ordering::SeqCst);
        thread::yield_now();
        inside.fetch_sub(1, Ordering::SeqCst);
        if ok { Ok(()) } else { Err(()) }
    })))
}

/// Threads race the Open → HalfOpen transition: at most `half_open_max_calls` probes are
/// inside the dependency at once, exactly one `Open → HalfOpen` and one
/// `HalfOpen → Closed` event, and every call is counted once.
fn probes_race(threads: usize, half_open_max: u32) {
    let (c, events) = tripped(half_open_max);
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (c, inside, most) = (c.clone(), inside.clone(), most.clone());
            thread::spawn(move || counted_call(&c, &inside, &most, true))
        })
        .collect();
    let fates: Vec<Fate> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        most.load(Ordering::SeqCst) <= half_open_max as usize,
        "{} probes at once",
        most.load(Ordering::SeqCst)
    );
    let ok = fates.iter().filter(|f| **f == Fate::Ok).count() as u64;
    let rejected = fates.len() as u64 - ok;
    assert!(
        fates
            .iter()
            .all(|f| matches!(f, Fate::Ok | Fate::Rejected(RejectReason::HalfOpenFull))),
        "{fates:?}"
    );
    let s = c.stats();
    assert_eq!((s.success_count, s.rejected_count), (ok, rejected), "{s:?}");
    assert_eq!(s.half_open_in_flight, 0);
    // Enough probes passed to close, or some were turned away and the circuit waits for
    // more: never wedged, the next caller decides.
    if c.state() == HalfOpen {
        assert!(rejected > 0);
        while c.state() == HalfOpen {
            assert_eq!(fate(ready(c.call(async { Ok::<_, ()>(()) }))), Fate::Ok);
        }
    }
    let chain = assert_chain(&events, c.state());
    assert_eq!(
        chain,
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)],
        "one event per real transition"
    );
}

#[test]
fn two_threads_race_for_the_only_probe() {
    model("two threads race for the only probe", || probes_race(2, 1));
}

#[test]
fn two_threads_race_for_two_probes() {
    model("two threads race for two probes", || probes_race(2, 2));
}

#[test]
fn three_threads_race_for_two_probes() {
    // Three threads multiply the interleavings: bound 1 by default keeps CI in seconds;
    // `LOOM_MAX_PREEMPTIONS=2` explores about 540 000 (a few minutes).
    model_bounded("three threads race for two probes", 1, || probes_race(3, 2));
}

/// One probe fails while another succeeds: the circuit ends Open whatever the order (a
/// late success never closes a re-opened circuit; a caller after the failure is turned
/// away), and never more probes than allowed.
#[test]
fn a_failed_and_a_passed_probe_end_open() {
    model("a failed and a passed probe end open", || {
        let (c, events) = tripped(2);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = [true, false]
            .into_iter()
            .map(|ok| {
                let (c, inside, most) = (c.clone(), inside.clone(), most.clone());
                thread::spawn(move || counted_call(&c, &inside, &most, ok))
            })
            .collect();
        let fates: Vec<Fate> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(
            fates[1],
            Fate::Failed,
            "the failing caller is a probe: {fates:?}"
        );
        assert!(
            matches!(fates[0], Fate::Ok | Fate::Rejected(RejectReason::Open)),
            "{fates:?}"
        );
        assert_eq!(c.state(), Open, "{fates:?}");
        let s = c.stats();
        let ok = u64::from(fates[0] == Fate::Ok);
        assert_eq!(
            (s.success_count, s.failure_count, s.rejected_count),
            (ok, 2, 1 - ok),
            "{s:?}"
        );
        let chain = assert_chain(&events, Open);
        assert_eq!(chain, [(Closed, Open), (Open, HalfOpen), (HalfOpen, Open)]);
    });
}

/// A probe dropped mid-flight gives its slot back while another caller races for it:
/// whoever was turned away, the next caller is admitted (never wedged in HalfOpen).
#[test]
fn a_dropped_probe_gives_its_slot_back_under_a_race() {
    model("a dropped probe gives its slot back under a race", || {
        let (c, events) = tripped(1);
        let dropper = {
            let c = c.clone();
            thread::spawn(move || {
                let mut call = Box::pin(c.call(std::future::pending::<Result<(), ()>>()));
                let admitted = call
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending();
                drop(call);
                admitted
            })
        };
        let racer = {
            let c = c.clone();
            thread::spawn(move || fate(ready(c.call(async { Ok::<_, ()>(()) }))))
        };
        let dropped_admitted = dropper.join().unwrap();
        let raced = racer.join().unwrap();
        assert!(
            dropped_admitted || raced == Fate::Ok,
            "nobody got the probe"
        );
        assert_eq!(c.stats().half_open_in_flight, 0);
        if c.state() != Closed {
            assert_eq!(c.state(), HalfOpen);
            assert_eq!(
                fate(ready(c.call(async { Ok::<_, ()>(()) }))),
                Fate::Ok,
                "wedged in HalfOpen"
            );
        }
        assert_eq!(c.state(), Closed);
        assert_chain(&events, Closed);
    });
}

/// Failures race in Closed: no count is lost, and the circuit opens exactly once.
///
/// Regression test for defect 2, found by this model: with `failure_threshold` 2, two
/// concurrent failures could leave the circuit Closed. The thread whose increment of the
/// consecutive run reached the threshold checked the window before the other thread had
/// recorded its outcome there, saw `min(run 2, window failures 1) < 2`, and did not trip;
/// the other thread saw run 1 and did not check. Fixed on main (559a79d): the outcome is
/// recorded in the window before the run is extended, with `AcqRel`.
#[test]
fn concurrent_failures_open_exactly_once() {
    model("concurrent failures open exactly once", || {
        let (c, events) = circuit(2, 1);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || fate(ready(c.call(async { Err::<(), _>(()) }))))
            })
            .collect();
        let fates: Vec<Fate> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(fates, [Fate::Failed, Fate::Failed]);
        let s = c.stats();
        assert_eq!((s.failure_count, s.total_requests), (2, 2), "{s:?}");
        assert_eq!(c.state(), Open, "two failures, threshold 2: {s:?}");
        assert_eq!(assert_chain(&events, Open), [(Closed, Open)]);
    });
}

/// A success and a failure race with a manual `reset` and `force_open`: no deadlock, no
/// panic, an unbroken chain of events, and every outcome counted.
#[test]
fn manual_control_races_with_outcomes() {
    model("manual control races with outcomes", || {
        let (c, events) = circuit(1, 1);
        let caller = {
            let c = c.clone();
            thread::spawn(move || {
                let a = fate(ready(c.call(async { Err::<(), _>(()) })));
                let b = fate(ready(c.call(async { Ok::<_, ()>(()) })));
                [a, b]
            })
        };
        let operator = {
            let c = c.clone();
            thread::spawn(move || {
                c.force_open();
                c.reset();
            })
        };
        let fates = caller.join().unwrap();
        operator.join().unwrap();
        let s = c.stats();
        let done = fates
            .iter()
            .filter(|f| !matches!(f, Fate::Rejected(_)))
            .count() as u64;
        let rejected = fates.len() as u64 - done;
        assert_eq!(s.total_requests, done, "{fates:?} {s:?}");
        assert_eq!(s.rejected_count, rejected, "{fates:?} {s:?}");
        assert_chain(&events, c.state());
    });
}

/// An operation that is pending on its first poll and succeeds on the second.
struct PendingOnce(bool);

impl Future for PendingOnce {
    type Output = Result<(), ()>;
    fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// A probe that hung past the probe deadline finally succeeds while another caller
/// arrives: whichever wins, exactly one of them settles the half-open cycle (the probe
/// closes it, or the caller gives the probe up and becomes the fresh probe), a probe
/// whose slot has passed is never given up, and the circuit ends Closed with a valid
/// chain of events.
#[test]
fn a_hung_probe_finishing_races_a_caller_past_the_probe_deadline() {
    model(
        "a hung probe finishing races a caller past the deadline",
        || {
            let c = Circuit::named(
                "loom",
                config(1, 1)
                    .to_builder()
                    .half_open_max_wait(RECOVERY)
                    .build()
                    .unwrap(),
            );
            let events: Events = Arc::default();
            let sink = events.clone();
            c.on_transition(move |e| sink.lock().unwrap().push((e.from, e.to)));
            assert!(ready(c.call(async { Err::<(), _>(()) })).is_err());
            advance(RECOVERY);
            let owned = c.clone();
            let mut probe: std::pin::Pin<Box<dyn Future<Output = Fate> + Send>> =
                Box::pin(async move { fate(owned.call(PendingOnce(false)).await) });
            let mut cx = Context::from_waker(Waker::noop());
            assert!(probe.as_mut().poll(&mut cx).is_pending());
            assert_eq!(c.state(), HalfOpen);
            // Past the probe deadline and the break after it (dated from the deadline).
            advance(RECOVERY * 2);
            let finisher = thread::spawn(move || {
                match probe.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(f) => f,
                    Poll::Pending => panic!("the probe did not finish"),
                }
            });
            let caller = {
                let c = c.clone();
                thread::spawn(move || fate(ready(c.call(async { Ok::<_, ()>(()) }))))
            };
            let fates = (finisher.join().unwrap(), caller.join().unwrap());
            let caller_ok = fates.1 == Fate::Ok;
            // The one way to be turned away: arriving while the finished probe's close is
            // under way (every slot passed, none out), as with any passing probe.
            assert!(
                fates.0 == Fate::Ok
                    && (caller_ok || fates.1 == Fate::Rejected(RejectReason::HalfOpenFull)),
                "{fates:?} {:?} {:?}",
                events.lock().unwrap(),
                c.stats()
            );
            assert_eq!(c.state(), Closed);
            let s = c.stats();
            let ok = u64::from(caller_ok);
            assert_eq!(
                (s.success_count, s.rejected_count),
                (1 + ok, 1 - ok),
                "{s:?}"
            );
            let chain = assert_chain(&events, Closed);
            assert!(
                chain == [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
                    || (caller_ok
                        && chain
                            == [
                                (Closed, Open),
                                (Open, HalfOpen),
                                (HalfOpen, Open),
                                (Open, HalfOpen),
                                (HalfOpen, Closed)
                            ]),
                "{chain:?}"
            );
        },
    );
}

/// Issue 12: outcomes outside the window (here the shadow calls of metrics-only mode while
/// Open) are atomic adds to per-stripe cells, read by `stats` under the `retired` lock.
/// Two shadow calls racing a stats read: the read sees between one and three calls (the
/// trip, and any of the two), and afterwards every call is counted exactly once.
#[test]
fn shadow_outcomes_race_a_stats_read() {
    model("shadow_outcomes_race_a_stats_read", || {
        let c = Circuit::named(
            "loom",
            config(1, 1)
                .to_builder()
                .metrics_only(true)
                .build()
                .unwrap(),
        );
        assert!(ready(c.call(async { Err::<(), _>(()) })).is_err());
        assert_eq!(c.state(), Open);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || assert!(ready(c.call(async { Ok::<_, ()>(()) })).is_ok()))
            })
            .collect();
        let seen = c.stats();
        assert!((1..=3).contains(&seen.total_requests), "{seen:?}");
        assert_eq!(seen.failure_count, 1);
        threads.into_iter().for_each(|t| t.join().unwrap());
        let after = c.stats();
        assert_eq!(
            (
                after.total_requests,
                after.failure_count,
                after.success_count
            ),
            (3, 1, 2)
        );
        assert_eq!(after.rejected_count, 2, "shadow calls count as rejections");
    });
}

/// Issue 13, item 4: two outcomes race for the only slot of a one-call count window (the
/// eviction race: each swap takes what the other put in, or the empty slot). Whatever the
/// order, nothing is lost: the ring holds one call, the lifetime both, and emptying the
/// ring (a reset swaps every slot out) leaves the running sums at exactly zero; a lost or
/// doubled delta would stay in them. Shadow mode keeps both calls admitted when the
/// failure trips the circuit first.
#[test]
fn two_outcomes_race_for_the_slot_of_a_count_window() {
    model("two outcomes race for the slot of a count window", || {
        let c = Circuit::named(
            "loom",
            config(1, 1)
                .to_builder()
                .sliding_window(tower_circuit_breaker::SlidingWindow::Count(1))
                .metrics_only(true)
                .build()
                .unwrap(),
        );
        let handles: Vec<_> = [true, false]
            .into_iter()
            .map(|ok| {
                let c = c.clone();
                thread::spawn(move || {
                    fate(ready(
                        c.call(async move { if ok { Ok(()) } else { Err(()) } }),
                    ))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = c.stats();
        assert_eq!((s.total_requests, s.failure_count), (2, 1), "{s:?}");
        assert_eq!(s.window.requests, 1, "{s:?}");
        assert!(s.window.failures <= 1, "{s:?}");
        c.reset();
        let s = c.stats();
        assert_eq!((s.window.requests, s.window.failures), (0, 0), "{s:?}");
        assert!(ready(c.call(async { Ok::<(), ()>(()) })).is_ok());
        let s = c.stats();
        assert_eq!((s.window.requests, s.window.failures), (1, 0), "{s:?}");
        assert_eq!((s.total_requests, s.failure_count), (3, 1), "{s:?}");
    });
}
