//! Model-based testing of `Circuit`: random histories run against the real circuit and
//! against a small reference model written here, from the semantics in the `Circuit` docs
//! and DESIGN.md (not from `src/`).
//!
//! A history is a configuration and a list of steps: calls that succeed, fail, are
//! ignored, ask the circuit to open for a server-given time, complete at once or are held
//! in flight and later completed (perhaps slow) or dropped; several held calls are
//! concurrent probes; tower services made ready (reserving a probe slot, or waiting in
//! backpressure mode) and dropped without a call; time jumps (up to hours: a frozen Lambda sandbox); manual
//! `force_open` / `disable` / `reset`; live reconfiguration. The real circuit runs under a
//! paused tokio clock and is driven only through its public API (`Circuit::call_with`
//! futures polled by hand). After every step the admission decision (and rejection reason
//! and `retry_after`), `state()`, every field of `CircuitBreakerStats` and the list of
//! transition events must agree with the model.
//!
//! `TCB_MODEL_CASES` sets the number of random histories (default 3000); the run prints
//! how many histories and steps it explored. Shrunk failures are kept below as named
//! regression tests.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};
use tokio::sync::oneshot;
use tower::{Layer, Service};
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::error::{CallError, CircuitOpen, RejectReason};
use tower_circuit_breaker::stats::{ManualOverride, TransitionEvent, TransitionReason};
use tower_circuit_breaker::{
    Circuit, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerStats, CircuitState,
    SlidingWindow,
};

use CircuitState::{Closed, HalfOpen, Open};

const MS: u64 = 1_000_000;

// ===================================================================================
// Histories

/// A configuration, in the few values that make histories interesting.
#[derive(Clone, Debug, PartialEq)]
struct Cfg {
    threshold: u32,
    min: u32,
    recovery_ms: u64,
    expected_ms: u64,
    width_ms: u64,
    buckets: u32,
    /// A count window of this many calls instead of the time window (issue 13, item 4).
    count: Option<u32>,
    half_open_max: u32,
    rate: Option<f64>,
    slow_rate: Option<f64>,
    slow_is_failure: bool,
    dropped_is_failure: bool,
    metrics_only: bool,
    /// `(multiplier, max in ms)`, no jitter (jitter is random by design).
    backoff: Option<(f64, u64)>,
}

impl Cfg {
    fn build(&self) -> CircuitBreakerConfig {
        let mut b = CircuitBreakerConfig::builder()
            .failure_threshold(self.threshold)
            .minimum_request_count(self.min)
            .recovery_timeout(Duration::from_millis(self.recovery_ms))
            .expected_response_time(Duration::from_millis(self.expected_ms))
            .monitoring_window(Duration::from_millis(
                self.width_ms * u64::from(self.buckets),
            ))
            .window_buckets(self.buckets)
            .half_open_max_calls(self.half_open_max)
            .slow_call_is_failure(self.slow_is_failure)
            .dropped_call_is_failure(self.dropped_is_failure)
            .metrics_only(self.metrics_only);
        if let Some(n) = self.count {
            b = b.sliding_window(SlidingWindow::Count(n));
        }
        if let Some(r) = self.rate {
            b = b.failure_rate_threshold(r);
        }
        if let Some(r) = self.slow_rate {
            b = b.slow_call_rate_threshold(r);
        }
        if let Some((m, max)) = self.backoff {
            b = b.backoff(m, Duration::from_millis(max), 0.0);
        }
        b.build().expect("generated configs are valid")
    }
}

/// How a call ends, as the classifier will judge it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Success,
    Failure,
    Ignored,
    /// A failure that asks the circuit to open for this many ms.
    OpenFor(u64),
}

