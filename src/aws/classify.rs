//! What one HTTP attempt says about an AWS service: the pure classification functions.

use super::error_codes::{THROTTLING_ERROR_CODES, TRANSIENT_ERROR_CODES, code_of};
use crate::classify::Verdict;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::Headers;

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
    let code = code.as_deref();
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
