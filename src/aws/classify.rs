//! What one HTTP attempt says about an AWS service: the pure classification functions.

use super::error_codes::{THROTTLING_ERROR_CODES, TRANSIENT_ERROR_CODES, code_of};
use super::retry::circuit_rejection;
use crate::classify::{Classify, Verdict};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The verdict for one HTTP attempt that got a response: the table in the
/// [module docs](crate::aws#classification).
///
/// `headers` are the response's; `body` is the (buffered) body of an error response, or
/// `None`. The error code is read as the SDK reads it: the `x-amzn-errortype` header first,
/// then the JSON body's `code`, then its `__type` (or an XML body's `<Code>`), without the
/// namespace before `#` and anything after `:`.
///
/// * status below 400: success;
/// * 429, or a throttling code ([`THROTTLING_ERROR_CODES`]) with any status ≥ 400:
///   failure when `count_throttling`, success otherwise (the service answered; this caller
///   is over its quota);
/// * other 5xx, and 4xx with a transient code ([`TRANSIENT_ERROR_CODES`]): failure;
/// * every other 4xx (`ConditionalCheckFailedException`, `ValidationException`,
///   `ResourceNotFoundException`, 410 `GoneException`, 403 …): success — the dependency
///   answered.
///
/// [`BreakerHttpClient`](super::BreakerHttpClient) calls this with the whole body when it
/// ends within its [`error_body_prefix`](super::BreakerHttpClient::error_body_prefix). For
/// a longer body it applies the same rules to the prefix alone: a JSON body's top-level
/// `code` or `__type` counts when that member is complete within the prefix (`code` if
/// both are), an XML body's first `<Code>…</Code>` likewise; otherwise, with no
/// `x-amzn-errortype` header, the status decides (5xx failure, 429 throttling, other 4xx
/// success). Here, given a truncated JSON body, the code is not found.
///
/// ```
/// use aws_smithy_runtime_api::http::Headers;
/// use tower_circuit_breaker::aws::classify_attempt;
/// use tower_circuit_breaker::classify::Verdict;
///
/// let none = Headers::new();
/// let throttled = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}"#;
/// assert_eq!(classify_attempt(400, &none, Some(throttled), true), Verdict::Failure);
/// assert_eq!(classify_attempt(400, &none, Some(throttled), false), Verdict::Success);
/// assert_eq!(classify_attempt(503, &none, None, false), Verdict::Failure);
/// let conditional = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}"#;
/// assert_eq!(classify_attempt(400, &none, Some(conditional), true), Verdict::Success);
/// ```
pub fn classify_attempt(
    status: u16,
    headers: &Headers,
    body: Option<&[u8]>,
    count_throttling: bool,
) -> Verdict {
    classify(status, headers, body, false, count_throttling)
}

/// [`classify_attempt`] on the first bytes of an error body that goes on past them (an
/// over-long body, see [`BreakerHttpClient::error_body_prefix`](super::BreakerHttpClient::error_body_prefix)):
/// a JSON body's top-level `code` or `__type` counts when its member is complete within the
/// prefix (`code` when both are there, else the first of them seen); an XML body's first
/// `<Code>…</Code>` when it is complete within the prefix. Otherwise the status decides.
pub(crate) fn classify_error_prefix(
    status: u16,
    headers: &Headers,
    prefix: &[u8],
    count_throttling: bool,
) -> Verdict {
    classify(status, headers, Some(prefix), true, count_throttling)
}

fn classify(
    status: u16,
    headers: &Headers,
    body: Option<&[u8]>,
    truncated: bool,
    count_throttling: bool,
) -> Verdict {
    if status < 400 {
        return Verdict::Success;
    }
    let code = code_of(headers, body, truncated);
    verdict_for(status, code.as_deref(), count_throttling)
}

/// The table of [`classify_attempt`], given the error code (without its namespace).
fn verdict_for(status: u16, code: Option<&str>, count_throttling: bool) -> Verdict {
    if status < 400 {
        return Verdict::Success;
    }
    let throttled = status == 429 || code.is_some_and(|c| THROTTLING_ERROR_CODES.contains(&c));
    if throttled {
        return if count_throttling {
            Verdict::Failure
        } else {
            Verdict::Success
        };
    }
    if status >= 500 || code.is_some_and(|c| TRANSIENT_ERROR_CODES.contains(&c)) {
        return Verdict::Failure;
    }
    Verdict::Success
}

/// The verdict for an attempt that failed in the connector: I/O errors, timeouts and
/// other transport errors are failures; a [`ConnectorError::user`] error (the request
/// could not be built or sent as asked) says nothing about the service and is ignored.
pub fn classify_connector_error(error: &ConnectorError) -> Verdict {
    if error.is_user() {
        Verdict::Ignored
    } else {
        Verdict::Failure
    }
}

