//! Admission: the decision, the [`Permit`] it grants, and the waiters it leaves.
//!
//! The Closed path is [`Circuit::admit`]'s first branch: one load of the state word.
//! Everything else (Open, HalfOpen, overrides, the end of a break, the probe deadline)
//! is [`Circuit::admit_cold`].

use super::events::guarded;
use super::{Circuit, FLAG_METRICS_ONLY, Word};
use crate::CircuitState;
use crate::classify::Verdict;
use crate::error::{CircuitOpen, NO_RETRY_AFTER, Name, RejectReason};
use crate::primitives::{Ordering, fence};
use crate::state::Mode;
use crate::stats::TransitionReason;
use std::borrow::Borrow;
use std::task::Waker;
use tokio::time::Instant;

/// What kind of admission a permit stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// Closed: the outcome is recorded in the window.
    Windowed = 0,
    /// A half-open probe holding a slot.
    Probe = 1,
    /// Disabled: nothing is recorded.
    Untracked = 2,
    /// Metrics-only mode, admitted although the circuit would have rejected it: the
    /// outcome counts in the lifetime stats only.
    Shadow = 3,
}

/// What admission granted: the kind of call and the generation it was admitted in,
/// packed in one word (`generation << 2 | kind`) so that carrying it from `poll_ready`
/// to `call` moves one register.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket(u64);

impl Ticket {
    #[inline]
    pub(super) fn kind(self) -> Kind {
        match self.0 & 3 {
            0 => Kind::Windowed,
            1 => Kind::Probe,
            2 => Kind::Untracked,
            _ => Kind::Shadow,
        }
    }

    #[inline]
    pub(super) fn generation(self) -> u64 {
        self.0 >> 2
    }

    /// Whether the call is recorded in the window (admitted in Closed).
    #[inline]
    pub(super) fn is_windowed(self) -> bool {
        self.0 & 3 == Kind::Windowed as u64
    }

    /// The same generation, nothing to record: what a permit keeps once it reported.
    #[inline]
    fn untracked(self) -> Ticket {
        Ticket(self.0 & !3 | Kind::Untracked as u64)
    }

    /// Whether this is a half-open probe, which holds a slot until its permit reports
    /// or is dropped.
    #[inline]
    pub(crate) fn is_probe(self) -> bool {
        self.kind() == Kind::Probe
    }
}

/// What admission refused: the [`CircuitOpen`] without the circuit's name, which the
/// caller adds from whichever handle to it is cheapest to clone where it stands.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rejection {
    reason: RejectReason,
    /// The retry hint in nanoseconds, [`NO_RETRY_AFTER`] for none (see [`CircuitOpen`]).
    retry_after_ns: u64,
}

impl Rejection {
    pub(crate) fn into_error(self, circuit: Name) -> CircuitOpen {
        CircuitOpen::new(circuit, self.reason, self.retry_after_ns)
    }
}

/// The right to make one call, and the duty to report how it went: what
/// [`Circuit::try_acquire`] returns, for work that is not one future (a streamed body, a
/// callback API, a call split across tasks).
///
/// Report the outcome with [`record`](Self::record), [`success`](Self::success) or
/// [`failure`](Self::failure); the call is timed from the acquisition (for
/// [`expected_response_time`](crate::CircuitBreakerConfig::expected_response_time)). A permit dropped
/// unrecorded follows the dropped-call policy
/// ([`dropped_call_is_failure`](crate::CircuitBreakerConfig::dropped_call_is_failure)): a
/// failure when it is set, ignored otherwise (a half-open probe then gives back its slot).
///
/// ```
/// use tower_circuit_breaker::{Circuit, CircuitBreakerConfig};
///
/// let circuit = Circuit::new(CircuitBreakerConfig::default());
/// let permit = circuit.try_acquire().expect("a new circuit is closed");
/// // ... the work, in as many steps as it takes ...
/// permit.success();
/// assert_eq!(circuit.stats().success_count, 1);
/// ```
///
/// The type parameter is how the permit reaches its circuit and can be left out: the
/// permits [`try_acquire`](Circuit::try_acquire) grants are `Permit` (`Permit<Circuit>`),
/// owning a handle to the circuit, so they are `Send + 'static` and can move into a task
/// or a response body. (Inside the crate, [`Circuit::call`] borrows its circuit instead,
/// which costs nothing, and the tower service keeps its handle on a cache line of its
/// own.)
pub struct Permit<H: Borrow<Circuit> = Circuit> {
    circuit: H,
    /// The kind of call and its generation; the kind is `Untracked` once reported.
    ticket: Ticket,
    /// When started: the clock time (ns) from which the call is slow, `start +
    /// expected_response_time + 1` ([`UNTIMED`] with slow-call detection off); 0 before.
    /// An unstarted permit dropped only gives back its probe slot.
    slow_at: u64,
}

