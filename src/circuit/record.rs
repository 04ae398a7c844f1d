//! Outcomes: what a finished call does to its circuit.
//!
//! [`Circuit::complete`] sends every permit's verdict here. Its first branch is the Closed
//! record path, the one every call in a healthy system takes: measure the call, record it
//! in the window, extend or end the run of failures, and check the trip rule only when it
//! may fire. Everything else, half-open probes and the out-of-band outcomes (ignored,
//! shadow, late, dropped), is in [`Circuit::complete_out_of_window`] and below it.

use super::admit::{Kind, Ticket};
use super::{Circuit, FLAG_COUNT, FLAG_DROPPED_IS_FAILURE, FLAG_RATES, FLAG_SLOW_IS_FAILURE, Word};
use crate::CircuitState;
use crate::classify::Verdict;
use crate::primitives::{AtomicU64, Ordering};
use crate::state::Mode;
use crate::stats::TransitionReason;
use crate::window::Outcome;

/// Last-success and last-failure times are written at most once per this many
/// nanoseconds per circuit, so two cores do not fight over their cache line.
const LAST_TIME_RESOLUTION_NS: u64 = 1_000_000;

impl Circuit {
    // ===== the Closed record path =====

    /// Reports how an admitted call ended. A Closed call's success or failure takes
    /// [`record_closed`](Self::record_closed); everything else (probes, ignored, shadow,
    /// disabled, [`Verdict::OpenFor`]) [`complete_rare`](Self::complete_rare).
    #[inline]
    pub(super) fn complete(&self, ticket: Ticket, slow_at: u64, verdict: Verdict) {
        if ticket.is_windowed() {
            match verdict {
                Verdict::Success => return self.record_closed(ticket.generation(), slow_at, false),
                Verdict::Failure => return self.record_closed(ticket.generation(), slow_at, true),
                _ => {}
            }
        }
        self.complete_rare(ticket, slow_at, verdict);
    }

    /// The Closed record path: measure the call, then, for a success that is not slow
    /// under a time window with no rate threshold (a healthy system's every call), one
    /// add to the window and the end of the run of failures. Failures, slow calls, count
    /// windows and rate thresholds take [`record_in_window`](Self::record_in_window).
    #[inline]
    fn record_closed(&self, generation: u64, slow_at: u64, failed: bool) {
        let (now, outcome) = self.measure(slow_at, failed);
        if self.word().generation() != generation {
            // Late: admitted before a transition, it changes no state.
            return self.record_late(outcome);
        }
        let flags = self.flags();
        if failed || outcome.slow || flags & (FLAG_COUNT | FLAG_RATES) != 0 {
            return self.record_in_window(generation, now, outcome, flags, None);
        }
        let width = self.shared.hot.width_ns.load(Ordering::Relaxed);
        // The window first, then the run (see `record_in_window`).
        self.shared.window.record(now, width, outcome);
        self.count_run(false);
    }

    /// A late outcome: the lifetime counts only.
    #[cold]
    #[inline(never)]
    fn record_late(&self, outcome: Outcome) {
        self.shared.window.record_outside(outcome);
    }

    /// Records a measured Closed outcome in the window, extends or ends the run, and
    /// checks the trip rule when it may fire (or opens for `open_for`).
    #[inline(never)]
    fn record_in_window(
        &self,
        generation: u64,
        now: u64,
        outcome: Outcome,
        flags: u32,
        open_for: Option<std::time::Duration>,
    ) {
        let hot = &self.shared.hot;
        let trip_failure = outcome.failed || (outcome.slow && flags & FLAG_SLOW_IS_FAILURE != 0);
        let width = hot.width_ns.load(Ordering::Relaxed);
        // The window first, then the run: whoever's failure completes the run sees, through
        // the run counter, every outcome recorded before it (found by the loom model).
        if flags & FLAG_COUNT == 0 {
            self.shared.window.record(now, width, outcome);
        } else {
            self.record_counted(outcome);
        }
        let run = self.count_run(trip_failure);
        if let Some(d) = open_for {
            self.open(generation, TransitionReason::RetryAfter, Some(d));
        } else if (trip_failure && run >= hot.failure_threshold.load(Ordering::Relaxed))
            || flags & FLAG_RATES != 0
        {
            self.evaluate(generation, now, width, run, flags);
        }
    }

    /// Every outcome but a Closed call's success or failure.
    #[inline(never)]
    fn complete_rare(&self, ticket: Ticket, slow_at: u64, verdict: Verdict) {
        let (kind, generation) = (ticket.kind(), ticket.generation());
        match (kind, verdict) {
            (Kind::Windowed, Verdict::OpenFor(d)) => {
                let (now, outcome) = self.measure(slow_at, true);
                if self.word().generation() != generation {
                    return self.record_late(outcome);
                }
                self.record_in_window(generation, now, outcome, self.flags(), Some(d));
            }
            _ => self.complete_out_of_window(kind, generation, slow_at, verdict),
        }
    }

    /// Records in the count window (see [`crate::count_window`]).
    #[inline(never)]
    fn record_counted(&self, outcome: Outcome) {
        if let Some(count) = &self.shared.count {
            count.record(outcome);
        }
    }

