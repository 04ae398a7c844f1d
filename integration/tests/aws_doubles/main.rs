//! The AWS adapter under real SDK clients, with the SDK's own test doubles
//! (`infallible_client_fn`, `StaticReplayClient`, `NeverClient`) and small hand-written
//! connectors underneath: no sockets.
//!
//! Every test uses its own region: the SDK's retry quota is one token bucket per
//! `service-region` for the whole process, and tests run in parallel threads.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_http_client::test_util::{
    NeverClient, ReplayEvent, StaticReplayClient, infallible_client_fn,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, Error as ContextError, Input, InterceptorContext,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse, OrchestratorError};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use hyper::body::{Body, Bytes, Frame};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tower_circuit_breaker::aws::{
    CircuitOpenRetryClassifier, OperationTag, SdkBreaker, UNTAGGED_KEY, circuit_rejection,
    classify_attempt, classify_connector_error, is_circuit_rejection,
};
use tower_circuit_breaker::classify::Verdict;
use tower_circuit_breaker::error::RejectReason;
use tower_circuit_breaker::{
    CircuitBreakerConfig, CircuitBreakerRegistry, CircuitState, aws_client,
};

// ===== fixtures =====

/// Test credentials, a region of its own, standard retries (3 attempts) with a 1 ms backoff.
fn sdk_config(region: &'static str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDTEST", "SECRET", None, None, "test",
        )))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .build()
}

const WS_ENDPOINT: &str = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod";

/// Counts the attempts the SDK starts, rejected ones included.
#[derive(Clone, Debug, Default)]
struct Attempts(Arc<AtomicUsize>);

impl Attempts {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "Attempts"
    }

    fn read_before_attempt(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What the double answers.
#[derive(Clone, Debug)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    /// Send the body as a stream (the SDK's real client does) rather than in memory.
    streaming: bool,
}

impl Reply {
    fn status(status: u16, body: &'static str) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body,
            streaming: false,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn streaming(mut self) -> Self {
        self.streaming = true;
        self
    }
}

fn ok() -> Reply {
    Reply::status(200, "{}")
}

fn dynamo_error(status: u16, code: &'static str) -> Reply {
    // Leaked once per test: the body is `&'static` like every other reply.
    let body =
        format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"test"}}"#);
    Reply::status(status, Box::leak(body.into_boxed_str()))
}

/// `infallible_client_fn` with a switchable reply, a hit counter and the operation tags
/// it saw.
#[derive(Clone)]
struct Double {
    hits: Arc<AtomicUsize>,
    tags: Arc<Mutex<Vec<OperationTag>>>,
    reply: Arc<Mutex<Reply>>,
}

impl Double {
    fn new(reply: Reply) -> Self {
        Double {
            hits: Arc::default(),
            tags: Arc::default(),
            reply: Arc::new(Mutex::new(reply)),
        }
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn tags(&self) -> Vec<OperationTag> {
        self.tags.lock().unwrap().clone()
    }

    fn client(&self) -> SharedHttpClient {
        let me = self.clone();
        infallible_client_fn(move |req: http::Request<SdkBody>| {
            me.hits.fetch_add(1, Ordering::SeqCst);
            if let Some(tag) = req.extensions().get::<OperationTag>() {
                me.tags.lock().unwrap().push(tag.clone());
            }
            let reply = me.reply.lock().unwrap().clone();
            let mut res = http::Response::builder().status(reply.status);
            for (k, v) in &reply.headers {
                res = res.header(*k, *v);
            }
            let body = if reply.streaming {
                SdkBody::from_body_1_x(Chunks::new(vec![Ok(Bytes::from_static(
                    reply.body.as_bytes(),
                ))]))
            } else {
                SdkBody::from(reply.body)
            };
            res.body(body).unwrap()
        })
    }
}

/// A streaming body: its chunks, or an error, one frame at a time.
struct Chunks(VecDeque<Result<Bytes, std::io::Error>>);

impl Chunks {
    fn new(chunks: Vec<Result<Bytes, std::io::Error>>) -> Self {
        Chunks(chunks.into())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|c| c.map(Frame::data)))
    }
}

