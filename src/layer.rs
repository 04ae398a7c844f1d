use crate::circuit::Circuit;
use crate::classify::ErrorsAsFailures;
use crate::fallback::{Fallback, FallbackFn, NoFallback};
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
