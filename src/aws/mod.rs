//! AWS SDK for Rust adapter (feature `aws`): a breaker around a service client's HTTP
//! connector, one circuit per operation through a [`CircuitBreakerRegistry`].
//!
//! # Install
//!
//! One call builds a configured service client from an `SdkConfig`, a registry and a
//! preset — [`aws_client!`](crate::aws_client):
//!
//! ```ignore
//! # // SDK example: compiled by integration/tests/doc_examples
//! use tower_circuit_breaker::{aws_client, CircuitBreakerConfig, CircuitBreakerRegistry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let sdk_config = aws_config::load_from_env().await;
//! let registry = CircuitBreakerRegistry::new();
//! let dynamodb: aws_sdk_dynamodb::Client =
//!     aws_client!(aws_sdk_dynamodb, &sdk_config, &registry, CircuitBreakerConfig::dynamodb());
//! # drop(dynamodb);
//! # }
//! ```
//!
//! It installs three pieces on the service's own config builder, which [`SdkBreaker`]
//! hands out for any builder you assemble yourself:
//!
//! * [`BreakerHttpClient`], the SDK `HttpClient` that puts every HTTP attempt through the
//!   registry circuit of its operation, around the SDK's default HTTPS client (or any
//!   client: [`BreakerHttpClient::with_inner`]);
//! * [`OperationTagInterceptor`], which tags each attempt with its [`OperationTag`]
//!   (`("dynamodb", "PutItem")`, attempt number) so one client has one circuit per
//!   operation;
//! * [`CircuitOpenRetryClassifier`], so the SDK never retries a rejected attempt.
//!
//! A rejected call fails fast with an `SdkError::DispatchFailure` whose source is a
//! [`CircuitOpen`](crate::error::CircuitOpen); [`circuit_rejection`] and
//! [`is_circuit_rejection`] find it ([`rejection_in`] once the error has been converted or
//! boxed). With the SDK's own test doubles nothing touches the network:
//!
//! ```ignore
//! # // SDK example: compiled and run by integration/tests/doc_examples
//! use aws_config::{BehaviorVersion, Region, SdkConfig};
//! use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
//! use aws_smithy_http_client::test_util::infallible_client_fn;
//! use aws_smithy_types::{body::SdkBody, retry::RetryConfig};
//! use std::time::Duration;
//! use tower_circuit_breaker::aws::is_circuit_rejection;
//! use tower_circuit_breaker::{aws_client, CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // DynamoDB is down: every request gets a 503.
//! let http = infallible_client_fn(|_req| {
//!     http::Response::builder().status(503).body(SdkBody::from("{}")).unwrap()
//! });
//! let sdk_config = SdkConfig::builder()
//!     .behavior_version(BehaviorVersion::latest())
//!     .region(Region::new("eu-west-3"))
//!     .credentials_provider(SharedCredentialsProvider::new(Credentials::new("AKID", "SECRET", None, None, "doc")))
//!     .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
//!     .build();
//! let registry = CircuitBreakerRegistry::new();
//! let config = CircuitBreakerConfig::dynamodb(); // opens after 3 failures among ≥ 5 attempts
//! let ddb = aws_client!(aws_sdk_dynamodb, &sdk_config, &registry, config, inner = http);
//!
//! // Two operations of 3 attempts each: the 5th attempt opens the circuit, the 6th is
//! // rejected without a request, and the SDK does not retry it.
//! for _ in 0..2 {
//!     let _ = ddb.delete_item().table_name("connections").send().await;
//! }
//! assert_eq!(registry.stats("dynamodb", "DeleteItem").unwrap().state, CircuitState::Open);
//! let err = ddb.delete_item().table_name("connections").send().await.unwrap_err();
//! assert!(is_circuit_rejection(&err));
//! # }
//! ```
//!
//! # Attempts, not operations
//!
//! The breaker sits below the SDK's retry loop, so it counts **attempts**: an operation
//! that fails three times (the SDK's standard retry) is three failures, and a failing
//! operation can open the circuit on its own. Tune `failure_threshold` and
//! `minimum_request_count` with that in mind. An open circuit rejects the next attempt —
//! the first one of a new operation or a retry — without a request on the wire, without
//! a backoff sleep and without spending retry quota.
//!
//! For one outcome per logical operation, put a registry call around the SDK call instead
//! (or as well, under another key):
//!
//! ```ignore
//! # // SDK example: compiled by integration/tests/doc_examples
//! # use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry, NoFallback, BoxError};
//! # #[allow(dead_code)]
//! # async fn f(registry: CircuitBreakerRegistry, ddb: aws_sdk_dynamodb::Client) -> Result<(), BoxError> {
//! registry
//!     .execute(
//!         "dynamodb",
//!         "storeUserMessage",
//!         || async { ddb.put_item().table_name("messages").send().await.map_err(BoxError::from) },
//!         NoFallback,
//!         &CircuitBreakerConfig::dynamodb(),
//!     )
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Classification
//!
//! Each attempt's verdict agrees with the SDK's own retry classifiers
//! ([`classify_attempt`], [`classify_connector_error`]):
//!
//! | attempt ended with | example | verdict |
//! |---|---|---|
//! | 2xx, 3xx | | success |
//! | connector error: I/O, timeout, other | connection refused or reset, connect timeout | **failure** |
//! | future dropped | SDK attempt/operation timeout, cancelled caller | **failure** (`dropped_call_is_failure` is forced on) |
//! | 5xx | 500, 502, 503, 504 | **failure** |
//! | 4xx with `RequestTimeout(Exception)` | | **failure** |
//! | 429, or a throttling code (any status) | `ThrottlingException`, `ProvisionedThroughputExceededException` (DynamoDB, 400), `LimitExceededException` (429), `TooManyRequestsException`, `RequestLimitExceeded`, `SlowDown`, … ([`THROTTLING_ERROR_CODES`]) | **failure**; success with `count_throttling(false)` |
//! | other 4xx | `ConditionalCheckFailedException`, `ValidationException`, `ResourceNotFoundException`, 410 `GoneException`, 403 | success: the dependency answered |
//! | connector `user` error | the request could not be built | ignored |
//! | circuit rejection | | not counted; not retried |
//!
//! The error code comes from the `x-amzn-errortype` header or, as DynamoDB sends it, from
//! the JSON body (`__type` after `#`, or `code`), so the body of every response with
//! status ≥ 400 is read before the SDK sees it — up to a bounded prefix, 64 KiB by default
//! ([`BreakerHttpClient::error_body_prefix`]): a longer error body is judged on its status,
//! headers and prefix, and reaches the SDK whole, the prefix followed by the rest of the
//! stream. The attempt's verdict (and its half-open probe slot) is settled once the
//! prefix is in. Success bodies stream untouched. A body read failure after the prefix,
//! and a response the SDK cannot deserialize, happen after the verdict and are not seen
//! here.
//!
//! # Throttling
//!
//! Throttling means the service is up and this caller is over its quota; the SDK already
//! backs off. Counting it (the default) sheds load sooner; not counting it
//! ([`BreakerHttpClient::count_throttling`]`(false)`, [`SdkBreaker::count_throttling`], or
//! `count_throttling = false` in [`aws_client!`](crate::aws_client)) keeps the circuit about
//! availability.
//!
//! # Pitfalls
//!
//! * **Always set a `TimeoutConfig`** (`operation_attempt_timeout`, `operation_timeout`):
//!   the SDK's defaults only bound the connect phase, so a black-holed endpoint hangs the
//!   call and the breaker sees nothing until the future is dropped.
//! * **Install it per service client**, not on `aws_config::defaults(..).http_client(..)`:
//!   there it would also carry the credential providers' traffic (IMDS, STS, SSO).
//! * The wrapped default client reads no proxy settings from the environment; give
//!   [`BreakerHttpClient::with_inner`] a client with a proxy when one is needed.
//! * Circuits live in the registry: clients built with the same registry share the
//!   circuits of the same operations. Create clients once (per Lambda sandbox) and reuse
//!   them.
//!
//! # Rust version
//!
//! The AWS SDK crates need Rust 1.94.1 or newer; so does this feature. The rest of the
//! crate keeps its own minimum.

