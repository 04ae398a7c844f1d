//! Metrics through the `metrics` facade (feature `metrics`).
//!
//! Every circuit registers, when it is created, with the recorder installed at that time:
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | `circuit_breaker_calls_total` | counter | `service`, `operation`, `outcome` | calls by outcome: `success`, `failure`, `rejected`, `ignored`, and `slow` (counted *as well as* the call's success or failure) |
//! | `circuit_breaker_state` | gauge | `service`, `operation` | 0 closed, 1 half-open, 2 open |
//! | `circuit_breaker_transitions_total` | counter | `service`, `operation`, `from`, `to` | state changes |
//!
//! Install the recorder (for example `metrics_cloudwatch_embedded` in a Lambda function)
//! before creating circuits. The handles are cached per circuit, so a call costs one
//! counter increment, with no label lookup.
//!
//! [`CircuitMetrics`] is the circuit's [`CircuitObserver`]; `crate::default_observer` gives
//! one to every new circuit.

use crate::CircuitState;
use crate::circuit::CircuitObserver;
use crate::stats::TransitionEvent;
use crate::window::Outcome;
use metrics::{Counter, Gauge, counter, gauge};

pub(crate) const CALLS: &str = "circuit_breaker_calls_total";
pub(crate) const STATE: &str = "circuit_breaker_state";
pub(crate) const TRANSITIONS: &str = "circuit_breaker_transitions_total";

/// One circuit's counter and gauge handles. The transition counter's labels come from
/// the event, so no copy of the circuit's names is kept here.
pub(crate) struct CircuitMetrics {
    success: Counter,
    failure: Counter,
    slow: Counter,
    rejected: Counter,
    ignored: Counter,
    state: Gauge,
}

impl CircuitMetrics {
    pub(crate) fn new(service: &str, operation: &str) -> Self {
        let calls = |outcome: &'static str| counter!(CALLS, "service" => service.to_owned(), "operation" => operation.to_owned(), "outcome" => outcome);
        let m = CircuitMetrics {
            success: calls("success"),
            failure: calls("failure"),
            slow: calls("slow"),
            rejected: calls("rejected"),
            ignored: calls("ignored"),
            state: gauge!(STATE, "service" => service.to_owned(), "operation" => operation.to_owned()),
        };
        m.state.set(0.0);
        m
    }
}

impl CircuitObserver for CircuitMetrics {
    #[inline]
    fn outcome(&self, o: Outcome) {
        if o.failed {
            &self.failure
        } else {
            &self.success
        }
        .increment(1);
        if o.slow {
            self.slow.increment(1);
        }
    }

    fn ignored(&self) {
        self.ignored.increment(1);
    }

    fn rejected(&self) {
        self.rejected.increment(1);
    }

    /// The state gauge and the transition counter.
    fn transition(&self, e: &TransitionEvent) {
        self.state.set(state_value(e.to));
        counter!(
            TRANSITIONS,
            "service" => e.service.to_string(),
            "operation" => e.operation.to_string(),
            "from" => e.from.as_str(),
            "to" => e.to.as_str()
        )
        .increment(1);
    }
}

/// The state gauge's value: ordered by severity, so an alarm on `>= 2` fires when open.
pub(crate) fn state_value(state: CircuitState) -> f64 {
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
    }
}