fn dynamodb(
    sdk: &SdkConfig,
    registry: &CircuitBreakerRegistry,
    config: CircuitBreakerConfig,
    inner: SharedHttpClient,
    attempts: &Attempts,
) -> aws_sdk_dynamodb::Client {
    let attempts = attempts.clone();
    aws_client!(
        aws_sdk_dynamodb,
        sdk,
        registry,
        config,
        inner = inner,
        configure = |b| b.interceptor(attempts)
    )
}

fn apigw(
    sdk: &SdkConfig,
    registry: &CircuitBreakerRegistry,
    inner: SharedHttpClient,
    attempts: &Attempts,
) -> aws_sdk_apigatewaymanagement::Client {
    let attempts = attempts.clone();
    aws_client!(
        aws_sdk_apigatewaymanagement,
        sdk,
        registry,
        CircuitBreakerConfig::api_gateway_management(),
        inner = inner,
        configure = |b| b.endpoint_url(WS_ENDPOINT).interceptor(attempts),
    )
}

async fn put(ddb: &aws_sdk_dynamodb::Client) -> Result<(), aws_sdk_dynamodb::Error> {
    ddb.put_item()
        .table_name("connections")
        .item("connectionId", AttributeValue::S("c1".into()))
        .send()
        .await
        .map(drop)
        .map_err(Into::into)
}

fn state(registry: &CircuitBreakerRegistry, service: &str, operation: &str) -> CircuitState {
    registry
        .stats(service, operation)
        .expect("circuit exists")
        .state
}

/// A config that opens after 3 consecutive failures among at least 3 attempts.
fn three_strikes() -> CircuitBreakerConfig {
    CircuitBreakerConfig::dynamodb()
        .to_builder()
        .minimum_request_count(3)
        .build()
        .unwrap()
}

// ===== outages =====

#[tokio::test(start_paused = true)]
async fn a_503_outage_opens_the_circuit_fails_fast_without_retries_and_recovers() {
    let double = Double::new(Reply::status(503, "{}"));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let config = CircuitBreakerConfig::dynamodb(); // 3 failures, ≥ 5 attempts, 20 s
    let ddb = dynamodb(
        &sdk_config("eu-west-1"),
        &registry,
        config,
        double.client(),
        &attempts,
    );

    // Operation 1: the SDK retries the 503 twice; 3 attempts, 3 requests, still closed
    // (fewer than 5 attempts in the window).
    let err = ddb.delete_item().table_name("t").send().await.unwrap_err();
    assert!(!is_circuit_rejection(&err));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert_eq!((double.hits(), attempts.get()), (3, 3));
    assert_eq!(
        state(&registry, "dynamodb", "DeleteItem"),
        CircuitState::Closed
    );

    // Operation 2: attempts 4 and 5 reach the double and open the circuit; the third
    // attempt is rejected before the wire and the SDK stops there.
    let err = ddb.delete_item().table_name("t").send().await.unwrap_err();
    assert!(is_circuit_rejection(&err), "{err:?}");
    let open = circuit_rejection(&err).unwrap();
    assert_eq!(open.circuit(), "dynamodb/DeleteItem");
    assert_eq!(open.reason(), RejectReason::Open);
    assert!(open.retry_after().is_some());
    assert_eq!((double.hits(), attempts.get()), (5, 6));
    assert_eq!(
        state(&registry, "dynamodb", "DeleteItem"),
        CircuitState::Open
    );

    // Operation 3: one attempt, rejected, no retry, no request.
    let err = ddb.delete_item().table_name("t").send().await.unwrap_err();
    assert!(is_circuit_rejection(&err));
    assert_eq!((double.hits(), attempts.get()), (5, 7));
    let stats = registry.stats("dynamodb", "DeleteItem").unwrap();
    assert_eq!(stats.failure_count, 5);
    assert_eq!(stats.rejected_count, 2);

    // DynamoDB comes back; after the recovery timeout one probe closes the circuit.
    double.set(ok());
    tokio::time::advance(Duration::from_secs(21)).await;
    ddb.delete_item().table_name("t").send().await.unwrap();
    assert_eq!((double.hits(), attempts.get()), (6, 8));
    assert_eq!(
        state(&registry, "dynamodb", "DeleteItem"),
        CircuitState::Closed
    );
}