mod classify;
mod client;
#[cfg(feature = "cognito")]
#[cfg_attr(docsrs, doc(cfg(feature = "cognito")))]
pub mod cognito;
// A leaf the fleet's DynamoDB store uses too (see its module docs).
pub(crate) mod error_codes;
mod retry;
mod tag;

pub use classify::{SdkErrorClassifier, classify_attempt, classify_connector_error};
pub use client::{
    BreakerHttpClient, DEFAULT_ERROR_BODY_PREFIX, MAX_ERROR_BODY_PREFIX, MIN_ERROR_BODY_PREFIX,
    UNTAGGED_KEY,
};
pub use error_codes::{THROTTLING_ERROR_CODES, TRANSIENT_ERROR_CODES, error_code};
pub use retry::{
    CircuitOpenRetryClassifier, PreviousAttempt, RejectedAfterAttempt, circuit_rejection,
    is_circuit_rejection, rejection_in,
};
pub use tag::{OperationTag, OperationTagInterceptor, service_key};

use crate::{CircuitBreakerConfig, CircuitBreakerRegistry};
use aws_smithy_runtime_api::client::http::{HttpClient, SharedHttpClient};

/// The three pieces a service client needs, for any service config builder:
///
/// ```ignore
/// # // SDK example: compiled by integration/tests/doc_examples
/// use tower_circuit_breaker::aws::SdkBreaker;
/// use tower_circuit_breaker::{CircuitBreakerConfig, CircuitBreakerRegistry};
///
/// # #[allow(dead_code)]
/// # async fn f(sdk_config: aws_config::SdkConfig, registry: CircuitBreakerRegistry) {
/// let breaker = SdkBreaker::new(registry.clone(), CircuitBreakerConfig::api_gateway_management());
/// let apigw = aws_sdk_apigatewaymanagement::Client::from_conf(
///     aws_sdk_apigatewaymanagement::config::Builder::from(&sdk_config)
///         .endpoint_url("https://abc123.execute-api.eu-west-1.amazonaws.com/prod")
///         .http_client(breaker.http_client())
///         .interceptor(breaker.interceptor())
///         .retry_classifier(breaker.retry_classifier())
///         .build(),
/// );
/// # drop(apigw);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SdkBreaker {
    http: BreakerHttpClient,
}

