//! The SDK side of a rejection: no retry, and recognising it in an `SdkError`.

use crate::error::CircuitOpen;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use std::error::Error;

/// A retry classifier that forbids retrying an attempt the circuit rejected.
///
/// [`BreakerHttpClient`](super::BreakerHttpClient) already hands a rejection to the SDK as
/// a connector error its own classifiers do not retry; this makes the rule explicit and
/// keeps it true whatever other classifiers a client has. It returns
/// [`RetryAction::RetryForbidden`] when the attempt's error has a [`CircuitOpen`] in its
/// source chain, and no opinion otherwise. It runs after the SDK's default classifiers, and
/// a `RetryForbidden` from any classifier wins.
///
/// Install it with `config::Builder::retry_classifier(CircuitOpenRetryClassifier)` (the
/// [`aws_client!`](crate::aws_client) macro does).
#[derive(Clone, Copy, Debug, Default)]
pub struct CircuitOpenRetryClassifier;

impl ClassifyRetry for CircuitOpenRetryClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.output_or_error() {
            Some(Err(err)) if rejection_in(err).is_some() => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "CircuitOpenRetryClassifier"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The rejection behind an SDK error, when the circuit rejected the attempt that ended the
/// operation: `SdkError::DispatchFailure` → `ConnectorError` → [`CircuitOpen`].
///
/// ```ignore
/// # // SDK example: compiled by integration/tests/doc_examples
/// # #[allow(dead_code)]
/// # async fn f(client: aws_sdk_dynamodb::Client) {
/// use tower_circuit_breaker::aws::circuit_rejection;
///
/// match client.put_item().table_name("chat").send().await {
///     Ok(_) => {}
///     Err(e) => match circuit_rejection(&e) {
///         Some(open) => println!("DynamoDB is resting: {open}, retry after {:?}", open.retry_after()),
///         None => println!("DynamoDB said no: {e}"),
///     },
/// }
/// # }
/// ```
pub fn circuit_rejection<E, R>(err: &SdkError<E, R>) -> Option<&CircuitOpen> {
    match err {
        SdkError::DispatchFailure(failure) => rejection_in(failure.as_connector_error()?),
        _ => None,
    }
}

/// Whether the SDK error is a circuit rejection; see [`circuit_rejection`].
pub fn is_circuit_rejection<E, R>(err: &SdkError<E, R>) -> bool {
    circuit_rejection(err).is_some()
}

/// The [`CircuitOpen`] in `err` or its source chain, for errors that have left the
/// `SdkError` type: a service-level `aws_sdk_dynamodb::Error`, a `BoxError`, a
/// `lambda_runtime::Error`.
///
/// ```
/// use tower_circuit_breaker::{BoxError, CircuitBreakerConfig, CircuitBreakerRegistry};
/// use tower_circuit_breaker::aws::rejection_in;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = CircuitBreakerRegistry::new();
/// registry.circuit("dynamodb", "PutItem", &CircuitBreakerConfig::dynamodb()).force_open();
/// let err: BoxError = registry
///     .circuit("dynamodb", "PutItem", None)
///     .call(async { Ok::<(), std::io::Error>(()) })
///     .await
///     .unwrap_err()
///     .into();
/// assert!(rejection_in(err.as_ref()).is_some());
/// # }
/// ```
pub fn rejection_in<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a CircuitOpen> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(open) = e.downcast_ref::<CircuitOpen>() {
            return Some(open);
        }
        if let Some(rejected) = e.downcast_ref::<RejectedAfterAttempt>() {
            return Some(&rejected.open);
        }
        cur = e.source();
    }
    None
}

/// The error of an operation's failed attempt, kept for the attempt after it (see
/// [`RejectedAfterAttempt`]).
#[derive(Clone, Debug)]
pub struct PreviousAttempt(std::sync::Arc<PreviousInner>);

#[derive(Debug)]
struct PreviousInner {
    status: Option<u16>,
    code: Option<String>,
    message: String,
}

impl PreviousAttempt {
    pub(crate) fn new(
        status: Option<u16>,
        code: Option<std::borrow::Cow<'_, str>>,
        message: String,
    ) -> Self {
        PreviousAttempt(std::sync::Arc::new(PreviousInner {
            status,
            code: code.map(std::borrow::Cow::into_owned),
            message,
        }))
    }

    /// The HTTP status of the attempt's response; `None` when none came (a connection
    /// error, a timeout).
    pub fn status(&self) -> Option<u16> {
        self.0.status
    }

    /// The AWS error code of the response (as [`error_code`](super::error_code) reads it).
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }
}

impl std::fmt::Display for PreviousAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.status, &self.0.code) {
            (Some(status), Some(code)) => write!(f, "HTTP {status} {code}: {}", self.0.message),
            (Some(status), None) => write!(f, "HTTP {status}: {}", self.0.message),
            _ => f.write_str(&self.0.message),
        }
    }
}

impl Error for PreviousAttempt {}

/// A rejection that followed an attempt of the same operation that reached the wire and
/// failed: the [`CircuitOpen`] and that attempt's error, its
/// [`source`](Error::source). [`circuit_rejection`] and [`rejection_in`] find the
/// `CircuitOpen` in it as in a plain rejection.
///
/// (The SDK retries a failed attempt; when that failure opened the circuit, the retry is
/// rejected and the operation's `SdkError` is the rejection: this keeps the failure that
/// caused it reachable.)
#[derive(Debug)]
pub struct RejectedAfterAttempt {
    open: CircuitOpen,
    previous: PreviousAttempt,
}

impl RejectedAfterAttempt {
    pub(crate) fn new(open: CircuitOpen, previous: PreviousAttempt) -> Self {
        RejectedAfterAttempt { open, previous }
    }

    /// The rejection.
    pub fn circuit_open(&self) -> &CircuitOpen {
        &self.open
    }

    /// The failed attempt before it.
    pub fn previous_attempt(&self) -> &PreviousAttempt {
        &self.previous
    }
}

impl std::fmt::Display for RejectedAfterAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (after a failed attempt: {})",
            self.open, self.previous
        )
    }
}

impl Error for RejectedAfterAttempt {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.previous)
    }
}