impl End {
    fn verdict(self) -> Verdict {
        match self {
            End::Success => Verdict::Success,
            End::Failure => Verdict::Failure,
            End::Ignored => Verdict::Ignored,
            End::OpenFor(ms) => Verdict::OpenFor(Duration::from_millis(ms)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// A call that completes as soon as it is admitted.
    Call(End),
    /// A call admitted (or not) now and held in flight.
    Hold,
    /// Completes the held call `n % in_flight`.
    Complete(usize, End),
    /// Drops the held call `n % in_flight` before it completes.
    Drop(usize),
    /// A tower `CircuitBreaker` on the circuit is polled ready once (in backpressure mode
    /// when `true`), then dropped without being called.
    ReadyThenDrop(bool),
    /// Moves the clock this many ms.
    Advance(u64),
    ForceOpen,
    Disable,
    Reset,
    /// Reconfigures (same bucket count: the circuit refuses another).
    Reconfigure(Cfg),
}

#[derive(Clone, Debug, PartialEq)]
struct History {
    cfg: Cfg,
    steps: Vec<Step>,
}

fn cfg_strategy(buckets: u32, count: Option<u32>) -> impl Strategy<Value = Cfg> {
    (
        (
            1u32..=4,
            0u32..=6,
            prop::sample::select(vec![50u64, 1_000, 5_000]),
        ),
        (
            prop::sample::select(vec![10u64, 300, 1_000]),
            prop::sample::select(vec![100u64, 250, 1_000]),
            1u32..=3,
        ),
        (
            prop::option::weighted(0.2, prop::sample::select(vec![0.5, 1.0])),
            prop::option::weighted(0.15, Just(0.5)),
            any::<bool>(),
            prop::bool::weighted(0.25),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.2, prop::sample::select(vec![1.5f64, 2.0])),
        ),
    )
        .prop_map(
            move |(
                (threshold, min, recovery_ms),
                (expected_ms, width_ms, half_open_max),
                (rate, slow_rate, slow_not_failure, dropped_is_failure, metrics_only, backoff),
            )| Cfg {
                // A count window must be able to hold enough calls to trip.
                threshold: count.map_or(threshold, |n| threshold.min(n)),
                min: count.map_or(min, |n| min.min(n)),
                recovery_ms,
                expected_ms,
                width_ms,
                buckets,
                count,
                half_open_max,
                rate,
                slow_rate,
                // Slow calls count as failures by default: mostly keep it.
                slow_is_failure: !slow_not_failure || expected_ms != 10,
                dropped_is_failure,
                metrics_only,
                backoff: backoff.map(|m| (m, recovery_ms * 4)),
            },
        )
}

fn end_strategy() -> impl Strategy<Value = End> {
    prop_oneof![
        4 => Just(End::Success),
        4 => Just(End::Failure),
        1 => Just(End::Ignored),
        1 => prop::sample::select(vec![1u64, 700, 3_000]).prop_map(End::OpenFor),
    ]
}

fn advance_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![1u64, 9, 10, 11, 99, 100, 250, 299, 300, 301, 999, 1_000, 1_001, 5_000]),
        2 => 1u64..6_000,
        1 => Just(3 * 3600 * 1000),
    ]
}

fn step_strategy(buckets: u32, count: Option<u32>) -> impl Strategy<Value = Step> {
    prop_oneof![
        30 => end_strategy().prop_map(Step::Call),
        8 => Just(Step::Hold),
        8 => (any::<usize>(), end_strategy()).prop_map(|(n, e)| Step::Complete(n, e)),
        3 => any::<usize>().prop_map(Step::Drop),
        3 => any::<bool>().prop_map(Step::ReadyThenDrop),
        15 => advance_strategy().prop_map(Step::Advance),
        1 => Just(Step::ForceOpen),
        1 => Just(Step::Disable),
        2 => Just(Step::Reset),
        2 => cfg_strategy(buckets, count).prop_map(Step::Reconfigure),
    ]
}

fn history_strategy() -> impl Strategy<Value = History> {
    (
        prop::sample::select(vec![1u32, 2, 4, 5]),
        prop::option::weighted(0.3, prop::sample::select(vec![1u32, 3, 6])),
    )
        .prop_flat_map(|(buckets, count)| {
            (
                cfg_strategy(buckets, count),
                prop::collection::vec(step_strategy(buckets, count), 1..80),
            )
                .prop_map(|(cfg, steps)| History { cfg, steps })
        })
}

// ===================================================================================
// The reference model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Manual {
    None,
    ForcedOpen,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admitted {
    /// Closed: the outcome goes into the window.
    Counted,
    /// A half-open probe.
    Probe,
    /// Disabled: nothing at all is recorded.
    Unrecorded,
    /// Shadow mode, past a would-be rejection: lifetime counts only.
    Shadow,
}

#[derive(Clone, Copy, Debug)]
struct ModelCall {
    admitted: Admitted,
    /// Which period of the state machine admitted it: a result from an older period is
    /// late and changes no state.
    period: u64,
    start: u64,
    /// `expected_response_time` when the call started: the threshold it is judged by,
    /// whatever a reconfiguration sets while it runs.
    expected: u64,
}

/// One outcome in the window.
#[derive(Clone, Copy, Debug)]
struct Entry {
    bucket: u64,
    failed: bool,
    slow: bool,
}

