//! The shared state machine: the [`Circuit`] handle and what it is made of.
//!
//! One job per file:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the [`Circuit`] handle, its state, its public accessors, stats and `call` |
//! | `admit.rs` | admission: tickets, [`Permit`], rejections, backpressure waiters |
//! | `record.rs` | outcomes: the Closed record path, then probes and out-of-band outcomes |
//! | `transition.rs` | transitions (the one place the state word changes state) |
//! | `backoff.rs` | the length of a break and its jitter |
//! | `events.rs` | transition events: tracing, the observer, listeners |
//! | `control.rs` | manual control (`force_open`, `disable`, `reset`) and `reconfigure` |
//! | `adopt.rs` | states decided elsewhere: adopt an Open or a close, read the parts, restore |
//! | `observer.rs` | what an edge plugs in: [`CircuitObserver`] and [`AdmissionGate`] |
//!
//! The circuit knows no edge (tower, metrics, the fleet, the registry): they plug in
//! through `observer.rs`, see [`CircuitObserver`] and [`AdmissionGate`].

mod admit;
mod adopt;
mod backoff;
mod control;
mod events;
mod observer;
mod record;
mod transition;

pub use admit::Permit;
pub(crate) use admit::{Rejection, Ticket};
#[cfg_attr(not(feature = "fleet"), allow(unused_imports))]
pub(crate) use adopt::CircuitParts;
pub(crate) use observer::{AdmissionGate, CircuitObserver};

