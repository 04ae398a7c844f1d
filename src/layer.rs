use crate::circuit::Circuit;
use crate::classify::ErrorsAsFailures;
use crate::fallback::{
    Fallback, FallbackCauseFn, FallbackFn, FallbackOnFailureToo, FallbackWithCause, NoFallback,
    TypedErrors,
};
use crate::{CircuitBreaker, CircuitBreakerConfig};
use std::sync::Arc;
use tower_layer::Layer;

/// Puts a circuit breaker in front of a service.
///
/// The layer owns one [`Circuit`]: every service it wraps, and every clone of those,
/// shares it, so a `ServiceBuilder` that is applied many times still trips as one.
/// Keep a handle with [`circuit`](Self::circuit), or build the layer from a circuit you
/// already hold with [`from_circuit`](Self::from_circuit).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
///
/// let layer = CircuitBreakerLayer::named("dynamodb", CircuitBreakerConfig::dynamodb());
/// let circuit = layer.circuit().clone();
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .timeout(Duration::from_millis(800))
///     .service_fn(|req: u32| async move { Ok::<_, std::io::Error>(req) });
/// # drop((svc, circuit));
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreakerLayer<C = ErrorsAsFailures, F = NoFallback> {
    circuit: Circuit,
    classifier: C,
    fallback: F,
    backpressure: bool,
}

impl CircuitBreakerLayer {
    /// A layer with a new circuit named `"default"`.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self::from_circuit(Circuit::new(config))
    }

    /// A layer with a new named circuit. Its metrics carry the name as the `service`
    /// label and `"-"` as the `operation` label (see the `metrics` module, feature
    /// `metrics`); use [`for_operation`](Self::for_operation) for both labels.
    pub fn named(name: impl Into<Arc<str>>, config: CircuitBreakerConfig) -> Self {
        Self::from_circuit(Circuit::named(name, config))
    }

    /// A layer with a new circuit for one operation of one service, named
    /// `service/operation`, as [`Circuit::for_operation`] makes it: events, logs and
    /// metrics carry both labels, as they do for a registry's circuits.
    ///
    /// ```
    /// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    ///
    /// let layer = CircuitBreakerLayer::for_operation("dynamodb", "storeUserMessage", CircuitBreakerConfig::dynamodb());
    /// assert_eq!(layer.circuit().name(), "dynamodb/storeUserMessage");
    /// ```
    pub fn for_operation(service: &str, operation: &str, config: CircuitBreakerConfig) -> Self {
        Self::from_circuit(Circuit::for_operation(service, operation, config))
    }

    /// A layer over an existing circuit: services it wraps share that circuit with every
    /// other user of it.
    pub fn from_circuit(circuit: Circuit) -> Self {
        CircuitBreakerLayer {
            circuit,
            classifier: ErrorsAsFailures,
            fallback: NoFallback,
            backpressure: false,
        }
    }
}

impl<C, F> CircuitBreakerLayer<C, F> {
    /// The circuit every wrapped service shares.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// Classify results with `classifier` instead of "every `Err` is a failure".
    /// See [`classify`](crate::classify).
    pub fn classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2, F> {
        CircuitBreakerLayer {
            circuit: self.circuit,
            classifier,
            fallback: self.fallback,
            backpressure: self.backpressure,
        }
    }

    /// Answer rejected requests with `fallback`, a [`Service`](tower_service::Service)
    /// that receives the request. The wrapped service then keeps the inner error type
    /// instead of [`BoxError`](crate::BoxError).
    pub fn fallback<G>(self, fallback: G) -> CircuitBreakerLayer<C, Fallback<G>> {
        CircuitBreakerLayer {
            circuit: self.circuit,
            classifier: self.classifier,
            fallback: Fallback(fallback),
            backpressure: self.backpressure,
        }
    }

    /// Answer rejected requests with an async function of the request.
    ///
    /// ```
    /// use tower::{Service, ServiceExt, service_fn};
    /// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
    /// use tower_layer::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default())
    ///     .fallback_fn(|req: String| async move { Ok::<_, std::io::Error>(format!("cached {req}")) });
    /// layer.circuit().force_open();
    /// let mut svc = layer.layer(service_fn(|req: String| async move { Ok(req) }));
    /// let out = svc.ready().await.unwrap().call("profile".to_string()).await.unwrap();
    /// assert_eq!(out, "cached profile");
    /// # }
    /// ```
    pub fn fallback_fn<G>(self, f: G) -> CircuitBreakerLayer<C, Fallback<FallbackFn<G>>> {
        self.fallback(FallbackFn(f))
    }

    /// Answer rejected requests with `fallback`, a [`Service`](tower_service::Service) that
    /// receives `(request, cause)`: the [`FallbackCause`](crate::error::FallbackCause) says
    /// why (for a rejection, the [`CircuitOpen`](crate::error::CircuitOpen) with its
    /// [`retry_after`](crate::error::CircuitOpen::retry_after)). Add
    /// [`on_failure_too`](CircuitBreakerLayer::on_failure_too) to have it answer failed
    /// calls as well. Like [`fallback`](Self::fallback), the wrapped service keeps the inner
    /// error type.
    pub fn fallback_with_cause<G>(
        self,
        fallback: G,
    ) -> CircuitBreakerLayer<C, FallbackWithCause<G>> {
        CircuitBreakerLayer {
            circuit: self.circuit,
            classifier: self.classifier,
            fallback: FallbackWithCause(fallback),
            backpressure: self.backpressure,
        }
    }

