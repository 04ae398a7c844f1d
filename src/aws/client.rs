//! The breaker around the SDK's HTTP connector.

use super::classify::{classify_attempt, classify_connector_error};
use super::tag::OperationTag;
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
use http_body_util::BodyExt;
use std::fmt;
use std::sync::Arc;

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
///   Bodies of responses with status ≥ 400 are read into memory first (the DynamoDB error
///   code is in the body) and handed to the SDK as an in-memory body with the same status
///   and headers; other bodies stream untouched. A failure while reading an error body is
///   a failure and reaches the SDK as a retryable transient connector error.
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
}

impl fmt::Debug for BreakerHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHttpClient")
            .field("inner", &self.inner)
            .field("registry", &self.core.registry)
            .field("count_throttling", &self.core.count_throttling)
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
            }),
        }
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
                // `other` with no error kind: the SDK's classifiers do not retry it.
                return HttpConnectorFuture::ready(Err(ConnectorError::other(
                    Box::new(open),
                    None,
                )));
            }
        };
        permit.start();
        let response = self.inner.call(request);
        let count_throttling = core.count_throttling;
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
            if response.body().bytes().is_none() {
                match response.take_body().collect().await {
                    Ok(collected) => *response.body_mut() = SdkBody::from(collected.to_bytes()),
                    Err(error) => {
                        permit.complete(Verdict::Failure);
                        return Err(ConnectorError::other(
                            error,
                            Some(ErrorKind::TransientError),
                        ));
                    }
                }
            }
            permit.complete(classify_attempt(
                status,
                response.headers(),
                response.body().bytes(),
                count_throttling,
            ));
            Ok(response)
        })
    }
}