use crate::CircuitState;
use crate::classify::{Classify, ErrorsAsFailures};
use crate::clock::Clock;
use crate::config::{CircuitBreakerConfig, SlidingWindow};
use crate::count_window::CountWindow;
use crate::error::{CallError, Name};
use crate::primitives::{AtomicBool, AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::state::{Mode, Word};
use crate::stats::{CircuitBreakerStats, ManualOverride, TransitionEvent, WindowStats};
use crate::window::{Counts, Window};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

type Listener = Arc<dyn Fn(&TransitionEvent) + Send + Sync>;

/// A handle to one circuit: the state machine every clone of a [`CircuitBreaker`] shares.
///
/// Cheap to clone (an `Arc`). Read its [`state`](Self::state) and [`stats`](Self::stats),
/// control it by hand ([`force_open`](Self::force_open), [`disable`](Self::disable),
/// [`reset`](Self::reset)), listen to its transitions ([`on_transition`](Self::on_transition)),
/// change its thresholds live ([`reconfigure`](Self::reconfigure)), or run futures through
/// it without tower ([`call`](Self::call)).
///
/// # Semantics
///
/// * **Closed → Open** after an outcome, when the window holds at least
///   `minimum_request_count` calls and the trailing run of consecutive failures in it is at
///   least `failure_threshold` — or, when configured, the failure rate or slow-call rate
///   reaches its threshold (the minimum count still applies). A success ends the run.
/// * **Open → HalfOpen** lazily, on the first call after the break (no timer, no task: a
///   frozen Lambda sandbox thaws into a correct state). That call is the first probe.
/// * **HalfOpen** admits `half_open_max_calls` probes; when they have all succeeded the
///   circuit closes with an empty window; one failure re-opens it. A probe that is ignored,
///   dropped, or never called gives its slot back. A probe that never finishes (no timeout
///   in the stack, future never dropped) is given up at the probe deadline
///   ([`half_open_max_wait`](CircuitBreakerConfig::half_open_max_wait), by default the
///   recovery timeout): the first call after it re-opens the circuit with
///   [`TransitionReason::ProbeTimedOut`](crate::stats::TransitionReason::ProbeTimedOut), the break dated from the deadline, so the
///   circuit can never be wedged in HalfOpen. Checked lazily by admission, like the end
///   of a break: no timer, and nothing on the Closed path.
/// * Results of calls admitted before a transition are *late*: counted in the lifetime
///   stats, never changing state.
///
/// # Examples
///
/// ```
/// use tower_circuit_breaker::{Circuit, CircuitBreakerConfig, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let circuit = Circuit::named("dynamodb/storeUserMessage", CircuitBreakerConfig::dynamodb());
/// let out: Result<u32, _> = circuit.call(async { Ok::<_, std::io::Error>(7) }).await;
/// assert_eq!(out.unwrap(), 7);
/// assert_eq!(circuit.state(), CircuitState::Closed);
/// assert_eq!(circuit.stats().success_count, 1);
/// # }
/// ```
///
/// [`CircuitBreaker`]: crate::CircuitBreaker
#[derive(Clone)]
pub struct Circuit {
    shared: Arc<Shared>,
}

/// Fields the admission path reads on every call. Written on transitions and
/// reconfiguration, and (`word`, `probe_deadline`) by half-open probes taking, passing and
/// returning their slots: in Closed nothing writes the line, so it stays shared between
/// cores.
#[repr(align(128))]
struct Hot {
    word: AtomicU64,
    open_until: AtomicU64,
    width_ns: AtomicU64,
    expected_ns: AtomicU64,
    failure_threshold: AtomicU64,
    minimum_requests: AtomicU64,
    half_open_max: AtomicU32,
    /// Bit flags, see `FLAG_*`.
    flags: AtomicU32,
    failure_rate: AtomicU64,
    slow_rate: AtomicU64,
    /// The probe deadline of the HalfOpen state, in clock ns: the latest probe's admission
    /// plus `half_open_max_wait`. Read only in HalfOpen.
    probe_deadline: AtomicU64,
    /// `half_open_max_wait` in ns.
    probe_wait_ns: AtomicU64,
    /// Read by every call; written only when its source changes (see [`crate::clock`]).
    clock: Clock,
}

const FLAG_SLOW_IS_FAILURE: u32 = 1;
const FLAG_DROPPED_IS_FAILURE: u32 = 2;
const FLAG_METRICS_ONLY: u32 = 4;
const FLAG_RATES: u32 = 8;
/// The trip rule counts over `Shared::count`, not the time window. Fixed at creation.
const FLAG_COUNT: u32 = 16;

/// Fields written by outcomes. Not aligned: [`Shared`]'s layout keeps them off the lines
/// the Closed path reads.
struct Written {
    consecutive: AtomicU64,
    /// When the last success / failure may next be written: its `ns` plus the
    /// resolution; 0 when none yet (see `Circuit::last_time`).
    last_success: AtomicU64,
    last_failure: AtomicU64,
}

/// One circuit, laid out by hand (`repr(C)`, 5 × 128 bytes) so that no 128-byte block
/// (two 64-byte lines, the unit the adjacent-line prefetcher moves) holds both what every
/// call reads and what every outcome writes:
///
/// | bytes | what | written |
/// |---|---|---|
/// | 0–127 | `hot`: state word, tunables, clock | on transitions, by probes, on reconfiguration |
/// | 128–191 | `observer`, the window's stripe mask, cursor and pointers | once per bucket (the cursor) |
/// | 192–327 | the window's geometry and locks, `gate`, `written` | by outcomes (`written`); rarely the rest |
/// | 328–639 | the name and its copies, labels, the lock and what it guards | on cold paths |
///
/// (Issue 12: before this layout `hot` and `written` each had a 128-byte line of their
/// own and the labels two more `Arc`s: 1 152 bytes instead of 640, plus the `Arc` header,
/// 128 bytes with this alignment. The test `shared_keeps_what_calls_read_apart_from_what_outcomes_write`
/// holds the layout.)
#[repr(C)]
struct Shared {
    hot: Hot,
    /// Told of every outcome, rejection and transition; set when the circuit is made
    /// (see [`CircuitObserver`]). `None`: one untaken branch per call.
    observer: Option<Box<dyn CircuitObserver>>,
    window: Window,
    /// The count window, when the config chose one ([`SlidingWindow::Count`]; then
    /// `FLAG_COUNT` is set): the trip rule and the stats' window read it instead of
    /// `window`'s buckets, which stay empty (`window` still keeps the out-of-window
    /// outcomes and the rejected and ignored counts).
    count: Option<Box<CountWindow>>,
    /// Consulted only when a break is over, before the circuit goes HalfOpen; installed
    /// by an edge that attaches later (see [`AdmissionGate`]). Empty: nothing allocated.
    gate: OnceLock<Box<dyn AdmissionGate>>,
    written: Written,
    name: Arc<str>,
    /// Copies of the name for rejections, one per window stripe, made on the stripe's
    /// first rejection (a circuit that never rejects holds none).
    names: Box<[OnceLock<Name>]>,
    origin_wall: SystemTime,
    has_waiters: AtomicBool,
    /// Where the operation starts in `name` (`service/operation`), 0 for a circuit made
    /// by name only (service: the whole name, operation: empty). The labels are cut from
    /// the name when an event needs them instead of being kept twice.
    operation_at: u32,
    locked: Mutex<Locked>,
}

/// State that changes only on transitions (and reconfiguration), guarded by one lock.
struct Locked {
    config: CircuitBreakerConfig,
    /// Openings since the circuit last closed, for the growing break duration.
    opens_in_a_row: u32,
    /// `None` until the first listener: an empty `Arc<[_]>` would still be an allocation.
    listeners: Option<Arc<[Listener]>>,
    events: VecDeque<TransitionEvent>,
    dispatching: bool,
    waiters: Vec<Waker>,
    rng: u64,
}

impl std::fmt::Debug for Circuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Circuit")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Circuit {
    /// A circuit named `"default"`.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::named("default", config)
    }

    /// A circuit with a name, used in errors, events and logs.
    pub fn named(name: impl Into<Arc<str>>, config: CircuitBreakerConfig) -> Self {
        Self::build(name.into(), 0, config)
    }

    /// A circuit for one operation of one service, named `service/operation`; events,
    /// logs and metrics carry both labels. This is how a
    /// [`CircuitBreakerRegistry`](crate::CircuitBreakerRegistry) makes its circuits.
    pub fn for_operation(service: &str, operation: &str, config: CircuitBreakerConfig) -> Self {
        // A service name of 4 GiB or more (refused by a registry long before) would be
        // reported whole, with an empty operation.
        let operation_at = u32::try_from(service.len() + 1).unwrap_or(0);
        Self::build(
            Arc::from(format!("{service}/{operation}")),
            operation_at,
            config,
        )
    }

    /// Every public constructor ends here: the circuit gets the observer the crate's
    /// wiring assembles for a new circuit (with feature `metrics`, its counters and state
    /// gauge; see `crate::default_observer`, the one place outside the core that decides
    /// it). The core itself names no edge.
    fn build(name: Arc<str>, operation_at: u32, config: CircuitBreakerConfig) -> Self {
        let (service, operation) = labels(&name, operation_at);
        let observer = crate::default_observer::for_new_circuit(service, operation);
        Self::with_observer(name, operation_at, config, observer)
    }

    /// A circuit whose outcomes, rejections and transitions are reported to `observer`
    /// (none: nothing is reported, and the Closed path pays one untaken branch).
    pub(crate) fn with_observer(
        name: Arc<str>,
        operation_at: u32,
        config: CircuitBreakerConfig,
        observer: Option<Box<dyn CircuitObserver>>,
    ) -> Self {
        let clock = Clock::new(config.clock_span_ns());
        Self::assemble(
            name,
            operation_at,
            config,
            observer,
            clock,
            SystemTime::now(),
        )
    }

    /// A circuit on a manual clock (see [`crate::clock`]), for a simulation: its time is
    /// what [`set_manual_time`](Self::set_manual_time) last set, in nanoseconds after
    /// `origin_wall` (which stamps its events and seeds its jitter, so a simulation is
    /// deterministic). No observer.
    #[cfg_attr(not(feature = "replay"), allow(dead_code))]
    pub(crate) fn with_manual_clock(
        name: Arc<str>,
        operation_at: u32,
        config: CircuitBreakerConfig,
        origin_wall: SystemTime,
    ) -> Self {
        Self::assemble(
            name,
            operation_at,
            config,
            None,
            Clock::manual(),
            origin_wall,
        )
    }

    /// Sets the time of a circuit made by [`with_manual_clock`](Self::with_manual_clock),
    /// in nanoseconds after its `origin_wall`; no effect on another circuit. The time
    /// should not go back.
    #[cfg_attr(not(feature = "replay"), allow(dead_code))]
    #[inline]
    pub(crate) fn set_manual_time(&self, ns: u64) {
        self.shared.hot.clock.set_manual_ns(ns);
    }

    fn assemble(
        name: Arc<str>,
        operation_at: u32,
        config: CircuitBreakerConfig,
        observer: Option<Box<dyn CircuitObserver>>,
        clock: Clock,
        origin_wall: SystemTime,
    ) -> Self {
        let window = Window::new(config.window_buckets as usize);
        let count = match config.sliding_window {
            SlidingWindow::Count(n) => Some(Box::new(CountWindow::new(n))),
            _ => None,
        };
        let seed = origin_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let shared = Arc::new(Shared {
            hot: Hot {
                word: AtomicU64::new(Word::new(CircuitState::Closed, Mode::Normal, 0).0),
                open_until: AtomicU64::new(0),
                width_ns: AtomicU64::new(0),
                expected_ns: AtomicU64::new(0),
                failure_threshold: AtomicU64::new(0),
                minimum_requests: AtomicU64::new(0),
                half_open_max: AtomicU32::new(0),
                flags: AtomicU32::new(0),
                failure_rate: AtomicU64::new(0),
                slow_rate: AtomicU64::new(0),
                probe_deadline: AtomicU64::new(0),
                probe_wait_ns: AtomicU64::new(0),
                clock,
            },
            written: Written {
                consecutive: AtomicU64::new(0),
                last_success: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
            },
            names: (0..window.stripe_count())
                .map(|_| OnceLock::new())
                .collect(),
            window,
            count,
            name,
            operation_at,
            origin_wall,
            observer,
            gate: OnceLock::new(),
            has_waiters: AtomicBool::new(false),
            locked: Mutex::new(Locked {
                config: config.clone(),
                opens_in_a_row: 0,
                listeners: None,
                events: VecDeque::new(),
                dispatching: false,
                waiters: Vec::new(),
                rng: seed | 1,
            }),
        });
        shared.store_tunables(&config);
        Circuit { shared }
    }

    /// The circuit's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The service and operation labels for an event (see
    /// [`for_operation`](Self::for_operation)): a circuit made by name only shares its
    /// name as the service.
    fn label_arcs(&self) -> (Arc<str>, Arc<str>) {
        if self.shared.operation_at == 0 {
            return (self.shared.name.clone(), Arc::from(""));
        }
        let (service, operation) = labels(&self.shared.name, self.shared.operation_at);
        (Arc::from(service), Arc::from(operation))
    }

    /// The name for a rejection: this thread's stripe's copy (see [`Name`]), made on the
    /// stripe's first rejection.
    #[inline]
    pub(crate) fn rejection_name(&self) -> Name {
        self.shared.names[self.shared.window.stripe()]
            .get_or_init(|| Name::new(&self.shared.name))
            .clone()
    }

    /// The current state. Reading it never changes it: an Open circuit whose break has
    /// ended still reads `Open` until a call arrives (see
    /// [`CircuitBreakerStats::next_attempt_time`]).
    pub fn state(&self) -> CircuitState {
        self.word().state()
    }

    /// The configuration in force.
    pub fn config(&self) -> CircuitBreakerConfig {
        self.lock().config.clone()
    }

    /// Whether two handles refer to the same circuit.
    pub fn ptr_eq(&self, other: &Circuit) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    #[inline]
    fn word(&self) -> Word {
        Word(self.shared.hot.word.load(Ordering::Acquire))
    }

    /// The hot-path clock read (see [`crate::clock`]).
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        self.shared.hot.clock.now_ns()
    }

    /// The clock read of cold paths: also notices a tokio clock paused after creation.
    fn now_ns_checked(&self) -> u64 {
        self.shared.hot.clock.now_ns_checked()
    }

    fn wall(&self, ns: u64) -> SystemTime {
        self.shared.origin_wall + Duration::from_nanos(ns)
    }

    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.shared.hot.clock.origin() + Duration::from_nanos(ns)
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        // Listeners run outside the lock and nothing inside it panics on user input, but
        // never let a poisoned lock take the circuit down with it.
        self.shared.locked.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn flags(&self) -> u32 {
        self.shared.hot.flags.load(Ordering::Relaxed)
    }

    // ===== stats =====

    /// A snapshot of the circuit's counts and state.
    pub fn stats(&self) -> CircuitBreakerStats {
        let locked = self.lock();
        self.stats_locked(&locked)
    }

    /// The window's counts (the count window's, when it counts calls) and the lifetime
    /// counts at `now`.
    fn counts_locked(&self, locked: &Locked, now: u64) -> (Counts, Counts) {
        let (mut window, mut life) = self
            .shared
            .window
            .snapshot(now, locked.config.bucket_width_ns());
        if let Some(count) = &self.shared.count {
            let (w, l) = count.snapshot();
            window = w;
            life.add(l);
        }
        (window, life)
    }

    fn stats_locked(&self, locked: &Locked) -> CircuitBreakerStats {
        let now = self.now_ns_checked();
        let hot = &self.shared.hot;
        let w = self.word();
        let (window, life) = self.counts_locked(locked, now);
        let (rejected, ignored) = self.shared.window.rejected_ignored();
        let slow_is_failure = locked.config.slow_call_is_failure;
        let trip_failures = window.trip_failures(slow_is_failure);
        let rate = |n: u64| {
            if window.calls == 0 {
                0.0
            } else {
                n as f64 / window.calls as f64
            }
        };
        let time = |cell: &AtomicU64| Self::last_time(cell).map(|t| self.wall(t));
        let manual_override = match w.mode() {
            Mode::Normal => None,
            Mode::ForcedOpen => Some(ManualOverride::ForcedOpen),
            Mode::Disabled => Some(ManualOverride::Disabled),
        };
        let next_attempt_time = match (w.state(), w.mode()) {
            (CircuitState::Open, Mode::Normal) => {
                Some(self.wall(hot.open_until.load(Ordering::Acquire)))
            }
            (CircuitState::HalfOpen, Mode::Normal)
                if w.probes_out() > 0
                    && w.probes_out() + w.probe_passes() >= locked.config.half_open_max_calls =>
            {
                Some(self.wall(hot.probe_deadline.load(Ordering::Acquire)))
            }
            _ => None,
        };
        CircuitBreakerStats {
            state: w.state(),
            manual_override,
            metrics_only: locked.config.metrics_only,
            failure_count: life.failures,
            success_count: life.successes(),
            total_requests: life.calls,
            last_failure_time: time(&self.shared.written.last_failure),
            last_success_time: time(&self.shared.written.last_success),
            next_attempt_time,
            failure_rate: rate(trip_failures),
            slow_call_rate: rate(window.slow()),
            rejected_count: rejected,
            ignored_count: ignored,
            slow_count: life.slow(),
            consecutive_failures: self
                .shared
                .written
                .consecutive
                .load(Ordering::Relaxed)
                .min(trip_failures),
            half_open_in_flight: if w.state() == CircuitState::HalfOpen {
                w.probes_out()
            } else {
                0
            },
            window: WindowStats {
                requests: window.calls,
                failures: window.failures,
                successes: window.successes(),
                slow: window.slow(),
            },
        }
    }

    // ===== without tower =====

    /// Runs `operation` through the circuit: every `Err` is a failure.
    ///
    /// The circuit decides when the returned future is first polled; if it rejects,
    /// `operation` is dropped without being polled.
    ///
    /// # Errors
    ///
    /// [`CallError::Rejected`] when the circuit rejects, [`CallError::Inner`] with the
    /// operation's own error otherwise.
    pub fn call<F, T, E>(&self, operation: F) -> impl Future<Output = Result<T, CallError<E>>>
    where
        F: Future<Output = Result<T, E>>,
    {
        // `call_with`'s future itself, not one awaiting it: one state machine, not two.
        self.call_with(&ErrorsAsFailures, operation)
    }

    /// Asks for the right to make one call, without running it: a [`Permit`] to record
    /// the outcome with, or the rejection. The call is timed from now; the permit dropped
    /// unrecorded follows the dropped-call policy (see [`Permit`]). A rejection counts as
    /// one, as with [`call`](Self::call).
    ///
    /// [`call`](Self::call) runs on the same permits; use this where the work is not one
    /// future, e.g. a response body whose end decides the outcome (with feature `http`,
    /// [`RecordBody`](crate::body::RecordBody)).
    ///
    /// # Errors
    ///
    /// [`CircuitOpen`](crate::error::CircuitOpen) when the circuit rejects the call.
    pub fn try_acquire(&self) -> Result<Permit, crate::error::CircuitOpen> {
        let mut permit = Permit::acquire(self.clone())?;
        permit.start();
        Ok(permit)
    }

    /// Like [`call`](Self::call), with a classifier deciding what counts as a failure.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_with<C, F, T, E>(
        &self,
        classifier: &C,
        operation: F,
    ) -> Result<T, CallError<E>>
    where
        C: Classify<T, E> + ?Sized,
        F: Future<Output = Result<T, E>>,
    {
        let mut permit = Permit::acquire(self).map_err(CallError::Rejected)?;
        permit.start();
        let result = operation.await;
        permit.complete(classifier.classify(&result));
        result.map_err(CallError::Inner)
    }
}

/// The service and operation labels of a circuit named `name`, its operation starting at
/// `operation_at` (0: named by name only).
fn labels(name: &str, operation_at: u32) -> (&str, &str) {
    match operation_at as usize {
        0 => (name, ""),
        at => (&name[..at - 1], &name[at..]),
    }
}

#[cfg(test)]
mod tests {
    /// The layout [`Shared`](super::Shared)'s docs describe: 5 lines, `hot` one of them,
    /// what every outcome reads in the first two, what outcomes write from the third on.
    #[test]
    fn shared_keeps_what_calls_read_apart_from_what_outcomes_write() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<super::Hot>(), 128);
        assert!(size_of::<super::Shared>() <= 5 * 128);
        let written = offset_of!(super::Shared, written);
        assert!(written >= 2 * 128, "written at {written}");
        let window = offset_of!(super::Shared, window);
        assert!(window + crate::window::Window::HOT_BYTES <= 2 * 128);
    }
}