impl<H: Borrow<Circuit>> std::fmt::Debug for Permit<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("kind", &self.ticket.kind())
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
            ticket,
            slow_at: 0,
        }
    }

    /// The permit for a call `circuit` admitted with [`Circuit::admit`], started now
    /// (reads the clock once, as [`start`](Self::start)). `circuit` is the circuit
    /// `handle` leads to, passed apart so the clock read does not go through the handle.
    #[inline]
    pub(crate) fn started(circuit: &Circuit, handle: H, ticket: Ticket) -> Self {
        debug_assert!(circuit.ptr_eq(handle.borrow()));
        Permit {
            circuit: handle,
            ticket,
            slow_at: circuit.start_ns(),
        }
    }

    /// Marks the start of the call: reads the clock once, unless slow-call detection is
    /// off (then nothing needs the start, and the call reads the clock only at its end).
    #[inline]
    pub(crate) fn start(&mut self) {
        self.slow_at = self.circuit.borrow().start_ns();
    }

    /// Records how the call went: [`Verdict::Success`], [`Verdict::Failure`],
    /// [`Verdict::Ignored`] (counted as neither) or [`Verdict::OpenFor`] (opens the circuit
    /// for that long).
    #[inline]
    pub fn record(self, verdict: Verdict) {
        self.complete(verdict);
    }

    /// Records a success: `record(Verdict::Success)`.
    #[inline]
    pub fn success(self) {
        self.complete(Verdict::Success);
    }

    /// Records a failure: `record(Verdict::Failure)`.
    #[inline]
    pub fn failure(self) {
        self.complete(Verdict::Failure);
    }

    /// Whether the permit is a half-open probe's (the replay counts probes).
    #[cfg_attr(not(feature = "replay"), allow(dead_code))]
    pub(crate) fn is_probe(&self) -> bool {
        matches!(self.ticket.kind(), Kind::Probe)
    }

    /// The circuit the permit was granted by.
    pub fn circuit(&self) -> &Circuit {
        self.circuit.borrow()
    }

    /// Reports the verdict of the call (reads the clock once).
    #[inline]
    pub(crate) fn complete(mut self, verdict: Verdict) {
        self.report(verdict);
    }

    /// Reports the verdict of the call (reads the clock once) and keeps the handle: a
    /// response future reports through the permit it owns and lets go of the handle when
    /// it is dropped, without moving the permit out. A second report records nothing.
    #[inline]
    pub(crate) fn report(&mut self, verdict: Verdict) {
        let ticket = self.ticket;
        // Before the report, so a panicking observer does not make the drop report again.
        self.ticket = ticket.untracked();
        self.circuit
            .borrow()
            .complete(ticket, self.slow_at, verdict);
    }
}

impl<H: Borrow<Circuit>> Drop for Permit<H> {
    #[inline]
    fn drop(&mut self) {
        // A reported permit (every call that completes) has nothing left to do.
        if self.ticket.0 & 3 != Kind::Untracked as u64 {
            self.unreported();
        }
    }
}

impl<H: Borrow<Circuit>> Permit<H> {
    /// Dropped unreported: an unstarted probe gives its slot back; a started call follows
    /// the dropped-call policy.
    #[cold]
    #[inline(never)]
    fn unreported(&mut self) {
        let circuit = self.circuit.borrow();
        if self.slow_at != 0 {
            circuit.dropped(self.ticket, self.slow_at);
        } else if self.ticket.is_probe() {
            circuit.return_probe(self.ticket.generation());
        }
    }
}

/// `Permit::slow_at` of a call that is not timed (slow-call detection off). Like any
/// start it is not 0 (the permit was started); `measure` finds such a call never slow,
/// since no clock time reaches it, whatever `expected_ns` is by then.
const UNTIMED: u64 = u64::MAX;

impl Circuit {
    /// The start of a call as a permit keeps it: the clock time from which the call is
    /// slow, `now + expected_response_time + 1`, so the end of the call is one compare;
    /// or [`UNTIMED`] without reading the clock when slow-call detection is off
    /// (`expected_response_time` is `Duration::MAX`, stored saturated). The threshold is
    /// the one in force when the call started: a reconfiguration judges the calls
    /// started after it.
    #[inline]
    fn start_ns(&self) -> u64 {
        let expected = self.shared.hot.expected_ns.load(Ordering::Relaxed);
        if expected == UNTIMED {
            return UNTIMED;
        }
        // `expected + 1` cannot overflow (it is not `UNTIMED`); the sum saturates for a
        // manual clock set near the end of time (a replayed trace's), never slow then.
        self.now_ns().saturating_add(expected + 1)
    }

    // ===== admission =====

