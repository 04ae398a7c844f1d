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

use crate::CircuitState;
use metrics::{Counter, Gauge, counter, gauge};

pub(crate) const CALLS: &str = "circuit_breaker_calls_total";
pub(crate) const STATE: &str = "circuit_breaker_state";
pub(crate) const TRANSITIONS: &str = "circuit_breaker_transitions_total";

pub(crate) struct CircuitMetrics {
    service: String,
    operation: String,
    pub(crate) success: Counter,
    pub(crate) failure: Counter,
    pub(crate) slow: Counter,
    pub(crate) rejected: Counter,
    pub(crate) ignored: Counter,
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
            service: service.to_owned(),
            operation: operation.to_owned(),
        };
        m.state.set(0.0);
        m
    }

    /// Records a transition: the state gauge and the transition counter.
    pub(crate) fn transition(&self, from: CircuitState, to: CircuitState) {
        self.state.set(state_value(to));
        counter!(
            TRANSITIONS,
            "service" => self.service.clone(),
            "operation" => self.operation.clone(),
            "from" => from.as_str(),
            "to" => to.as_str()
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