#[tokio::test]
async fn replayed_500_500_200_is_retried_to_success_and_the_circuit_stays_closed() {
    let response = |status: u16| {
        http::Response::builder()
            .status(status)
            .body(SdkBody::from("{}"))
            .unwrap()
    };
    let request = || {
        http::Request::builder()
            .uri("https://dynamodb.eu-west-2.amazonaws.com/")
            .body(SdkBody::empty())
            .unwrap()
    };
    let replay = StaticReplayClient::new(vec![
        ReplayEvent::new(request(), response(500)),
        ReplayEvent::new(request(), response(500)),
        ReplayEvent::new(request(), response(200)),
    ]);
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("eu-west-2"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        SharedHttpClient::new(replay.clone()),
        &attempts,
    );

    put(&ddb).await.unwrap();
    assert_eq!(replay.actual_requests().count(), 3);
    assert_eq!(attempts.get(), 3);
    let stats = registry.stats("dynamodb", "PutItem").unwrap();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.failure_count, stats.success_count), (2, 1));
    assert_eq!(stats.consecutive_failures, 0);
}

// ===== throttling =====

#[tokio::test]
async fn dynamodb_throttling_in_a_400_body_is_a_failure_when_counted() {
    let double = Double::new(dynamo_error(400, "ProvisionedThroughputExceededException"));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("eu-west-3"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        double.client(),
        &attempts,
    );

    // The SDK retries throttling: 3 attempts; the breaker counts each as a failure.
    let err = put(&ddb).await.unwrap_err();
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
    assert_eq!(double.hits(), 3);
    assert_eq!(
        registry.stats("dynamodb", "PutItem").unwrap().failure_count,
        3
    );

    // The second operation opens it after 2 more attempts; the third is rejected.
    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    assert!(is_circuit_rejection(&err));
    assert_eq!((double.hits(), attempts.get()), (5, 6));
    assert_eq!(state(&registry, "dynamodb", "PutItem"), CircuitState::Open);
}

#[tokio::test]
async fn dynamodb_throttling_is_a_success_when_not_counted() {
    let double = Double::new(dynamo_error(400, "ThrottlingException"));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let attempts2 = attempts.clone();
    let ddb = aws_client!(
        aws_sdk_dynamodb,
        &sdk_config("eu-central-1"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        inner = double.client(),
        count_throttling = false,
        configure = |b| b.interceptor(attempts2),
    );

    for _ in 0..3 {
        let err = put(&ddb).await.unwrap_err();
        assert_eq!(err.code(), Some("ThrottlingException"));
    }
    // Every attempt reached DynamoDB and was retried by the SDK as throttling.
    assert_eq!((double.hits(), attempts.get()), (9, 9));
    let stats = registry.stats("dynamodb", "PutItem").unwrap();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.failure_count, stats.success_count), (0, 9));
}

#[tokio::test]
async fn a_429_limit_exceeded_on_post_to_connection_is_a_failure() {
    let double = Double::new(
        Reply::status(429, r#"{"message":"slow down"}"#)
            .header("x-amzn-errortype", "LimitExceededException"),
    );
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    // API Gateway Management preset: 5 failures among ≥ 3 attempts.
    let client = apigw(
        &sdk_config("eu-north-1"),
        &registry,
        double.client(),
        &attempts,
    );
    let post = || {
        client
            .post_to_connection()
            .connection_id("c1")
            .data(Blob::new("hi"))
            .send()
    };

    let err = post().await.unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_limit_exceeded_exception()
    );
    assert_eq!(
        double.hits(),
        3,
        "the SDK retries a 429 LimitExceededException"
    );
    let key = ("apigateway-management", "PostToConnection");
    assert_eq!(registry.stats(key.0, key.1).unwrap().failure_count, 3);

    let err = post().await.unwrap_err();
    assert!(is_circuit_rejection(&err));
    assert_eq!((double.hits(), attempts.get()), (5, 6));
    assert_eq!(state(&registry, key.0, key.1), CircuitState::Open);
}

// ===== the dependency answered =====