    /// Answer rejected requests with an async function of the request and the
    /// [`FallbackCause`](crate::error::FallbackCause), e.g. a 503 with `Retry-After`:
    ///
    /// ```
    /// use tower::{Service, ServiceExt, service_fn};
    /// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer, error::FallbackCause};
    /// use tower_layer::Layer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = CircuitBreakerLayer::new(CircuitBreakerConfig::default())
    ///     .fallback_fn_with_cause(|_req: String, cause: FallbackCause<std::io::Error>| async move {
    ///         match cause {
    ///             FallbackCause::Rejected(open) => Ok(format!("503, retry after {:?}", open.retry_after())),
    ///             FallbackCause::Failed(e) => Err(e),
    ///         }
    ///     });
    /// layer.circuit().force_open();
    /// let mut svc = layer.layer(service_fn(|req: String| async move { Ok(req) }));
    /// let out = svc.ready().await.unwrap().call("profile".to_string()).await.unwrap();
    /// assert_eq!(out, "503, retry after None"); // forced open: no known end
    /// # }
    /// ```
    pub fn fallback_fn_with_cause<G>(
        self,
        f: G,
    ) -> CircuitBreakerLayer<C, FallbackWithCause<FallbackCauseFn<G>>> {
        self.fallback_with_cause(FallbackCauseFn(f))
    }

    /// Typed-error mode: the wrapped service's error is
    /// [`CircuitBreakerError<S::Error>`](crate::error::CircuitBreakerError), `Rejected` or
    /// `Inner`, instead of [`BoxError`](crate::BoxError), and the inner error type needs no
    /// `Into<BoxError>` bound. A stack over any inner error type can then be moved into
    /// `tokio::spawn` or an axum handler (see the [crate docs](crate#troubleshooting)).
    ///
    /// This replaces a fallback set before it (and a fallback set after it replaces this
    /// mode): a fallback already keeps the inner error type.
    ///
    /// ```
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer, error::CircuitBreakerError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = CircuitBreakerLayer::new(CircuitBreakerConfig::default()).typed_errors();
    /// breaker.circuit().force_open();
    /// let svc = ServiceBuilder::new()
    ///     .layer(breaker)
    ///     .service_fn(|req: u32| async move { Ok::<_, BoxError>(req) });
    /// let task = tokio::spawn(svc.oneshot(7));
    /// match task.await.unwrap() {
    ///     Err(CircuitBreakerError::Rejected(open)) => assert!(open.retry_after().is_none()),
    ///     other => panic!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub fn typed_errors(self) -> CircuitBreakerLayer<C, TypedErrors> {
        CircuitBreakerLayer {
            circuit: self.circuit,
            classifier: self.classifier,
            fallback: TypedErrors,
            backpressure: self.backpressure,
        }
    }

    /// Backpressure mode: `poll_ready` is `Pending` while the circuit would reject, instead
    /// of failing the call. Suits balancers that route around a service that is not
    /// ready; put `load_shed()` above it if callers must not wait.
    ///
    /// A waiter wakes when the break ends, when a probe slot frees up or the circuit
    /// changes state, and at the probe deadline of a half-open probe that hangs
    /// ([`half_open_max_wait`](crate::CircuitBreakerConfig::half_open_max_wait)). With
    /// feature `fleet`, while another instance holds the fleet's probe lease after the
    /// local break has ended, it looks again every 100 ms instead of spinning.
    ///
    /// Waiting on the break uses tokio's timer, so the service must be polled inside a
    /// tokio runtime with time enabled. A fallback is never used in this mode: nothing is
    /// rejected, callers wait.
    pub fn backpressure(mut self) -> Self {
        self.backpressure = true;
        self
    }
}

impl<C, G> CircuitBreakerLayer<C, FallbackWithCause<G>> {
    /// Run the fallback also when the inner service's response future fails (returns
    /// `Err`), with [`FallbackCause::Failed`]; like
    /// [`registry::on_failure_too`](crate::registry::on_failure_too).
    ///
    /// "Fails" means `Err`, as for the registry: an `Ok` response that the classifier
    /// counts as a failure (a 503 under `HttpStatusAsFailures`) is returned as it is. The
    /// failure is recorded by the circuit before the fallback runs.
    ///
    /// The request must be `Clone` (each admitted call keeps a copy for the fallback) and
    /// so must the fallback (each admitted call keeps a clone to call on failure, after
    /// polling its readiness). A fallback that fails returns its own error. An error of
    /// the inner service's `poll_ready` is returned as it is (no request exists yet).
    ///
    /// [`FallbackCause::Failed`]: crate::error::FallbackCause::Failed
    pub fn on_failure_too(self) -> CircuitBreakerLayer<C, FallbackOnFailureToo<G>> {
        CircuitBreakerLayer {
            circuit: self.circuit,
            classifier: self.classifier,
            fallback: FallbackOnFailureToo(self.fallback.0),
            backpressure: self.backpressure,
        }
    }
}

impl<S, C: Clone, F: Clone> Layer<S> for CircuitBreakerLayer<C, F> {
    type Service = CircuitBreaker<S, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(
            inner,
            self.circuit.clone(),
            self.classifier.clone(),
            self.fallback.clone(),
            self.backpressure,
        )
    }
}
