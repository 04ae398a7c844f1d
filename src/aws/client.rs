//! The breaker around the SDK's HTTP connector.

use super::classify::{classify_attempt, classify_connector_error, classify_error_prefix};
use super::tag::OperationTag;
use super::{PreviousAttempt, RejectedAfterAttempt};
use crate::circuit::Permit;
use crate::classify::Verdict;
use crate::{CircuitBreakerConfig, CircuitBreakerRegistry};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::ErrorKind;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::error::ConfigError;

/// The default of [`BreakerHttpClient::error_body_prefix`]: 64 KiB.
pub const DEFAULT_ERROR_BODY_PREFIX: usize = 64 * 1024;
/// The smallest [`BreakerHttpClient::error_body_prefix`]: 1 KiB, room for any AWS error code.
pub const MIN_ERROR_BODY_PREFIX: usize = 1024;
/// The largest [`BreakerHttpClient::error_body_prefix`]: 16 MiB.
pub const MAX_ERROR_BODY_PREFIX: usize = 16 * 1024 * 1024;

/// The circuit key of attempts that carry no [`OperationTag`]: `("aws", "unknown")`.
pub const UNTAGGED_KEY: (&str, &str) = ("aws", "unknown");

/// An SDK [`HttpClient`] that puts every HTTP *attempt* through the registry circuit of its
/// operation, around another `HttpClient` (by default the SDK's own HTTPS client).
///
/// * **Key:** the request's [`OperationTag`] (set by
///   [`OperationTagInterceptor`](super::OperationTagInterceptor)) gives the circuit
///   `(service, operation)`, e.g. `("dynamodb", "PutItem")`; an untagged attempt goes
///   through [`UNTAGGED_KEY`].
/// * **Configuration:** a circuit created by this client gets the `config` given here, with
///   `dropped_call_is_failure` turned on, then the registry's overrides for its key as
///   usual. The SDK's attempt and operation timeouts reach a connector only as a dropped
///   future; without this they would never count. An explicit registry override of
///   `dropped_call_is_failure = false`, or a circuit that already existed (made by
///   [`execute`](CircuitBreakerRegistry::execute) say), keeps its own setting.
/// * **Admission** happens when the SDK calls the connector: a rejected attempt fails at once
///   with `ConnectorError::other(CircuitOpen, None)`, which the SDK does not retry. A
///   half-open probe slot is held by the attempt's future and given back when it is
///   dropped or ignored, exactly as in the tower layer.
/// * **Verdict:** connector errors from the inner client are failures (a
///   [`ConnectorError::user`] is ignored) and reach the SDK *unchanged*, so it still retries
///   I/O errors and timeouts; responses are judged by [`classify_attempt`](super::classify_attempt).
///   Other bodies stream untouched.
/// * **Error bodies** (status ≥ 400) are read up to a bounded prefix first, because the
///   DynamoDB error code is in the body: at most
///   [`error_body_prefix`](Self::error_body_prefix) bytes (default 64 KiB,
///   [`DEFAULT_ERROR_BODY_PREFIX`](super::DEFAULT_ERROR_BODY_PREFIX)).
///   - A body that ends within the prefix is classified whole and handed to the SDK as an
///     in-memory body with the same status and headers.
///   - A longer body (a 512 MiB error page, an endless chunked stream) is classified on
///     its status, headers and prefix alone (see [`classify_attempt`](super::classify_attempt)
///     for what a prefix can say), and the SDK gets a body that yields the prefix and then
///     goes on reading the original stream: what it does with the rest (the SDK reads a
///     non-streaming operation's error body whole) is the SDK's. The adapter itself copies
///     at most the prefix; the frame that crossed the limit is passed on as it came.
///   - A failure while reading the prefix is a failure and reaches the SDK as a retryable
///     transient connector error. A failure after the prefix reaches the SDK while it
///     reads the body; the circuit has its verdict by then and does not count it again.
/// * **When the verdict is recorded:** as soon as the response's headers arrive for a
///   status below 400, and as soon as the prefix is read (or the body ends) for an error.
///   The attempt's permit — a half-open probe slot — is released then, not when the SDK
///   has read the whole body: a drip-fed error body holds the probe slot only while its
///   first [`error_body_prefix`](Self::error_body_prefix) bytes arrive, and that read is
///   bounded in time by the SDK's attempt timeout (the dropped attempt counts as a
///   failure). For slow-call purposes the attempt ends at the verdict too.
/// * **Throttling** counts as a failure unless [`count_throttling(false)`](Self::count_throttling).
///
/// Cheap to clone; clones share the inner client and the registry.
#[derive(Clone)]
pub struct BreakerHttpClient {
    inner: SharedHttpClient,
    core: Arc<Core>,
}

#[derive(Clone)]
struct Core {
    registry: CircuitBreakerRegistry,
    config: CircuitBreakerConfig,
    count_throttling: bool,
    error_body_prefix: usize,
}