    /// Reads the clock once and turns a success or failure into an outcome (slow or not:
    /// `slow_at` is the permit's, see `Circuit::start_ns`); tells the observer and notes
    /// the time. Every timed outcome passes here.
    #[inline(always)]
    fn measure(&self, slow_at: u64, failed: bool) -> (u64, Outcome) {
        let now = self.now_ns();
        let outcome = Outcome {
            failed,
            slow: now >= slow_at,
        };
        self.note_time(now, outcome.failed);
        // The observer's only cost on the Closed path: one branch when none is attached.
        if let Some(observer) = &self.shared.observer {
            observer.outcome(outcome);
        }
        (now, outcome)
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

    /// Notes the time of the last success or failure, at most once per
    /// `LAST_TIME_RESOLUTION_NS`: the cell holds when it may next be written (see
    /// [`last_time`]), so the check is one load and one compare.
    #[inline]
    fn note_time(&self, now: u64, failed: bool) {
        let cell = if failed {
            &self.shared.written.last_failure
        } else {
            &self.shared.written.last_success
        };
        if now >= cell.load(Ordering::Relaxed) {
            cell.store(now + LAST_TIME_RESOLUTION_NS, Ordering::Relaxed);
        }
    }

    /// The clock time (ns) a last-success or last-failure cell was written at, `None`
    /// before the first outcome of its kind.
    pub(super) fn last_time(cell: &AtomicU64) -> Option<u64> {
        match cell.load(Ordering::Relaxed) {
            0 => None,
            next => Some(next - LAST_TIME_RESOLUTION_NS),
        }
    }

    /// Checks the trip rule against the window.
    #[inline(never)]
    fn evaluate(&self, generation: u64, now: u64, width: u64, run: u64, flags: u32) {
        let hot = &self.shared.hot;
        let counts = match &self.shared.count {
            Some(count) if flags & FLAG_COUNT != 0 => count.counts(),
            _ => self.shared.window.counts(now, width),
        };
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

    // ===== probes and out-of-band outcomes =====

    /// Every outcome but a Closed call's success or failure: disabled (nothing), ignored,
    /// shadow (metrics-only mode, admitted although it would have been rejected), late,
    /// and half-open probes.
    #[inline(never)]
    fn complete_out_of_window(&self, kind: Kind, generation: u64, slow_at: u64, verdict: Verdict) {
        if kind == Kind::Untracked {
            return;
        }
        if verdict == Verdict::Ignored {
            // An ignored call records nothing timed: no clock read for it.
            self.shared.window.count_ignored();
            if let Some(observer) = &self.shared.observer {
                observer.ignored();
            }
            if kind == Kind::Probe {
                self.return_probe(generation);
            }
            return;
        }
        let (_, outcome) = self.measure(slow_at, verdict != Verdict::Success);
        if kind == Kind::Shadow || self.word().generation() != generation {
            // Shadow or late: the lifetime counts only.
            return self.shared.window.record_outside(outcome);
        }
        debug_assert_eq!(kind, Kind::Probe);
        let trip_failure =
            outcome.failed || (outcome.slow && self.flags() & FLAG_SLOW_IS_FAILURE != 0);
        self.count_run(trip_failure);
        self.shared.window.record_outside(outcome);
        match verdict {
            Verdict::OpenFor(d) => self.open(generation, TransitionReason::RetryAfter, Some(d)),
            _ if trip_failure => self.open(generation, TransitionReason::ProbeFailed, None),
            _ => self.pass_probe(generation),
        }
    }

    /// A started call's future was dropped before it completed.
    #[cold]
    pub(super) fn dropped(&self, ticket: Ticket, slow_at: u64) {
        if self.flags() & FLAG_DROPPED_IS_FAILURE != 0 {
            self.complete(ticket, slow_at, Verdict::Failure);
        } else {
            self.complete(ticket, slow_at, Verdict::Ignored);
        }
    }

    pub(super) fn return_probe(&self, generation: u64) {
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
}

#[cfg(test)]
mod tests {
    use crate::clock::reads;
    use crate::{Circuit, CircuitBreakerConfig};
    use std::future::{Future, ready};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    /// Hot-path clock reads of one Closed `Circuit::call` with `expected_response_time`.
    fn reads_per_call(expected: Duration) -> u64 {
        let config = CircuitBreakerConfig::dynamodb()
            .to_builder()
            .expected_response_time(expected)
            .build()
            .unwrap();
        let circuit = Circuit::new(config);
        let mut cx = Context::from_waker(Waker::noop());
        reads::during(|| {
            let fut = pin!(circuit.call(ready(Ok::<_, ()>(1))));
            assert!(matches!(fut.poll(&mut cx), Poll::Ready(Ok(1))));
        })
    }

    #[test]
    fn a_timed_call_reads_the_clock_twice() {
        assert_eq!(reads_per_call(Duration::from_millis(500)), 2);
    }

    #[test]
    fn with_slow_call_detection_off_a_call_reads_the_clock_once() {
        assert_eq!(reads_per_call(Duration::MAX), 1);
    }

    #[test]
    fn with_slow_call_detection_off_no_call_is_slow() {
        let config = CircuitBreakerConfig::dynamodb()
            .to_builder()
            .expected_response_time(Duration::MAX)
            .build()
            .unwrap();
        assert!(!config.slow_calls_detected());
        assert_eq!(config.half_open_max_wait(), config.recovery_timeout());
        let circuit = Circuit::new(config);
        let permit = circuit.try_acquire().unwrap();
        permit.success();
        // Detection turned on while a call is out: that call is still not slow.
        let late = circuit.try_acquire().unwrap();
        circuit
            .reconfigure(
                CircuitBreakerConfig::dynamodb()
                    .to_builder()
                    .expected_response_time(Duration::from_nanos(1))
                    .build()
                    .unwrap(),
            )
            .unwrap();
        late.success();
        let stats = circuit.stats();
        assert_eq!(stats.success_count, 2);
        assert_eq!(stats.slow_count, 0);
    }
}