impl SdkBreaker {
    /// Around the SDK's default HTTPS client; see [`BreakerHttpClient::new`].
    pub fn new(registry: CircuitBreakerRegistry, config: CircuitBreakerConfig) -> Self {
        SdkBreaker {
            http: BreakerHttpClient::new(registry, config),
        }
    }

    /// Around any SDK HTTP client; see [`BreakerHttpClient::with_inner`].
    pub fn with_inner(
        inner: SharedHttpClient,
        registry: CircuitBreakerRegistry,
        config: CircuitBreakerConfig,
    ) -> Self {
        SdkBreaker {
            http: BreakerHttpClient::with_inner(inner, registry, config),
        }
    }

    /// Whether throttling counts as a failure (default `true`); see
    /// [`BreakerHttpClient::count_throttling`].
    pub fn count_throttling(self, count: bool) -> Self {
        SdkBreaker {
            http: self.http.count_throttling(count),
        }
    }

    /// How many bytes of an error body are read before the verdict (default 64 KiB); see
    /// [`BreakerHttpClient::error_body_prefix`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::error::ConfigError) naming `error_body_prefix` outside
    /// 1 KiB..=16 MiB.
    pub fn error_body_prefix(self, bytes: usize) -> Result<Self, crate::error::ConfigError> {
        Ok(SdkBreaker {
            http: self.http.error_body_prefix(bytes)?,
        })
    }

    /// For `config::Builder::http_client`.
    pub fn http_client(&self) -> BreakerHttpClient {
        self.http.clone()
    }

    /// For `config::Builder::interceptor`.
    pub fn interceptor(&self) -> OperationTagInterceptor {
        OperationTagInterceptor
    }