impl fmt::Debug for BreakerHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHttpClient")
            .field("inner", &self.inner)
            .field("registry", &self.core.registry)
            .field("count_throttling", &self.core.count_throttling)
            .field("error_body_prefix", &self.core.error_body_prefix)
            .finish_non_exhaustive()
    }
}

/// The SDK's default HTTPS client: hyper 1, rustls with aws-lc. Unlike the SDK's own
/// default it reads no proxy settings from the environment.
fn default_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

impl BreakerHttpClient {
    /// Wraps the SDK's default HTTPS client (hyper 1, rustls with aws-lc, from
    /// `aws-smithy-http-client`). It speaks plain `http://` too (local endpoints). It does
    /// not read `HTTP(S)_PROXY`: for a proxy, build a client with one and use
    /// [`with_inner`](Self::with_inner).
    ///
    /// `config` is the configuration circuits are created with; see the type's docs.
    pub fn new(registry: CircuitBreakerRegistry, config: CircuitBreakerConfig) -> Self {
        Self::with_inner(default_https_client(), registry, config)
    }

    /// Wraps any SDK HTTP client: a test double, a client with a proxy or custom TLS.
    pub fn with_inner(
        inner: SharedHttpClient,
        registry: CircuitBreakerRegistry,
        mut config: CircuitBreakerConfig,
    ) -> Self {
        config.dropped_call_is_failure = true;
        BreakerHttpClient {
            inner,
            core: Arc::new(Core {
                registry,
                config,
                count_throttling: true,
                error_body_prefix: DEFAULT_ERROR_BODY_PREFIX,
            }),
        }
    }

    /// How many bytes of an error body (status ≥ 400) the adapter reads before it judges
    /// the attempt; default 64 KiB ([`DEFAULT_ERROR_BODY_PREFIX`](super::DEFAULT_ERROR_BODY_PREFIX)).
    /// The type's docs say what happens to the rest.
    ///
    /// An AWS error code sits in the first hundred bytes of a JSON or XML error body, so
    /// the default is generous; it bounds what one attempt makes this adapter hold,
    /// whatever the upstream sends.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `error_body_prefix` when `bytes` is below 1 KiB
    /// ([`MIN_ERROR_BODY_PREFIX`](super::MIN_ERROR_BODY_PREFIX): too short for a code
    /// after a message) or above 16 MiB
    /// ([`MAX_ERROR_BODY_PREFIX`](super::MAX_ERROR_BODY_PREFIX)).
    ///
    /// ```
    /// use tower_circuit_breaker::aws::BreakerHttpClient;
    /// # use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
    /// let client = BreakerHttpClient::new(CircuitBreakerRegistry::new(), CircuitBreakerConfig::dynamodb())
    ///     .error_body_prefix(8 * 1024)
    ///     .unwrap();
    /// assert_eq!(client.error_body_prefix_limit(), 8 * 1024);
    /// let err = client.clone().error_body_prefix(0).unwrap_err();
    /// assert_eq!(err.field(), "error_body_prefix");
    /// ```
    pub fn error_body_prefix(mut self, bytes: usize) -> Result<Self, ConfigError> {
        if bytes < MIN_ERROR_BODY_PREFIX {
            return Err(ConfigError::new(
                "error_body_prefix",
                "must be at least 1 KiB (1024 bytes)",
            ));
        }
        if bytes > MAX_ERROR_BODY_PREFIX {
            return Err(ConfigError::new(
                "error_body_prefix",
                "must be at most 16 MiB (16777216 bytes)",
            ));
        }
        Arc::make_mut(&mut self.core).error_body_prefix = bytes;
        Ok(self)
    }

    /// Whether throttling (429, or a throttling error code such as
    /// `ProvisionedThroughputExceededException`) counts as a failure. Default `true`: the
    /// circuit sheds load when the caller is over its quota. With `false` a throttled
    /// attempt is a success — the service answered — and the circuit is about
    /// availability only; the SDK still backs off and retries it.
    pub fn count_throttling(mut self, count: bool) -> Self {
        Arc::make_mut(&mut self.core).count_throttling = count;
        self
    }

    /// The registry holding the circuits.
    pub fn registry(&self) -> &CircuitBreakerRegistry {
        &self.core.registry
    }

    /// The configuration circuits are created with (`dropped_call_is_failure` on).
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.core.config
    }

    /// Whether throttling counts as a failure.
    pub fn counts_throttling(&self) -> bool {
        self.core.count_throttling
    }

    /// The most bytes of an error body read before the verdict; see
    /// [`error_body_prefix`](Self::error_body_prefix).
    pub fn error_body_prefix_limit(&self) -> usize {
        self.core.error_body_prefix
    }
}

