//! States decided elsewhere: what an edge that shares state (the fleet, a snapshot
//! restore) does to a circuit, and what it reads of it.
//!
//! All off the admission path, named for what they do to the circuit. Nothing else in the
//! circuit depends on them; the only edge check admission makes is the
//! [`AdmissionGate`], installed here.
//!
//! They are always compiled; without an edge that uses them (today only feature `fleet`
//! does) the dead-code lint is quieted for this file.
#![cfg_attr(not(feature = "fleet"), allow(dead_code))]

use super::{AdmissionGate, Circuit};
use crate::CircuitState;
use crate::primitives::Ordering;
use crate::state::Mode;
use crate::stats::TransitionReason;
use crate::window::Counts;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How a circuit looks from outside, read together under its lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CircuitParts {
    pub(crate) state: CircuitState,
    /// No manual override.
    pub(crate) normal: bool,
    /// The wall-clock end of the break (Open without an override only).
    pub(crate) open_until: Option<SystemTime>,
    pub(crate) opens_in_a_row: u32,
    /// The circuit's wall clock now.
    pub(crate) now: SystemTime,
}

impl Circuit {
    /// The circuit's admission gate, installing the one `make` builds if it has none: the
    /// first edge to ask installs it, for the circuit's life. `None` when the circuit's gate
    /// is of another type than `G`.
    pub(crate) fn gate_or_install<G: AdmissionGate>(&self, make: impl FnOnce() -> G) -> Option<&G> {
        self.shared
            .gate
            .get_or_init(|| Box::new(make()))
            .as_any()
            .downcast_ref()
    }

    /// Adopts an Open decided elsewhere for `remaining`: a Closed circuit (no override)
    /// opens with `reason`; an Open one keeps the later of its own deadline and
    /// `now + remaining`. Returns true when the circuit opened.
    pub(crate) fn adopt_open(&self, reason: TransitionReason, remaining: Duration) -> bool {
        let opened = self
            .transition_with(reason, Some(remaining), |w| {
                (w.state() == CircuitState::Closed && w.mode() == Mode::Normal)
                    .then_some((CircuitState::Open, Mode::Normal))
            })
            .is_some();
        if !opened {
            let _locked = self.lock();
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

    /// Adopts a close decided elsewhere: an Open or HalfOpen circuit (no override) closes
    /// with `reason` and an empty window. Returns true when it closed.
    pub(crate) fn adopt_closed(&self, reason: TransitionReason) -> bool {
        self.transition(reason, |w| {
            (w.state() != CircuitState::Closed && w.mode() == Mode::Normal)
                .then_some((CircuitState::Closed, Mode::Normal))
        })
        .is_some()
    }

    /// Restores an Open state: a Closed circuit (no override) opens for `remaining` with
    /// [`TransitionReason::Restored`], and its count of openings in a row becomes at least
    /// `opens_in_a_row`. Returns true when it opened.
    pub(crate) fn restore_open(&self, remaining: Duration, opens_in_a_row: u32) -> bool {
        let opened = self
            .transition_with(TransitionReason::Restored, Some(remaining), |w| {
                (w.state() == CircuitState::Closed && w.mode() == Mode::Normal)
                    .then_some((CircuitState::Open, Mode::Normal))
            })
            .is_some();
        if opened {
            let mut locked = self.lock();
            locked.opens_in_a_row = locked.opens_in_a_row.max(opens_in_a_row);
        }
        opened
    }

    /// State, override, wall-clock end of the break (Open without override only), the
    /// openings in a row, and the circuit's wall clock now, read together under the lock.
    pub(crate) fn parts(&self) -> CircuitParts {
        let locked = self.lock();
        let w = self.word();
        let normal = w.mode() == Mode::Normal;
        CircuitParts {
            state: w.state(),
            normal,
            open_until: (w.state() == CircuitState::Open && normal)
                .then(|| self.wall(self.shared.hot.open_until.load(Ordering::Acquire))),
            opens_in_a_row: locked.opens_in_a_row,
            now: self.wall(self.now_ns()),
        }
    }

    /// The window's and the lifetime counts now, read together under the lock.
    pub(crate) fn counts(&self) -> (Counts, Counts) {
        let locked = self.lock();
        self.counts_locked(&locked, self.now_ns_checked())
    }

    /// Adds restored counts: `window` to the time window's newest bucket (to the lifetime
    /// only when the circuit counts calls instead), `earlier` to the lifetime totals.
    pub(crate) fn restore_counts(&self, window: Counts, earlier: Counts) {
        let locked = self.lock();
        let now = self.now_ns_checked();
        let width = locked.config.bucket_width_ns();
        if self.shared.count.is_some() {
            let mut all = earlier;
            all.add(window);
            self.shared.window.seed(now, width, Counts::default(), all);
        } else {
            self.shared.window.seed(now, width, window, earlier);
        }
    }

    /// When the break ends, if the circuit is Open on a timer (no override); `None` when
    /// only a transition can change it. (Backpressure waiters use
    /// [`retry_at`](Self::retry_at), which also covers a full HalfOpen.)
    pub(crate) fn break_ends_at(&self) -> Option<Instant> {
        let w = self.word();
        (w.state() == CircuitState::Open && w.mode() == Mode::Normal)
            .then(|| self.instant(self.shared.hot.open_until.load(Ordering::Acquire)))
    }
}
