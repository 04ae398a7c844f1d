//! A [`tower::retry::Policy`] wrapper that never retries a rejection (feature `retry`).
//!
//! A retry layer *outside* the breaker must not retry a [`CircuitOpen`]: the circuit
//! rejects every attempt at once, so the retries only burn the budget and the rejection
//! counts (see the crate docs, "Order"). [`NoRetryOnOpen`] wraps any policy and answers
//! "do not retry" for a rejection before asking it; every other result goes to the
//! wrapped policy unchanged.
//!
//! ```
//! use tower::retry::Policy;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_circuit_breaker::retry::NoRetryOnOpen;
//! use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpen};
//!
//! /// Retries every error, up to `0` times more.
//! #[derive(Clone)]
//! struct Attempts(u32);
//!
//! impl<Req: Clone, Res> Policy<Req, Res, BoxError> for Attempts {
//!     type Future = std::future::Ready<()>;
//!     fn retry(&mut self, _: &mut Req, result: &mut Result<Res, BoxError>) -> Option<Self::Future> {
//!         (result.is_err() && self.0 > 0).then(|| {
//!             self.0 -= 1;
//!             std::future::ready(())
//!         })
//!     }
//!     fn clone_request(&mut self, req: &Req) -> Option<Req> {
//!         Some(req.clone())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = CircuitBreakerLayer::named("db", CircuitBreakerConfig::default());
//! breaker.circuit().force_open();
//! let svc = ServiceBuilder::new()
//!     .retry(NoRetryOnOpen::new(Attempts(3)))
//!     .layer(breaker)
//!     .service_fn(|req: u32| async move { Ok::<_, BoxError>(req) });
//! let err = svc.oneshot(7).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>()); // one attempt, no retry
//! # }
//! ```
//!
//! Which errors are rejections is [`IsRejection`]'s call: a [`BoxError`] holding a
//! `CircuitOpen` (or with one in its [`source`](std::error::Error::source) chain, as when
//! `Buffer` wraps it), a `CircuitOpen`, or a [`CallError::Rejected`].

use crate::BoxError;
use crate::error::{CallError, CircuitOpen};
use tower::retry::Policy;

/// An error that may be a circuit breaker's rejection.
///
/// Implemented for [`BoxError`], [`CircuitOpen`] and [`CallError`]; implement it for an
/// error type of your own to use it with [`NoRetryOnOpen`].
pub trait IsRejection {
    /// The rejection, if this error is (or wraps) one.
    fn rejection(&self) -> Option<&CircuitOpen>;
}

impl IsRejection for BoxError {
    /// The `CircuitOpen` in the box, or the first one in its `source` chain.
    fn rejection(&self) -> Option<&CircuitOpen> {
        let mut err: Option<&(dyn std::error::Error + 'static)> = Some(&**self);
        while let Some(e) = err {
            if let Some(open) = e.downcast_ref::<CircuitOpen>() {
                return Some(open);
            }
            err = e.source();
        }
        None
    }
}

impl IsRejection for CircuitOpen {
    fn rejection(&self) -> Option<&CircuitOpen> {
        Some(self)
    }
}

impl<E> IsRejection for CallError<E> {
    fn rejection(&self) -> Option<&CircuitOpen> {
        CallError::rejection(self)
    }
}

/// Wraps a [`Policy`] so that a rejection ([`CircuitOpen`]) is never retried; see the
/// [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRetryOnOpen<P>(P);

impl<P> NoRetryOnOpen<P> {
    /// Wraps `policy`.
    pub const fn new(policy: P) -> Self {
        NoRetryOnOpen(policy)
    }

    /// The wrapped policy.
    pub fn get_ref(&self) -> &P {
        &self.0
    }

    /// The wrapped policy, mutably.
    pub fn get_mut(&mut self) -> &mut P {
        &mut self.0
    }

    /// The wrapped policy.
    pub fn into_inner(self) -> P {
        self.0
    }
}

impl<P, Req, Res, E> Policy<Req, Res, E> for NoRetryOnOpen<P>
where
    P: Policy<Req, Res, E>,
    E: IsRejection,
{
    type Future = P::Future;

    /// `None` for a rejection, without asking the wrapped policy; otherwise its answer.
    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        if let Err(e) = result {
            if e.rejection().is_some() {
                return None;
            }
        }
        self.0.retry(req, result)
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        self.0.clone_request(req)
    }
}