#[derive(Debug)]
struct Model {
    cfg: Cfg,
    now: u64,
    state: CircuitState,
    manual: Manual,
    period: u64,
    open_until: u64,
    /// The probe deadline: the latest probe's admission plus `half_open_max_wait`.
    probe_deadline: u64,
    opens_in_a_row: i32,
    probes_out: u32,
    probes_passed: u32,
    window: Vec<Entry>,
    run: u64,
    successes: u64,
    failures: u64,
    slow: u64,
    rejected: u64,
    ignored: u64,
    last_success: Option<u64>,
    last_failure: Option<u64>,
    events: Vec<(CircuitState, CircuitState, TransitionReason)>,
    /// The admission decision of the current step, if it made one: `Some(None)` for a
    /// rejection. Only for the run's tallies.
    last_admission: Option<Option<Admitted>>,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Model {
            cfg,
            now: 0,
            state: Closed,
            manual: Manual::None,
            period: 0,
            open_until: 0,
            probe_deadline: 0,
            opens_in_a_row: 0,
            probes_out: 0,
            probes_passed: 0,
            window: Vec::new(),
            run: 0,
            successes: 0,
            failures: 0,
            slow: 0,
            rejected: 0,
            ignored: 0,
            last_success: None,
            last_failure: None,
            events: Vec::new(),
            last_admission: None,
        }
    }

    fn width(&self) -> u64 {
        self.cfg.width_ms * MS
    }

    /// Moves to `to` (with `manual`), starting a new period. Emits an event only when the
    /// state really changes.
    fn go(&mut self, to: CircuitState, manual: Manual, reason: TransitionReason) {
        let from = self.state;
        self.state = to;
        self.manual = manual;
        self.period += 1;
        self.probes_out = 0;
        self.probes_passed = 0;
        if to == Closed {
            self.opens_in_a_row = 0;
        }
        if from != to {
            self.events.push((from, to, reason));
        }
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.run = 0;
    }

    /// `half_open_max_wait` as the config derives it: the recovery timeout, at least the
    /// expected response time.
    fn probe_wait(&self) -> u64 {
        self.cfg.recovery_ms.max(self.cfg.expected_ms) * MS
    }

    fn open(&mut self, reason: TransitionReason, for_ms: Option<u64>) {
        self.open_since(reason, for_ms, self.now);
    }

    /// Opens for a break that runs from `since`.
    fn open_since(&mut self, reason: TransitionReason, for_ms: Option<u64>, since: u64) {
        let pause = match for_ms {
            Some(ms) => ms * MS,
            None => {
                let base = Duration::from_millis(self.cfg.recovery_ms);
                match self.cfg.backoff {
                    None => base,
                    Some((m, max)) => Duration::from_secs_f64(
                        (base.as_secs_f64() * m.powi(self.opens_in_a_row))
                            .min(Duration::from_millis(max).as_secs_f64()),
                    ),
                }
                .as_nanos() as u64
            }
        };
        self.open_until = since + pause;
        self.opens_in_a_row += 1;
        self.go(Open, Manual::None, reason);
    }

    /// The admission decision for a call arriving now.
    fn admit(&mut self) -> Result<ModelCall, (RejectReason, Option<Duration>)> {
        self.decide(true)
    }

    /// The admission decision of a service in backpressure mode: it waits instead of
    /// being rejected, so a would-be rejection is not counted (unless shadow mode admits
    /// it: then it is the rejection it would have been).
    fn admit_quietly(&mut self) -> Option<ModelCall> {
        self.decide(false).ok()
    }

    /// An admitted call dropped before it started (a service made ready, then dropped
    /// without being called): only a probe slot is given back; nothing is counted.
    fn unstarted(&mut self, call: ModelCall) {
        if call.admitted == Admitted::Probe && call.period == self.period {
            self.probes_out -= 1;
        }
    }

    fn decide(&mut self, count: bool) -> Result<ModelCall, (RejectReason, Option<Duration>)> {
        let decision = self.decide_inner(count);
        self.last_admission = Some(decision.ok().map(|c| c.admitted));
        decision
    }

    fn decide_inner(&mut self, count: bool) -> Result<ModelCall, (RejectReason, Option<Duration>)> {
        let admitted = match (self.manual, self.state) {
            (Manual::Disabled, _) => Ok(Admitted::Unrecorded),
            (Manual::ForcedOpen, _) => {
                self.rejected += u64::from(count);
                return Err((RejectReason::ForcedOpen, None));
            }
            (Manual::None, Closed) => Ok(Admitted::Counted),
            (Manual::None, Open) if self.now < self.open_until => Err((
                RejectReason::Open,
                Some(Duration::from_nanos(self.open_until - self.now)),
            )),
            (Manual::None, Open) => {
                self.go(
                    HalfOpen,
                    Manual::None,
                    TransitionReason::RecoveryTimeoutElapsed,
                );
                self.probes_out = 1;
                self.probe_deadline = self.now + self.probe_wait();
                Ok(Admitted::Probe)
            }
            (Manual::None, HalfOpen) => {
                if self.probes_out + self.probes_passed < self.cfg.half_open_max {
                    self.probes_out += 1;
                    self.probe_deadline = self.probe_deadline.max(self.now + self.probe_wait());
                    Ok(Admitted::Probe)
                } else if self.now >= self.probe_deadline {
                    // The unfinished probes count as failed; the break runs from the
                    // deadline. Then admission looks again.
                    let deadline = self.probe_deadline;
                    self.open_since(TransitionReason::ProbeTimedOut, None, deadline);
                    return self.decide_inner(count);
                } else {
                    // The retry hint: the time to the probe deadline.
                    let after = (self.probes_out > 0)
                        .then(|| Duration::from_nanos(self.probe_deadline - self.now));
                    Err((RejectReason::HalfOpenFull, after))
                }
            }
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err(rejection) => {
                if !self.cfg.metrics_only {
                    self.rejected += u64::from(count);
                    return Err(rejection);
                }
                self.rejected += 1;
                Admitted::Shadow
            }
        };
        Ok(ModelCall {
            admitted,
            period: self.period,
            start: self.now,
            expected: self.cfg.expected_ms * MS,
        })
    }

    fn note_time(cell: &mut Option<u64>, now: u64) {
        // Times are kept at millisecond precision: a write within 1 ms of the last kept one
        // is skipped.
        if cell.is_none_or(|t| now >= t + MS) {
            *cell = Some(now);
        }
    }

    fn complete(&mut self, call: ModelCall, verdict: Verdict) {
        if call.admitted == Admitted::Unrecorded {
            return;
        }
        let current = call.period == self.period && call.admitted != Admitted::Shadow;
        if verdict == Verdict::Ignored {
            self.ignored += 1;
            if current && call.admitted == Admitted::Probe {
                self.probes_out -= 1;
            }
            return;
        }
        let failed = verdict != Verdict::Success;
        let slow = self.now - call.start > call.expected;
        if failed {
            self.failures += 1;
            Self::note_time(&mut self.last_failure, self.now);
        } else {
            self.successes += 1;
            Self::note_time(&mut self.last_success, self.now);
        }
        self.slow += u64::from(slow);
        if !current {
            return;
        }
        let trip_failure = failed || (slow && self.cfg.slow_is_failure);
        self.run = if trip_failure { self.run + 1 } else { 0 };
        let open_for = match verdict {
            Verdict::OpenFor(d) => Some(d.as_millis() as u64),
            _ => None,
        };
        if call.admitted == Admitted::Probe {
            if let Some(ms) = open_for {
                self.open(TransitionReason::RetryAfter, Some(ms));
            } else if trip_failure {
                self.open(TransitionReason::ProbeFailed, None);
            } else {
                self.probes_out -= 1;
                self.probes_passed += 1;
                if self.probes_passed >= self.cfg.half_open_max {
                    self.clear_window();
                    self.go(Closed, Manual::None, TransitionReason::ProbesSucceeded);
                }
            }
            return;
        }
        self.window.push(Entry {
            bucket: self.now / self.width(),
            failed,
            slow,
        });
        if let Some(ms) = open_for {
            self.open(TransitionReason::RetryAfter, Some(ms));
            return;
        }
        let w = self.window_counts();
        if w.calls == 0 || w.calls < u64::from(self.cfg.min) {
            return;
        }
        let calls = w.calls as f64;
        let trip = self.run.min(w.trip_failures) >= u64::from(self.cfg.threshold)
            || self
                .cfg
                .rate
                .is_some_and(|r| w.trip_failures as f64 / calls >= r)
            || self
                .cfg
                .slow_rate
                .is_some_and(|r| w.slow as f64 / calls >= r);
        if trip {
            self.open(TransitionReason::Tripped, None);
        }
    }

    fn dropped(&mut self, call: ModelCall) {
        let verdict = if self.cfg.dropped_is_failure {
            Verdict::Failure
        } else {
            Verdict::Ignored
        };
        self.complete(call, verdict);
    }

    fn force_open(&mut self) {
        if self.manual != Manual::ForcedOpen {
            self.go(Open, Manual::ForcedOpen, TransitionReason::ForcedOpen);
        }
    }

    fn disable(&mut self) {
        if self.manual != Manual::Disabled {
            self.go(Closed, Manual::Disabled, TransitionReason::Disabled);
        }
    }

    fn reset(&mut self) {
        self.clear_window();
        self.go(Closed, Manual::None, TransitionReason::Reset);
    }

    fn reconfigure(&mut self, cfg: Cfg) {
        // A count window ignores the bucket width: it is kept.
        if cfg.width_ms != self.cfg.width_ms && cfg.count.is_none() {
            // A new bucket width restarts the window; the run carries over.
            self.window.clear();
        }
        self.cfg = cfg;
        // Lowered to at most the probes that already passed: the half-open test is over
        // (otherwise nothing could ever close the circuit: no new probe is admitted).
        if self.state == HalfOpen
            && self.manual == Manual::None
            && self.probes_passed >= self.cfg.half_open_max
        {
            self.clear_window();
            self.go(Closed, Manual::None, TransitionReason::ProbesSucceeded);
        }
    }

    fn window_counts(&self) -> WindowCounts {
        let cur = self.now / self.width();
        let oldest = (cur + 1).saturating_sub(u64::from(self.cfg.buckets));
        // A count window: the last `n` outcomes, whatever their age.
        let skip = match self.cfg.count {
            Some(n) => self.window.len().saturating_sub(n as usize),
            None => 0,
        };
        let mut c = WindowCounts::default();
        let in_window = |e: &&Entry| self.cfg.count.is_some() || e.bucket >= oldest;
        for e in self.window.iter().skip(skip).filter(in_window) {
            c.calls += 1;
            c.failures += u64::from(e.failed);
            c.slow += u64::from(e.slow);
            c.trip_failures += u64::from(e.failed || (e.slow && self.cfg.slow_is_failure));
        }
        c
    }

    fn expected_stats(&self) -> Expected {
        let w = self.window_counts();
        let rate = |n: u64| {
            if w.calls == 0 {
                0.0
            } else {
                n as f64 / w.calls as f64
            }
        };
        Expected {
            state: self.state,
            manual_override: match self.manual {
                Manual::None => None,
                Manual::ForcedOpen => Some(ManualOverride::ForcedOpen),
                Manual::Disabled => Some(ManualOverride::Disabled),
            },
            metrics_only: self.cfg.metrics_only,
            failure_count: self.failures,
            success_count: self.successes,
            total_requests: self.failures + self.successes,
            last_failure_time: self.last_failure,
            last_success_time: self.last_success,
            next_attempt_time: match (self.state, self.manual) {
                (Open, Manual::None) => Some(self.open_until),
                (HalfOpen, Manual::None)
                    if self.probes_out + self.probes_passed >= self.cfg.half_open_max =>
                {
                    Some(self.probe_deadline)
                }
                _ => None,
            },
            failure_rate: rate(w.trip_failures),
            slow_call_rate: rate(w.slow),
            rejected_count: self.rejected,
            ignored_count: self.ignored,
            slow_count: self.slow,
            consecutive_failures: self.run.min(w.trip_failures),
            half_open_in_flight: if self.state == HalfOpen {
                self.probes_out
            } else {
                0
            },
            window: (w.calls, w.failures, w.calls - w.failures, w.slow),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct WindowCounts {
    calls: u64,
    failures: u64,
    slow: u64,
    trip_failures: u64,
}

/// The stats the model expects, times as nanoseconds since the circuit's creation.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    state: CircuitState,
    manual_override: Option<ManualOverride>,
    metrics_only: bool,
    failure_count: u64,
    success_count: u64,
    total_requests: u64,
    last_failure_time: Option<u64>,
    last_success_time: Option<u64>,
    next_attempt_time: Option<u64>,
    failure_rate: f64,
    slow_call_rate: f64,
    rejected_count: u64,
    ignored_count: u64,
    slow_count: u64,
    consecutive_failures: u64,
    half_open_in_flight: u32,
    /// requests, failures, successes, slow
    window: (u64, u64, u64, u64),
}

/// The real stats in the model's terms. Wall times are turned into nanoseconds since the
/// circuit's wall origin, learnt from the first time field the model can name.
fn observed(s: &CircuitBreakerStats, m: &Expected, origin: &mut Option<SystemTime>) -> Expected {
    let mut time = |real: Option<SystemTime>, model: Option<u64>| -> Option<u64> {
        let real = real?;
        let o = *origin.get_or_insert_with(|| match model {
            Some(ns) => real - Duration::from_nanos(ns),
            None => real,
        });
        Some(
            real.duration_since(o)
                .map_or(u64::MAX, |d| d.as_nanos() as u64),
        )
    };
    let last_failure_time = time(s.last_failure_time, m.last_failure_time);
    let last_success_time = time(s.last_success_time, m.last_success_time);
    let next_attempt_time = time(s.next_attempt_time, m.next_attempt_time);
    Expected {
        state: s.state,
        manual_override: s.manual_override,
        metrics_only: s.metrics_only,
        failure_count: s.failure_count,
        success_count: s.success_count,
        total_requests: s.total_requests,
        last_failure_time,
        last_success_time,
        next_attempt_time,
        failure_rate: s.failure_rate,
        slow_call_rate: s.slow_call_rate,
        rejected_count: s.rejected_count,
        ignored_count: s.ignored_count,
        slow_count: s.slow_count,
        consecutive_failures: s.consecutive_failures,
        half_open_in_flight: s.half_open_in_flight,
        window: (
            s.window.requests,
            s.window.failures,
            s.window.successes,
            s.window.slow,
        ),
    }
}

// ===================================================================================
// Driving the real circuit

type Res = Result<Verdict, Verdict>;
type Out = Result<Verdict, CallError<Verdict>>;
type CallFuture = Pin<Box<dyn Future<Output = Out>>>;

fn classify(r: &Res) -> Verdict {
    match r {
        Ok(v) | Err(v) => *v,
    }
}

fn result_of(end: End) -> Res {
    match end {
        End::Success => Ok(Verdict::Success),
        e => Err(e.verdict()),
    }
}

fn call_future(c: &Circuit, op: impl Future<Output = Res> + 'static) -> CallFuture {
    let c = c.clone();
    Box::pin(async move {
        let classifier = classify;
        c.call_with(&classifier, op).await
    })
}

fn poll(f: &mut CallFuture) -> Poll<Out> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

struct Held {
    future: CallFuture,
    answer: oneshot::Sender<Res>,
    model: ModelCall,
}

/// The rejection agrees with the model's reason and `retry_after`.
fn same_rejection(
    r: &CircuitOpen,
    (reason, after): (RejectReason, Option<Duration>),
) -> Result<(), String> {
    if (r.reason(), r.retry_after()) == (reason, after) {
        return Ok(());
    }
    Err(format!(
        "rejected with {:?} / {:?}, model says {reason:?} / {after:?}",
        r.reason(),
        r.retry_after()
    ))
}

static HISTORIES: AtomicU64 = AtomicU64::new(0);
static STEPS: AtomicU64 = AtomicU64::new(0);
static TRANSITIONS: AtomicU64 = AtomicU64::new(0);
static REJECTIONS: AtomicU64 = AtomicU64::new(0);
static PROBES: AtomicU64 = AtomicU64::new(0);
/// Hung probes given up at the probe deadline (`ProbeTimedOut`), over all histories.
static TIMED_OUT: AtomicU64 = AtomicU64::new(0);

/// Runs one history on a fresh paused runtime; `Err` names the first disagreement.
fn run_history(h: &History) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    HISTORIES.fetch_add(1, Ordering::Relaxed);
    rt.block_on(async {
        let circuit = Circuit::named("model", h.cfg.build());
        let events: Arc<Mutex<Vec<TransitionEvent>>> = Arc::default();
        let sink = events.clone();
        circuit.on_transition(move |e| sink.lock().unwrap().push(e.clone()));
        let mut model = Model::new(h.cfg.clone());
        let mut held: Vec<Held> = Vec::new();
        let mut origin = None;
        for (i, step) in h.steps.iter().enumerate() {
            STEPS.fetch_add(1, Ordering::Relaxed);
            let fail = |what: String| format!("step {i} ({step:?}): {what}");
            match step {
                Step::Call(end) => {
                    let res = result_of(*end);
                    let mut f = call_future(&circuit, async move { res });
                    let real = poll(&mut f);
                    let expect = model.admit();
                    match (real, expect) {
                        (Poll::Ready(Err(CallError::Rejected(r))), Err(expected)) => {
                            same_rejection(&r, expected).map_err(fail)?;
                        }
                        (Poll::Ready(out), Ok(call))
                            if out.as_ref().err().and_then(|e| e.rejection()).is_none() =>
                        {
                            let got = match out {
                                Ok(v) => Ok(v),
                                Err(e) => Err(e.into_inner().expect("not a rejection")),
                            };
                            if got != res {
                                return Err(fail(format!(
                                    "result {got:?} is not the operation's {res:?}"
                                )));
                            }
                            model.complete(call, end.verdict());
                        }
                        (real, expect) => {
                            return Err(fail(format!(
                                "admission: circuit {real:?}, model {expect:?}"
                            )));
                        }
                    }
                }
                Step::Hold => {
                    let (tx, rx) = oneshot::channel::<Res>();
                    let mut f = call_future(&circuit, async move { rx.await.expect("answered") });
                    let real = poll(&mut f);
                    match (real, model.admit()) {
                        (Poll::Pending, Ok(call)) => held.push(Held {
                            future: f,
                            answer: tx,
                            model: call,
                        }),
                        (Poll::Ready(Err(CallError::Rejected(r))), Err(expected)) => {
                            same_rejection(&r, expected).map_err(fail)?;
                        }
                        (real, expect) => {
                            return Err(fail(format!(
                                "admission: circuit {real:?}, model {expect:?}"
                            )));
                        }
                    }
                }
                Step::Complete(n, end) => {
                    if held.is_empty() {
                        continue;
                    }
                    let Held {
                        mut future,
                        answer,
                        model: call,
                    } = held.remove(n % held.len());
                    let res = result_of(*end);
                    answer.send(res).expect("the call is waiting");
                    match poll(&mut future) {
                        Poll::Ready(Ok(v)) if Ok(v) == res => {}
                        Poll::Ready(Err(CallError::Inner(v))) if Err(v) == res => {}
                        other => return Err(fail(format!("completion gave {other:?}"))),
                    }
                    model.complete(call, end.verdict());
                }
                Step::Drop(n) => {
                    if held.is_empty() {
                        continue;
                    }
                    let h = held.remove(n % held.len());
                    drop(h.future);
                    model.dropped(h.model);
                }
                Step::ReadyThenDrop(backpressure) => {
                    let layer = CircuitBreakerLayer::from_circuit(circuit.clone());
                    let layer = if *backpressure {
                        layer.backpressure()
                    } else {
                        layer
                    };
                    let mut svc = layer.layer(tower::service_fn(|()| async {
                        Ok::<_, std::io::Error>(())
                    }));
                    let ready = Service::<()>::poll_ready(
                        &mut svc,
                        &mut Context::from_waker(Waker::noop()),
                    );
                    let expect = if *backpressure {
                        model.admit_quietly()
                    } else {
                        // In reject mode a rejected service is ready too: its call would fail.
                        model.admit().ok()
                    };
                    match (ready, expect) {
                        (Poll::Ready(Ok(())), Some(call)) => {
                            drop(svc);
                            model.unstarted(call);
                        }
                        (Poll::Ready(Ok(())), None) if !*backpressure => {}
                        (Poll::Pending, None) if *backpressure => {}
                        (real, expect) => {
                            return Err(fail(format!(
                                "poll_ready: service {real:?}, model {expect:?}"
                            )));
                        }
                    }
                }
                Step::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(*ms)).await;
                    model.now += ms * MS;
                }
                Step::ForceOpen => {
                    circuit.force_open();
                    model.force_open();
                }
                Step::Disable => {
                    circuit.disable();
                    model.disable();
                }
                Step::Reset => {
                    circuit.reset();
                    model.reset();
                }
                Step::Reconfigure(cfg) => {
                    circuit
                        .reconfigure(cfg.build())
                        .map_err(|e| fail(format!("reconfigure refused: {e}")))?;
                    model.reconfigure(cfg.clone());
                }
            }
            // The property the model checks of itself: a half-open circuit with no probe in
            // flight always admits the next caller (it can never be wedged).
            if model.state == HalfOpen
                && model.manual == Manual::None
                && model.probes_out == 0
                && model.probes_passed >= model.cfg.half_open_max
            {
                return Err(fail(format!(
                    "wedged in HalfOpen: {} probes passed, none in flight, at most {} admitted",
                    model.probes_passed, model.cfg.half_open_max
                )));
            }
            let want = model.expected_stats();
            let got = observed(&circuit.stats(), &want, &mut origin);
            if got != want {
                return Err(fail(format!(
                    "stats differ\n circuit: {got:?}\n   model: {want:?}"
                )));
            }
            if circuit.state() != model.state {
                return Err(fail(format!(
                    "state() is {:?}, model {:?}",
                    circuit.state(),
                    model.state
                )));
            }
            let real_events: Vec<_> = events
                .lock()
                .unwrap()
                .iter()
                .map(|e| (e.from, e.to, e.reason))
                .collect();
            match model.last_admission.take() {
                Some(Some(Admitted::Probe)) => PROBES.fetch_add(1, Ordering::Relaxed),
                Some(None) => REJECTIONS.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            if real_events != model.events {
                return Err(fail(format!(
                    "events differ\n circuit: {real_events:?}\n   model: {:?}",
                    model.events
                )));
            }
        }
        TRANSITIONS.fetch_add(model.events.len() as u64, Ordering::Relaxed);
        TIMED_OUT.fetch_add(
            model
                .events
                .iter()
                .filter(|e| e.2 == TransitionReason::ProbeTimedOut)
                .count() as u64,
            Ordering::Relaxed,
        );
        Ok(())
    })
}

