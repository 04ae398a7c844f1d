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
        cur = e.source();
    }
    None
}