#[tokio::test]
async fn conditional_check_failed_is_a_success_with_one_request() {
    let double = Double::new(dynamo_error(400, "ConditionalCheckFailedException"));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("eu-south-1"),
        &registry,
        three_strikes(),
        double.client(),
        &attempts,
    );

    for n in 1..=4 {
        let err = ddb
            .put_item()
            .table_name("connections")
            .condition_expression("attribute_not_exists(connectionId)")
            .send()
            .await
            .unwrap_err();
        assert!(
            err.as_service_error()
                .unwrap()
                .is_conditional_check_failed_exception()
        );
        assert_eq!((double.hits(), attempts.get()), (n, n), "no retry");
    }
    let stats = registry.stats("dynamodb", "PutItem").unwrap();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.failure_count, stats.success_count), (0, 4));
}

#[tokio::test]
async fn gone_410_on_post_to_connection_is_a_success() {
    let double = Double::new(Reply::status(410, "{}").header(
        "x-amzn-errortype",
        "GoneException:http://internal.amazon.com/coral/com.amazonaws.gatewayapi/",
    ));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let client = apigw(
        &sdk_config("eu-south-2"),
        &registry,
        double.client(),
        &attempts,
    );

    for n in 1..=6 {
        let err = client
            .post_to_connection()
            .connection_id("gone")
            .data(Blob::new("hi"))
            .send()
            .await
            .unwrap_err();
        assert!(err.as_service_error().unwrap().is_gone_exception());
        assert_eq!((double.hits(), attempts.get()), (n, n), "no retry");
    }
    let stats = registry
        .stats("apigateway-management", "PostToConnection")
        .unwrap();
    assert_eq!(stats.state, CircuitState::Closed);
    assert_eq!((stats.failure_count, stats.success_count), (0, 6));
}

// ===== keys and tags =====

#[tokio::test]
async fn one_client_has_one_circuit_per_operation() {
    let double = Double::new(Reply::status(503, "{}"));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("us-east-2"),
        &registry,
        three_strikes(),
        double.client(),
        &attempts,
    );

    // PutItem fails 3 times and opens its own circuit...
    put(&ddb).await.unwrap_err();
    assert_eq!(state(&registry, "dynamodb", "PutItem"), CircuitState::Open);
    let tags: Vec<_> = double
        .tags()
        .iter()
        .map(|t| {
            (
                t.service().to_owned(),
                t.operation().to_owned(),
                t.attempt(),
            )
        })
        .collect();
    let put_tag = |n| ("dynamodb".to_owned(), "PutItem".to_owned(), n);
    assert_eq!(tags, vec![put_tag(1), put_tag(2), put_tag(3)]);

    // ...while DeleteItem, on the same client, still reaches DynamoDB.
    double.set(ok());
    ddb.delete_item().table_name("t").send().await.unwrap();
    assert_eq!(double.hits(), 4);
    assert!(put(&ddb).await.is_err());
    assert_eq!(double.hits(), 4, "PutItem is rejected");

    let keys: Vec<_> = registry
        .all_stats()
        .into_iter()
        .map(|k| (k.service, k.operation, k.stats.state))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("dynamodb".into(), "DeleteItem".into(), CircuitState::Closed),
            ("dynamodb".into(), "PutItem".into(), CircuitState::Open),
        ]
    );
}

#[tokio::test]
async fn without_the_interceptor_every_attempt_shares_the_untagged_circuit() {
    let double = Double::new(ok());
    let registry = CircuitBreakerRegistry::new();
    let breaker = SdkBreaker::with_inner(
        double.client(),
        registry.clone(),
        CircuitBreakerConfig::dynamodb(),
    );
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk_config("us-west-1"))
            .http_client(breaker.http_client())
            .retry_classifier(breaker.retry_classifier())
            .build(),
    );
    put(&ddb).await.unwrap();
    ddb.delete_item().table_name("t").send().await.unwrap();
    assert_eq!(registry.len(), 1);
    let stats = registry.stats(UNTAGGED_KEY.0, UNTAGGED_KEY.1).unwrap();
    assert_eq!(stats.success_count, 2);
    assert!(double.tags().is_empty());
}

