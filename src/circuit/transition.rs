//! Transitions: the one place the state word changes state.
//!
//! Every transition (a trip, a break's end, a probe verdict, a manual override, an
//! adopted state) goes through [`Circuit::transition_with`]: under the lock, it asks a
//! decision function about the current word, stores what the new state needs (the end of
//! a break, the probe deadline) before the word, swaps the word, queues the event; then,
//! outside the lock, dispatches events and wakes waiters.

use super::admit::{Kind, Ticket, ticket};
use super::{Circuit, Word};
use crate::CircuitState;
use crate::primitives::Ordering;
use crate::state::Mode;
use crate::stats::{TransitionEvent, TransitionReason};
use std::time::Duration;

impl Circuit {
    /// Opens the circuit (from Closed or HalfOpen in `generation`).
    pub(super) fn open(&self, generation: u64, reason: TransitionReason, for_: Option<Duration>) {
        self.transition_with(reason, for_, |w| {
            (w.generation() == generation
                && w.mode() == Mode::Normal
                && w.state() != CircuitState::Open)
                .then_some((CircuitState::Open, Mode::Normal))
        });
    }

    /// Moves Open → HalfOpen with the first probe slot taken for the caller. `None` when
    /// the word changed under us (someone else moved it).
    pub(super) fn begin_half_open(&self, seen: Word) -> Option<Ticket> {
        let new = self.transition(TransitionReason::RecoveryTimeoutElapsed, |w| {
            (w == seen).then_some((CircuitState::HalfOpen, Mode::Normal))
        })?;
        Some(ticket(Kind::Probe, new.generation()))
    }

    /// Performs one transition under the lock if `decide` approves the current word, then
    /// dispatches events and wakes waiters outside it. Returns the new word.
    pub(super) fn transition(
        &self,
        reason: TransitionReason,
        decide: impl Fn(Word) -> Option<(CircuitState, Mode)>,
    ) -> Option<Word> {
        self.transition_with(reason, None, decide)
    }

    pub(super) fn transition_with(
        &self,
        reason: TransitionReason,
        break_for: Option<Duration>,
        decide: impl Fn(Word) -> Option<(CircuitState, Mode)>,
    ) -> Option<Word> {
        let hot = &self.shared.hot;
        let new = {
            let mut locked = self.lock();
            let mut cur = self.word();
            let mut break_ns = None;
            let (new, from) = loop {
                let (state, mode) = decide(cur)?;
                let opens = state == CircuitState::Open && mode == Mode::Normal;
                if opens {
                    // Stored before the word: whoever sees Open sees its deadline.
                    let d = *break_ns.get_or_insert_with(|| {
                        let d = break_for.unwrap_or_else(|| locked.break_duration());
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
                    // Closing (probes passed, a reset, an adopted close) starts a normal Closed
                    // generation; nothing records into the window of the one being left, so
                    // the new one starts empty. (Disabling keeps the window for the stats.)
                    self.shared.clear_window();
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
                    locked.opens_in_a_row = locked.opens_in_a_row.saturating_add(1);
                }
                CircuitState::Closed => locked.opens_in_a_row = 0,
                _ => {}
            }
            if from != new.state() {
                let stats = self.stats_locked(&locked);
                let (service, operation) = self.label_arcs();
                locked.events.push_back(TransitionEvent {
                    circuit: self.shared.name.clone(),
                    service,
                    operation,
                    from,
                    to: new.state(),
                    reason,
                    // The stats' clock: the circuit's wall anchor plus its clock.
                    at: self.wall(self.now_ns_checked()),
                    stats,
                });
            }
            new
        };
        self.dispatch();
        self.wake_waiters();
        Some(new)
    }
}
