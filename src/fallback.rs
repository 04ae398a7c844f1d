//! Fallbacks: what a rejected call returns instead of an error.

use crate::error::FallbackCause;
use std::future::Future;
use std::task::{Context, Poll};
use tower_service::Service;

/// No fallback: a rejection is a boxed [`CircuitOpen`](crate::error::CircuitOpen) error.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;

/// A fallback service: receives the request the circuit rejected and answers it.
///
/// Set with [`CircuitBreakerLayer::fallback`](crate::CircuitBreakerLayer::fallback).
#[derive(Clone, Copy, Debug)]
pub struct Fallback<S>(pub(crate) S);

/// A fallback made from an async function of the request; see
/// [`CircuitBreakerLayer::fallback_fn`](crate::CircuitBreakerLayer::fallback_fn).
#[derive(Clone, Copy)]
pub struct FallbackFn<F>(pub(crate) F);

impl<F> std::fmt::Debug for FallbackFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackFn").finish_non_exhaustive()
    }
}

impl<F, Fut, Req, T, E> Service<Req> for FallbackFn<F>
where
    F: FnMut(Req) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Response = T;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Fut {
        (self.0)(req)
    }
}

/// Typed-error mode: a rejection is [`CircuitBreakerError::Rejected`] and an inner error
/// is [`CircuitBreakerError::Inner`], with no bound on the inner error type.
///
/// Set with [`CircuitBreakerLayer::typed_errors`](crate::CircuitBreakerLayer::typed_errors).
///
/// [`CircuitBreakerError::Rejected`]: crate::error::CircuitBreakerError::Rejected
/// [`CircuitBreakerError::Inner`]: crate::error::CircuitBreakerError::Inner
#[derive(Clone, Copy, Debug, Default)]
pub struct TypedErrors;

/// A fallback service that is told why it runs: it receives `(request, FallbackCause)`.
///
/// Set with
/// [`CircuitBreakerLayer::fallback_with_cause`](crate::CircuitBreakerLayer::fallback_with_cause)
/// or [`fallback_fn_with_cause`](crate::CircuitBreakerLayer::fallback_fn_with_cause).
#[derive(Clone, Copy, Debug)]
pub struct FallbackWithCause<S>(pub(crate) S);

/// A [`FallbackWithCause`] that also answers when the inner service fails; see
/// [`CircuitBreakerLayer::on_failure_too`](crate::CircuitBreakerLayer::on_failure_too).
#[derive(Clone, Copy, Debug)]
pub struct FallbackOnFailureToo<S>(pub(crate) S);

/// A fallback made from an async function of the request and the
/// [`FallbackCause`](crate::error::FallbackCause); see
/// [`CircuitBreakerLayer::fallback_fn_with_cause`](crate::CircuitBreakerLayer::fallback_fn_with_cause).
#[derive(Clone, Copy)]
pub struct FallbackCauseFn<F>(pub(crate) F);

impl<F> std::fmt::Debug for FallbackCauseFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackCauseFn").finish_non_exhaustive()
    }
}

impl<F, Fut, Req, T, E> Service<(Req, FallbackCause<E>)> for FallbackCauseFn<F>
where
    F: FnMut(Req, FallbackCause<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    type Response = T;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (req, cause): (Req, FallbackCause<E>)) -> Fut {
        (self.0)(req, cause)
    }
}
