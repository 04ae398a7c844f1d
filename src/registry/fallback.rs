//! What [`CircuitBreakerRegistry::execute`](super::CircuitBreakerRegistry::execute) runs
//! instead of an operation: a fallback for rejections, and optionally for failures.

use crate::error::CircuitOpen;
use std::future::Future;

pub use crate::error::FallbackCause;

/// What [`CircuitBreakerRegistry::execute`](super::CircuitBreakerRegistry::execute) does instead of the operation.
///
/// Implemented by every `FnOnce(FallbackCause<E>) -> impl Future<Output = Result<T, E>>`
/// (run when the circuit rejects), by [`OnFailureToo`] (also run when the operation
/// fails) and by [`NoFallback`](crate::NoFallback) (a rejection becomes `E` through
/// `From<CircuitOpen>`; the operation's own errors pass through unchanged).
pub trait ExecuteFallback<T, E> {
    /// Whether a failed operation also goes to the fallback.
    fn on_failure(&self) -> bool {
        false
    }

    /// Answers instead of the operation.
    fn run(self, cause: FallbackCause<E>) -> impl Future<Output = Result<T, E>>;
}

impl<F, Fut, T, E> ExecuteFallback<T, E> for F
where
    F: FnOnce(FallbackCause<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    fn run(self, cause: FallbackCause<E>) -> impl Future<Output = Result<T, E>> {
        self(cause)
    }
}

impl<T, E: From<CircuitOpen>> ExecuteFallback<T, E> for crate::NoFallback {
    async fn run(self, cause: FallbackCause<E>) -> Result<T, E> {
        Err(match cause {
            FallbackCause::Rejected(open) => open.into(),
            FallbackCause::Failed(e) => e,
        })
    }
}

/// A fallback that also answers when the operation fails. Made by [`on_failure_too`].
#[derive(Clone, Copy, Debug)]
pub struct OnFailureToo<F>(F);

/// Runs `fallback` when the circuit rejects *and* when the operation fails.
pub fn on_failure_too<F>(fallback: F) -> OnFailureToo<F> {
    OnFailureToo(fallback)
}

impl<F, Fut, T, E> ExecuteFallback<T, E> for OnFailureToo<F>
where
    F: FnOnce(FallbackCause<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    fn on_failure(&self) -> bool {
        true
    }

    fn run(self, cause: FallbackCause<E>) -> impl Future<Output = Result<T, E>> {
        (self.0)(cause)
    }
}
