//! The shared state machine.

use crate::CircuitState;
use crate::classify::{Classify, ErrorsAsFailures, Verdict};
use crate::clock::Clock;
use crate::config::{CircuitBreakerConfig, ConfigError};
use crate::error::{CallError, CircuitOpen, Name, RejectReason};
use crate::state::{Mode, Word};
use crate::stats::{
    CircuitBreakerStats, ManualOverride, TransitionEvent, TransitionReason, WindowStats,
};
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering, fence};
use crate::window::{Outcome, Window};
use std::borrow::Borrow;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

type Listener = Arc<dyn Fn(&TransitionEvent) + Send + Sync>;

/// Last-success and last-failure times are written at most once per this many
/// nanoseconds per circuit, so two cores do not fight over their cache line.
const LAST_TIME_RESOLUTION_NS: u64 = 1_000_000;

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
///   [`TransitionReason::ProbeTimedOut`], the break dated from the deadline, so the
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

/// Fields the admission path reads on every call. Written only on transitions and
/// reconfiguration, so the line stays shared between cores.
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
}

const FLAG_SLOW_IS_FAILURE: u32 = 1;
const FLAG_DROPPED_IS_FAILURE: u32 = 2;
const FLAG_METRICS_ONLY: u32 = 4;
const FLAG_RATES: u32 = 8;

/// Fields written by outcomes.
#[repr(align(128))]
struct Written {
    consecutive: AtomicU64,
    /// `ns + 1` of the last success / failure; 0 when none yet.
    last_success: AtomicU64,
    last_failure: AtomicU64,
}

struct Shared {
    hot: Hot,
    written: Written,
    window: Window,
    name: Arc<str>,
    /// Copies of the name for rejections, one per window stripe, made on the stripe's
    /// first rejection (a circuit that never rejects holds none).
    names: Box<[std::sync::OnceLock<Name>]>,
    service: Arc<str>,
    operation: Arc<str>,
    clock: Clock,
    origin_wall: SystemTime,
    has_waiters: AtomicBool,
    slow: Mutex<Slow>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::CircuitMetrics,
    #[cfg(feature = "fleet")]
    fleet: crate::fleet::FleetHook,
}

/// State that changes only on transitions, guarded by one lock.
struct Slow {
    config: CircuitBreakerConfig,
    /// Openings since the circuit last closed, for the growing break duration.
    opens_in_a_row: u32,
    listeners: Arc<[Listener]>,
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

/// What kind of admission a permit stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Closed: the outcome is recorded in the window.
    Tracked,
    /// A half-open probe holding a slot.
    Probe,
    /// Disabled: nothing is recorded.
    Untracked,
    /// Metrics-only mode, admitted although the circuit would have rejected it: the
    /// outcome counts in the lifetime stats only.
    Shadow,
}

/// What admission granted: the kind of call and the generation it was admitted in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    kind: Kind,
    generation: u64,
}

/// What admission refused: the [`CircuitOpen`] without the circuit's name, which the
/// caller adds from whichever handle to it is cheapest to clone where it stands.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rejection {
    reason: RejectReason,
    retry_after: Option<Duration>,
}

impl Rejection {
    pub(crate) fn into_error(self, circuit: Name) -> CircuitOpen {
        CircuitOpen::new(circuit, self.reason, self.retry_after)
    }
}

/// The right to make one call, and the duty to report how it went.
///
/// Taken by [`Permit::acquire`], or made from a [`Circuit::admit`] ticket. [`start`](Self::start) when the
/// call begins and [`complete`](Self::complete) when it ends. Dropped without `complete`:
/// a started call follows the dropped-call policy; an unstarted one only gives back its
/// probe slot.
///
/// `H` is how the permit reaches its circuit: a borrowed `&Circuit` where the call cannot
/// outlive it ([`Circuit::call`]), an owned handle where it can (a tower response future).
/// Borrowing costs nothing; an owned handle costs a reference-count increment and
/// decrement, which the tower service keeps on a cache line of its own (see
/// `service::Handle`).
pub(crate) struct Permit<H: Borrow<Circuit> = Circuit> {
    circuit: H,
    kind: Kind,
    generation: u64,
    /// `ns + 1` when started, 0 before.
    start: u64,
}

impl<H: Borrow<Circuit>> std::fmt::Debug for Permit<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<H: Borrow<Circuit>> Permit<H> {
    /// Asks `circuit`'s circuit to admit one call, counting a rejection.
    #[inline]
    pub(crate) fn acquire(circuit: H) -> Result<Self, CircuitOpen> {
        match circuit.borrow().admit(true) {
            Ok(ticket) => Ok(Self::new(circuit, ticket)),
            Err(rejection) => Err(rejection.into_error(circuit.borrow().rejection_name())),
        }
    }

    /// The permit for a call `circuit` admitted with [`Circuit::admit`].
    #[inline]
    pub(crate) fn new(circuit: H, ticket: Ticket) -> Self {
        Permit {
            circuit,
            kind: ticket.kind,
            generation: ticket.generation,
            start: 0,
        }
    }