/// A [`Classify`] for the `Result` of an AWS SDK operation (`send().await`), with the
/// verdicts [`BreakerHttpClient`](super::BreakerHttpClient) gives each attempt: for
/// [`CircuitBreakerRegistry::execute_with`](crate::CircuitBreakerRegistry::execute_with) or
/// [`Circuit::call_with`](crate::Circuit::call_with), so a circuit around the whole
/// operation counts what the per-attempt circuits count.
///
/// | `SdkError` | verdict |
/// |---|---|
/// | `ServiceError`, `ResponseError` | [`classify_attempt`] on the response's status and error code (the code from the parsed error's metadata, else from the headers and body): `ConditionalCheckFailedException`, `ValidationException`, 410 `GoneException`, other 4xx: success; throttling: failure when [`count_throttling`](Self::count_throttling) (the default, as for the client), success otherwise; 5xx and transient codes: failure |
/// | `TimeoutError` | failure |
/// | `DispatchFailure` | a circuit rejection ([`circuit_rejection`](super::circuit_rejection)): ignored, the rejecting circuit has counted what led to it; otherwise [`classify_connector_error`] (I/O, timeout, other transport errors: failure; a user error: ignored) |
/// | `ConstructionFailure` | ignored: the request was never sent |
///
/// `Ok` is a success. An `SdkError` variant added later is a failure.
///
/// ```
/// use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
/// use aws_smithy_runtime_api::client::result::SdkError;
/// use aws_smithy_types::error::ErrorMetadata;
/// use tower_circuit_breaker::aws::SdkErrorClassifier;
/// use tower_circuit_breaker::classify::{Classify, Verdict};
///
/// let timeout: Result<(), SdkError<ErrorMetadata, HttpResponse>> = Err(SdkError::timeout_error("slow"));
/// assert_eq!(SdkErrorClassifier::new().classify(&timeout), Verdict::Failure);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SdkErrorClassifier {
    count_throttling: bool,
}

impl Default for SdkErrorClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl SdkErrorClassifier {
    /// Throttling counts as a failure, as for [`BreakerHttpClient`](super::BreakerHttpClient).
    pub const fn new() -> Self {
        SdkErrorClassifier {
            count_throttling: true,
        }
    }

    /// Whether throttling counts as a failure; match the client's
    /// [`count_throttling`](super::BreakerHttpClient::count_throttling).
    pub const fn count_throttling(mut self, count: bool) -> Self {
        self.count_throttling = count;
        self
    }

    /// The verdict for one SDK error (see the table above).
    pub fn classify_error<E: ProvideErrorMetadata>(
        &self,
        error: &SdkError<E, HttpResponse>,
    ) -> Verdict {
        match error {
            SdkError::ServiceError(context) => {
                let raw = context.raw();
                match context.err().code() {
                    Some(code) => {
                        verdict_for(raw.status().as_u16(), Some(code), self.count_throttling)
                    }
                    None => self.response(raw),
                }
            }
            SdkError::ResponseError(context) => self.response(context.raw()),
            SdkError::TimeoutError(_) => Verdict::Failure,
            SdkError::DispatchFailure(failure) => {
                if circuit_rejection(error).is_some() {
                    return Verdict::Ignored;
                }
                failure
                    .as_connector_error()
                    .map_or(Verdict::Failure, classify_connector_error)
            }
            SdkError::ConstructionFailure(_) => Verdict::Ignored,
            _ => Verdict::Failure,
        }
    }

    fn response(&self, raw: &HttpResponse) -> Verdict {
        classify_attempt(
            raw.status().as_u16(),
            raw.headers(),
            raw.body().bytes(),
            self.count_throttling,
        )
    }
}

impl<T, E: ProvideErrorMetadata> Classify<T, SdkError<E, HttpResponse>> for SdkErrorClassifier {
    fn classify(&self, result: &Result<T, SdkError<E, HttpResponse>>) -> Verdict {
        match result {
            Ok(_) => Verdict::Success,
            Err(error) => self.classify_error(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_on_a_prefix() {
        let none = Headers::new();
        let throttled = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"aaaa"#;
        assert_eq!(
            classify_error_prefix(400, &none, throttled, true),
            Verdict::Failure
        );
        assert_eq!(
            classify_error_prefix(400, &none, throttled, false),
            Verdict::Success
        );
        assert_eq!(
            classify_attempt(400, &none, Some(throttled), true),
            Verdict::Success
        );
        assert_eq!(
            classify_error_prefix(500, &none, b"garbage", false),
            Verdict::Failure
        );
        assert_eq!(
            classify_error_prefix(400, &none, b"garbage", true),
            Verdict::Success
        );
        assert_eq!(
            classify_error_prefix(503, &none, b"<Error><Code>SlowDown</Code><Message>m", false),
            Verdict::Success
        );
    }
}