fn cases() -> u32 {
    std::env::var("TCB_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

#[test]
fn random_histories_agree_with_the_model() {
    let mut runner = TestRunner::new(RunnerConfig {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..RunnerConfig::default()
    });
    let result = runner.run(&history_strategy(), |h| {
        run_history(&h).map_err(TestCaseError::fail)
    });
    // Straight to stderr, past the test harness capture, so CI logs show it.
    let _ = writeln!(
        std::io::stderr(),
        "model: {} histories, {} steps explored (including shrinking); {} transitions, {} rejections, {} probes admitted, {} hung probes given up",
        HISTORIES.load(Ordering::Relaxed),
        STEPS.load(Ordering::Relaxed),
        TRANSITIONS.load(Ordering::Relaxed),
        REJECTIONS.load(Ordering::Relaxed),
        PROBES.load(Ordering::Relaxed),
        TIMED_OUT.load(Ordering::Relaxed),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, h)) => {
            panic!("the circuit disagrees with the model: {why}\nminimal history:\n{h:#?}")
        }
        Err(e) => panic!("{e}"),
    }
}

// ===================================================================================
// Regression histories (shrunk failures found by the run above)

fn base_cfg() -> Cfg {
    Cfg {
        threshold: 1,
        min: 0,
        recovery_ms: 50,
        expected_ms: 300,
        width_ms: 100,
        buckets: 1,
        count: None,
        half_open_max: 1,
        rate: None,
        slow_rate: None,
        slow_is_failure: true,
        dropped_is_failure: false,
        metrics_only: false,
        backoff: None,
    }
}