#[tokio::test]
async fn sdk_breaker_pieces_work_on_a_test_defaults_builder() {
    let double = Double::new(ok());
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let breaker = SdkBreaker::with_inner(
        double.client(),
        registry.clone(),
        CircuitBreakerConfig::dynamodb(),
    );
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .with_test_defaults_v2()
            .http_client(breaker.http_client())
            .interceptor(breaker.interceptor())
            .retry_classifier(breaker.retry_classifier())
            .interceptor(attempts.clone())
            .build(),
    );
    put(&ddb).await.unwrap();
    assert_eq!(double.hits(), 1);

    // Forced open by hand: rejected, once, with nothing sent.
    assert!(registry.force_open("dynamodb", "PutItem"));
    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    let open = circuit_rejection(&err).expect("a rejection");
    assert_eq!(open.reason(), RejectReason::ForcedOpen);
    assert_eq!((double.hits(), attempts.get()), (1, 2));
}

#[tokio::test]
async fn circuits_made_by_the_client_count_dropped_attempts() {
    let double = Double::new(ok());
    let registry = CircuitBreakerRegistry::new();
    let config = CircuitBreakerConfig::dynamodb();
    assert!(!config.dropped_call_is_failure());
    let ddb = dynamodb(
        &sdk_config("us-west-2"),
        &registry,
        config,
        double.client(),
        &Attempts::default(),
    );
    put(&ddb).await.unwrap();
    let circuit = registry.get("dynamodb", "PutItem").unwrap();
    assert!(circuit.config().dropped_call_is_failure());
    assert_eq!(circuit.config().failure_threshold(), 3);
}

#[tokio::test]
async fn registry_overrides_apply_on_top_of_the_client_config() {
    use tower_circuit_breaker::config::ConfigPatch;
    use tower_circuit_breaker::registry::{RegistryConfig, ServiceOverrides};

    let mut put_item = ConfigPatch::default();
    put_item.failure_threshold = Some(1);
    put_item.minimum_request_count = Some(1);
    let mut doc = RegistryConfig::default();
    doc.services.insert(
        "dynamodb".into(),
        ServiceOverrides {
            operations: [("PutItem".to_string(), put_item)].into_iter().collect(),
            ..Default::default()
        },
    );
    let registry = CircuitBreakerRegistry::with_config(doc);
    let double = Double::new(Reply::status(503, "{}"));
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("ca-central-1"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        double.client(),
        &attempts,
    );

    // One failed attempt opens PutItem; the SDK's retry is rejected.
    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    assert!(is_circuit_rejection(&err));
    assert_eq!((double.hits(), attempts.get()), (1, 2));
    let config = registry.get("dynamodb", "PutItem").unwrap().config();
    assert_eq!(config.failure_threshold(), 1);
    assert_eq!(
        config.recovery_timeout(),
        Duration::from_secs(20),
        "from the preset"
    );
    assert!(config.dropped_call_is_failure(), "still forced on");
}

// ===== connector errors, timeouts, probes =====

/// A connector that fails every attempt with an I/O error.
#[derive(Debug, Default, Clone)]
struct Refused(Arc<AtomicUsize>);

impl HttpConnector for Refused {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        HttpConnectorFuture::ready(Err(ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )))))
    }
}

