//! Deciding whether a completed call was a success, a failure, or neither.
//!
//! A classifier looks at `&Result<Response, Error>` and returns a [`Verdict`]. The result
//! itself is passed on to the caller untouched. Three values, not two: a call that tells
//! nothing about the dependency's health (a cancelled request, a client-side validation
//! error) is [`Verdict::Ignored`], and an ignored half-open probe gives its slot back.
//!
//! The default, [`ErrorsAsFailures`], calls every `Err` a failure and every `Ok` a
//! success. Any `Fn(&Result<Res, E>) -> Verdict` is a classifier too:
//!
//! ```
//! use tower_circuit_breaker::classify::{Classify, Verdict};
//!
//! #[derive(Debug)]
//! enum DbError { Throttled, ConditionalCheckFailed }
//!
//! let classifier = |r: &Result<(), DbError>| match r {
//!     Ok(()) => Verdict::Success,
//!     // The database answered: healthy, even if the write was refused.
//!     Err(DbError::ConditionalCheckFailed) => Verdict::Success,
//!     Err(DbError::Throttled) => Verdict::Failure,
//! };
//! assert_eq!(classifier.classify(&Err(DbError::ConditionalCheckFailed)), Verdict::Success);
//! assert_eq!(classifier.classify(&Err(DbError::Throttled)), Verdict::Failure);
//! ```
//!
//! With the `http` feature, [`HttpStatusAsFailures`] classifies `http::Response`s.

use std::time::Duration;

/// What a completed call says about the dependency.
///
/// `#[non_exhaustive]`, like [`RejectReason`](crate::RejectReason) and
/// [`TransitionReason`](crate::TransitionReason): a `match` on a verdict needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// The dependency worked.
    Success,
    /// The dependency failed.
    Failure,
    /// The call says nothing about the dependency; it is counted as ignored and changes
    /// no state.
    Ignored,
    /// The dependency failed and asked not to be called for this long (for example a
    /// `Retry-After` header): the circuit opens now for this duration, whatever the
    /// thresholds say.
    OpenFor(Duration),
}

/// Classifies the result of a call.
///
/// Implemented for every `Fn(&Result<Res, E>) -> Verdict`.
pub trait Classify<Res, E> {
    /// The verdict for one completed call.
    fn classify(&self, result: &Result<Res, E>) -> Verdict;
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Verdict,
{
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Verdict {
        self(result)
    }
}

/// A classifier from a closure whose argument type is given here, not inferred.
///
/// A closure passed straight to [`CircuitBreakerLayer::classifier`](crate::CircuitBreakerLayer::classifier)
/// or [`Circuit::call_with`](crate::Circuit::call_with) cannot have its argument type
/// inferred ("type annotations needed"), since any `Fn(&Result<Res, E>) -> Verdict`
/// would do; `from_fn` names the response and error types once. It returns the closure
/// itself (no wrapper, no cost): a layer whose service's response or error type differs
/// is then refused with an error naming this closure and the types it was given.
///
/// ```
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_circuit_breaker::classify::{self, Verdict};
/// use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// // A status code below 500 is a success; 5xx and transport errors are failures.
/// let layer = CircuitBreakerLayer::named("upstream", CircuitBreakerConfig::default())
///     .classifier(classify::from_fn::<u16, BoxError, _>(|r| match r {
///         Ok(status) if *status >= 500 => Verdict::Failure,
///         Ok(_) => Verdict::Success,
///         Err(_) => Verdict::Failure,
///     }));
/// let circuit = layer.circuit().clone();
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service_fn(|status: u16| async move { Ok::<_, BoxError>(status) });
/// assert_eq!(svc.oneshot(503).await?, 503);
/// assert_eq!(circuit.stats().failure_count, 1);
/// # Ok(())
/// # }
/// ```
pub fn from_fn<Res, E, F>(classifier: F) -> F
where
    F: Fn(&Result<Res, E>) -> Verdict,
{
    classifier
}

/// The default classifier: `Ok` is a success, every `Err` is a failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorsAsFailures;

impl<Res, E> Classify<Res, E> for ErrorsAsFailures {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        }
    }
}

#[cfg(feature = "http")]
pub use self::http_status::HttpStatusAsFailures;

#[cfg(feature = "http")]
mod http_status {
    use super::{Classify, Verdict};
    use http::{Response, StatusCode, header::RETRY_AFTER};
    use std::time::{Duration, SystemTime};

    /// Classifies `http::Response`s: 5xx, 408 and 429 are failures, every other status is
    /// a success, and every `Err` (a transport error) is a failure.
    ///
    /// With [`honor_retry_after`](Self::honor_retry_after), a 429 or 503 that carries a
    /// `Retry-After` header (seconds or an HTTP date) opens the circuit for that long,
    /// capped. Off by default: one response then opens the circuit regardless of
    /// `minimum_request_count`, which should be a deliberate choice.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_circuit_breaker::classify::{Classify, HttpStatusAsFailures, Verdict};
    ///
    /// let c = HttpStatusAsFailures::new().honor_retry_after(Duration::from_secs(60));
    /// let busy = http::Response::builder().status(429).header("retry-after", "7").body(()).unwrap();
    /// let r: Result<_, std::io::Error> = Ok(busy);
    /// assert_eq!(c.classify(&r), Verdict::OpenFor(Duration::from_secs(7)));
    /// ```
    #[derive(Clone, Copy, Debug, Default)]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub struct HttpStatusAsFailures {
        retry_after_cap: Option<Duration>,
    }

    impl HttpStatusAsFailures {
        /// 5xx, 408, 429 and transport errors are failures; `Retry-After` is not honoured.
        pub const fn new() -> Self {
            HttpStatusAsFailures {
                retry_after_cap: None,
            }
        }

        /// Open the circuit for a 429/503 `Retry-After`, at most `cap`.
        pub const fn honor_retry_after(mut self, cap: Duration) -> Self {
            self.retry_after_cap = Some(cap);
            self
        }

        /// The verdict for a status code alone.
        pub fn status_verdict(status: StatusCode) -> Verdict {
            if status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
            {
                Verdict::Failure
            } else {
                Verdict::Success
            }
        }
    }

    impl<B, E> Classify<Response<B>, E> for HttpStatusAsFailures {
        fn classify(&self, result: &Result<Response<B>, E>) -> Verdict {
            let res = match result {
                Ok(res) => res,
                Err(_) => return Verdict::Failure,
            };
            let status = res.status();
            if let Some(cap) = self.retry_after_cap {
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    if let Some(d) = res
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(retry_after)
                    {
                        return Verdict::OpenFor(d.min(cap));
                    }
                }
            }
            Self::status_verdict(status)
        }
    }

    /// Parses a `Retry-After` value: delta-seconds or an HTTP date. A date in the past or
    /// a zero delay gives `None`: there is nothing to wait for.
    pub(crate) fn retry_after(value: &str) -> Option<Duration> {
        let value = value.trim();
        let d = if let Ok(secs) = value.parse::<u64>() {
            Duration::from_secs(secs)
        } else {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(SystemTime::now()).ok()?
        };
        (!d.is_zero()).then_some(d)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn retry_after_forms() {
            assert_eq!(retry_after("120"), Some(Duration::from_secs(120)));
            assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
            assert_eq!(retry_after("0"), None);
            assert_eq!(retry_after("-1"), None);
            assert_eq!(retry_after("soon"), None);
            assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
            let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
            let d = retry_after(&future).unwrap();
            assert!(d <= Duration::from_secs(100) && d >= Duration::from_secs(98));
        }
    }
}