fn check(h: History) {
    if let Err(e) = run_history(&h) {
        panic!("{e}");
    }
}

#[test]
fn smoke_history_trip_probe_close() {
    check(History {
        cfg: base_cfg(),
        steps: vec![
            Step::Call(End::Failure),
            Step::Call(End::Success),
            Step::Advance(50),
            Step::Hold,
            Step::Call(End::Success),
            Step::Complete(0, End::Success),
            Step::Call(End::Success),
        ],
    });
}

/// Defect 1 (found by the model): lowering `half_open_max_calls` on a half-open circuit
/// to no more than the probes that already passed left it wedged in HalfOpen: no probe in
/// flight, every caller rejected with `HalfOpenFull`, for ever. Fixed in
/// `Circuit::reconfigure`: the circuit closes at once.
#[test]
fn regression_lowering_half_open_max_below_passed_probes_does_not_wedge() {
    let two = Cfg {
        half_open_max: 2,
        expected_ms: 10,
        ..base_cfg()
    };
    check(History {
        cfg: two.clone(),
        steps: vec![
            Step::Call(End::OpenFor(1)),
            Step::Advance(1),
            // The first of two probes passes.
            Step::Call(End::Success),
            Step::Reconfigure(base_cfg()),
            Step::Advance(3 * 3600 * 1000),
            Step::Call(End::Success),
        ],
    });
    // The same with a probe still in flight that is then dropped.
    check(History {
        cfg: Cfg {
            half_open_max: 3,
            ..two
        },
        steps: vec![
            Step::Call(End::OpenFor(1)),
            Step::Advance(1),
            Step::Call(End::Success),
            Step::Hold,
            Step::Reconfigure(base_cfg()),
            Step::Drop(0),
            Step::Call(End::Success),
        ],
    });
}

