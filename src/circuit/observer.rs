//! What an edge plugs into a circuit: an observer and an admission gate.
//!
//! The circuit knows no edge. Metrics count its outcomes and transitions through a
//! [`CircuitObserver`], given when the circuit is made; the fleet holds back the Open →
//! HalfOpen move for its probe lease through an [`AdmissionGate`], installed when a fleet
//! sync attaches. Both are always compiled and free when nothing is attached:
//!
//! * the observer is an `Option`; with none, the Closed path pays one untaken branch per
//!   outcome (in `record.rs`, `Circuit::measure`) and nothing else;
//! * the gate is a `OnceLock`, empty (nothing allocated) until an edge installs one, and
//!   read only once a break is over, on the cold admission path (`admit.rs`); the Closed
//!   path never reads it.
//!
//! An edge that must hear of transitions after the circuit is made (the fleet sync's
//! wake-up and log) registers a listener with [`Circuit::on_transition`](super::Circuit::on_transition).

use crate::stats::TransitionEvent;
use crate::window::Outcome;
use std::any::Any;

/// Told of what happens to a circuit: every outcome, rejection and real transition.
///
/// Set once, when the circuit is made (`Circuit::with_observer`); the public constructors
/// take the one `crate::default_observer` assembles. Outcome methods run on the call's
/// thread, on the hot path: they must be cheap and must not block. `transition` runs
/// outside the circuit's lock, after tracing and before the listeners, and a panic in it
/// is caught.
pub(crate) trait CircuitObserver: Send + Sync {
    /// A call that was admitted completed with a success or a failure (slow or not). Late
    /// results and half-open probes are outcomes too; ignored calls are not.
    fn outcome(&self, outcome: Outcome);
    /// A call ended with a verdict of ignored (or was dropped, where dropped calls are
    /// ignored).
    fn ignored(&self);
    /// A call was rejected, or, in metrics-only mode, would have been.
    fn rejected(&self);
    /// The circuit changed state (never called for a same-state change).
    fn transition(&self, event: &TransitionEvent);
}

/// Holds back the Open → HalfOpen move: asked once a break is over, before a call may
/// become the first probe.
///
/// One per circuit, installed by the first edge that asks
/// ([`Circuit::gate_or_install`](super::Circuit::gate_or_install)) and kept for the
/// circuit's life; an edge that detaches turns its gate off rather than removing it, so
/// admission reads it without a lock.
pub(crate) trait AdmissionGate: Send + Sync + 'static {
    /// True when the call must be rejected (as Open, no `retry_after`) instead of
    /// probing. Called on the cold path only, once per such call.
    fn holds_back_probe(&self) -> bool;
    /// The gate as `Any`, so the edge that installed it finds its own type again.
    fn as_any(&self) -> &dyn Any;
}