    /// Marks the start of the call (reads the clock once).
    #[inline]
    pub(crate) fn start(&mut self) {
        self.start = self.circuit.borrow().now_ns() + 1;
    }

    /// Reports the verdict of the call (reads the clock once).
    #[inline]
    pub(crate) fn complete(mut self, verdict: Verdict) {
        let kind = std::mem::replace(&mut self.kind, Kind::Untracked);
        let start = self.start;
        self.circuit
            .borrow()
            .complete(kind, self.generation, start, verdict);
    }
}

impl<H: Borrow<Circuit>> Drop for Permit<H> {
    fn drop(&mut self) {
        let circuit = self.circuit.borrow();
        match self.kind {
            Kind::Untracked => {}
            _ if self.start == 0 => {
                if self.kind == Kind::Probe {
                    circuit.return_probe(self.generation);
                }
            }
            kind => circuit.dropped(kind, self.generation, self.start),
        }
    }
}

impl Circuit {
    /// A circuit named `"default"`.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::named("default", config)
    }

    /// A circuit with a name, used in errors, events and logs.
    pub fn named(name: impl Into<Arc<str>>, config: CircuitBreakerConfig) -> Self {
        let name = name.into();
        Self::build(name.clone(), name, Arc::from(""), config)
    }

    /// A circuit for one operation of one service, named `service/operation`; events,
    /// logs and metrics carry both labels. This is how a
    /// [`CircuitBreakerRegistry`](crate::CircuitBreakerRegistry) makes its circuits.
    pub fn for_operation(service: &str, operation: &str, config: CircuitBreakerConfig) -> Self {
        Self::build(
            Arc::from(format!("{service}/{operation}")),
            Arc::from(service),
            Arc::from(operation),
            config,
        )
    }

    fn build(
        name: Arc<str>,
        service: Arc<str>,
        operation: Arc<str>,
        config: CircuitBreakerConfig,
    ) -> Self {
        let clock = Clock::new(config.clock_span_ns());
        let origin_wall = SystemTime::now();
        let window = Window::new(config.window_buckets as usize);
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
            },
            written: Written {
                consecutive: AtomicU64::new(0),
                last_success: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
            },
            names: (0..window.stripe_count())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            window,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::CircuitMetrics::new(&service, &operation),
            #[cfg(feature = "fleet")]
            fleet: crate::fleet::FleetHook::default(),
            name,
            service,
            operation,
            clock,
            origin_wall,
            has_waiters: AtomicBool::new(false),
            slow: Mutex::new(Slow {
                config: config.clone(),
                opens_in_a_row: 0,
                listeners: Arc::from(Vec::new()),
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

    /// The name for a rejection: this thread's stripe's copy (see [`Name`]), made on the
    /// stripe's first rejection.
    #[inline]
    pub(crate) fn rejection_name(&self) -> Name {
        self.shared.names[self.shared.window.stripe()]
            .get_or_init(|| Name::new(&self.shared.name))
            .clone()
    }

    /// The current state. Reading it never changes it: an Open circuit whose recovery
    /// timeout has passed still reads `Open` until a call arrives (see
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
        self.shared.clock.now_ns()
    }

    /// The clock read of cold paths: also notices a tokio clock paused after creation.
    fn now_ns_checked(&self) -> u64 {
        self.shared.clock.now_ns_checked()
    }

    fn wall(&self, ns: u64) -> SystemTime {
        self.shared.origin_wall + Duration::from_nanos(ns)
    }

    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.shared.clock.origin() + Duration::from_nanos(ns)
    }

    fn lock(&self) -> MutexGuard<'_, Slow> {
        // Listeners run outside the lock and nothing inside it panics on user input, but
        // never let a poisoned lock take the circuit down with it.
        self.shared.slow.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn flags(&self) -> u32 {
        self.shared.hot.flags.load(Ordering::Relaxed)
    }

    // ===== admission =====

    /// The admission decision; `count`: whether a rejection counts as one. The ticket
    /// must become a [`Permit`] at once, which reports the call.
    #[inline]
    pub(crate) fn admit(&self, count: bool) -> Result<Ticket, Rejection> {
        let w = self.word();
        if w.is_closed_normal() {
            return Ok(ticket(Kind::Tracked, w.generation()));
        }
        self.acquire_slow(w, count)
    }

    #[inline(never)]
    fn acquire_slow(&self, mut w: Word, count: bool) -> Result<Ticket, Rejection> {
        let hot = &self.shared.hot;
        loop {
            match (w.mode(), w.state()) {
                (Mode::Disabled, _) => return Ok(ticket(Kind::Untracked, w.generation())),
                (Mode::ForcedOpen, _) => {
                    return self.reject(RejectReason::ForcedOpen, None, w, count);
                }
                (_, CircuitState::Closed) => return Ok(ticket(Kind::Tracked, w.generation())),
                (_, CircuitState::Open) => {
                    let until = hot.open_until.load(Ordering::Acquire);
                    let now = self.shared.clock.now_ns_near(until);
                    if now < until {
                        return self.reject(
                            RejectReason::Open,
                            Some(Duration::from_nanos(until - now)),
                            w,
                            count,
                        );
                    }
                    // Fleet-wide probe leases: the only fleet check on any admission path.
                    #[cfg(feature = "fleet")]
                    if self.shared.fleet.must_wait_for_lease() {
                        return self.reject(RejectReason::Open, None, w, count);
                    }
                    match self.begin_half_open(w) {
                        Some(ticket) => return Ok(ticket),
                        None => w = self.word(),
                    }
                }
                (_, CircuitState::HalfOpen) => {
                    let max = hot.half_open_max.load(Ordering::Relaxed);
                    if w.probes_out() + w.probe_passes() >= max {
                        // Only probes still out can hang (with none out, the probes all
                        // passed and the close is under way).
                        if w.mode() == Mode::Normal && w.probes_out() > 0 && self.probe_timed_out(w)
                        {
                            // Re-opened (or changed under us): look again. The Open arm
                            // rejects until the new break ends, which it may already have.
                            w = self.word();
                            continue;
                        }
                        return self.reject(RejectReason::HalfOpenFull, None, w, count);
                    }
                    // Before the slot is taken: whoever sees the slot taken sees a
                    // deadline that gives this probe its full wait.
                    self.extend_probe_deadline();
                    match hot.word.compare_exchange_weak(
                        w.0,
                        w.with_probe_taken().0,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(ticket(Kind::Probe, w.generation())),
                        Err(actual) => w = Word(actual),
                    }
                }
            }
        }
    }

    /// Moves the probe deadline to at least now + `half_open_max_wait`.
    fn extend_probe_deadline(&self) {
        let hot = &self.shared.hot;
        let until = self
            .now_ns_checked()
            .saturating_add(hot.probe_wait_ns.load(Ordering::Relaxed));
        hot.probe_deadline.fetch_max(until, Ordering::AcqRel);
    }

    /// HalfOpen with every slot taken (`seen`): when the probe deadline has passed, the
    /// unfinished probes count as failed and the circuit re-opens. True when the word
    /// changed (by this re-opening or by anything else) and admission must look again.
    #[cold]
    fn probe_timed_out(&self, seen: Word) -> bool {
        let hot = &self.shared.hot;
        let deadline = hot.probe_deadline.load(Ordering::Acquire);
        if self.shared.clock.now_ns_near(deadline) < deadline {
            return false;
        }
        let opened = self.transition(TransitionReason::ProbeTimedOut, |cur| {
            // The word unchanged since the slots were seen full, and the deadline (which a
            // new probe extends before taking its slot) still passed.
            let deadline = hot.probe_deadline.load(Ordering::Acquire);
            (cur == seen && self.shared.clock.now_ns_near(deadline) >= deadline)
                .then_some((CircuitState::Open, Mode::Normal))
        });
        if opened.is_some() {
            guarded(|| {
                tracing::warn!(
                    circuit = %self.shared.name,
                    probes_in_flight = seen.probes_out(),
                    "half-open probes unfinished past the probe deadline: counted as failed, circuit re-opened"
                );
            });
        }
        opened.is_some() || self.word() != seen
    }

    fn reject(
        &self,
        reason: RejectReason,
        retry_after: Option<Duration>,
        w: Word,
        count: bool,
    ) -> Result<Ticket, Rejection> {
        if reason != RejectReason::ForcedOpen && self.flags() & FLAG_METRICS_ONLY != 0 {
            // Shadow mode admits the call; it still counts as the rejection it would have
            // been, whichever way admission was asked for.
            self.count_rejected();
            return Ok(ticket(Kind::Shadow, w.generation()));
        }
        if count {
            self.count_rejected();
        }
        Err(Rejection {
            reason,
            retry_after,
        })
    }

    fn count_rejected(&self) {
        self.shared.window.count_rejected();
        #[cfg(feature = "metrics")]
        self.shared.metrics.rejected.increment(1);
    }

    /// When a rejected caller may try again: the instant the break ends, if the circuit
    /// is Open on a timer; `None` when only a transition can help. (The fleet sync's
    /// view; backpressure waiters use [`retry_at`](Self::retry_at).)
    #[cfg(feature = "fleet")]
    pub(crate) fn reopens_at(&self) -> Option<Instant> {
        let w = self.word();
        (w.state() == CircuitState::Open && w.mode() == Mode::Normal)
            .then(|| self.instant(self.shared.hot.open_until.load(Ordering::Acquire)))
    }

    /// When a rejected backpressure waiter should look again: the end of the break while
    /// Open, the probe deadline while HalfOpen with every slot taken; `None` when only a
    /// transition or a returned slot can help (both wake registered waiters).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        let w = self.word();
        if w.mode() != Mode::Normal {
            return None;
        }
        let hot = &self.shared.hot;
        match w.state() {
            CircuitState::Open => Some(self.instant(hot.open_until.load(Ordering::Acquire))),
            CircuitState::HalfOpen
                if w.probes_out() > 0
                    && w.probes_out() + w.probe_passes()
                        >= hot.half_open_max.load(Ordering::Relaxed) =>
            {
                Some(self.instant(hot.probe_deadline.load(Ordering::Acquire)))
            }
            _ => None,
        }
    }

    /// Registers a waker to be woken on the next transition or returned probe slot.
    pub(crate) fn register_waiter(&self, waker: &Waker) {
        let mut slow = self.lock();
        if !slow.waiters.iter().any(|w| w.will_wake(waker)) {
            slow.waiters.push(waker.clone());
        }
        self.shared.has_waiters.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake_waiters`: either the caller's next look at the state
        // word sees the transition, or the transition sees this flag.
        fence(Ordering::SeqCst);
    }

    fn wake_waiters(&self) {
        fence(Ordering::SeqCst);
        if self.shared.has_waiters.load(Ordering::SeqCst) {
            let waiters = {
                let mut slow = self.lock();
                self.shared.has_waiters.store(false, Ordering::Release);
                std::mem::take(&mut slow.waiters)
            };
            waiters.into_iter().for_each(Waker::wake);
        }
    }

    // ===== outcomes =====

    #[inline]
    fn complete(&self, kind: Kind, generation: u64, start: u64, verdict: Verdict) {
        if kind == Kind::Untracked {
            return;
        }
        if verdict == Verdict::Ignored {
            // An ignored call records nothing timed: no clock read for it.
            self.shared.window.count_ignored();
            #[cfg(feature = "metrics")]
            self.shared.metrics.ignored.increment(1);
            if kind == Kind::Probe {
                self.return_probe(generation);
            }
            return;
        }
        let now = self.now_ns();
        let hot = &self.shared.hot;
        let slow =
            now.saturating_sub(start.saturating_sub(1)) > hot.expected_ns.load(Ordering::Relaxed);
        let outcome = Outcome {
            failed: verdict != Verdict::Success,
            slow,
        };
        #[cfg(feature = "metrics")]
        self.count_metrics(outcome);
        self.note_time(now, outcome.failed);
        let w = self.word();
        if kind == Kind::Shadow || w.generation() != generation {
            self.shared.window.record_outside(outcome);
            return;
        }
        let flags = self.flags();
        let trip_failure = outcome.failed || (slow && flags & FLAG_SLOW_IS_FAILURE != 0);
        if kind == Kind::Probe {
            self.count_run(trip_failure);
            self.shared.window.record_outside(outcome);
            match verdict {
                Verdict::OpenFor(d) => self.open(generation, TransitionReason::RetryAfter, Some(d)),
                _ if trip_failure => self.open(generation, TransitionReason::ProbeFailed, None),
                _ => self.pass_probe(generation),
            }
            return;
        }
        let width = hot.width_ns.load(Ordering::Relaxed);
        // The window first, then the run: whoever's failure completes the run sees, through
        // the run counter, every outcome recorded before it (found by the loom model).
        self.shared.window.record(now, width, outcome);
        let run = self.count_run(trip_failure);
        if let Verdict::OpenFor(d) = verdict {
            self.open(generation, TransitionReason::RetryAfter, Some(d));
        } else if (trip_failure && run >= hot.failure_threshold.load(Ordering::Relaxed))
            || flags & FLAG_RATES != 0
        {
            self.evaluate(generation, now, width, run, flags);
        }
    }

    /// Extends or ends the run of consecutive failures; returns its new length.
    #[inline]
    fn count_run(&self, trip_failure: bool) -> u64 {
        let consecutive = &self.shared.written.consecutive;
        if trip_failure {
            // Release: the outcome recorded before; acquire: the ones recorded before the
            // failures this one follows.
            consecutive.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            if consecutive.load(Ordering::Relaxed) != 0 {
                consecutive.store(0, Ordering::Release);
            }
            0
        }
    }

    /// A started call's future was dropped before it completed.
    #[cold]
    fn dropped(&self, kind: Kind, generation: u64, start: u64) {
        if self.flags() & FLAG_DROPPED_IS_FAILURE != 0 {
            self.complete(kind, generation, start, Verdict::Failure);
        } else {
            self.complete(kind, generation, start, Verdict::Ignored);
        }
    }

    #[cfg(feature = "metrics")]
    #[inline]
    fn count_metrics(&self, o: Outcome) {
        let m = &self.shared.metrics;
        if o.failed { &m.failure } else { &m.success }.increment(1);
        if o.slow {
            m.slow.increment(1);
        }
    }

    #[inline]
    fn note_time(&self, now: u64, failed: bool) {
        let cell = if failed {
            &self.shared.written.last_failure
        } else {
            &self.shared.written.last_success
        };
        let last = cell.load(Ordering::Relaxed);
        if last == 0 || now + 1 >= last + LAST_TIME_RESOLUTION_NS {
            cell.store(now + 1, Ordering::Relaxed);
        }
    }

    /// Checks the trip rule against the window.
    #[inline(never)]
    fn evaluate(&self, generation: u64, now: u64, width: u64, run: u64, flags: u32) {
        let hot = &self.shared.hot;
        let counts = self.shared.window.counts(now, width);
        if counts.calls < hot.minimum_requests.load(Ordering::Relaxed) || counts.calls == 0 {
            return;
        }
        let trip_failures = counts.trip_failures(flags & FLAG_SLOW_IS_FAILURE != 0);
        let mut trip = run.min(trip_failures) >= hot.failure_threshold.load(Ordering::Relaxed);
        if !trip && flags & FLAG_RATES != 0 {
            let calls = counts.calls as f64;
            let rate = f64::from_bits(hot.failure_rate.load(Ordering::Relaxed));
            let slow_rate = f64::from_bits(hot.slow_rate.load(Ordering::Relaxed));
            trip = (rate > 0.0 && trip_failures as f64 / calls >= rate)
                || (slow_rate > 0.0 && counts.slow() as f64 / calls >= slow_rate);
        }
        if trip {
            self.open(generation, TransitionReason::Tripped, None);
        }
    }

    fn return_probe(&self, generation: u64) {
        let word = &self.shared.hot.word;
        let mut w = self.word();
        while w.generation() == generation
            && w.state() == CircuitState::HalfOpen
            && w.probes_out() > 0
        {
            match word.compare_exchange_weak(
                w.0,
                w.with_probe_returned().0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.wake_waiters();
                    return;
                }
                Err(actual) => w = Word(actual),
            }
        }
    }

    fn pass_probe(&self, generation: u64) {
        let hot = &self.shared.hot;
        let mut w = self.word();
        while w.generation() == generation
            && w.state() == CircuitState::HalfOpen
            && w.probes_out() > 0
        {
            let next = w.with_probe_passed();
            match hot
                .word
                .compare_exchange_weak(w.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if next.probe_passes() >= hot.half_open_max.load(Ordering::Relaxed) {
                        self.transition(TransitionReason::ProbesSucceeded, |w| {
                            (w.generation() == generation && w.state() == CircuitState::HalfOpen)
                                .then_some((CircuitState::Closed, Mode::Normal))
                        });
                    } else {
                        self.wake_waiters();
                    }
                    return;
                }
                Err(actual) => w = Word(actual),
            }
        }
    }

    // ===== transitions =====

    /// Opens the circuit (from Closed or HalfOpen in `generation`).
    fn open(&self, generation: u64, reason: TransitionReason, for_: Option<Duration>) {
        self.transition_with(reason, for_, |w| {
            (w.generation() == generation
                && w.mode() == Mode::Normal
                && w.state() != CircuitState::Open)
                .then_some((CircuitState::Open, Mode::Normal))
        });
    }

    /// Moves Open → HalfOpen with the first probe slot taken for the caller. `None` when
    /// the word changed under us (someone else moved it).
    fn begin_half_open(&self, seen: Word) -> Option<Ticket> {
        let new = self.transition(TransitionReason::RecoveryTimeoutElapsed, |w| {
            (w == seen).then_some((CircuitState::HalfOpen, Mode::Normal))
        })?;
        Some(ticket(Kind::Probe, new.generation()))
    }

    /// Performs one transition under the lock if `decide` approves the current word, then
    /// dispatches events and wakes waiters outside it. Returns the new word.
    fn transition(
        &self,
        reason: TransitionReason,
        decide: impl Fn(Word) -> Option<(CircuitState, Mode)>,
    ) -> Option<Word> {
        self.transition_with(reason, None, decide)
    }

    fn transition_with(
        &self,
        reason: TransitionReason,
        break_for: Option<Duration>,
        decide: impl Fn(Word) -> Option<(CircuitState, Mode)>,
    ) -> Option<Word> {
        let hot = &self.shared.hot;
        let new = {
            let mut slow = self.lock();
            let mut cur = self.word();
            let mut break_ns = None;
            let (new, from) = loop {
                let (state, mode) = decide(cur)?;
                let opens = state == CircuitState::Open && mode == Mode::Normal;
                if opens {
                    // Stored before the word: whoever sees Open sees its deadline.
                    let d = *break_ns.get_or_insert_with(|| {
                        let d = break_for.unwrap_or_else(|| slow.break_duration());
                        // Saturate: a server-given `Retry-After` of centuries must not
                        // wrap into a short break.
                        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
                    });
                    let mut since = self.now_ns_checked();
                    if reason == TransitionReason::ProbeTimedOut {
                        // The break runs from the probe deadline, as if a timer had fired
                        // there: a circuit nobody called for a while thaws into the state
                        // it would be in (its fresh probe due, perhaps), like Open does.
                        since = since.min(hot.probe_deadline.load(Ordering::Acquire));
                    }
                    hot.open_until
                        .store(since.saturating_add(d), Ordering::Release);
                }
                if state == CircuitState::Closed && mode == Mode::Normal {
                    // Closing (probes passed, a reset, a fleet close) starts a normal Closed
                    // generation; nothing records into the window of the one being left, so
                    // the new one starts empty. (Disabling keeps the window for the stats.)
                    self.shared.window.clear();
                    self.shared.written.consecutive.store(0, Ordering::Relaxed);
                }
                let mut new = cur.next(state, mode);
                if reason == TransitionReason::RecoveryTimeoutElapsed {
                    // The caller that moves the circuit to HalfOpen is its first probe;
                    // its deadline is stored before the word, like a break's end.
                    hot.probe_deadline.store(
                        self.now_ns_checked()
                            .saturating_add(hot.probe_wait_ns.load(Ordering::Relaxed)),
                        Ordering::Release,
                    );
                    new = new.with_probe_taken();
                }
                match hot
                    .word
                    .compare_exchange(cur.0, new.0, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => break (new, cur.state()),
                    Err(actual) => cur = Word(actual),
                }
            };
            match new.state() {
                CircuitState::Open if new.mode() == Mode::Normal => {
                    slow.opens_in_a_row = slow.opens_in_a_row.saturating_add(1);
                }
                CircuitState::Closed => slow.opens_in_a_row = 0,
                _ => {}
            }
            if from != new.state() {
                let stats = self.stats_locked(&slow);
                slow.events.push_back(TransitionEvent {
                    circuit: self.shared.name.clone(),
                    service: self.shared.service.clone(),
                    operation: self.shared.operation.clone(),
                    from,
                    to: new.state(),
                    reason,
                    at: SystemTime::now(),
                    stats,
                });
            }
            new
        };
        self.dispatch();
        self.wake_waiters();
        Some(new)
    }

    /// Runs queued events through tracing, metrics and the listeners, in order, outside
    /// the lock.
    ///
    /// Every hook runs inside `catch_unwind`: a panicking tracing subscriber, metrics
    /// recorder or listener is logged (if logging itself still works) and skipped, and the
    /// "dispatching" flag is cleared by a drop guard whatever happens, so one bad hook can
    /// never silence the circuit's later events nor break the call that caused them.
    fn dispatch(&self) {
        /// Clears `dispatching` when dispatch ends, by return or by unwinding.
        struct Dispatching<'a>(&'a Circuit);
        impl Drop for Dispatching<'_> {
            fn drop(&mut self) {
                self.0.lock().dispatching = false;
            }
        }
        loop {
            let (event, listeners) = {
                let mut slow = self.lock();
                if slow.dispatching {
                    return;
                }
                match slow.events.pop_front() {
                    None => return,
                    Some(e) => {
                        slow.dispatching = true;
                        (e, slow.listeners.clone())
                    }
                }
            };
            let _dispatching = Dispatching(self);
            guarded(|| trace_transition(&event));
            #[cfg(feature = "metrics")]
            guarded(|| self.shared.metrics.transition(event.from, event.to));
            for listener in listeners.iter() {
                if catch_unwind(AssertUnwindSafe(|| listener(&event))).is_err() {
                    guarded(|| {
                        tracing::error!(
                            circuit = %event.circuit,
                            "circuit breaker listener panicked; the panic was caught and the call goes on"
                        );
                    });
                }
            }
        }
    }

    // ===== manual control =====

    /// Opens the circuit by hand: every call is rejected with
    /// [`RejectReason::ForcedOpen`] until [`reset`](Self::reset) or [`disable`](Self::disable).
    pub fn force_open(&self) {
        self.transition(TransitionReason::ForcedOpen, |w| {
            (w.mode() != Mode::ForcedOpen).then_some((CircuitState::Open, Mode::ForcedOpen))
        });
        guarded(|| tracing::info!(circuit = %self.shared.name, "circuit forced open by hand"));
    }

    /// Turns the circuit off: every call is admitted and nothing is recorded until
    /// [`reset`](Self::reset) or [`force_open`](Self::force_open).
    pub fn disable(&self) {
        self.transition(TransitionReason::Disabled, |w| {
            (w.mode() != Mode::Disabled).then_some((CircuitState::Closed, Mode::Disabled))
        });
        guarded(|| tracing::info!(circuit = %self.shared.name, "circuit disabled by hand"));
    }

    /// Back to Closed with an empty window and no override. Lifetime counts are kept.
    pub fn reset(&self) {
        self.transition(TransitionReason::Reset, |_| {
            Some((CircuitState::Closed, Mode::Normal))
        });
        guarded(|| tracing::info!(circuit = %self.shared.name, "circuit reset by hand"));
    }

    /// Replaces the configuration of the live circuit. State, window and every count are
    /// kept; new thresholds apply from the next outcome.
    ///
    /// Changing `monitoring_window` restarts the window: its counts move to the lifetime
    /// totals (nothing is lost), and the consecutive-failure run carries over.
    ///
    /// Lowering `half_open_max_calls` on a half-open circuit to no more than the probes
    /// that already succeeded closes it at once (reason
    /// [`ProbesSucceeded`](TransitionReason::ProbesSucceeded)); probes still in flight
    /// become late.
    ///
    /// # Errors
    ///
    /// `window_buckets` is fixed when the circuit is created; a different value is refused
    /// and nothing changes.
    pub fn reconfigure(&self, config: CircuitBreakerConfig) -> Result<(), ConfigError> {
        if config.window_buckets as usize != self.shared.window.buckets() {
            return Err(ConfigError::new(
                "window_buckets",
                "cannot change on a live circuit",
            ));
        }
        let mut slow = self.lock();
        let old_width = slow.config.bucket_width_ns();
        self.shared.store_tunables(&config);
        self.shared.clock.configure(config.clock_span_ns());
        if config.bucket_width_ns() != old_width {
            self.shared.window.clear();
        }
        let half_open_max = config.half_open_max_calls;
        slow.config = config;
        drop(slow);
        // Lowered below the probes that already passed: the half-open test is over. Left
        // alone, no probe would ever be admitted again and the circuit would stay HalfOpen.
        self.transition(TransitionReason::ProbesSucceeded, |w| {
            (w.state() == CircuitState::HalfOpen
                && w.mode() == Mode::Normal
                && w.probe_passes() >= half_open_max)
                .then_some((CircuitState::Closed, Mode::Normal))
        });
        Ok(())
    }

    /// Calls `listener` after every real state change, outside any lock, in order.
    /// A panicking listener is caught and logged; calls are not affected.
    pub fn on_transition<F>(&self, listener: F)
    where
        F: Fn(&TransitionEvent) + Send + Sync + 'static,
    {
        let mut slow = self.lock();
        let mut all: Vec<Listener> = slow.listeners.iter().cloned().collect();
        all.push(Arc::new(listener));
        slow.listeners = all.into();
    }

    // ===== stats =====

    /// A snapshot of the circuit's counts and state.
    pub fn stats(&self) -> CircuitBreakerStats {
        let slow = self.lock();
        self.stats_locked(&slow)
    }

    fn stats_locked(&self, slow: &Slow) -> CircuitBreakerStats {
        let now = self.now_ns_checked();
        let hot = &self.shared.hot;
        let w = self.word();
        let (window, life) = self
            .shared
            .window
            .snapshot(now, slow.config.bucket_width_ns());
        let (rejected, ignored) = self.shared.window.rejected_ignored();
        let slow_is_failure = slow.config.slow_call_is_failure;
        let trip_failures = window.trip_failures(slow_is_failure);
        let rate = |n: u64| {
            if window.calls == 0 {
                0.0
            } else {
                n as f64 / window.calls as f64
            }
        };
        let time = |cell: &AtomicU64| match cell.load(Ordering::Relaxed) {
            0 => None,
            t => Some(self.wall(t - 1)),
        };
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
                    && w.probes_out() + w.probe_passes() >= slow.config.half_open_max_calls =>
            {
                Some(self.wall(hot.probe_deadline.load(Ordering::Acquire)))
            }
            _ => None,
        };
        CircuitBreakerStats {
            state: w.state(),
            manual_override,
            metrics_only: slow.config.metrics_only,
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
    pub async fn call<F, T, E>(&self, operation: F) -> Result<T, CallError<E>>
    where
        F: Future<Output = Result<T, E>>,
    {
        self.call_with(&ErrorsAsFailures, operation).await
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

    // ===== fleet =====
    // Hooks for `crate::fleet`, all off the admission path. Nothing above depends on them
    // except the single lease check in `acquire_slow`.

    /// The fleet hook: the probe-lease gate and the sync's wake-up.
    #[cfg(feature = "fleet")]
    pub(crate) fn fleet_hook(&self) -> &crate::fleet::FleetHook {
        &self.shared.fleet
    }

    /// Adopts a fleet Open for `remaining`: a Closed circuit (no override) opens with
    /// [`TransitionReason::FleetOpen`]; an Open one keeps the later of its own deadline
    /// and the fleet's. Returns true when the circuit opened.
    #[cfg(feature = "fleet")]
    pub(crate) fn fleet_adopt_open(&self, remaining: Duration) -> bool {
        let opened = self
            .transition_with(TransitionReason::FleetOpen, Some(remaining), |w| {
                (w.state() == CircuitState::Closed && w.mode() == Mode::Normal)
                    .then_some((CircuitState::Open, Mode::Normal))
            })
            .is_some();
        if !opened {
            let _slow = self.lock();
            let w = self.word();
            if w.state() == CircuitState::Open && w.mode() == Mode::Normal {
                let until = self
                    .now_ns()
                    .saturating_add(u64::try_from(remaining.as_nanos()).unwrap_or(u64::MAX));
                self.shared
                    .hot
                    .open_until
                    .fetch_max(until, Ordering::AcqRel);
            }
        }
        opened
    }

    /// Follows a fleet close: an Open or HalfOpen circuit (no override) closes with an
    /// empty window. Returns true when it closed.
    #[cfg(feature = "fleet")]
    pub(crate) fn fleet_adopt_closed(&self) -> bool {
        self.transition(TransitionReason::FleetClosed, |w| {
            (w.state() != CircuitState::Closed && w.mode() == Mode::Normal)
                .then_some((CircuitState::Closed, Mode::Normal))
        })
        .is_some()
    }

    /// State, override, wall-clock open-until (Open without override only), the openings
    /// in a row, and the circuit's wall clock now, read together under the lock.
    #[cfg(feature = "fleet")]
    pub(crate) fn fleet_parts(&self) -> crate::fleet::CircuitParts {
        let slow = self.lock();
        let w = self.word();
        let normal = w.mode() == Mode::Normal;
        crate::fleet::CircuitParts {
            state: w.state(),
            normal,
            open_until: (w.state() == CircuitState::Open && normal)
                .then(|| self.wall(self.shared.hot.open_until.load(Ordering::Acquire))),
            opens_in_a_row: slow.opens_in_a_row,
            now: self.wall(self.now_ns()),
        }
    }

    /// Restores an Open state: a Closed circuit (no override) opens for `remaining` with
    /// [`TransitionReason::Restored`], and its count of openings in a row becomes at least
    /// `opens_in_a_row`. Returns true when it opened.
    #[cfg(feature = "fleet")]
    pub(crate) fn fleet_restore_open(&self, remaining: Duration, opens_in_a_row: u32) -> bool {
        let opened = self
            .transition_with(TransitionReason::Restored, Some(remaining), |w| {
                (w.state() == CircuitState::Closed && w.mode() == Mode::Normal)
                    .then_some((CircuitState::Open, Mode::Normal))
            })
            .is_some();
        if opened {
            let mut slow = self.lock();
            slow.opens_in_a_row = slow.opens_in_a_row.max(opens_in_a_row);
        }
        opened
    }
}

#[inline]
fn ticket(kind: Kind, generation: u64) -> Ticket {
    Ticket { kind, generation }
}

impl Shared {
    fn store_tunables(&self, c: &CircuitBreakerConfig) {
        let hot = &self.hot;
        hot.width_ns.store(c.bucket_width_ns(), Ordering::Relaxed);
        hot.expected_ns.store(
            c.expected_response_time.as_nanos() as u64,
            Ordering::Relaxed,
        );
        hot.failure_threshold
            .store(u64::from(c.failure_threshold), Ordering::Relaxed);
        hot.minimum_requests
            .store(u64::from(c.minimum_request_count), Ordering::Relaxed);
        hot.half_open_max
            .store(c.half_open_max_calls, Ordering::Relaxed);
        hot.probe_wait_ns.store(
            u64::try_from(c.half_open_max_wait().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        hot.failure_rate.store(
            c.failure_rate_threshold.unwrap_or(0.0).to_bits(),
            Ordering::Relaxed,
        );
        hot.slow_rate.store(
            c.slow_call_rate_threshold.unwrap_or(0.0).to_bits(),
            Ordering::Relaxed,
        );
        let flags = (c.slow_call_is_failure as u32 * FLAG_SLOW_IS_FAILURE)
            | (c.dropped_call_is_failure as u32 * FLAG_DROPPED_IS_FAILURE)
            | (c.metrics_only as u32 * FLAG_METRICS_ONLY)
            | ((c.failure_rate_threshold.is_some() || c.slow_call_rate_threshold.is_some()) as u32
                * FLAG_RATES);
        hot.flags.store(flags, Ordering::Release);
    }
}

impl Slow {
    /// The length of the next break: the recovery timeout, grown by the backoff.
    fn break_duration(&mut self) -> Duration {
        let base = self.config.recovery_timeout;
        let Some(b) = self.config.backoff else {
            return base;
        };
        let grown = base.as_secs_f64() * b.multiplier.powi(self.opens_in_a_row.min(1_000) as i32);
        let nominal = grown.min(b.max.as_secs_f64());
        let shrink = if b.jitter > 0.0 {
            b.jitter * self.next_unit()
        } else {
            0.0
        };
        Duration::from_secs_f64(nominal * (1.0 - shrink))
    }

    /// A pseudo-random number in `[0, 1)` (splitmix64): jitter needs spread, not secrecy.
    fn next_unit(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs a hook the circuit does not control (a tracing subscriber, a metrics recorder)
/// and swallows its panic: observability must never break a call or a transition.
fn guarded(hook: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(hook));
}

fn trace_transition(e: &TransitionEvent) {
    let s = &e.stats;
    macro_rules! event {
        ($level:ident, $msg:literal) => {
            tracing::$level!(
                circuit = %e.circuit,
                service = %e.service,
                operation = %e.operation,
                from = e.from.as_str(),
                to = e.to.as_str(),
                reason = e.reason.as_str(),
                failure_rate = s.failure_rate,
                window_requests = s.window.requests,
                window_failures = s.window.failures,
                consecutive_failures = s.consecutive_failures,
                total_requests = s.total_requests,
                rejected = s.rejected_count,
                $msg
            )
        };
    }
    match e.to {
        CircuitState::Open => event!(warn, "circuit opened"),
        CircuitState::HalfOpen => event!(info, "circuit half-open"),
        CircuitState::Closed => event!(info, "circuit closed"),
    }
}