// ===================================================================================
// The frozen process (a Lambda sandbox thawing hours later)

/// The circuit opens, the process is frozen for three hours (tokio's clock jumps), and
/// the next call after the thaw is the probe: no timer had to fire, the first caller
/// moves the circuit to HalfOpen, a second concurrent caller is turned away, and the
/// probe's success closes the circuit.
#[tokio::test(start_paused = true)]
async fn a_frozen_process_thaws_into_exactly_one_probe() {
    use tower::ServiceExt;
    use tower_circuit_breaker::BoxError;

    let layer = CircuitBreakerLayer::named("frozen", CircuitBreakerConfig::dynamodb());
    let circuit = layer.circuit().clone();
    let events: Arc<Mutex<Vec<TransitionEvent>>> = Arc::default();
    let sink = events.clone();
    circuit.on_transition(move |e| sink.lock().unwrap().push(e.clone()));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = healthy.clone();
    let mut svc = tower::ServiceBuilder::new().layer(layer).service_fn(
        move |hold: Option<oneshot::Receiver<()>>| {
            let ok = h.load(Ordering::Relaxed);
            async move {
                if let Some(rx) = hold {
                    let _ = rx.await;
                }
                if ok {
                    Ok(())
                } else {
                    Err(BoxError::from("down"))
                }
            }
        },
    );

    for _ in 0..5 {
        assert!(svc.ready().await.unwrap().call(None).await.is_err());
    }
    assert_eq!(circuit.state(), Open);
    let opened = circuit.stats();

    // Frozen: three hours pass in no time for the process.
    tokio::time::advance(Duration::from_secs(3 * 3600)).await;
    healthy.store(true, Ordering::Relaxed);
    // Reading the state changes nothing: still Open, with a next attempt long past.
    let thawed = circuit.stats();
    assert_eq!(thawed.state, Open);
    assert_eq!(thawed.next_attempt_time, opened.next_attempt_time);
    assert_eq!(
        thawed
            .next_attempt_time
            .unwrap()
            .duration_since(thawed.last_failure_time.unwrap())
            .unwrap(),
        Duration::from_secs(20)
    );

    // The first caller after the thaw is the probe; hold it in flight.
    let (release, held) = oneshot::channel();
    let mut probe = tokio_test::task::spawn(svc.ready().await.unwrap().call(Some(held)));
    tokio_test::assert_pending!(probe.poll());
    assert_eq!(circuit.state(), HalfOpen);
    assert_eq!(circuit.stats().half_open_in_flight, 1);
    // A second caller while the probe is out is rejected, without reaching the service.
    let err = svc.ready().await.unwrap().call(None).await.unwrap_err();
    let open = err
        .downcast_ref::<tower_circuit_breaker::error::CircuitOpen>()
        .expect("a rejection");
    assert_eq!(open.reason(), RejectReason::HalfOpenFull);

    release.send(()).unwrap();
    tokio_test::assert_ready_ok!(probe.poll());
    assert_eq!(circuit.state(), Closed);
    let got: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.from, e.to, e.reason))
        .collect();
    assert_eq!(
        got,
        [
            (Closed, Open, TransitionReason::Tripped),
            (Open, HalfOpen, TransitionReason::RecoveryTimeoutElapsed),
            (HalfOpen, Closed, TransitionReason::ProbesSucceeded),
        ]
    );
    let s = circuit.stats();
    assert_eq!(
        (s.failure_count, s.success_count, s.rejected_count),
        (5, 1, 1)
    );
}

