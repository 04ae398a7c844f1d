//! `execute` and `execute_with`: the seed's `execute(service, operation, fn, fallback,
//! config)`, with a fallback and, for `execute_with`, a classifier.

use super::*;
use crate::circuit::Permit;

impl CircuitBreakerRegistry {
    /// Runs `operation` through the circuit of `(service, operation)`, the seed's
    /// `execute(service, operation, fn, fallback, config)`.
    ///
    /// When the circuit rejects, `fallback` answers instead (it receives
    /// [`FallbackCause::Rejected`]); wrap it in [`on_failure_too`] to have it answer
    /// failed operations as well. Pass [`NoFallback`](crate::NoFallback) to get the
    /// rejection as an `E` (through `From<CircuitOpen>`, e.g. for a
    /// [`BoxError`](crate::BoxError)).
    ///
    /// `config` counts when the circuit is created; see the
    /// [module docs](crate::registry#which-configuration-a-circuit-gets). A key the
    /// registry refuses runs through the overflow circuit (see the
    /// [module docs](crate::registry#limits)).
    ///
    /// Every `Err` counts as a failure here; [`execute_with`](Self::execute_with) takes a
    /// classifier instead.
    ///
    /// # Errors
    ///
    /// The operation's error, unchanged, or whatever the fallback returns.
    pub fn execute<'c, T, E, F, Fut, G>(
        &self,
        service: &str,
        operation: &str,
        f: F,
        fallback: G,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: ExecuteFallback<T, E>,
    {
        // `execute_with`'s future itself, not one awaiting it: one state machine.
        self.execute_with(service, operation, &ErrorsAsFailures, f, fallback, config)
    }

    /// [`execute`](Self::execute) with `classifier` deciding what the operation's `Result`
    /// says about the dependency, the way the tower layer's classifier does: an `Err` it
    /// calls a [`Success`](crate::classify::Verdict::Success) (a conditional-check
    /// failure, a validation error: the dependency answered) leaves the circuit closed.
    /// For AWS SDK calls, [`aws::SdkErrorClassifier`](crate::aws::SdkErrorClassifier)
    /// (feature `aws`) gives the verdicts of the per-attempt layer.
    ///
    /// The classifier decides only what the circuit counts: the operation's `Err` is
    /// returned as it is whatever its verdict, and a fallback wrapped in
    /// [`on_failure_too`] answers every `Err`, as with `execute`.
    ///
    /// # Errors
    ///
    /// The operation's error, unchanged, or whatever the fallback returns.
    pub async fn execute_with<'c, T, E, C, F, Fut, G>(
        &self,
        service: &str,
        operation: &str,
        classifier: &C,
        f: F,
        fallback: G,
        config: impl Into<Option<&'c CircuitBreakerConfig>>,
    ) -> Result<T, E>
    where
        C: Classify<T, E> + ?Sized,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        G: ExecuteFallback<T, E>,
    {
        let config = config.into();
        // The entry is held for the call: a circuit with a call running is not idle.
        let entry = self.entry(service, operation, config);
        let circuit = match &entry {
            Ok(h) => &h.0,
            Err(_) => self.overflow_circuit(config),
        };
        // `Circuit::call_with` written out, so its state machine is not nested in this
        // one: the operation's future is made first and, if the circuit rejects, dropped
        // without being polled.
        let fut = f();
        let mut permit = match Permit::acquire(circuit) {
            Ok(permit) => permit,
            Err(open) => {
                drop(fut);
                return fallback.run(FallbackCause::Rejected(open)).await;
            }
        };
        permit.start();
        let result = fut.await;
        permit.complete(classifier.classify(&result));
        match result {
            Ok(v) => Ok(v),
            Err(e) if fallback.on_failure() => fallback.run(FallbackCause::Failed(e)).await,
            Err(e) => Err(e),
        }
    }
}
