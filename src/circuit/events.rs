//! Transition events: tracing, the observer, and listeners.
//!
//! A transition queues its [`TransitionEvent`] under the lock; [`Circuit::dispatch`] runs
//! the queue outside it, in order, one dispatcher at a time. Nothing here can break a call:
//! every hook runs inside `catch_unwind`.

use super::{Circuit, Listener};
use crate::CircuitState;
use crate::stats::TransitionEvent;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

impl Circuit {
    /// Runs queued events through tracing, the observer and the listeners, in order, outside
    /// the lock.
    ///
    /// Every hook runs inside `catch_unwind`: a panicking tracing subscriber, observer
    /// (a metrics recorder) or listener is logged (if logging itself still works) and skipped, and the
    /// "dispatching" flag is cleared by a drop guard whatever happens, so one bad hook can
    /// never silence the circuit's later events nor break the call that caused them.
    pub(super) fn dispatch(&self) {
        /// Clears `dispatching` when dispatch ends, by return or by unwinding.
        struct Dispatching<'a>(&'a Circuit);
        impl Drop for Dispatching<'_> {
            fn drop(&mut self) {
                self.0.lock().dispatching = false;
            }
        }
        loop {
            let (event, listeners) = {
                let mut locked = self.lock();
                if locked.dispatching {
                    return;
                }
                match locked.events.pop_front() {
                    None => return,
                    Some(e) => {
                        locked.dispatching = true;
                        (e, locked.listeners.clone())
                    }
                }
            };
            let _dispatching = Dispatching(self);
            guarded(|| trace_transition(&event));
            if let Some(observer) = &self.shared.observer {
                guarded(|| observer.transition(&event));
            }
            for listener in listeners.iter().flat_map(|all| all.iter()) {
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

    /// Calls `listener` after every real state change, outside any lock, in order.
    /// A panicking listener is caught and logged; calls are not affected.
    pub fn on_transition<F>(&self, listener: F)
    where
        F: Fn(&TransitionEvent) + Send + Sync + 'static,
    {
        let mut locked = self.lock();
        let mut all: Vec<Listener> = locked
            .listeners
            .iter()
            .flat_map(|all| all.iter())
            .cloned()
            .collect();
        all.push(Arc::new(listener));
        locked.listeners = Some(all.into());
    }
}

/// Runs a hook the circuit does not control (a tracing subscriber, a metrics recorder)
/// and swallows its panic: observability must never break a call or a transition.
pub(super) fn guarded(hook: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(hook));
}

/// A rate for a log line, to 3 decimal places (0.333, not 0.3333333333333333).
fn round3(rate: f64) -> f64 {
    (rate * 1000.0).round() / 1000.0
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
                failure_rate = round3(s.failure_rate),
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
