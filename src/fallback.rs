//! Fallbacks: what a rejected call returns instead of an error.

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
