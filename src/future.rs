//! Response futures of [`CircuitBreaker`](crate::CircuitBreaker).
//!
//! [`ResponseFuture`] is the future without a fallback: it resolves to the inner
//! service's result (errors boxed) or, when the circuit rejected the call, to a boxed
//! [`CircuitOpen`]. [`FallbackFuture`] is the future with a fallback: a rejection runs the
//! fallback instead and the inner error type is kept.
//!
//! Both classify the inner result when it is ready and pass it on untouched. Dropping
//! one before it completes follows the circuit's dropped-call policy and always gives back
//! a half-open probe slot.

use crate::BoxError;
use crate::circuit::Permit;
use crate::classify::Classify;
use crate::error::{CircuitBreakerError, CircuitOpen, FallbackCause};
use crate::service::Handle;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower_service::Service;

pin_project! {
    /// An admitted call: the inner future, and the permit that reports its verdict (and
    /// holds the handle to the circuit until the future is dropped).
    struct Tracked<F, C> {
        #[pin]
        fut: F,
        permit: Permit<Handle>,
        classifier: C,
    }
}

impl<F, C> Tracked<F, C> {
    #[inline]
    fn new(fut: F, permit: Permit<Handle>, classifier: C) -> Self {
        Tracked {
            fut,
            permit,
            classifier,
        }
    }
}

impl<F, C, T, E> Future for Tracked<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    // Always: a response future is this and one branch around it, and inlined into the
    // caller's poll the permit stays in registers.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.fut.poll(cx));
        this.permit.report(this.classifier.classify(&result));
        Poll::Ready(result)
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker) without a fallback.
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: ResponseState<F, C>,
    }
}

pin_project! {
    #[project = ResponseStateProj]
    enum ResponseState<F, C> {
        Called { #[pin] fut: Tracked<F, C> },
        Rejected { error: Option<CircuitOpen> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(fut: F, permit: Permit<Handle>, classifier: C) -> Self {
        ResponseFuture {
            state: ResponseState::Called {
                fut: Tracked::new(fut, permit, classifier),
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            state: ResponseState::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponseStateProj::Called { fut } => fut.poll(cx).map_err(Into::into),
            ResponseStateProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker) with a fallback.
    pub struct FallbackFuture<F, C, G> {
        #[pin]
        state: FallbackState<F, C, G>,
    }
}

pin_project! {
    #[project = FallbackStateProj]
    enum FallbackState<F, C, G> {
        Called { #[pin] fut: Tracked<F, C> },
        Fallback { #[pin] fut: G },
    }
}

impl<F, C, G> FallbackFuture<F, C, G> {
    pub(crate) fn called(fut: F, permit: Permit<Handle>, classifier: C) -> Self {
        FallbackFuture {
            state: FallbackState::Called {
                fut: Tracked::new(fut, permit, classifier),
            },
        }
    }

    pub(crate) fn fallback(fut: G) -> Self {
        FallbackFuture {
            state: FallbackState::Fallback { fut },
        }
    }
}

impl<F, C, G, T, E> Future for FallbackFuture<F, C, G>
where
    F: Future<Output = Result<T, E>>,
    G: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            FallbackStateProj::Called { fut } => fut.poll(cx),
            FallbackStateProj::Fallback { fut } => fut.poll(cx),
        }
    }
}

impl<F, C, G> std::fmt::Debug for FallbackFuture<F, C, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker) in typed-error mode
    /// ([`CircuitBreakerLayer::typed_errors`](crate::CircuitBreakerLayer::typed_errors)).
    pub struct TypedFuture<F, C> {
        #[pin]
        state: ResponseState<F, C>,
    }
}

impl<F, C> TypedFuture<F, C> {
    pub(crate) fn called(fut: F, permit: Permit<Handle>, classifier: C) -> Self {
        TypedFuture {
            state: ResponseState::Called {
                fut: Tracked::new(fut, permit, classifier),
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        TypedFuture {
            state: ResponseState::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, T, E> Future for TypedFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, CircuitBreakerError<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ResponseStateProj::Called { fut } => fut.poll(cx).map_err(CircuitBreakerError::Inner),
            ResponseStateProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(CircuitBreakerError::Rejected(error)))
            }
        }
    }
}

impl<F, C> std::fmt::Debug for TypedFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedFuture").finish_non_exhaustive()
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker) with a fallback that
    /// also answers failures
    /// ([`CircuitBreakerLayer::on_failure_too`](crate::CircuitBreakerLayer::on_failure_too)).
    pub struct OnFailureFuture<F, C, G: Service<(R, FallbackCause<E>)>, R, E> {
        #[pin]
        state: OnFailureState<F, C, G, R, E>,
    }
}

pin_project! {
    #[project = OnFailureStateProj]
    enum OnFailureState<F, C, G: Service<(R, FallbackCause<E>)>, R, E> {
        Called { #[pin] fut: Tracked<F, C>, retry: Option<(R, G)> },
        Ready { fallback: G, call: Option<(R, FallbackCause<E>)> },
        Fallback { #[pin] fut: G::Future },
    }
}

impl<F, C, G: Service<(R, FallbackCause<E>)>, R, E> OnFailureFuture<F, C, G, R, E> {
    pub(crate) fn called(
        fut: F,
        permit: Permit<Handle>,
        classifier: C,
        req: R,
        fallback: G,
    ) -> Self {
        OnFailureFuture {
            state: OnFailureState::Called {
                fut: Tracked::new(fut, permit, classifier),
                retry: Some((req, fallback)),
            },
        }
    }

    pub(crate) fn fallback(fut: G::Future) -> Self {
        OnFailureFuture {
            state: OnFailureState::Fallback { fut },
        }
    }
}

impl<F, C, G, R, T, E> Future for OnFailureFuture<F, C, G, R, E>
where
    F: Future<Output = Result<T, E>>,
    G: Service<(R, FallbackCause<E>), Response = T, Error = E>,
    C: Classify<T, E>,
{
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                OnFailureStateProj::Called { fut, retry } => match ready!(fut.poll(cx)) {
                    Ok(v) => return Poll::Ready(Ok(v)),
                    Err(e) => {
                        let (req, fallback) = retry.take().expect("polled after completion");
                        OnFailureState::Ready {
                            fallback,
                            call: Some((req, FallbackCause::Failed(e))),
                        }
                    }
                },
                OnFailureStateProj::Ready { fallback, call } => {
                    ready!(fallback.poll_ready(cx))?;
                    let call = call.take().expect("polled after completion");
                    OnFailureState::Fallback {
                        fut: fallback.call(call),
                    }
                }
                OnFailureStateProj::Fallback { fut } => return fut.poll(cx),
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<F, C, G: Service<(R, FallbackCause<E>)>, R, E> std::fmt::Debug
    for OnFailureFuture<F, C, G, R, E>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnFailureFuture").finish_non_exhaustive()
    }
}
