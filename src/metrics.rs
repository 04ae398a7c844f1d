//! The metrics every circuit reports through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`).
//!
//! Every circuit registers, when it is created, with the recorder installed at that time:
//!
//! | metric | kind | labels | meaning |
//! |---|---|---|---|
//! | [`circuit_breaker_calls_total`](CALLS) | counter | `service`, `operation`, `outcome` | calls by outcome: `success`, `failure`, `rejected`, `ignored`, and `slow` (counted *as well as* the call's success or failure) |
//! | [`circuit_breaker_state`](STATE) | gauge | `service`, `operation` | 0 closed, 1 half-open, 2 open |
//! | [`circuit_breaker_transitions_total`](TRANSITIONS) | counter | `service`, `operation`, `from`, `to` | state changes |
//!
//! `from` and `to` are [`CircuitState::as_str`](crate::CircuitState::as_str) names.
//!
//! # Labels
//!
//! A circuit made with [`Circuit::for_operation`](crate::Circuit::for_operation) (as a
//! registry and [`CircuitBreakerLayer::for_operation`](crate::CircuitBreakerLayer::for_operation)
//! make them) has its service and operation as labels. A circuit made by name only
//! ([`Circuit::named`](crate::Circuit::named), [`CircuitBreakerLayer::named`](crate::CircuitBreakerLayer::named),
//! `new`) has its name as `service` and [`NO_OPERATION`] (`"-"`) as `operation`. No label
//! value is ever empty: CloudWatch rejects an empty dimension value, so an empty service
//! or operation given to `for_operation` is reported as `"-"` too.
//!
//! Install the recorder (for example `metrics_cloudwatch_embedded` in a Lambda function)
//! before creating circuits. The handles are cached per circuit, so a call costs one
//! counter increment, with no label lookup.

use crate::CircuitState;
use crate::circuit::CircuitObserver;
use crate::stats::TransitionEvent;
use crate::window::Outcome;
use metrics::{Counter, Gauge, counter, gauge};

/// `circuit_breaker_calls_total`: calls by `outcome`.
pub const CALLS: &str = "circuit_breaker_calls_total";
/// `circuit_breaker_state`: 0 closed, 1 half-open, 2 open.
pub const STATE: &str = "circuit_breaker_state";
/// `circuit_breaker_transitions_total`: state changes by `from` and `to`.
pub const TRANSITIONS: &str = "circuit_breaker_transitions_total";
/// The `operation` label of a circuit made by name only, and the value of any label that
/// would otherwise be empty.
pub const NO_OPERATION: &str = "-";

/// A label value CloudWatch accepts: `"-"` for an empty one.
fn label(value: &str) -> String {
    if value.is_empty() {
        NO_OPERATION
    } else {
        value
    }
    .to_owned()
}

/// One circuit's counter and gauge handles: `crate::default_observer` gives one to every
/// new circuit, as its `CircuitObserver`. The transition counter's labels come from the
/// event, so no copy of the circuit's names is kept here.
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
        let calls = |outcome: &'static str| counter!(CALLS, "service" => label(service), "operation" => label(operation), "outcome" => outcome);
        let m = CircuitMetrics {
            success: calls("success"),
            failure: calls("failure"),
            slow: calls("slow"),
            rejected: calls("rejected"),
            ignored: calls("ignored"),
            state: gauge!(STATE, "service" => label(service), "operation" => label(operation)),
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
            "service" => label(&e.service),
            "operation" => label(&e.operation),
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
