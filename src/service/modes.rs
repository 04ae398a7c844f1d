//! The service in its other error modes: typed errors, and fallbacks told the cause.

use super::CircuitBreaker;
use crate::classify::Classify;
use crate::error::{CircuitBreakerError, FallbackCause};
use crate::fallback::{FallbackOnFailureToo, FallbackWithCause, TypedErrors};
use crate::future::{FallbackFuture, OnFailureFuture, TypedFuture};
use std::task::{Context, Poll};
use tower_service::Service;

// ===== impl CircuitBreaker (typed errors) =====

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C, TypedErrors>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = CircuitBreakerError<S::Error>;
    type Future = TypedFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_ready_admitted::<Req>(cx)
            .map_err(CircuitBreakerError::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.take_permit() {
            Ok(permit) => {
                TypedFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => TypedFuture::rejected(open),
        }
    }
}

// ===== impl CircuitBreaker (fallback with cause) =====

impl<S, C, G, Req> Service<Req> for CircuitBreaker<S, C, FallbackWithCause<G>>
where
    S: Service<Req>,
    G: Service<(Req, FallbackCause<S::Error>), Response = S::Response, Error = S::Error>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = FallbackFuture<S::Future, C, G::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.poll_ready_or_fallback::<Req>(cx, |fallback, cx| fallback.0.poll_ready(cx))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.take_permit() {
            Ok(permit) => {
                FallbackFuture::called(self.inner.call(req), permit, self.classifier.clone())
            }
            Err(open) => {
                FallbackFuture::fallback(self.fallback.0.call((req, FallbackCause::Rejected(open))))
            }
        }
    }
}

// ===== impl CircuitBreaker (fallback on failure too) =====

impl<S, C, G, Req> Service<Req> for CircuitBreaker<S, C, FallbackOnFailureToo<G>>
where
    S: Service<Req>,
    Req: Clone,
    G: Service<(Req, FallbackCause<S::Error>), Response = S::Response, Error = S::Error> + Clone,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = OnFailureFuture<S::Future, C, G, Req, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.poll_ready_or_fallback::<Req>(cx, |fallback, cx| fallback.0.poll_ready(cx))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self.take_permit() {
            Ok(permit) => {
                let copy = req.clone();
                OnFailureFuture::called(
                    self.inner.call(req),
                    permit,
                    self.classifier.clone(),
                    copy,
                    self.fallback.0.clone(),
                )
            }
            Err(open) => OnFailureFuture::fallback(
                self.fallback.0.call((req, FallbackCause::Rejected(open))),
            ),
        }
    }
}
