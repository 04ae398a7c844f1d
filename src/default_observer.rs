//! The observer every new circuit gets: the one place that wires an edge into the core.
//!
//! The circuit (`crate::circuit`) names no edge: it reports outcomes, rejections and
//! transitions to an optional [`CircuitObserver`] it is given when made. Its public
//! constructors ([`Circuit::new`](crate::Circuit::new), `named`, `for_operation`, and so
//! every circuit a layer or a registry makes) take the observer assembled here:
//!
//! * with feature `metrics`, the circuit's counters and state gauge
//!   (`crate::metrics` registers them with the recorder installed now);
//! * without it, none: the Closed path then pays one untaken branch per outcome.
//!
//! Another edge that must see every circuit's outcomes would be added here.

use crate::circuit::CircuitObserver;

/// The observer for a circuit about to be made for `operation` of `service`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn for_new_circuit(service: &str, operation: &str) -> Option<Box<dyn CircuitObserver>> {
    #[cfg(feature = "metrics")]
    return Some(Box::new(crate::metrics::CircuitMetrics::new(
        service, operation,
    )));
    #[cfg(not(feature = "metrics"))]
    None
}