#[tokio::test]
async fn connector_io_errors_reach_the_sdk_unchanged_and_are_retried() {
    let refused = Refused::default();
    let conn = refused.clone();
    let inner = http_client_fn(move |_, _| SharedHttpConnector::new(conn.clone()));
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("ap-south-1"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        inner,
        &attempts,
    );

    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    let connector_error = match &err {
        SdkError::DispatchFailure(d) => d.as_connector_error().unwrap(),
        other => panic!("not a dispatch failure: {other:?}"),
    };
    assert!(
        connector_error.is_io(),
        "kept its kind: {connector_error:?}"
    );
    assert!(!is_circuit_rejection(&err));
    assert_eq!(refused.0.load(Ordering::SeqCst), 3, "the SDK retried it");
    assert_eq!(
        registry.stats("dynamodb", "PutItem").unwrap().failure_count,
        3
    );

    let err = put(&ddb).await.unwrap_err();
    assert!(tower_circuit_breaker::aws::rejection_in(&err).is_some());
    assert_eq!((refused.0.load(Ordering::SeqCst), attempts.get()), (5, 6));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_reach_the_breaker_as_dropped_futures() {
    let never = NeverClient::new();
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let a = attempts.clone();
    let ddb = aws_client!(
        aws_sdk_dynamodb,
        &sdk_config("ap-south-2"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        inner = never.clone(),
        configure = |b| b
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(100))
                    .build(),
            )
            .interceptor(a),
    );

    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert_eq!(never.num_calls(), 3);
    assert_eq!(
        registry.stats("dynamodb", "PutItem").unwrap().failure_count,
        3
    );

    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    assert!(is_circuit_rejection(&err), "{err:?}");
    assert_eq!((never.num_calls(), attempts.get()), (5, 6));

    // After the break, the probe times out too: dropped, a failure, open again.
    tokio::time::advance(Duration::from_secs(21)).await;
    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    assert!(
        is_circuit_rejection(&err),
        "the retry of the failed probe is rejected"
    );
    assert_eq!((never.num_calls(), attempts.get()), (6, 8));
    assert_eq!(state(&registry, "dynamodb", "PutItem"), CircuitState::Open);
}