    /// The admission decision; `count`: whether a rejection counts as one. The ticket
    /// must become a [`Permit`] at once, which reports the call.
    #[inline]
    pub(crate) fn admit(&self, count: bool) -> Result<Ticket, Rejection> {
        let w = self.word();
        if w.is_closed_normal() {
            return Ok(ticket(Kind::Windowed, w.generation()));
        }
        self.admit_cold(w, count)
    }

    /// Admission when the word is not plain Closed. First what every call of an outage
    /// takes, an Open circuit during its break: one clock read and the rejection.
    #[inline(never)]
    fn admit_cold(&self, w: Word, count: bool) -> Result<Ticket, Rejection> {
        if w.is_open_normal() {
            let until = self.shared.hot.open_until.load(Ordering::Acquire);
            if let Some(now) = self.shared.hot.clock.now_ns_well_before(until) {
                return self.reject(RejectReason::Open, until - now, w, count);
            }
        }
        // The last tick of a break and everything else.
        self.admit_slow(w, count)
    }

    /// Everything else: overrides, the end of a break, HalfOpen, races with transitions.
    #[inline(never)]
    fn admit_slow(&self, mut w: Word, count: bool) -> Result<Ticket, Rejection> {
        let hot = &self.shared.hot;
        loop {
            match (w.mode(), w.state()) {
                (Mode::Disabled, _) => return Ok(ticket(Kind::Untracked, w.generation())),
                (Mode::ForcedOpen, _) => {
                    return self.reject(RejectReason::ForcedOpen, NO_RETRY_AFTER, w, count);
                }
                (_, CircuitState::Closed) => return Ok(ticket(Kind::Windowed, w.generation())),
                (_, CircuitState::Open) => {
                    let until = hot.open_until.load(Ordering::Acquire);
                    let now = self.shared.hot.clock.now_ns_near(until);
                    if now < until {
                        return self.reject(RejectReason::Open, until - now, w, count);
                    }
                    // An attached gate (the fleet's probe lease) may hold the probe back:
                    // the only gate check on any admission path.
                    if self.gate_holds_back_probe() {
                        return self.reject(RejectReason::Open, NO_RETRY_AFTER, w, count);
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
                        // The retry hint: the probe deadline, when the next call gives
                        // up on the unfinished probes (none out: the close is under way).
                        let retry_after_ns = if w.probes_out() > 0 {
                            let deadline = hot.probe_deadline.load(Ordering::Acquire);
                            let now = self.shared.hot.clock.now_ns_near(deadline);
                            deadline.saturating_sub(now)
                        } else {
                            NO_RETRY_AFTER
                        };
                        return self.reject(RejectReason::HalfOpenFull, retry_after_ns, w, count);
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

    /// Whether an attached [`AdmissionGate`](super::AdmissionGate) holds the probe back
    /// (none attached: no). Read only once a break is over.
    fn gate_holds_back_probe(&self) -> bool {
        self.shared
            .gate
            .get()
            .is_some_and(|gate| gate.holds_back_probe())
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
        if self.shared.hot.clock.now_ns_near(deadline) < deadline {
            return false;
        }
        let opened = self.transition(TransitionReason::ProbeTimedOut, |cur| {
            // The word unchanged since the slots were seen full, and the deadline (which a
            // new probe extends before taking its slot) still passed.
            let deadline = hot.probe_deadline.load(Ordering::Acquire);
            (cur == seen && self.shared.hot.clock.now_ns_near(deadline) >= deadline)
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

    #[inline]
    fn reject(
        &self,
        reason: RejectReason,
        retry_after_ns: u64,
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
            retry_after_ns,
        })
    }

    fn count_rejected(&self) {
        self.shared.window.count_rejected();
        if let Some(observer) = &self.shared.observer {
            observer.rejected();
        }
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
        let mut locked = self.lock();
        if !locked.waiters.iter().any(|w| w.will_wake(waker)) {
            locked.waiters.push(waker.clone());
        }
        self.shared.has_waiters.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake_waiters`: either the caller's next look at the state
        // word sees the transition, or the transition sees this flag.
        fence(Ordering::SeqCst);
    }

    pub(super) fn wake_waiters(&self) {
        fence(Ordering::SeqCst);
        if self.shared.has_waiters.load(Ordering::SeqCst) {
            let waiters = {
                let mut locked = self.lock();
                self.shared.has_waiters.store(false, Ordering::Release);
                std::mem::take(&mut locked.waiters)
            };
            waiters.into_iter().for_each(Waker::wake);
        }
    }
}

#[inline]
pub(super) fn ticket(kind: Kind, generation: u64) -> Ticket {
    // The generation is the state word's: 36 bits (see `crate::state`), so the shift
    // loses nothing.
    Ticket(generation << 2 | kind as u64)
}
