//! Error types.
//!
//! A rejected call fails with [`CircuitOpen`]. Through a [`CircuitBreaker`] without a
//! fallback it arrives boxed in a [`BoxError`]; recognise it by downcasting:
//!
//! ```
//! use tower_circuit_breaker::{BoxError, error::CircuitOpen};
//!
//! fn is_rejection(err: &BoxError) -> bool {
//!     err.is::<CircuitOpen>()
//! }
//! # assert!(!is_rejection(&"other".into()));
//! ```
//!
//! Inner errors pass through unchanged, boxed.
//!
//! [`CircuitBreaker`]: crate::CircuitBreaker
//! [`BoxError`]: crate::BoxError

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use crate::config::ConfigError;

/// Why a call was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The circuit is Open and its break has not ended. The break is the recovery timeout,
    /// or what the backoff, a classifier's `OpenFor` (`Retry-After`), an unfinished probe
    /// or a state adopted from the fleet or a snapshot set; with the fleet's probe lease
    /// held elsewhere, a circuit whose break has ended stays Open too.
    Open,
    /// The circuit was opened by hand ([`Circuit::force_open`](crate::Circuit::force_open)).
    ForcedOpen,
    /// The circuit is half-open and every probe slot is taken.
    HalfOpenFull,
}

impl RejectReason {
    /// A short lowercase name: `open`, `forced_open`, `half_open_full`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Open => "open",
            RejectReason::ForcedOpen => "forced_open",
            RejectReason::HalfOpenFull => "half_open_full",
        }
    }
}

/// The circuit rejected the call without calling the inner service.
///
/// Says which circuit, why, and when it may admit again ([`retry_after`](Self::retry_after)).
///
/// Its `Display` is one lowercase line, its duration rounded up to the millisecond:
/// ``circuit `dynamodb` is open; retry after 2.944s``.
#[derive(Clone)]
pub struct CircuitOpen {
    circuit: Name,
    reason: RejectReason,
    /// [`retry_after`](Self::retry_after) in nanoseconds, [`NO_RETRY_AFTER`] for none:
    /// a rejection is made on every call of an outage, and a `Duration` would cost it a
    /// division.
    retry_after_ns: u64,
}

/// `CircuitOpen::retry_after_ns` when there is no retry hint.
pub(crate) const NO_RETRY_AFTER: u64 = u64::MAX;

impl fmt::Debug for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitOpen")
            .field("circuit", &self.circuit)
            .field("reason", &self.reason)
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl CircuitOpen {
    /// `retry_after_ns`: the hint in nanoseconds, [`NO_RETRY_AFTER`] for none.
    pub(crate) fn new(circuit: Name, reason: RejectReason, retry_after_ns: u64) -> Self {
        CircuitOpen {
            circuit,
            reason,
            retry_after_ns,
        }
    }

    /// The name of the circuit that rejected the call.
    pub fn circuit(&self) -> &str {
        self.circuit.as_str()
    }

    /// Why the call was rejected.
    pub fn reason(&self) -> RejectReason {
        self.reason
    }

    /// How long until the circuit may admit again, when that is known: the rest of the
    /// break for [`RejectReason::Open`]; for [`RejectReason::HalfOpenFull`], the time to
    /// the probe deadline (see
    /// [`half_open_max_wait`](crate::CircuitBreakerConfig::half_open_max_wait)), when
    /// the next call gives up on the unfinished probes (a probe that finishes first frees
    /// its slot or closes the circuit sooner). `None` when forced open, when the probes
    /// have all passed and the circuit is closing, or when the break has ended but the
    /// fleet's probe lease is held elsewhere.
    pub fn retry_after(&self) -> Option<Duration> {
        (self.retry_after_ns != NO_RETRY_AFTER).then(|| Duration::from_nanos(self.retry_after_ns))
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            RejectReason::Open => write!(f, "circuit `{}` is open", self.circuit.as_str())?,
            RejectReason::ForcedOpen => {
                write!(f, "circuit `{}` is forced open", self.circuit.as_str())?
            }
            RejectReason::HalfOpenFull => write!(
                f,
                "circuit `{}` is half-open and its probes are in flight",
                self.circuit.as_str()
            )?,
        }
        if let Some(d) = self.retry_after() {
            write!(f, "; retry after {:?}", ceil_to_millis(d))?;
        }
        Ok(())
    }
}

/// `d` rounded up to the whole millisecond, for messages: "2.944s", not "2.943999998s".
/// Up, so a caller who waits what the message says does not come back early;
/// [`CircuitOpen::retry_after`] itself stays exact.
pub(crate) fn ceil_to_millis(d: Duration) -> Duration {
    let whole = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if whole < d {
        whole.saturating_add(Duration::from_millis(1))
    } else {
        whole
    }
}

impl std::error::Error for CircuitOpen {}

