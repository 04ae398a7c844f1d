//! [`RecorderLayer`]: the tower face of a [`Recorder`].

use super::{CallStart, RecordKey, Recorder};
use crate::classify::{Classify, ErrorsAsFailures, Verdict};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_layer::Layer;
use tower_service::Service;

/// Records every call through the wrapped service into a trace (see [`Recorder`]).
///
/// Each call's start, duration, outcome (by the layer's classifier, [`ErrorsAsFailures`]
/// by default, like the breaker's) and key (`service`, `operation`) are queued with one
/// non-blocking send; the response passes through untouched. A call dropped before it
/// completes is not recorded.
///
/// # Where to stack it
///
/// * **Under** a [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) (the breaker
///   outermost), with the breaker's classifier: the trace holds the calls that reached
///   the dependency, with the breaker's own verdicts. Calls the breaker rejected are not in
///   it, so a replay sees a gap where the live breaker was Open.
/// * **Over** the breaker, or with the breaker in `metrics_only` mode: every call is in
///   the trace. Over a rejecting breaker, classify rejections as ignored with
///   [`rejections_ignored`](super::rejections_ignored) so they do not read as failures of
///   the dependency.
///
/// ```
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
/// use tower_circuit_breaker::trace::{Recorder, RecorderLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (recorder, writer) = Recorder::spawn(Vec::new(), 4096);
/// let svc = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::for_operation("dynamodb", "query", CircuitBreakerConfig::dynamodb()))
///     .layer(RecorderLayer::new(recorder, "dynamodb", "query"))
///     .service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) });
/// assert_eq!(svc.oneshot(7).await.unwrap(), 7);
/// let (trace, stats) = writer.finish().unwrap();
/// assert_eq!(stats.written, 1);
/// assert!(String::from_utf8(trace).unwrap().contains("\"o\":\"ok\""));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RecorderLayer<C = ErrorsAsFailures> {
    recorder: Recorder,
    key: RecordKey,
    classifier: C,
}

impl RecorderLayer {
    /// Records calls under the key `service`/`operation`, every `Err` a failure.
    pub fn new(recorder: Recorder, service: &str, operation: &str) -> Self {
        RecorderLayer {
            key: recorder.key(service, operation),
            recorder,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> RecorderLayer<C> {
    /// Classifies results with `classifier` (use the breaker's, to record its verdicts).
    pub fn classifier<C2>(self, classifier: C2) -> RecorderLayer<C2> {
        RecorderLayer {
            recorder: self.recorder,
            key: self.key,
            classifier,
        }
    }

    /// The recorder the layer writes to.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }
}

impl<S, C: Clone> Layer<S> for RecorderLayer<C> {
    type Service = RecorderService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RecorderService {
            inner,
            recorder: self.recorder.clone(),
            key: self.key,
            classifier: self.classifier.clone(),
        }
    }
}

/// The service [`RecorderLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct RecorderService<S, C = ErrorsAsFailures> {
    inner: S,
    recorder: Recorder,
    key: RecordKey,
    classifier: C,
}

impl<S, C, Req> Service<Req> for RecorderService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RecorderFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let start = self.recorder.start();
        RecorderFuture {
            fut: self.inner.call(req),
            pending: Some(Pending {
                recorder: self.recorder.clone(),
                key: self.key,
                classifier: self.classifier.clone(),
                start,
            }),
        }
    }
}

struct Pending<C> {
    recorder: Recorder,
    key: RecordKey,
    classifier: C,
    start: CallStart,
}

pin_project! {
    /// Response future of [`RecorderService`] and of [`Recorder::record`]: the inner
    /// future, recorded when it completes.
    pub struct RecorderFuture<F, C> {
        #[pin]
        fut: F,
        pending: Option<Pending<C>>,
    }
}

impl Recorder {
    /// Records the call `fut` makes under `key` (from [`key`](Recorder::key)), its
    /// outcome by `classifier`, timed from now to its completion: the hook for work that
    /// is not a tower service. The future's output passes through untouched; dropped
    /// before it completes, it records nothing.
    ///
    /// Inside a [`Circuit::call`](crate::Circuit::call) or a registry's
    /// [`execute`](crate::CircuitBreakerRegistry::execute) closure, it records the calls
    /// the circuit let through, with the same classifier's verdict the circuit got:
    ///
    /// ```
    /// use tower_circuit_breaker::classify::ErrorsAsFailures;
    /// use tower_circuit_breaker::trace::Recorder;
    /// use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerRegistry, NoFallback};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (recorder, writer) = Recorder::spawn(Vec::new(), 4096);
    /// let key = recorder.key("dynamodb", "getItem");
    /// let registry = CircuitBreakerRegistry::new();
    /// let item: Result<u32, BoxError> = registry
    ///     .execute(
    ///         "dynamodb",
    ///         "getItem",
    ///         || recorder.record(key, ErrorsAsFailures, async { Ok(42) }),
    ///         NoFallback,
    ///         &CircuitBreakerConfig::dynamodb(),
    ///     )
    ///     .await;
    /// assert_eq!(item.unwrap(), 42);
    /// drop(recorder);
    /// assert_eq!(writer.finish().unwrap().1.written, 1);
    /// # }
    /// ```
    pub fn record<F, C>(&self, key: RecordKey, classifier: C, fut: F) -> RecorderFuture<F, C> {
        RecorderFuture {
            fut,
            pending: Some(Pending {
                recorder: self.clone(),
                key,
                classifier,
                start: self.start(),
            }),
        }
    }
}

impl<F, C> std::fmt::Debug for RecorderFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for RecorderFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        if let Some(p) = this.pending.take() {
            let verdict = p.classifier.classify(&result);
            p.recorder.finish(p.key, p.start, verdict);
        }
        Poll::Ready(result)
    }
}

/// A classifier for a recorder stacked over a breaker whose errors are boxed (the
/// default [`CircuitBreaker`](crate::CircuitBreaker) mode): a rejection
/// ([`CircuitOpen`](crate::CircuitOpen)) is ignored, any other error a failure, `Ok` a
/// success.
pub fn rejections_ignored<T>(result: &Result<T, crate::BoxError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Success,
        Err(e) if e.is::<crate::CircuitOpen>() => Verdict::Ignored,
        Err(_) => Verdict::Failure,
    }
}