/// A connector whose responses wait for a permit, then answer 200.
#[derive(Debug, Clone)]
struct Gated {
    hits: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl HttpConnector for Gated {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        self.hits.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.clone();
        HttpConnectorFuture::new(async move {
            gate.acquire().await.unwrap().forget();
            Ok(HttpResponse::new(
                200.try_into().unwrap(),
                SdkBody::from("{}"),
            ))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_one_probe_and_a_dropped_probe_reopens() {
    let gated = Gated {
        hits: Arc::default(),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let conn = gated.clone();
    let inner = http_client_fn(move |_, _| SharedHttpConnector::new(conn.clone()));
    let registry = CircuitBreakerRegistry::new();
    let ddb = dynamodb(
        &sdk_config("ap-southeast-1"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        inner,
        &Attempts::default(),
    );
    // The client creates the circuit (with its forced dropped-call policy)...
    gated.gate.add_permits(1);
    put(&ddb).await.unwrap();
    // ...then a failure run outside the SDK opens it.
    let circuit = registry.get("dynamodb", "PutItem").unwrap();
    let stats = || registry.stats("dynamodb", "PutItem").unwrap();
    for _ in 0..5 {
        let _ = circuit
            .call(async { Err::<(), _>(std::io::Error::other("down")) })
            .await;
    }
    assert_eq!(stats().state, CircuitState::Open);
    tokio::time::advance(Duration::from_secs(21)).await;

    // The first attempt after the break is the probe; it hangs at the gate.
    let probe = tokio::spawn({
        let ddb = ddb.clone();
        async move { put(&ddb).await }
    });
    while gated.hits.load(Ordering::SeqCst) == 1 {
        tokio::task::yield_now().await;
    }
    assert_eq!(stats().state, CircuitState::HalfOpen);
    assert_eq!(stats().half_open_in_flight, 1);

    // A second operation meanwhile finds the only probe slot taken.
    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        circuit_rejection(&err).map(|o| o.reason()),
        Some(RejectReason::HalfOpenFull)
    );
    assert_eq!(gated.hits.load(Ordering::SeqCst), 2);

    // The caller gives up on the probe: its future is dropped, which counts as a failure
    // (dropped_call_is_failure is forced on) and re-opens the circuit.
    probe.abort();
    assert!(probe.await.unwrap_err().is_cancelled());
    assert_eq!(stats().state, CircuitState::Open);

    // Next break: a probe that answers closes the circuit.
    tokio::time::advance(Duration::from_secs(21)).await;
    gated.gate.add_permits(1);
    put(&ddb).await.unwrap();
    assert_eq!(stats().state, CircuitState::Closed);
    assert_eq!(gated.hits.load(Ordering::SeqCst), 3);
}

// ===== bodies =====

#[tokio::test]
async fn streamed_error_bodies_are_read_for_the_code_and_still_reach_the_sdk() {
    let double =
        Double::new(dynamo_error(400, "ProvisionedThroughputExceededException").streaming());
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("ap-northeast-1"),
        &registry,
        three_strikes(),
        double.client(),
        &attempts,
    );
    let err = put(&ddb).await.unwrap_err();
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));
    assert_eq!(err.message(), Some("test"));
    assert_eq!(state(&registry, "dynamodb", "PutItem"), CircuitState::Open);

    // A streamed success body reaches the SDK's deserializer.
    double.set(Reply::status(200, r#"{"Item":{"connectionId":{"S":"c1"}}}"#).streaming());
    let out = ddb
        .get_item()
        .table_name("connections")
        .key("connectionId", AttributeValue::S("c1".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.item().unwrap().get("connectionId"),
        Some(&AttributeValue::S("c1".into()))
    );
    assert_eq!(
        state(&registry, "dynamodb", "GetItem"),
        CircuitState::Closed
    );
}

#[tokio::test]
async fn a_failure_while_reading_an_error_body_is_a_retryable_failure() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let inner = infallible_client_fn(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        let body = Chunks::new(vec![
            Ok(Bytes::from_static(b"{\"__ty")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        ]);
        http::Response::builder()
            .status(500)
            .body(SdkBody::from_body_1_x(body))
            .unwrap()
    });
    let registry = CircuitBreakerRegistry::new();
    let attempts = Attempts::default();
    let ddb = dynamodb(
        &sdk_config("ap-northeast-2"),
        &registry,
        CircuitBreakerConfig::dynamodb(),
        inner,
        &attempts,
    );
    let err = ddb
        .put_item()
        .table_name("connections")
        .send()
        .await
        .unwrap_err();
    let connector_error = match &err {
        SdkError::DispatchFailure(d) => d.as_connector_error().unwrap(),
        other => panic!("not a dispatch failure: {other:?}"),
    };
    assert!(connector_error.is_other());
    assert_eq!(hits.load(Ordering::SeqCst), 3, "retried as transient");
    assert_eq!(
        registry.stats("dynamodb", "PutItem").unwrap().failure_count,
        3
    );
}

#[tokio::test]
async fn only_error_bodies_are_buffered_success_bodies_stream() {
    use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;

    let double = Double::new(Reply::status(200, r#"{"Item":{}}"#).streaming());
    let client = SdkBreaker::with_inner(
        double.client(),
        CircuitBreakerRegistry::new(),
        CircuitBreakerConfig::dynamodb(),
    )
    .http_client();
    let components = RuntimeComponentsBuilder::for_tests().build().unwrap();
    let connector = client.http_connector(&HttpConnectorSettings::default(), &components);
    let request = || HttpRequest::get("https://dynamodb.eu-west-1.amazonaws.com/").unwrap();

    let response = connector.call(request()).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.body().bytes().is_none(),
        "a success body still streams"
    );

    double.set(dynamo_error(400, "ValidationException").streaming());
    let response = connector.call(request()).await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body = std::str::from_utf8(response.body().bytes().expect("buffered")).unwrap();
    assert!(body.contains("#ValidationException"), "{body}");
}

// ===== pure parts =====

#[tokio::test]
async fn the_retry_classifier_forbids_only_circuit_rejections() {
    let registry = CircuitBreakerRegistry::new();
    let circuit = registry.circuit("dynamodb", "PutItem", None);
    circuit.force_open();
    let open = circuit
        .call(async { Ok::<(), std::io::Error>(()) })
        .await
        .unwrap_err()
        .rejection()
        .cloned()
        .unwrap();

    let verdict = |err: ConnectorError| {
        let mut ctx: InterceptorContext = InterceptorContext::new(Input::erase(()));
        ctx.set_output_or_error(Err(OrchestratorError::<ContextError>::connector(err)));
        CircuitOpenRetryClassifier.classify_retry(&ctx)
    };
    assert_eq!(
        verdict(ConnectorError::other(Box::new(open), None)),
        RetryAction::RetryForbidden
    );
    assert_eq!(
        verdict(ConnectorError::io("reset".into())),
        RetryAction::NoActionIndicated
    );
    let ok_ctx: InterceptorContext = InterceptorContext::new(Input::erase(()));
    assert_eq!(
        CircuitOpenRetryClassifier.classify_retry(&ok_ctx),
        RetryAction::NoActionIndicated
    );
}

#[test]
fn classify_attempt_table() {
    let none = Headers::new();
    let header = |code: &str| {
        let mut h = Headers::new();
        h.insert("x-amzn-errortype", code.to_owned());
        h
    };
    let body = |code: &str| format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}"}}"#);
    use Verdict::{Failure, Success};
    let cases: Vec<(u16, Headers, Option<String>, bool, Verdict)> = vec![
        (200, none.clone(), None, true, Success),
        (204, none.clone(), None, true, Success),
        (304, none.clone(), None, true, Success),
        (500, none.clone(), None, true, Failure),
        (502, none.clone(), None, false, Failure),
        (
            503,
            none.clone(),
            Some(body("InternalServerError")),
            false,
            Failure,
        ),
        (504, none.clone(), None, true, Failure),
        (599, none.clone(), None, true, Failure),
        // Throttling: 429 or a code, counted or not.
        (429, none.clone(), None, true, Failure),
        (429, none.clone(), None, false, Success),
        (429, header("LimitExceededException"), None, true, Failure),
        (
            429,
            header("TooManyRequestsException"),
            None,
            false,
            Success,
        ),
        (
            400,
            none.clone(),
            Some(body("ProvisionedThroughputExceededException")),
            true,
            Failure,
        ),
        (
            400,
            none.clone(),
            Some(body("ProvisionedThroughputExceededException")),
            false,
            Success,
        ),
        (
            400,
            none.clone(),
            Some(body("ThrottlingException")),
            true,
            Failure,
        ),
        (
            400,
            none.clone(),
            Some(body("RequestLimitExceeded")),
            true,
            Failure,
        ),
        (
            400,
            none.clone(),
            Some(r#"{"code":"Throttling"}"#.into()),
            true,
            Failure,
        ),
        (400, header("ThrottlingException"), None, true, Failure),
        (
            503,
            none.clone(),
            Some("<Error><Code>SlowDown</Code></Error>".into()),
            true,
            Failure,
        ),
        (
            503,
            none.clone(),
            Some("<Error><Code>SlowDown</Code></Error>".into()),
            false,
            Success,
        ),
        // Transient codes.
        (
            400,
            none.clone(),
            Some(body("RequestTimeoutException")),
            false,
            Failure,
        ),
        (408, header("RequestTimeout"), None, false, Failure),
        // The dependency answered.
        (
            400,
            none.clone(),
            Some(body("ConditionalCheckFailedException")),
            true,
            Success,
        ),
        (
            400,
            none.clone(),
            Some(body("ValidationException")),
            true,
            Success,
        ),
        (
            400,
            none.clone(),
            Some(body("ResourceNotFoundException")),
            true,
            Success,
        ),
        (
            400,
            none.clone(),
            Some(body("TransactionConflictException")),
            true,
            Success,
        ),
        (400, none.clone(), Some("not json".into()), true, Success),
        (400, none.clone(), None, true, Success),
        (403, header("AccessDeniedException"), None, true, Success),
        (404, none.clone(), None, true, Success),
        (
            410,
            header("GoneException:http://internal.amazon.com/coral/com.amazonaws.gatewayapi/"),
            None,
            true,
            Success,
        ),
        (413, header("PayloadTooLargeException"), None, true, Success),
    ];
    for (status, headers, body, count, expected) in cases {
        let got = classify_attempt(status, &headers, body.as_deref().map(str::as_bytes), count);
        assert_eq!(
            got, expected,
            "{status} {headers:?} {body:?} count_throttling={count}"
        );
    }

    assert_eq!(
        classify_connector_error(&ConnectorError::io("x".into())),
        Failure
    );
    assert_eq!(
        classify_connector_error(&ConnectorError::timeout("x".into())),
        Failure
    );
    assert_eq!(
        classify_connector_error(&ConnectorError::other("x".into(), None)),
        Failure
    );
    assert_eq!(
        classify_connector_error(&ConnectorError::user("x".into())),
        Verdict::Ignored
    );
}

// ===== the registry's execute_with and the SDK-error classifier =====

mod execute_with;