/// The error of [`Circuit::call`](crate::Circuit::call): a rejection, or the operation's
/// own error, untouched.
#[derive(Debug)]
pub enum CallError<E> {
    /// The circuit rejected the call; the operation was not started.
    Rejected(CircuitOpen),
    /// The operation ran and failed with this error.
    Inner(E),
}

impl<E> CallError<E> {
    /// The rejection, if this is one.
    pub fn rejection(&self) -> Option<&CircuitOpen> {
        match self {
            CallError::Rejected(r) => Some(r),
            CallError::Inner(_) => None,
        }
    }

    /// The operation's error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Rejected(_) => None,
            CallError::Inner(e) => Some(e),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Rejected(r) => r.fmt(f),
            CallError::Inner(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Rejected(r) => Some(r),
            CallError::Inner(e) => Some(e),
        }
    }
}

/// The error of a [`CircuitBreaker`](crate::CircuitBreaker) in typed-error mode
/// ([`CircuitBreakerLayer::typed_errors`](crate::CircuitBreakerLayer::typed_errors)): a
/// rejection, or the inner service's own error, untouched and unboxed.
///
/// Unlike the default [`BoxError`](crate::BoxError) mode, the service puts no bound on the
/// inner error type, so a stack over any error type can be moved into `tokio::spawn` or an
/// axum handler (see the [crate docs](crate#troubleshooting)).
#[derive(Debug)]
#[non_exhaustive]
pub enum CircuitBreakerError<E> {
    /// The circuit rejected the call; the inner service was not called.
    Rejected(CircuitOpen),
    /// The inner service failed (in `poll_ready` or in its response future).
    Inner(E),
}

impl<E> CircuitBreakerError<E> {
    /// The rejection, if this is one.
    pub fn rejection(&self) -> Option<&CircuitOpen> {
        match self {
            CircuitBreakerError::Rejected(r) => Some(r),
            CircuitBreakerError::Inner(_) => None,
        }
    }

    /// Whether the circuit rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, CircuitBreakerError::Rejected(_))
    }

    /// The inner service's error, if it ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CircuitBreakerError::Rejected(_) => None,
            CircuitBreakerError::Inner(e) => Some(e),
        }
    }

    /// The error as the default mode would have returned it: a boxed [`CircuitOpen`] or
    /// the inner error, boxed.
    ///
    /// `CircuitBreakerError<BoxError>` is not itself an [`Error`](std::error::Error)
    /// (`Box<dyn Error>` is not one); this is the way to a `?`-able error there.
    pub fn into_box_error(self) -> crate::BoxError
    where
        E: Into<crate::BoxError>,
    {
        match self {
            CircuitBreakerError::Rejected(r) => Box::new(r),
            CircuitBreakerError::Inner(e) => e.into(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CircuitBreakerError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CircuitBreakerError::Rejected(r) => r.fmt(f),
            CircuitBreakerError::Inner(e) => e.fmt(f),
        }
    }
}

/// `source` is the [`CircuitOpen`] or the inner error, so a report walking the chain
/// names both the breaker's verdict and the inner cause.
impl<E: std::error::Error + 'static> std::error::Error for CircuitBreakerError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CircuitBreakerError::Rejected(r) => Some(r),
            CircuitBreakerError::Inner(e) => Some(e),
        }
    }
}

/// Why a fallback ran: given to the fallback of
/// [`CircuitBreakerRegistry::execute`](crate::CircuitBreakerRegistry::execute) and to a
/// tower fallback set with
/// [`CircuitBreakerLayer::fallback_with_cause`](crate::CircuitBreakerLayer::fallback_with_cause).
#[derive(Debug)]
pub enum FallbackCause<E> {
    /// The circuit rejected the call; the operation did not run. The [`CircuitOpen`]
    /// says when to come back ([`CircuitOpen::retry_after`]), e.g. for a `Retry-After`
    /// header.
    Rejected(CircuitOpen),
    /// The operation ran and failed (only with `on_failure_too`:
    /// [`registry::on_failure_too`](crate::registry::on_failure_too) or
    /// [`CircuitBreakerLayer::on_failure_too`](crate::CircuitBreakerLayer::on_failure_too)).
    Failed(E),
}

/// A circuit's name as a rejection carries it.
///
/// Every rejection clones the name into its [`CircuitOpen`]. One shared `Arc<str>` would
/// make every core that rejects write to one reference count, so a circuit keeps a copy
/// per window stripe (per thread, in effect), each on a cache line of its own, and a
/// rejection clones the copy of its thread's stripe.
#[derive(Clone)]
pub(crate) struct Name(Arc<NameCopy>);

#[repr(align(128))]
struct NameCopy(Box<str>);

impl Name {
    pub(crate) fn new(name: &str) -> Self {
        Name(Arc::new(NameCopy(name.into())))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