    /// For `config::Builder::retry_classifier`.
    pub fn retry_classifier(&self) -> CircuitOpenRetryClassifier {
        CircuitOpenRetryClassifier
    }
}

/// Applies the `configure` argument of [`aws_client!`](crate::aws_client); a function, so
/// that a closure's argument type is known without an annotation.
#[doc(hidden)]
pub fn __configure<B>(builder: B, configure: impl FnOnce(B) -> B) -> B {
    configure(builder)
}

/// The `inner` argument of [`aws_client!`](crate::aws_client) as a `SharedHttpClient`,
/// without wrapping one that already is.
#[doc(hidden)]
pub fn __shared_http_client<C: HttpClient + 'static>(client: C) -> SharedHttpClient {
    let mut slot = Some(client);
    if let Some(shared) =
        (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<SharedHttpClient>>()
    {
        if let Some(shared) = shared.take() {
            return shared;
        }
    }
    SharedHttpClient::new(slot.expect("not taken"))
}

/// Builds an AWS SDK service client whose HTTP attempts go through a
/// [`CircuitBreakerRegistry`]: `aws_client!(service_crate, &sdk_config, &registry, config)`.
///
/// Expands to `service_crate::Client::from_conf(service_crate::config::Builder::from(&sdk_config)
/// .http_client(..).interceptor(..).retry_classifier(..).build())` with the pieces of an
/// [`SdkBreaker`](crate::aws::SdkBreaker). `config` is the configuration new circuits get
/// (see [`BreakerHttpClient`](crate::aws::BreakerHttpClient)). Optional trailing
/// arguments, in this order:
///
/// * `inner = http_client`: wrap this SDK HTTP client (any `HttpClient`, e.g. a test
///   double) instead of the default HTTPS client;
/// * `count_throttling = bool` (default `true`);
/// * `configure = |builder| builder…`: a function applied to the service config builder
///   before `build()`, e.g. for a `TimeoutConfig` or an endpoint URL.
///
/// ```ignore
/// # // SDK example: compiled by integration/tests/doc_examples
/// use std::time::Duration;
/// use aws_config::timeout::TimeoutConfig;
/// use tower_circuit_breaker::{aws_client, CircuitBreakerConfig, CircuitBreakerRegistry};
///
/// # #[allow(dead_code)]
/// # async fn f(sdk_config: aws_config::SdkConfig, registry: CircuitBreakerRegistry) {
/// let apigw = aws_client!(
///     aws_sdk_apigatewaymanagement,
///     &sdk_config,
///     &registry,
///     CircuitBreakerConfig::api_gateway_management(),
///     count_throttling = false,
///     configure = |b| b
///         .endpoint_url("https://abc123.execute-api.eu-west-1.amazonaws.com/prod")
///         .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(1)).build()),
/// );
/// # drop(apigw);
/// # }
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "aws")))]
macro_rules! aws_client {
    (@breaker $registry:expr, $config:expr) => {
        $crate::aws::SdkBreaker::new($crate::CircuitBreakerRegistry::clone(&$registry), $config)
    };
    (@breaker $registry:expr, $config:expr, $inner:expr) => {
        $crate::aws::SdkBreaker::with_inner(
            $crate::aws::__shared_http_client($inner),
            $crate::CircuitBreakerRegistry::clone(&$registry),
            $config,
        )
    };
    (
        $service:ident, $sdk_config:expr, $registry:expr, $config:expr
        $(, inner = $inner:expr)?
        $(, count_throttling = $count_throttling:expr)?
        $(, configure = $configure:expr)?
        $(,)?
    ) => {{
        let breaker = $crate::aws_client!(@breaker $registry, $config $(, $inner)?)
            $(.count_throttling($count_throttling))?;
        let builder = $service::config::Builder::from($sdk_config)
            .http_client(breaker.http_client())
            .interceptor(breaker.interceptor())
            .retry_classifier(breaker.retry_classifier());
        $(let builder = $crate::aws::__configure(builder, $configure);)?
        $service::Client::from_conf(builder.build())
    }};
}