/// Frozen while still failing: the thawed probe fails and the circuit re-opens for the
/// (grown, capped) break measured from the thaw, not from before the freeze.
#[tokio::test(start_paused = true)]
async fn a_frozen_process_that_thaws_into_a_failing_dependency_reopens_from_the_thaw() {
    let config = CircuitBreakerConfig::dynamodb()
        .to_builder()
        .backoff(2.0, Duration::from_secs(60), 0.0)
        .build()
        .unwrap();
    let circuit = Circuit::named("frozen", config);
    for _ in 0..5 {
        let _ = circuit.call(async { Err::<(), _>("down") }).await;
    }
    for expected_break in [40, 60, 60] {
        tokio::time::advance(Duration::from_secs(5 * 3600)).await;
        let out = circuit.call(async { Err::<(), _>("down") }).await;
        assert!(
            matches!(out, Err(CallError::Inner("down"))),
            "the probe ran"
        );
        let s = circuit.stats();
        assert_eq!(s.state, Open);
        assert_eq!(
            s.next_attempt_time
                .unwrap()
                .duration_since(s.last_failure_time.unwrap())
                .unwrap(),
            Duration::from_secs(expected_break)
        );
        let rejected = circuit.call(async { Ok::<(), &str>(()) }).await;
        let r = rejected.unwrap_err();
        assert_eq!(
            r.rejection().unwrap().retry_after(),
            Some(Duration::from_secs(expected_break))
        );
    }
}