impl HttpClient for BreakerHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // Called once per attempt: the state lives in the registry, not in the connector.
        SharedHttpConnector::new(BreakerConnector {
            inner: self.inner.http_connector(settings, components),
            core: self.core.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner
            .validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

struct BreakerConnector {
    inner: SharedHttpConnector,
    core: Arc<Core>,
}

impl fmt::Debug for BreakerConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConnector")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HttpConnector for BreakerConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let core = &self.core;
        let (service, operation) = request
            .extension::<OperationTag>()
            .map_or(UNTAGGED_KEY, |t| (t.service(), t.operation()));
        let circuit = core.registry.circuit(service, operation, &core.config);
        let mut permit = match Permit::acquire(circuit) {
            Ok(permit) => permit,
            Err(open) => {
                tracing::debug!(circuit = %open.circuit(), reason = open.reason().as_str(), "AWS attempt rejected by the circuit breaker");
                // `other` with no error kind: the SDK's classifiers do not retry it. After a
                // failed attempt of the same operation, that attempt's error goes with it.
                let error: BoxError = match request.extension::<PreviousAttempt>() {
                    Some(previous) => Box::new(RejectedAfterAttempt::new(open, previous.clone())),
                    None => Box::new(open),
                };
                return HttpConnectorFuture::ready(Err(ConnectorError::other(error, None)));
            }
        };
        permit.start();
        let response = self.inner.call(request);
        let count_throttling = core.count_throttling;
        let limit = core.error_body_prefix;
        // Dropping this future (an SDK attempt or operation timeout, a cancelled caller)
        // drops the permit: the circuit's dropped-call policy applies.
        HttpConnectorFuture::new(async move {
            let mut response = match response.await {
                Ok(response) => response,
                Err(error) => {
                    permit.complete(classify_connector_error(&error));
                    // Unchanged: its kind decides whether the SDK retries.
                    return Err(error);
                }
            };
            let status = response.status().as_u16();
            if status < 400 {
                permit.complete(Verdict::Success);
                return Ok(response);
            }
            // Already in memory (a test double, a replay): judged on at most `limit` bytes
            // of it, as a streamed body would be.
            if let Some(bytes) = response.body().bytes() {
                let verdict = if bytes.len() > limit {
                    classify_error_prefix(
                        status,
                        response.headers(),
                        &bytes[..limit],
                        count_throttling,
                    )
                } else {
                    classify_attempt(status, response.headers(), Some(bytes), count_throttling)
                };
                permit.complete(verdict);
                return Ok(response);
            }
            let read = match read_prefix(response.body_mut(), limit).await {
                Ok(read) => read,
                Err(error) => {
                    permit.complete(Verdict::Failure);
                    return Err(ConnectorError::other(
                        error,
                        Some(ErrorKind::TransientError),
                    ));
                }
            };
            match read {
                Prefix::Whole(bytes) => {
                    permit.complete(classify_attempt(
                        status,
                        response.headers(),
                        Some(&bytes),
                        count_throttling,
                    ));
                    *response.body_mut() = SdkBody::from(bytes);
                }
                Prefix::Part { prefix, leftover } => {
                    permit.complete(classify_error_prefix(
                        status,
                        response.headers(),
                        &prefix,
                        count_throttling,
                    ));
                    let rest = response.take_body();
                    *response.body_mut() = SdkBody::from_body_1_x(Prefixed {
                        prefix: Some(prefix),
                        leftover,
                        rest,
                    });
                }
            }
            Ok(response)
        })
    }
}

// ===== error body prefix =====

/// What [`read_prefix`] read of an error body.
enum Prefix {
    /// The body ended within the limit: all of it.
    Whole(Bytes),
    /// The body goes on: its first `limit` bytes, and the rest of the frame that crossed
    /// the limit (a slice of it, not a copy).
    Part {
        prefix: Bytes,
        leftover: Option<Bytes>,
    },
}

/// Reads `body` until it ends or `limit` bytes are in hand, copying at most `limit` bytes.
/// Trailers are dropped, as collecting the body did before.
async fn read_prefix(body: &mut SdkBody, limit: usize) -> Result<Prefix, BoxError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(mut data) = frame?.into_data() else {
            continue;
        };
        let room = limit - buf.len();
        if data.len() < room || (data.len() == room && body.is_end_stream()) {
            if buf.is_empty() && body.is_end_stream() {
                // One frame, the whole body: no copy.
                return Ok(Prefix::Whole(data));
            }
            buf.extend_from_slice(&data);
            continue;
        }
        buf.extend_from_slice(&data.split_to(room));
        return Ok(Prefix::Part {
            prefix: buf.freeze(),
            leftover: (!data.is_empty()).then_some(data),
        });
    }
    Ok(Prefix::Whole(buf.freeze()))
}

/// The body the SDK gets for an over-long error body: the prefix, the leftover of the
/// frame that crossed the limit, then whatever the original body still yields.
struct Prefixed {
    prefix: Option<Bytes>,
    leftover: Option<Bytes>,
    rest: SdkBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(bytes) = self.prefix.take().or_else(|| self.leftover.take()) {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.leftover.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held = (self.prefix.as_ref().map_or(0, Bytes::len)
            + self.leftover.as_ref().map_or(0, Bytes::len)) as u64;
        let rest = Body::size_hint(&self.rest);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(held));
        if let Some(upper) = rest.upper().and_then(|u| u.checked_add(held)) {
            hint.set_upper(upper);
        }
        hint
    }
}
